/*
 * netpoll.h - green threads and Go-style pollable descriptors for C.
 *
 * This header is the whole public contract of libnetpoll.so.1.  Every
 * function returns 0 (or a count) on success and a negative errno value on
 * failure; none of them sets errno.  Times are int64_t nanoseconds on
 * CLOCK_MONOTONIC, as returned by np_now().  Each function has a man page
 * of its own (np_open(3), ...); netpoll(7) describes the runtime.
 *
 * ABI promise: symbols are versioned (NETPOLL_1.0; functions added later
 * in NETPOLL_1.1 and on, each marked with its version below); structures
 * passed in carry their size first and only grow at the end; nothing is
 * removed.
 */
#ifndef NETPOLL_H
#define NETPOLL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default) /* the ABI, even under -fvisibility=hidden */
#endif

#define NETPOLL_VERSION_MAJOR 1
#define NETPOLL_VERSION_MINOR 1

typedef struct np_fd np_fd;         /* a registered descriptor (Go's pollDesc) */
typedef struct np_thread np_thread; /* a joinable green thread */

/* Runtime configuration.  Versioned by size: set size to sizeof(np_config).
 * Zero fields take the environment (NP_PROCS, NP_STACK_SIZE, NP_POLLER),
 * then the built-in defaults. */
typedef struct np_config {
    size_t size;       /* sizeof(np_config) as the caller knows it */
    int procs;         /* worker OS threads (NP_PROCS; default: online CPUs) */
    size_t stack_size; /* green stack reservation in bytes (NP_STACK_SIZE) */
    const char *poller; /* "epoll" | "io_uring" | "poll" (NP_POLLER) */
    unsigned flags;    /* NP_CONFIG_* */
} np_config;

/* No worker threads: the host drives the runtime by calling np_poll(),
 * which also runs the runnable green threads on the calling thread. */
#define NP_CONFIG_EMBEDDED 1u

#define NP_READ  1
#define NP_WRITE 2

/* ---- runtime ---------------------------------------------------------- */

/* Start the runtime.  Optional: the first call that needs it starts it
 * with the defaults.  -EBUSY if it already runs with another config. */
int np_init(const np_config *cfg);
/* Run fn(arg) as a green thread and wait for it; returns fn's result. */
int np_main(int (*fn)(void *), void *arg);
/* Spawn a detached green thread. */
int np_go(void (*fn)(void *), void *arg);
/* Spawn a detached green thread with its own stack size (2 KiB .. 1 GiB).
 * Sizes that are not a multiple of the page size are packed back to back,
 * without guard pages, overflow caught by canaries: small handlers only. */
int np_go_stack(void (*fn)(void *), void *arg, size_t stack_size);
/* Spawn a joinable green thread; *t is valid until np_join. */
int np_spawn(np_thread **t, void *(*fn)(void *), void *arg);
/* Wait for t to end and release it; *result gets fn's return value. */
int np_join(np_thread *t, void **result);
/* Let the other runnable green threads of this worker run. */
void np_yield(void);
/* Sleep at least ns nanoseconds (relative); parks only this green thread. */
int np_sleep(int64_t ns);
/* CLOCK_MONOTONIC in nanoseconds. */
int64_t np_now(void);
/* 1 when called from a green thread, 0 otherwise. */
int np_in_green(void);

/* ---- synchronisation: park the green thread, never the worker ------- */

typedef struct np_mutex { uint64_t opaque_[4]; } np_mutex;
typedef struct np_cond { uint64_t opaque_[4]; } np_cond;
#define NP_MUTEX_INITIALIZER {{0}}
#define NP_COND_INITIALIZER {{0}}

int np_mutex_init(np_mutex *m);
int np_mutex_destroy(np_mutex *m);   /* -EBUSY while locked or waited on */
int np_mutex_lock(np_mutex *m);
int np_mutex_trylock(np_mutex *m);   /* -EBUSY when held */
int np_mutex_unlock(np_mutex *m);    /* -EPERM when not locked */
int np_cond_init(np_cond *c);
int np_cond_destroy(np_cond *c);     /* -EBUSY while waited on */
int np_cond_wait(np_cond *c, np_mutex *m);
/* deadline: absolute np_now() time; -ETIMEDOUT when it passes. */
int np_cond_timedwait(np_cond *c, np_mutex *m, int64_t deadline);
int np_cond_signal(np_cond *c);
int np_cond_broadcast(np_cond *c);

