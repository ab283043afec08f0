/*
 * netpoll_shim.h - the engine's private seam for libnetpoll-preload.so.
 *
 * Not installed and not part of the public ABI: the shim (shim/) reaches
 * the engine through netpoll.h plus these calls, and nothing else.  They
 * are exported under their own version node (NETPOLL_SHIM_PRIVATE) and
 * follow netpoll.h's conventions: 0 or a count on success, a negative
 * errno on failure, errno left alone; times are np_now() nanoseconds.
 */
#ifndef NETPOLL_SHIM_H
#define NETPOLL_SHIM_H

#include <netpoll.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

typedef struct npshim_thread npshim_thread;

/* ---- threads with a TCB of their own --------------------------------- */

/* Where a TCB keeps the kernel tid: the engine stores the running worker's
 * tid there at every switch into a thread that has a TCB (-1: nowhere).
 * release(tp) is called once such a thread has stopped for good. */
void npshim_tls_config(long tid_offset, void (*release)(void *tp));
/* Signals the workers take themselves (a kernel sigset, bit n-1 for
 * signal n): those a legacy thread's own call raises, such as SIGPIPE and
 * faults.  Before the runtime starts. */
void npshim_worker_signals(uint64_t set);
/* The NP_* variables read before the runtime starts (the program's main
 * runs without one until its first thread): a bad value is told now, and
 * NP_DUMP_SIGNAL's dump is installed (it then says there are no green
 * threads yet; its thread starts now). */
void npshim_config_early(void);
/* Before the runtime starts: it starts one worker, and the others and
 * sysmon when a second thread is created (a process that never makes one
 * pays for one OS thread).  Holds for a forked child's runtime too. */
void npshim_start_lazily(void);
/* The calling OS thread's own thread pointer, whatever TCB is entered. */
void *npshim_os_tp(void);
/* Enter another TCB on the calling OS thread (not from a green thread). */
void npshim_tp_set(void *tp);
/* 1 while the calling thread is in the engine's own pthread_create (a
 * worker, sysmon, a helper): a sanitizer's interceptor, preloaded before
 * the shim, hands that call to the shim's pthread_create, which must pass
 * it to libc's.  Else 0. */
int npshim_os_thread_starting(void);
/* Create a joinable green thread that does not run yet.  stack_size 0:
 * the runtime's default; page multiples get a guard page. */
int npshim_thread_create(npshim_thread **t, void *(*fn)(void *), void *arg,
                         size_t stack_size);
/* The same on the caller's stack [lo, lo + size) (pthread_attr_setstack):
 * not guarded, not freed; the thread's record takes its top few hundred
 * bytes, as glibc's TCB takes the top of such a stack. */
int npshim_thread_create_on(npshim_thread **t, void *(*fn)(void *), void *arg, void *lo,
                            size_t size);
/* The caller's own execution, from this call on, as a green thread t on
 * the stack it runs on, [lo, lo + size) (the program's main thread, once
 * a second thread is made).  t enters tp when it runs, whose tid stays.
 * The calling OS thread goes on on the stack [os_lo, os_lo + os_size) with
 * os_tp entered, in then(t, arg), which must start t (npshim_thread_start)
 * and never return; t returns 0 from this call, on a worker.  A negative
 * errno, and nothing changed, if it cannot. */
int npshim_thread_adopt(npshim_thread **t, void *lo, size_t size, void *tp, void *os_tp,
                        void (*then)(npshim_thread *t, void *arg), void *arg, void *os_lo,
                        size_t os_size);
/* The thread pointer entered whenever t runs (its TCB); before start.
 * keep_tid: the TCB keeps the tid it has (the program's main thread). */
void npshim_thread_set_tls(npshim_thread *t, void *tp, int keep_tid);
/* Owner fields (a pthread_mutex_t's __owner) of glibc's own recursive
 * locks, which name their holder by the TCB's tid: a thread that parks
 * holding one gives it, and its TCB, an id of its own, as for a robust
 * mutex, until it lets go.  At most 4; before the runtime starts. */
void npshim_tid_owner_words(int *const *words, int n);
/* Its stack: lowest usable byte and size. */
void npshim_thread_stack(const npshim_thread *t, void **lo, size_t *size);
uint64_t npshim_thread_id(const npshim_thread *t);
/* The OS thread running t now, 0 if t is not running (a moment's answer:
 * t may be switched out as it returns). */
pid_t npshim_thread_running_tid(const npshim_thread *t);
/* 1 if t runs or waits only for a worker (preempted, or readied and not
 * yet run), 0 if it waits for something (a moment's answer). */
int npshim_thread_runnable(const npshim_thread *t);
/* The calling thread stays on one worker from now on: the one whose OS
 * thread is os_tid, moving there first, or (0, or none is) its own. */
void npshim_thread_pin(pid_t os_tid);
int npshim_thread_start(npshim_thread *t);
int npshim_thread_join(npshim_thread *t, void **result);
/* 1 once t has ended (a join then returns at once), else 0. */
int npshim_thread_done(const npshim_thread *t);
/* Released when it finishes (at once if it has). */
int npshim_thread_detach(npshim_thread *t);
/* In a forked child: forget the parent's runtime (its workers are not
 * there); the next call that needs one starts a fresh runtime.  The
 * calling thread goes on as a plain OS thread. */
void npshim_after_fork_child(void);
/* A safe point: give way if sysmon asked the worker to (a thread whose
 * calls never park, an accept loop under load, must not hold it). */
