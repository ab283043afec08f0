// The seam the preload shim reaches the engine through (netpoll_shim.h):
// threads that carry a TCB of their own, a futex that parks green threads,
// and descriptors registered without touching the file's flags, driven by
// Go's per-call loop (internal/poll's fd_unix.go) around the shim's own
// non-blocking system call.
#include <atomic>
#include <cerrno>
#include <cstring>

#include "clock.hpp"
#include "config.hpp"
#include "errno_guard.hpp"
#include "libc_real.hpp"
#include "netpoll_shim.h"
#include "poll_desc.hpp"
#include "port.hpp"
#include "runtime.hpp"
#include "spinlock.hpp"
#include "thread_pointer.hpp"

using namespace np;

namespace {

GThread *g_of(npshim_thread *t) { return reinterpret_cast<GThread *>(t); }
const GThread *g_of(const npshim_thread *t) { return reinterpret_cast<const GThread *>(t); }
PollDesc *pd_of(np_fd *p) { return reinterpret_cast<PollDesc *>(p); }

// ---- the parking lot: futex words hashed to wait lists --------------------

struct Bucket {
    SpinLock lk;
    WaitList q; // Waiter::tag holds the address
};

constexpr size_t kBuckets = 1024;
Bucket buckets[kBuckets];

// The buckets ever used: a forked child resets those only, and leaves
// the pages of the rest untouched.
std::atomic<uint64_t> bucket_used[kBuckets / 64];

Bucket &bucket_of(const uint32_t *addr) {
    uintptr_t a = uintptr_t(addr) >> 2;
    size_t i = (a ^ (a >> 10) ^ (a >> 20)) % kBuckets;
    uint64_t bit = uint64_t(1) << (i % 64);
    if (!(bucket_used[i / 64].load(std::memory_order_relaxed) & bit))
        bucket_used[i / 64].fetch_or(bit, std::memory_order_relaxed);
    return buckets[i];
}

enum { kQueued = 0, kWoken = 1, kTimedOut = 2 };

struct FutexTimeout {
    Waiter *w;
    Bucket *b;
    std::atomic<bool> done{false};  // the callback no longer reads this
};

void futex_timer_fire(void *arg, uintptr_t) {
    auto *t = static_cast<FutexTimeout *>(arg);
    Waiter *w = t->w;
    Bucket *b = t->b;
    b->lk.lock();
    bool fire = w->state.load(std::memory_order_relaxed) == kQueued;
    if (fire) {
        b->q.unlink(w);
        w->state.store(kTimedOut, std::memory_order_relaxed);
    }
    b->lk.unlock();
    // Last touch of t: a waiter woken otherwise may return once it is set.
    // (When fire, the waiter is parked until the wake below.)
    t->done.store(true, std::memory_order_release);
    if (fire) w->wake();
}

// ---- the per-call loop ------------------------------------------------------

// The direction's fdMutex lock for the length of an operation.
struct OpLock {
    PollDesc *pd;
    int dir;
    int err;
    OpLock(PollDesc *p, int mode, bool trylock) : pd(p), dir(mode == NP_READ ? 0 : 1) {
        preempt_point();
        err = pd->is_free ? -EBADF : trylock ? pd->fdmu.rwtrylock(dir) : pd->fdmu.rwlock(dir);
    }
    ~OpLock() {
        if (!err) pd->fdmu.rwunlock(dir);
    }
};

ssize_t io_loop(PollDesc *pd, int mode, unsigned flags, npshim_op op, void *ctx) {
    if (!op) return pd_wait(pd, mode);
    if (flags & NPSHIM_WAIT_FIRST) {
        if (int w = pd_wait(pd, mode)) return w;
    } else if (int e = pd_reset(pd, mode)) {
        return e;
    }
    for (;;) {
        ssize_t r = op(pd->fd, ctx);
        if (r == -EINTR) continue;
        if (r != -EAGAIN || (flags & NPSHIM_NONBLOCK)) return r;
        if (int w = pd_wait(pd, mode)) return w;
    }
}

// A park on *addr while it holds val (npshim_futex_wait), shown in np_dump
// as waiting for why on obj.
int futex_wait_as(const uint32_t *addr, uint32_t val, int64_t deadline, WaitKind why, const void *obj,
                  bool intr = false, const uint32_t *stop = nullptr, uint32_t seen = 0) {
    ErrnoGuard eg;
    if (!addr) return -EINVAL;
    if (deadline > 0 && deadline <= now_ns()) {
        return __atomic_load_n(addr, __ATOMIC_SEQ_CST) == val ? -ETIMEDOUT : -EAGAIN;
    }
    Bucket &b = bucket_of(addr);
    Waiter w;
    w.tag = uintptr_t(addr);
    b.lk.lock();
    // Under the bucket lock: a waker changes the word (or stop), then takes
    // this lock.
    if (__atomic_load_n(addr, __ATOMIC_SEQ_CST) != val || (stop && __atomic_load_n(stop, __ATOMIC_SEQ_CST) != seen)) {
        b.lk.unlock();
        return -EAGAIN;
    }
    note_wait(why, obj, 0, deadline > 0 && deadline != INT64_MAX ? deadline : 0);
    b.q.push(&w);
    b.lk.unlock();
    bool timed = deadline > 0 && deadline != INT64_MAX;
    if (w.g) {
        FutexTimeout ft{&w, &b};
        Timer t;
        if (timed) {
            t.fn = futex_timer_fire;
            t.arg = &ft;
            timer_add(&t, deadline);
        }
        w.wait();
        // A thread with a TCB of its own may have moved to another worker
        // meanwhile, so the timer may be firing on its old one right now.
        if (timed && !timer_del(&t))
            while (!ft.done.load(std::memory_order_acquire)) yield();
    } else if (w.intr = intr, !w.wait(timed ? deadline : -1)) {
        b.lk.lock();
        bool still = w.state.load(std::memory_order_relaxed) == kQueued;
        if (still) {
            b.q.unlink(&w);
            w.state.store(kTimedOut, std::memory_order_relaxed);
        }
        b.lk.unlock();
        if (!still) {
            w.intr = false;
            w.wait(); // woken at the last moment: take that wake-up
        } else if (intr && !(timed && now_ns() >= deadline)) {
            return -EINTR; // a handler ran on this thread, before the deadline
        }
    }
    return w.state.load(std::memory_order_relaxed) == kTimedOut ? -ETIMEDOUT : 0;
}

} // namespace

