// liburing's out-of-line functions, loaded when an io_uring port is first
// made instead of with the library: epoll is the default poller, and every
// process the preload shim enters would otherwise map liburing for
// nothing.  The header's inline helpers (SQE preparation, CQE peeking) need
// no library; they call __io_uring_get_cqe, which is here too.
#include <cerrno>
#include <dlfcn.h>

// Declared hidden: defined here, they must not interpose a program's own.
#pragma GCC visibility push(hidden)
#include <liburing.h>
#pragma GCC visibility pop

namespace {

struct Fns {
    int (*queue_init_params)(unsigned, struct io_uring *, struct io_uring_params *);
    void (*queue_exit)(struct io_uring *);
    int (*wait_cqe_timeout)(struct io_uring *, struct io_uring_cqe **, struct __kernel_timespec *);
    int (*submit)(struct io_uring *);
    int (*get_events)(struct io_uring *);
    int (*get_cqe)(struct io_uring *, struct io_uring_cqe **, unsigned, unsigned, sigset_t *);
};

Fns fns;
int state; // 0 not tried, 1 loaded, -1 missing; written after fns

template <typename F> bool pick(void *h, const char *name, F *slot) {
    *slot = reinterpret_cast<F>(dlsym(h, name));
    return *slot != nullptr;
}

// Racing first calls both look the same names up and store the same values.
bool loaded() {
    int s = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
    if (s) return s > 0;
    void *h = dlopen("liburing.so.2", RTLD_NOW | RTLD_LOCAL);
    Fns f;
    bool ok = h && pick(h, "io_uring_queue_init_params", &f.queue_init_params) &&
              pick(h, "io_uring_queue_exit", &f.queue_exit) &&
              pick(h, "io_uring_wait_cqe_timeout", &f.wait_cqe_timeout) && pick(h, "io_uring_submit", &f.submit) &&
              pick(h, "io_uring_get_events", &f.get_events) && pick(h, "__io_uring_get_cqe", &f.get_cqe);
    if (ok) fns = f;
    __atomic_store_n(&state, ok ? 1 : -1, __ATOMIC_RELEASE);
    return ok;
}

} // namespace

// The first call of all: without liburing, no ring (the poller choice then
// reports io_uring unavailable).  The others follow a ring made.  The ring
// is made through the name in the global scope when there is one: a preload
// shim defines it to note the ring's descriptor as the engine's own (its
// close(2) and close_range(2) step over it, and it moves above the
// program's numbers; shim/engine_fds.cpp), as it does the engine's
// epoll_create1() and eventfd().  This hidden definition would hide it.
int io_uring_queue_init_params(unsigned entries, struct io_uring *ring, struct io_uring_params *p) {
    using Init = int (*)(unsigned, struct io_uring *, struct io_uring_params *);
    if (!loaded()) return -ENOSYS;
    static Init global = reinterpret_cast<Init>(dlsym(RTLD_DEFAULT, "io_uring_queue_init_params"));
    return (global ? global : fns.queue_init_params)(entries, ring, p);
}
void io_uring_queue_exit(struct io_uring *ring) { fns.queue_exit(ring); }
int io_uring_wait_cqe_timeout(struct io_uring *ring, struct io_uring_cqe **cqe, struct __kernel_timespec *ts) {
    return fns.wait_cqe_timeout(ring, cqe, ts);
}
int io_uring_submit(struct io_uring *ring) { return fns.submit(ring); }
int io_uring_get_events(struct io_uring *ring) { return fns.get_events(ring); }
int __io_uring_get_cqe(struct io_uring *ring, struct io_uring_cqe **cqe, unsigned submit, unsigned wait_nr,
                       sigset_t *sigmask) {
    return fns.get_cqe(ring, cqe, submit, wait_nr, sigmask);
}