void npshim_safe_point(void);
/* The caller is about to block its worker in a call the engine cannot park
 * (waitpid, flock, system): threads runnable behind it move where other
 * workers run them. */
void npshim_kernel_wait(void);
/* The program is about to install a seccomp filter (or runs under one):
 * from now on, in this process and its forked children, the engine's own
 * threads make no system call the program would not make itself (sysmon's
 * procfs reads, other threads' CPU clocks, membarrier), which the filter
 * may refuse by a signal those threads cannot take, and guess without
 * them.  Returns once no such call is under way. */
void npshim_sandboxed(void);
/* The running green thread, or NULL on a plain OS thread. */
npshim_thread *npshim_thread_self(void);
/* Its name in np_dump (pthread_setname_np's): up to 15 bytes are kept. */
void npshim_thread_set_name(npshim_thread *t, const char *name);
/* The signal np_dump is taken on (NP_DUMP_SIGNAL) while the engine's
 * handler is still the kernel's for it, else 0. */
int npshim_dump_signal(void);
/* Whether *a is the engine's SIGSEGV handler (the report of a green thread
 * that ran into its guard page), installed where the program had none. */
struct sigaction;
int npshim_is_guard_handler(const struct sigaction *a);

/* ---- a futex that parks green threads --------------------------------- */

/* Park while *addr == val, until npshim_futex_wake on addr or the
 * deadline (absolute np_now(); <= 0 none).  0 woken, -EAGAIN the value
 * differed, -ETIMEDOUT.  Works from plain OS threads too. */
int npshim_futex_wait(const uint32_t *addr, uint32_t val, int64_t deadline);
/* npshim_futex_wait, but on a plain OS thread (not green) a signal's handler
 * run there before the deadline ends it with -EINTR, as glibc's sem waits. */
int npshim_futex_wait_intr(const uint32_t *addr, uint32_t val, int64_t deadline);
/* npshim_futex_wait, but -EAGAIN too when *stop no longer holds seen, looked
 * at with *addr under the lock every wake takes: a waker that changes *stop
 * and then wakes addr (npshim_futex_wake_thread) cannot come between the
 * caller's last look at its own state and its park, and be lost. */
int npshim_futex_wait_stop(const uint32_t *addr, uint32_t val, int64_t deadline, const uint32_t *stop,
                           uint32_t seen);
/* npshim_futex_wait_stop without a deadline, shown in np_dump as a join of t
 * (the shim's pthread_join parks on a word of its own, where signals and
 * cancellation reach it). */
int npshim_thread_join_wait(const npshim_thread *t, const uint32_t *addr, uint32_t val, const uint32_t *stop,
                            uint32_t seen);
/* Wake up to n waiters on addr; returns how many. */
int npshim_futex_wake(const uint32_t *addr, int n);
/* Wake t's wait on addr only (and any plain OS thread's there, which has no
 * green thread to tell it by): a signal or a cancellation for one thread. */
int npshim_futex_wake_thread(const uint32_t *addr, const npshim_thread *t);

/* ---- descriptors, without touching the file's flags ---------------- */

/* Register fd with the poller, leaving O_NONBLOCK as the program set it:
 * every operation is made non-blocking per call by its op.  -EPERM: the
 * fd cannot be polled (a regular file); -EEXIST: already registered. */
int npshim_fd_open(int fd, np_fd **out);
/* np_close without close(2): wake waiters (-EBADF), wait for in-flight
 * operations, unregister.  The caller closes the fd. */
int npshim_fd_forget(np_fd *pd);

/* One attempt at the operation: a non-blocking system call on fd.
 * Returns its result, or a negative errno (-EAGAIN: would block). */
typedef ssize_t (*npshim_op)(int fd, void *ctx);

#define NPSHIM_NONBLOCK 1u /* the program's O_NONBLOCK: -EAGAIN, never wait */
/* The caller's own attempt just said -EAGAIN: wait for readiness before
 * the first try (a readiness since that attempt is kept, not dropped),
 * unless another operation in this direction began since seq (read with
 * npshim_io_seq before the attempt): it may have taken the readiness. */
#define NPSHIM_WAIT_FIRST 2u
/* Another call holds the direction (waits on it): -EBUSY at once instead
 * of queueing behind it, so the caller can wait its own way. */
#define NPSHIM_TRYLOCK 4u
/* The caller's last read of this stream came back short, and no read
 * readiness came since it began (npshim_io_events): the read emptied the
 * socket, so wait for readiness before the first try, unless the port has
 * seen a hang-up, an error or urgent data on it (after which a read can
 * stop short of what is there, with no readiness to follow). */
#define NPSHIM_DRAINED 8u

/* Go's per-call loop: take the direction's lock, try op, on -EAGAIN park
 * until ready and try again.  mode NP_READ or NP_WRITE; deadline
 * (absolute, 0 none) gives -ETIMEDOUT; -EBADF when closed meanwhile.  With
 * op NULL it only waits: the caller checked readiness just before, and a
 * readiness seen since then (or any stale one) returns 0 at once. */
ssize_t npshim_io(np_fd *pd, int mode, int64_t deadline, unsigned flags, uint32_t seq,
                  npshim_op op, void *ctx);
/* How many times pd's direction was taken or let go so far (for
 * NPSHIM_WAIT_FIRST's seq). */
uint32_t npshim_io_seq(np_fd *pd, int mode);
/* How many read readinesses the poller has seen for pd so far (for
 * NPSHIM_DRAINED): read just before a read, compared before the next. */
uint32_t npshim_io_events(np_fd *pd);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* NETPOLL_SHIM_H */