extern "C" {

void npshim_tls_config(long tid_offset, void (*release)(void *tp)) {
    tcb_tid_off = tid_offset;
    tls_release = release;
}

void *npshim_os_tp(void) { return const_cast<void *>(os_thread_self()); }

void npshim_tp_set(void *tp) { tp_set(tp); }

int npshim_os_thread_starting(void) { return os_thread_starting() ? 1 : 0; }

void npshim_worker_signals(uint64_t set) { worker_sync_signals = set; }

pid_t npshim_thread_running_tid(const npshim_thread *t) {
    const GThread *g = reinterpret_cast<const GThread *>(t);
    Worker *w = g ? __atomic_load_n(&g->home, __ATOMIC_ACQUIRE) : nullptr;
    if (!w || __atomic_load_n(&w->cur, __ATOMIC_ACQUIRE) != g) return 0;
    return __atomic_load_n(&w->tid, __ATOMIC_RELAXED);
}

int npshim_thread_runnable(const npshim_thread *t) {
    const GThread *g = reinterpret_cast<const GThread *>(t);
    return g && g->why.load(std::memory_order_relaxed) == WaitKind::runnable ? 1 : 0;
}

void npshim_thread_pin(pid_t os_tid) { pin_to(os_tid); }

void npshim_start_lazily(void) { runtime_start_lazily(); }

int npshim_thread_create(npshim_thread **t, void *(*fn)(void *), void *arg, size_t stack_size) {
    ErrnoGuard eg;
    if (!t || !fn || (stack_size && (stack_size < kMinStackSize || stack_size > kMaxStackSize)))
        return -EINVAL;
    if (int e = runtime_ensure()) return e;
    GThread *g;
    if (int e = create(nullptr, fn, arg, true, &g, stack_size)) return e;
    *t = reinterpret_cast<npshim_thread *>(g);
    return 0;
}

int npshim_thread_create_on(npshim_thread **t, void *(*fn)(void *), void *arg, void *lo, size_t size) {
    ErrnoGuard eg;
    if (!t || !fn || !lo || size < kMinStackSize) return -EINVAL;
    if (int e = runtime_ensure()) return e;
    Stack s;
    s.lo = static_cast<char *>(lo);
    s.hi = s.lo + size;
    GThread *g;
    if (int e = create(nullptr, fn, arg, true, &g, 0, &s)) return e;
    *t = reinterpret_cast<npshim_thread *>(g);
    return 0;
}

int npshim_thread_adopt(npshim_thread **t, void *lo, size_t size, void *tp, void *os_tp,
                        void (*then)(npshim_thread *, void *), void *arg, void *os_lo, size_t os_size) {
    if (!t || !lo || !size || !then || !os_lo || os_size < kMinStackSize) return -EINVAL;
    GThread *g;
    // The callback takes the public handle: GThread * and npshim_thread *
    // are the same pointer (g_of).
    auto cb = reinterpret_cast<void (*)(GThread *, void *)>(then);
    if (int e = adopt(lo, size, tp, cb, arg, os_tp, os_lo, os_size, &g)) return e;
    *t = reinterpret_cast<npshim_thread *>(g);
    return 0;
}

void npshim_thread_set_tls(npshim_thread *t, void *tp, int keep_tid) {
    GThread *g = g_of(t);
    g->tls = tp;
    g->keep_tid = keep_tid != 0;
    // Back from an id of its own (a robust mutex let go) while it still
    // holds a lock of npshim_tid_owner_words under that id: it keeps it.
    if (!keep_tid && tp && tcb_tid_off >= 0 && g->started && claim_owner_words(own_tid(g), own_tid(g))) {
        g->word_tid = true;
        *reinterpret_cast<pid_t *>(static_cast<char *>(tp) + tcb_tid_off) = own_tid(g);
    }
}

void npshim_tid_owner_words(int *const *words, int n) {
    if (n > int(sizeof tid_owner_words / sizeof *tid_owner_words)) n = int(sizeof tid_owner_words / sizeof *tid_owner_words);
    for (int i = 0; i < n; i++) tid_owner_words[i] = words[i];
    tid_owner_nwords = n;
}

void npshim_thread_stack(const npshim_thread *t, void **lo, size_t *size) {
    const GThread *g = g_of(t);
    *lo = g->stack.lo;
    *size = size_t(g->stack.hi - g->stack.lo);
}

uint64_t npshim_thread_id(const npshim_thread *t) { return g_of(t)->id; }

int npshim_thread_start(npshim_thread *t) {
    if (!t) return -EINVAL;
    ready(g_of(t));
    return 0;
}

int npshim_thread_join(npshim_thread *t, void **result) {
    ErrnoGuard eg;
    if (!t) return -EINVAL;
    return join(g_of(t), result);
}

int npshim_thread_done(const npshim_thread *t) {
    return t && g_of(t)->join_state.load(std::memory_order_acquire) == 2;
}

int npshim_thread_detach(npshim_thread *t) {
    if (!t) return -EINVAL;
    detach(g_of(t));
    return 0;
}

void npshim_safe_point(void) { preempt_point(); }

void npshim_kernel_wait(void) { local_handoff(); }

void npshim_sandboxed(void) { sysmon_sandboxed(); }

void npshim_after_fork_child(void) {
    for (size_t w = 0; w < kBuckets / 64; w++) // waiters of threads that are gone
        for (uint64_t m = bucket_used[w].load(std::memory_order_relaxed); m; m &= m - 1)
            new (&buckets[w * 64 + size_t(__builtin_ctzll(m))]) Bucket();
    runtime_after_fork();
}

npshim_thread *npshim_thread_self(void) { return reinterpret_cast<npshim_thread *>(current_g()); }

void npshim_thread_set_name(npshim_thread *t, const char *name) {
    if (!t || !name) return;
    char *to = g_of(t)->name;
    size_t n = strnlen(name, sizeof g_of(t)->name - 1);
    // Read racily by np_dump: it may see half a rename, never an overrun.
    memcpy(to, name, n);
    to[n] = 0;
}

int npshim_dump_signal(void) { return dump_signal_current(); }

void npshim_config_early(void) {
    Config c;
    if (config_resolve(nullptr, &c) == 0 && c.dump_signal) dump_signal_install(c.dump_signal);
}

int npshim_is_guard_handler(const struct sigaction *a) {
    return a && (a->sa_flags & SA_SIGINFO) && stack_guard_is_handler(reinterpret_cast<const void *>(a->sa_sigaction));
}

int npshim_futex_wait(const uint32_t *addr, uint32_t val, int64_t deadline) {
    return futex_wait_as(addr, val, deadline, WaitKind::futex, addr);
}

int npshim_futex_wait_intr(const uint32_t *addr, uint32_t val, int64_t deadline) {
    return futex_wait_as(addr, val, deadline, WaitKind::futex, addr, true);
}

int npshim_futex_wait_stop(const uint32_t *addr, uint32_t val, int64_t deadline, const uint32_t *stop,
                           uint32_t seen) {
    return futex_wait_as(addr, val, deadline, WaitKind::futex, addr, false, stop, seen);
}

int npshim_thread_join_wait(const npshim_thread *t, const uint32_t *addr, uint32_t val, const uint32_t *stop,
                            uint32_t seen) {
    if (!t) return -EINVAL;
    return futex_wait_as(addr, val, 0, WaitKind::join, reinterpret_cast<const void *>(uintptr_t(g_of(t)->id)),
                         false, stop, seen);
}

// only: wake just the waiters of that green thread (and OS threads').
static int futex_wake_some(const uint32_t *addr, int n, const GThread *only) {
    if (!addr) return -EINVAL;
    Bucket &b = bucket_of(addr);
    Waiter *woken = nullptr;
    int count = 0;
    b.lk.lock();
    for (Waiter *w = b.q.head; w && count < n;) {
        Waiter *nx = w->next;
        if (w->tag == uintptr_t(addr) && (!only || !w->g || w->g == only)) {
            b.q.unlink(w);
            w->state.store(kWoken, std::memory_order_relaxed);
            w->next = woken;
            woken = w;
            count++;
        }
        w = nx;
    }
    b.lk.unlock();
    while (woken) {
        Waiter *nx = woken->next; // woken may be gone once it runs
        woken->wake();
        woken = nx;
    }
    return count;
}

int npshim_futex_wake(const uint32_t *addr, int n) { return futex_wake_some(addr, n, nullptr); }

int npshim_futex_wake_thread(const uint32_t *addr, const npshim_thread *t) {
    return t ? futex_wake_some(addr, INT_MAX, g_of(t)) : -EINVAL;
}

int npshim_fd_open(int fd, np_fd **out) {
    ErrnoGuard eg;
    if (!out) return -EINVAL;
    if (fd < 0) return -EBADF;
    if (int e = runtime_ensure()) return e;
    PollDesc *pd = pd_alloc();
    if (!pd) return -ENOMEM;
    pd->fd = fd;
    pd->user_nonblock = false;
    pd_open(pd);
    Port *port = open_port();
    pd->port.store(port, std::memory_order_relaxed);
    if (int e = port->open(fd, pd)) {
        pd_free(pd);
        return e;
    }
    pd->pollable = true;
    rt->descriptors.fetch_add(1, std::memory_order_relaxed);
    *out = reinterpret_cast<np_fd *>(pd);
    return 0;
}

int npshim_fd_forget(np_fd *p) {
    ErrnoGuard eg;
    if (!p) return -EINVAL;
    PollDesc *pd = pd_of(p);
    if (pd->is_free) return -EBADF;
    return pd_retire(pd);
}

uint32_t npshim_io_seq(np_fd *p, int mode) {
    return p ? pd_of(p)->fdmu.taken[mode == NP_READ ? 0 : 1].load(std::memory_order_acquire) : 0;
}

uint32_t npshim_io_events(np_fd *p) {
    return p ? pd_of(p)->read_events.load(std::memory_order_acquire) : 0;
}

ssize_t npshim_io(np_fd *p, int mode, int64_t deadline, unsigned flags, uint32_t seq, npshim_op op, void *ctx) {
    ErrnoGuard eg;
    if (!p || (mode != NP_READ && mode != NP_WRITE) || deadline < 0) return -EINVAL;
    PollDesc *pd = pd_of(p);
    OpLock lk(pd, mode, flags & NPSHIM_TRYLOCK);
    if (lk.err) return lk.err;
    // Another operation took its turn since the caller's attempt, and with
    // it maybe the readiness that attempt missed (an edge that will not
    // come again: a pipe only reports writable when a read makes a full
    // one not full): try before waiting.
    if ((flags & NPSHIM_WAIT_FIRST) && pd->fdmu.taken[lk.dir].load(std::memory_order_relaxed) != seq + 1)
        flags &= ~NPSHIM_WAIT_FIRST;
    // A read that emptied the socket, and nothing since: an attempt could
    // only say EAGAIN.  Not once the port saw a hang-up or urgent data:
    // what stopped that read short (an end of file, the urgent mark) may
    // still be there, and no edge will come for it.
    if ((flags & NPSHIM_DRAINED) && mode == NP_READ && !pd->hangup.load(std::memory_order_acquire))
        flags |= NPSHIM_WAIT_FIRST;
    // The deadline is this call's (SO_RCVTIMEO, a poll timeout): the
    // direction's lock makes it the only one using it.  One the shim
    // expired meanwhile to interrupt the caller (a signal for it) stays.
    if (deadline) pd_set_deadline(pd, deadline, mode, true);
    ssize_t r = io_loop(pd, mode, flags, op, ctx);
    if (deadline) pd_set_deadline(pd, 0, mode);
    return r;
}

} // extern "C"