/* ---- descriptors ------------------------------------------------------ */

/* Register fd with the poller (sets O_NONBLOCK).  Regular files are
 * accepted: their I/O runs blocking on a helper thread, and waits and
 * deadlines on them return -ENOTSUP. */
int np_open(int fd, np_fd **out);
/* Like np_open; NP_OPEN_NONBLOCK makes I/O return -EAGAIN, not wait. */
int np_open_flags(int fd, unsigned flags, np_fd **out);
#define NP_OPEN_NONBLOCK 1u
/* Wake all waiters (-EBADF), wait for in-flight ops, unregister, close(fd). */
int np_close(np_fd *pd);
int np_wait_read(np_fd *pd);         /* park until readable */
int np_wait_write(np_fd *pd);        /* park until writable */
/* Absolute deadline for mode NP_READ, NP_WRITE or both; 0 = none. */
int np_set_deadline(np_fd *pd, int64_t deadline, int mode);
int np_fileno(const np_fd *pd);      /* the OS fd, for setsockopt and friends */

ssize_t np_read(np_fd *pd, void *buf, size_t n);
/* Writes all of it, or returns the partial count; the error comes next. */
ssize_t np_write(np_fd *pd, const void *buf, size_t n);
ssize_t np_readv(np_fd *pd, const struct iovec *iov, int iovcnt);
ssize_t np_writev(np_fd *pd, const struct iovec *iov, int iovcnt);
/* flags as for recv/send; MSG_DONTWAIT returns -EAGAIN instead of waiting */
ssize_t np_recvfrom(np_fd *pd, void *buf, size_t n, int flags,
                    struct sockaddr *addr, socklen_t *len);
ssize_t np_sendto(np_fd *pd, const void *buf, size_t n, int flags,
                  const struct sockaddr *addr, socklen_t len);
ssize_t np_recvmsg(np_fd *pd, struct msghdr *msg, int flags);
ssize_t np_sendmsg(np_fd *pd, const struct msghdr *msg, int flags);
/* The new descriptor is registered, nonblocking and close-on-exec. */
int np_accept(np_fd *ls, np_fd **out, struct sockaddr *addr, socklen_t *len);
int np_connect(np_fd *pd, const struct sockaddr *addr, socklen_t len);

/* ---- the poller ------------------------------------------------------- */

/* One pass of the poller: delay <0 blocks, 0 does not, >0 waits at most
 * that long.  Makes woken threads runnable and returns how many.  In
 * embedded mode it then runs the runnable green threads until none is. */
int np_poll(int64_t delay_ns);
/* An fd that is readable when np_poll has work (for a host event loop). */
int np_poll_fd(void);
/* Nanoseconds until the next timer is due: -1 none, 0 already due. */
int64_t np_poll_timeout(void);
/* Interrupt a blocking np_poll (netpollBreak). */
int np_poll_break(void);

/* ---- statistics ------------------------------------------------------- */

typedef struct np_stats {
    size_t size;            /* sizeof(np_stats) as the caller knows it */
    uint64_t threads;       /* live green threads */
    uint64_t runnable;      /* in run queues */
    uint64_t parked;        /* waiting on I/O, a timer or a lock */
    uint64_t workers;       /* worker OS threads */
    uint64_t spawned;       /* green threads created since start */
    uint64_t switches;      /* context switches since start */
    uint64_t poll_waiters;  /* threads parked on descriptors */
    uint64_t descriptors;   /* open np_fd */
    uint64_t timers;        /* pending timers */
    uint64_t stack_bytes;   /* stack address space reserved */
    uint64_t alloc_bytes;   /* bytes allocated in the engine's jemalloc arena */
    uint64_t polls;         /* poller passes */
    uint64_t handoffs;      /* threads moved off workers stuck in a call */
    uint64_t alloc_count;   /* allocations made in the engine's arena */
    uint64_t moves;         /* registrations moved to a waiter's worker's poller */
} np_stats;

int np_stats_get(np_stats *out);

/* ---- the dump (NETPOLL_1.1) --------------------------------------------- */

/* Write every green thread (id, name, state and for how long, stack) and
 * every worker to out, as Go's SIGQUIT dump does; safe while the program
 * runs, from a green thread or an OS thread, but not from a signal handler
 * (NP_DUMP_SIGNAL names a signal that dumps on stderr).  -EIO if writing
 * failed. */
int np_dump(FILE *out);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* NETPOLL_H */
