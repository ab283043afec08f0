// pthread mutexes, condition variables, rwlocks, barriers, once, unnamed
// semaphores and futex(2), in the program's own objects, on a futex that
// parks green threads (npshim_futex_*): a waiter never blocks its worker, so
// a holder on the same worker runs on and lets go.  Objects glibc's
// initialisers and *_init leave all-zero (or with their kind bits) are
// valid here as they are.  Process-shared, robust and priority objects stay
// glibc's: their other users are in other processes (netpoll-preload(7)).
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstdint>
#include <ctime>
#include <dlfcn.h>
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "real.hpp"
#include "shim.hpp"
#include "tcb.hpp"

namespace shim {

namespace {

template <class T> std::atomic<T> &atom(void *p, size_t off) {
    return *reinterpret_cast<std::atomic<T> *>(static_cast<char *>(p) + off);
}
template <class T> T &field(void *p, size_t off) { return *reinterpret_cast<T *>(static_cast<char *>(p) + off); }

int64_t now_on(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// A tiny lock for the few words of an rwlock or barrier.
void word_lock(std::atomic<uint32_t> &w) {
    for (int spins = 0; w.exchange(1, std::memory_order_acquire);)
        if (++spins > 64) {
            sched_yield();
            spins = 0;
        }
}
void word_unlock(std::atomic<uint32_t> &w) { w.store(0, std::memory_order_release); }

// ---- mutexes: glibc's __pthread_mutex_s layout -----------------------------
// lock 0 (0 free, 1 held, 2 held with waiters), count 4, owner 8, kind 16.
constexpr size_t kMLock = 0, kMCount = 4, kMOwner = 8, kMKind = 16;
constexpr int kKindMask = 3, kRecursive = 1, kErrorCheck = 2;
constexpr int kGlibcOnly = 16 | 64 | 128; // robust, PP, pshared

// A priority-inheritance mutex of one process is ours, as a plain one (the
// priority it would lend is the worker's, shared by all of that worker's
// threads): glibc's names its owner by the OS thread, which the kernel
// checks at a contended unlock, so a thread that parked holding one and
// came back on another worker could not unlock it (EPERM, the mutex held
// for ever: PulseAudio's threaded mainloop then aborts, as in Blender).
bool glibc_mutex(pthread_mutex_t *m) { return field<int>(m, kMKind) & kGlibcOnly; }

// The mutexes left to glibc (robust ones: LMDB's writer mutex; process-
// shared ones) name their owner by the TCB's tid, which is the worker's and
// changes when the thread moves: an unlock on another worker fails with
// EPERM and leaves the mutex held for ever (slapd hung so), and two threads
// of one worker look like one owner (a recursive one lets both in).  While
// a green thread holds one, its TCB carries an id of its own instead,
// within FUTEX_TID_MASK and above any pid (pid_max is 2^22 at most), which
// worker switches leave alone.  The kernel reads a robust futex's tid only
// when an OS thread exits, from that OS thread's registered robust list (a
// worker's), never a green TCB's.  PI mutexes, whose owner the kernel
// checks, keep the worker's tid (netpoll-preload(7), LIMITS).
constexpr int kPI = 32;
bool tid_owned(pthread_mutex_t *m) { return !(field<int>(m, kMKind) & kPI); }

Thread *robust_thread(pthread_mutex_t *m) {
    if (!on() || !tid_owned(m) || tcb_tid_offset < 0) return nullptr;
    Thread *t = self();
    return t && !t->is_main && t->tcb ? t : nullptr;
}
void robust_enter(Thread *t) {
    if (t->robust_held++) return;
    npshim_thread_set_tls(t->g, t->tcb, 1);
    field<pid_t>(t->tcb, tcb_tid_offset) = pid_t(0x20000000 | (npshim_thread_id(t->g) & 0x1fffffff));
}
void robust_leave(Thread *t) {
    if (--t->robust_held) return;
    // The worker's tid again, unless it still holds one of ld.so's locks
    // under its own id: npshim_thread_set_tls() then puts that one back.
    field<pid_t>(t->tcb, tcb_tid_offset) = pid_t(real.syscall(SYS_gettid, 0, 0, 0, 0, 0, 0));
    npshim_thread_set_tls(t->g, t->tcb, 0);
}
} // namespace

// A green thread that ends holding robust mutexes: what the kernel's
// exit_robust_list does when an OS thread exits, for the green TCB's list
// (which the kernel never sees, so a locker waited for ever instead of
// getting EOWNERDEAD).  Each entry whose futex word names this thread's id
// is marked FUTEX_OWNER_DIED, keeping FUTEX_WAITERS, and one waiter is
// woken, with a shared wake as the kernel's (glibc waits on robust futexes
// shared).  PI entries (bit 0 of the link) keep the worker's tid, left to
// the kernel.
void robust_owner_died(Thread *t) {
    if (!t->robust_held) return;
    uint32_t tid = field<uint32_t>(t->tcb, tcb_tid_offset) & FUTEX_TID_MASK;
    char *head = static_cast<char *>(tcb_robust_head(t->tcb));
    long off = field<long>(head, 8);
    auto died = [&](uintptr_t link) {
        if (link & 1) return;
        auto *word = reinterpret_cast<uint32_t *>(link + uintptr_t(off));
        uint32_t v = __atomic_load_n(word, __ATOMIC_RELAXED);
        do {
            if ((v & FUTEX_TID_MASK) != tid) return;
        } while (!__atomic_compare_exchange_n(word, &v, (v & FUTEX_WAITERS) | FUTEX_OWNER_DIED, false,
                                              __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
        if (v & FUTEX_WAITERS) real.syscall(SYS_futex, long(word), FUTEX_WAKE, 1, 0, 0, 0);
    };
    void *e = field<void *>(head, 0); // at most the kernel's ROBUST_LIST_LIMIT entries
    for (int n = 0; e && e != head && n < 2048; n++) {
        void *next = *static_cast<void **>(reinterpret_cast<void *>(uintptr_t(e) & ~uintptr_t(1)));
        died(uintptr_t(e));
        e = reinterpret_cast<void *>(uintptr_t(next) & ~uintptr_t(1));
    }
    if (void *p = field<void *>(head, 16)) died(uintptr_t(p));
    t->robust_held = 1;
    robust_leave(t);
}

namespace {

template <class F> int robust_lock(pthread_mutex_t *m, F lock) {
    Thread *t = robust_thread(m);
    if (!t) return lock();
    robust_enter(t);
    int r = lock();
    if (r != 0 && r != EOWNERDEAD) robust_leave(t);
    return r;
}

int mutex_lock(pthread_mutex_t *m, int64_t deadline, bool try_only) {
    int type = field<int>(m, kMKind) & kKindMask;
    int me = owner_id();
    if (field<int>(m, kMOwner) == me) {
        if (type == kRecursive) {
            if (field<uint32_t>(m, kMCount) == UINT32_MAX) return EAGAIN;
            field<uint32_t>(m, kMCount)++;
            return 0;
        }
        if (type == kErrorCheck) return try_only ? EBUSY : EDEADLK;
    }
    auto &w = atom<uint32_t>(m, kMLock);
    uint32_t z = 0;
    if (!w.compare_exchange_strong(z, 1, std::memory_order_acquire)) {
        if (try_only) return EBUSY;
        // Drepper's futex mutex: 2 means someone may be parked.
        while (w.exchange(2, std::memory_order_acquire) != 0)
            if (futex_wait(reinterpret_cast<uint32_t *>(&w), 2, deadline, false) == -ETIMEDOUT) return ETIMEDOUT;
    }
    field<int>(m, kMOwner) = me;
    field<uint32_t>(m, kMCount) = 1;
    return 0;
}

int mutex_unlock(pthread_mutex_t *m) {
    int type = field<int>(m, kMKind) & kKindMask;
    if (type == kRecursive || type == kErrorCheck) {
        if (field<int>(m, kMOwner) != owner_id() || !atom<uint32_t>(m, kMLock).load()) return EPERM;
        if (type == kRecursive && --field<uint32_t>(m, kMCount) > 0) return 0;
    }
    field<int>(m, kMOwner) = 0;
    field<uint32_t>(m, kMCount) = 0;
    auto &w = atom<uint32_t>(m, kMLock);
    if (w.exchange(0, std::memory_order_release) == 2) futex_wake(reinterpret_cast<uint32_t *>(&w), 1);
    return 0;
}

// ---- condition variables ------------------------------------------------
// seq 0 (bumped by every signal: the futex word), waiters 4; glibc's
// pthread_cond_init leaves the clock (bit 1) and pshared (bit 0) at 36.
constexpr size_t kCSeq = 0, kCWaiters = 4, kCFlags = 36;

bool glibc_cond(pthread_cond_t *c) { return field<uint32_t>(c, kCFlags) & 1; }
clockid_t cond_clock(pthread_cond_t *c) {
    return (field<uint32_t>(c, kCFlags) & 2) ? CLOCK_MONOTONIC : CLOCK_REALTIME;
}

int cond_wait(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline) {
    Thread *t = self();
    test_cancel(t);
    auto &seq = atom<uint32_t>(c, kCSeq);
    uint32_t s = seq.load(std::memory_order_seq_cst);
    atom<uint32_t>(c, kCWaiters).fetch_add(1, std::memory_order_seq_cst);
    if (int e = pthread_mutex_unlock(m)) {
        atom<uint32_t>(c, kCWaiters).fetch_sub(1);
        return e;
    }
    int r = futex_wait(reinterpret_cast<uint32_t *>(&seq), s, deadline, true);
    atom<uint32_t>(c, kCWaiters).fetch_sub(1, std::memory_order_relaxed);
    // A signal's handler runs before the mutex is taken again, as glibc runs
    // it in the futex wait: a handler that takes the same mutex (iperf2's
    // SIGINT handler signals the condition main() waits on) must not find it
    // held by its own thread.  The wait ends as a spurious wake-up.
    if (t && sig_pending(t)) sig_deliver(t);
    pthread_mutex_lock(m);
    test_cancel(t); // with the mutex held again, as POSIX asks
    return r == -ETIMEDOUT ? ETIMEDOUT : 0;
}

int cond_wake(pthread_cond_t *c, int n) {
    auto &seq = atom<uint32_t>(c, kCSeq);
    seq.fetch_add(1, std::memory_order_seq_cst);
    if (atom<uint32_t>(c, kCWaiters).load(std::memory_order_seq_cst))
        futex_wake(reinterpret_cast<uint32_t *>(&seq), n);
    return 0;
}

// ---- rwlocks -----------------------------------------------------------------
// lk 0, readers 4, seq 8 (futex word), writers waiting 12, writer 16;
// glibc's init leaves pshared at 28 and the preference at 48.
constexpr size_t kRLk = 0, kRReaders = 4, kRSeq = 8, kRWWait = 12, kRWriter = 16, kRShared = 28,
                 kRFlags = 48;

bool glibc_rwlock(pthread_rwlock_t *l) { return field<int>(l, kRShared) != 0; }

int rw_lock(pthread_rwlock_t *l, bool write, int64_t deadline, bool try_only) {
    auto &lk = atom<uint32_t>(l, kRLk);
    auto &seq = atom<uint32_t>(l, kRSeq);
    int me = owner_id();
    bool prefer_writer = field<int>(l, kRFlags) == PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP;
    bool queued = false;
    for (;;) {
        word_lock(lk);
        if (field<int>(l, kRWriter) == me) {
            if (queued) field<uint32_t>(l, kRWWait)--;
            word_unlock(lk);
            return EDEADLK;
        }
        bool free_now = write ? !field<int>(l, kRWriter) && !field<uint32_t>(l, kRReaders)
                              : !field<int>(l, kRWriter) && !(prefer_writer && field<uint32_t>(l, kRWWait));
        if (free_now) {
            if (queued) field<uint32_t>(l, kRWWait)--;
            if (write) field<int>(l, kRWriter) = me;
            else field<uint32_t>(l, kRReaders)++;
            word_unlock(lk);
            return 0;
        }
        if (try_only) {
            word_unlock(lk);
            return EBUSY;
        }
        if (write && !queued) {
            field<uint32_t>(l, kRWWait)++;
            queued = true;
        }
        uint32_t s = seq.load();
        word_unlock(lk);
        if (futex_wait(reinterpret_cast<uint32_t *>(&seq), s, deadline, false) == -ETIMEDOUT) {
            if (queued) {
                word_lock(lk);
                field<uint32_t>(l, kRWWait)--;
                word_unlock(lk);
                seq.fetch_add(1);
                futex_wake(reinterpret_cast<uint32_t *>(&seq), INT_MAX); // readers held back for us
            }
            return ETIMEDOUT;
        }
    }
}

int rw_unlock(pthread_rwlock_t *l) {
    auto &lk = atom<uint32_t>(l, kRLk);
    word_lock(lk);
    if (field<int>(l, kRWriter) == owner_id()) {
        field<int>(l, kRWriter) = 0;
    } else if (field<uint32_t>(l, kRReaders)) {
        field<uint32_t>(l, kRReaders)--;
    } else {
        word_unlock(lk);
        return EPERM;
    }
    atom<uint32_t>(l, kRSeq).fetch_add(1);
    word_unlock(lk);
    futex_wake(reinterpret_cast<uint32_t *>(&atom<uint32_t>(l, kRSeq)), INT_MAX);
    return 0;
}

// ---- barriers: lk 0, arrived 4, count 8 and shared 12 (glibc's init), seq 16.
constexpr size_t kBLk = 0, kBArrived = 4, kBCount = 8, kBShared = 12, kBSeq = 16;

// ---- semaphores: glibc's new_sem: value (low 32 bits) and waiters (high
// 32) in one 64-bit word, then `private` (glibc: 0 process-private).
constexpr size_t kSPrivate = 8;

int sem_wait_until(sem_t *s, int64_t deadline, bool try_only) {
    auto &d = atom<uint64_t>(s, 0);
    Thread *t = self();
    for (;;) {
        uint64_t v = d.load(std::memory_order_acquire);
        if (uint32_t(v) > 0) {
            if (d.compare_exchange_weak(v, v - 1, std::memory_order_acquire)) return 0;
            continue;
        }
        if (try_only) return EAGAIN;
        test_cancel(t);
        d.fetch_add(uint64_t(1) << 32, std::memory_order_seq_cst);
        // A plain thread (main before its first pthread_create) runs a
        // handler on itself (on_signal): the wait ends with EINTR then, as
        // glibc's does (Python's Event.wait relies on it): a timed one
        // always, an untimed one if the handler had no SA_RESTART.
        if (!t) plain_no_restart = false;
        int r = t ? futex_wait(reinterpret_cast<uint32_t *>(&d), 0, deadline, true)
                  : npshim_futex_wait_intr(reinterpret_cast<const uint32_t *>(&d), 0, deadline);
        d.fetch_sub(uint64_t(1) << 32, std::memory_order_relaxed);
        test_cancel(t);
        if (r == -ETIMEDOUT) return ETIMEDOUT;
        if (r == -EINTR && !t && (deadline || plain_no_restart)) return EINTR;
        // Linux restarts sem_wait after SA_RESTART handlers (a futex wait
        // without a timeout); a timed wait ends with EINTR all the same.
        if (t && sig_pending(t)) {
            int h = sig_deliver(t); // 0: a process's signal another thread took
            if (h < 0 || (h > 0 && deadline)) return EINTR;
        }
    }
}

bool bad_abs(const struct timespec *a) { return !a || a->tv_nsec < 0 || a->tv_nsec >= 1000000000; }

int errno_ret(int e) {
    if (!e) return 0;
    errno = e;
    return -1;
}

} // namespace

namespace {
__thread int owner_cached __attribute__((tls_model("initial-exec")));
}

int owner_id() {
    int &id = owner_cached;
    if (__builtin_expect(id != 0, 1)) return id;
    Thread *t = self();
    if (t && !t->is_main) return id = green_id(t);
    // The main thread: the process ID, its tid before its first
    // pthread_create, and what gettid() gives it after, on whichever
    // worker it runs.  The worker's tid differed: a recursive mutex
    // taken before the first thread and again after deadlocked (a GLib
    // class_init calling g_bus_get_sync).
    if (t) return id = getpid();
    if (tcb_tid_offset < 0)
        return id = int(real.syscall ? real.syscall(SYS_gettid, 0, 0, 0, 0, 0, 0) : getpid());
    // Not a thread of ours (a forked child's only thread): its TCB's tid,
    // read each time, as glibc's own mutexes name their owner.  A child
    // made by clone() keeps its parent's tid there, and a program may fix
    // that by comparing it with an error-checking mutex's owner (Firefox's
    // sandbox launcher asserts they match, then writes the new tid).
    return field<pid_t>(tcb_current(), size_t(tcb_tid_offset));
}

// A forked child's only thread is a new thread: the id cached above was
// its parent thread's (a green id, or the parent's tid).
void owner_id_after_fork() {
    if (owner_cached) owner_cached = 0;
}

namespace {

// A park on addr (by park()) that a signal or pthread_cancel for the
// calling thread interrupts (interrupt() wakes addr).
// Asynchronous cancellation (PTHREAD_CANCEL_ASYNCHRONOUS) may act
// anywhere: here, at any wait, which is where a thread such a program
// cancels sits (uwsgi cancels its threads blocked on a mutex).
// park(stop, seen) parks unless *stop moved from seen (npshim_futex_wait_stop).
template <class Park> int interruptible(const uint32_t *addr, bool cancel_point, Park park) {
    Thread *t = on() ? self() : nullptr;
    const uint32_t *stop = nullptr;
    uint32_t seen = 0;
    if (t) {
        t->wait_word.store(addr, std::memory_order_seq_cst);
        // Before the look at what is pending: an interrupt() after it moves
        // the count, and the park, under the lock its wake-up takes, sees so.
        stop = reinterpret_cast<const uint32_t *>(&t->interrupts);
        seen = t->interrupts.load(std::memory_order_seq_cst);
        bool point = cancel_point || t->cancel_async;
        if ((point && t->cancel_pending.load(std::memory_order_seq_cst) && !t->cancel_disabled) || sig_pending(t)) {
            t->wait_word.store(nullptr);
            // A cancellation point's caller acts on it; any other wait (a
            // lock, a join, once) runs the handlers here, as a thread
            // blocked in the kernel would, and wakes as if spuriously.
            if (!cancel_point) {
                sig_deliver(t);
                if (t->cancel_async) test_cancel(t);
            }
            return 0;
        }
    }
    int r = park(stop, seen);
    if (t) {
        t->wait_word.store(nullptr, std::memory_order_relaxed);
        if (!cancel_point && sig_pending(t)) sig_deliver(t);
        if (!cancel_point && t->cancel_async) test_cancel(t);
    }
    return r;
}

} // namespace

int futex_wait(const uint32_t *addr, uint32_t val, int64_t deadline, bool cancel_point) {
    return interruptible(addr, cancel_point, [&](const uint32_t *stop, uint32_t seen) {
        return stop ? npshim_futex_wait_stop(addr, val, deadline, stop, seen) : npshim_futex_wait(addr, val, deadline);
    });
}

int join_wait(const npshim_thread *g, const uint32_t *addr) {
    return interruptible(addr, true,
                         [&](const uint32_t *stop, uint32_t seen) { return npshim_thread_join_wait(g, addr, 0, stop, seen); });
}

int64_t deadline_from_abs(clockid_t clock, const struct timespec *abs) {
    int64_t want = ns_sat(int64_t(abs->tv_sec), abs->tv_nsec), at = now_on(clock);
    if (want == INT64_MAX) return INT64_MAX;
    int64_t left = want < at ? 0 : want - at;
    int64_t now = np_now();
    return left <= 0 ? now : (INT64_MAX - now < left ? INT64_MAX : now + left);
}

int64_t deadline_from_rel(const struct timespec *rel) {
    int64_t d = ns_sat(int64_t(rel->tv_sec), rel->tv_nsec), now = np_now();
    if (d <= 0) return now;
    return INT64_MAX - now < d ? INT64_MAX : now + d;
}

int64_t deadline_from_ms(int ms) { return ms < 0 ? 0 : np_now() + int64_t(ms) * 1000000; }

} // namespace shim

using namespace shim;

extern "C" {

// ---- mutex --------------------------------------------------------------------

int pthread_mutex_lock(pthread_mutex_t *m) {
    if (!on() || glibc_mutex(m)) return robust_lock(m, [&] { return real.pthread_mutex_lock(m); });
    return mutex_lock(m, 0, false);
}

int pthread_mutex_trylock(pthread_mutex_t *m) {
    if (!on() || glibc_mutex(m)) return robust_lock(m, [&] { return real.pthread_mutex_trylock(m); });
    return mutex_lock(m, 0, true);
}

// glibc looks at a lock's time only when it has to wait: a free mutex is
// taken (0), one's own errorcheck mutex is EDEADLK, even with a tv_nsec out
// of range; else EINVAL.
static int mutex_lock_bad_abs(pthread_mutex_t *m) {
    int r = mutex_lock(m, 0, true);
    if (r != EBUSY) return r;
    bool own = (field<int>(m, kMKind) & kKindMask) == kErrorCheck && field<int>(m, kMOwner) == owner_id();
    return own ? EDEADLK : EINVAL;
}

int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *abs) {
    if (!on() || glibc_mutex(m)) return robust_lock(m, [&] { return real.pthread_mutex_timedlock(m, abs); });
    if (bad_abs(abs)) return abs ? mutex_lock_bad_abs(m) : EINVAL;
    return mutex_lock(m, deadline_from_abs(CLOCK_REALTIME, abs), false);
}

int pthread_mutex_clocklock(pthread_mutex_t *m, clockid_t clock, const struct timespec *abs) {
    if (bad_abs(abs)) return EINVAL;
    if (!on() || glibc_mutex(m)) {
        static auto fn = reinterpret_cast<decltype(&pthread_mutex_clocklock)>(dlsym(RTLD_NEXT, "pthread_mutex_clocklock"));
        return robust_lock(m, [&] { return fn(m, clock, abs); });
    }
    if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return EINVAL;
    return mutex_lock(m, deadline_from_abs(clock, abs), false);
}

int pthread_mutex_unlock(pthread_mutex_t *m) {
    if (!on() || glibc_mutex(m)) {
        int r = real.pthread_mutex_unlock(m);
        if (r == 0)
            if (Thread *t = robust_thread(m); t && t->robust_held) robust_leave(t);
        return r;
    }
    return mutex_unlock(m);
}

// ---- condition variables ----------------------------------------------------

int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m) {
    if (!on() || glibc_cond(c)) return real.pthread_cond_wait(c, m);
    return cond_wait(c, m, 0);
}

int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *abs) {
    if (!on() || glibc_cond(c)) return real.pthread_cond_timedwait(c, m, abs);
    if (bad_abs(abs)) return EINVAL;
    return cond_wait(c, m, deadline_from_abs(cond_clock(c), abs));
}

int pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m, clockid_t clock, const struct timespec *abs) {
    if (bad_abs(abs)) return EINVAL;
    if (!on() || glibc_cond(c)) {
        static auto fn = reinterpret_cast<decltype(&pthread_cond_clockwait)>(dlsym(RTLD_NEXT, "pthread_cond_clockwait"));
        return fn(c, m, clock, abs);
    }
    if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return EINVAL;
    return cond_wait(c, m, deadline_from_abs(clock, abs));
}

int pthread_cond_signal(pthread_cond_t *c) {
    if (!on() || glibc_cond(c)) return real.pthread_cond_signal(c);
    return cond_wake(c, 1);
}

int pthread_cond_broadcast(pthread_cond_t *c) {
    if (!on() || glibc_cond(c)) return real.pthread_cond_broadcast(c);
    return cond_wake(c, INT_MAX);
}

// ---- rwlocks ---------------------------------------------------------------------

#define SHIM_RW(name, args, call, glibc_call)                                          \
    int name args {                                                                    \
        if (!on() || glibc_rwlock(l)) {                                                \
            static auto fn = reinterpret_cast<decltype(&name)>(dlsym(RTLD_NEXT, #name)); \
            return glibc_call;                                                         \
        }                                                                              \
        return call;                                                                   \
    }


SHIM_RW(pthread_rwlock_rdlock, (pthread_rwlock_t * l), rw_lock(l, false, 0, false), fn(l))
SHIM_RW(pthread_rwlock_tryrdlock, (pthread_rwlock_t * l), rw_lock(l, false, 0, true), fn(l))
SHIM_RW(pthread_rwlock_wrlock, (pthread_rwlock_t * l), rw_lock(l, true, 0, false), fn(l))
SHIM_RW(pthread_rwlock_trywrlock, (pthread_rwlock_t * l), rw_lock(l, true, 0, true), fn(l))
SHIM_RW(pthread_rwlock_unlock, (pthread_rwlock_t * l), rw_unlock(l), fn(l))
SHIM_RW(pthread_rwlock_timedrdlock, (pthread_rwlock_t * l, const struct timespec *a),
        rw_lock(l, false, deadline_from_abs(CLOCK_REALTIME, a), false), fn(l, a))
SHIM_RW(pthread_rwlock_timedwrlock, (pthread_rwlock_t * l, const struct timespec *a),
        rw_lock(l, true, deadline_from_abs(CLOCK_REALTIME, a), false), fn(l, a))
SHIM_RW(pthread_rwlock_clockrdlock, (pthread_rwlock_t * l, clockid_t c, const struct timespec *a),
        rw_lock(l, false, deadline_from_abs(c, a), false), fn(l, c, a))
SHIM_RW(pthread_rwlock_clockwrlock, (pthread_rwlock_t * l, clockid_t c, const struct timespec *a),
        rw_lock(l, true, deadline_from_abs(c, a), false), fn(l, c, a))

// ---- barriers ------------------------------------------------------------------------

int pthread_barrier_wait(pthread_barrier_t *b) {
    static auto glibc = reinterpret_cast<int (*)(pthread_barrier_t *)>(dlsym(RTLD_NEXT, "pthread_barrier_wait"));
    if (!on() || field<int>(b, kBShared) != 0) return glibc(b); // glibc: 0 is FUTEX_PRIVATE
    auto &lk = atom<uint32_t>(b, kBLk);
    auto &seq = atom<uint32_t>(b, kBSeq);
    word_lock(lk);
    if (++field<uint32_t>(b, kBArrived) == field<uint32_t>(b, kBCount)) {
        field<uint32_t>(b, kBArrived) = 0;
        seq.fetch_add(1);
        word_unlock(lk);
        futex_wake(reinterpret_cast<uint32_t *>(&seq), INT_MAX);
        return PTHREAD_BARRIER_SERIAL_THREAD;
    }
    uint32_t s = seq.load();
    word_unlock(lk);
    while (seq.load() == s) futex_wait(reinterpret_cast<uint32_t *>(&seq), s, 0, false);
    return 0;
}

int pthread_barrier_destroy(pthread_barrier_t *b) {
    static auto glibc = reinterpret_cast<int (*)(pthread_barrier_t *)>(dlsym(RTLD_NEXT, "pthread_barrier_destroy"));
    if (!on() || field<int>(b, kBShared) != 0) return glibc(b);
    return field<uint32_t>(b, kBArrived) ? EBUSY : 0;
}

// ---- once ----------------------------------------------------------------------------
// glibc's states: 0 not run, 1 running, 2 done.

int pthread_once(pthread_once_t *o, void (*init)(void)) {
    static auto glibc = reinterpret_cast<int (*)(pthread_once_t *, void (*)(void))>(dlsym(RTLD_NEXT, "pthread_once"));
    if (!on()) return glibc(o, init);
    auto &w = *reinterpret_cast<std::atomic<uint32_t> *>(o);
    for (;;) {
        uint32_t v = w.load(std::memory_order_acquire);
        if (v == 2) return 0;
        if (v == 0 && w.compare_exchange_strong(v, 1, std::memory_order_acq_rel)) {
            init();
            w.store(2, std::memory_order_release);
            futex_wake(reinterpret_cast<uint32_t *>(&w), INT_MAX);
            return 0;
        }
        futex_wait(reinterpret_cast<uint32_t *>(&w), 1, 0, false);
    }
}

// ---- semaphores ------------------------------------------------------------------

int sem_wait(sem_t *s) {
    if (!on() || field<int>(s, kSPrivate) != 0) return real.sem_wait(s);
    return errno_ret(sem_wait_until(s, 0, false));
}

int sem_trywait(sem_t *s) {
    if (!on() || field<int>(s, kSPrivate) != 0) return real.sem_trywait(s);
    return errno_ret(sem_wait_until(s, 0, true));
}

int sem_timedwait(sem_t *s, const struct timespec *abs) {
    if (!on() || field<int>(s, kSPrivate) != 0) return real.sem_timedwait(s, abs);
    if (bad_abs(abs)) return errno_ret(EINVAL);
    return errno_ret(sem_wait_until(s, deadline_from_abs(CLOCK_REALTIME, abs), false));
}

int sem_clockwait(sem_t *s, clockid_t clock, const struct timespec *abs) {
    if (bad_abs(abs)) return errno_ret(EINVAL);
    if (!on() || field<int>(s, kSPrivate) != 0) {
        static auto fn = reinterpret_cast<decltype(&sem_clockwait)>(dlsym(RTLD_NEXT, "sem_clockwait"));
        return fn(s, clock, abs);
    }
    if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return errno_ret(EINVAL);
    return errno_ret(sem_wait_until(s, deadline_from_abs(clock, abs), false));
}

int sem_post(sem_t *s) {
    if (!on() || field<int>(s, kSPrivate) != 0) return real.sem_post(s);
    auto &d = atom<uint64_t>(s, 0);
    uint64_t v = d.load(std::memory_order_relaxed);
    do {
        if (uint32_t(v) == uint32_t(SEM_VALUE_MAX)) return errno_ret(EOVERFLOW);
    } while (!d.compare_exchange_weak(v, v + 1, std::memory_order_release));
    if (v >> 32) futex_wake(reinterpret_cast<uint32_t *>(&d), 1);
    return 0;
}

// ---- futex(2) through syscall(): std::atomic::wait, std::mutex fallbacks,
// and programs with their own locks.  Process-private or not (libstdc++
// may not say private), waiters park here; a word that is not private may
// also be woken by another process, so its waiters look again every 10 ms
// and its wakes reach the kernel's waiters too.

} // extern "C"

namespace {

// A green thread's wait on a word another process may wake (not private)
// parks here, where this process's wakes reach it at once, and looks at
// the word again after 50 us, then at twice the interval each time up to
// 10 ms: a wake from another process (a forked child answering, a
// process-shared semaphore) is seen within about as long again as the
// wait had lasted.
constexpr int64_t kSharedRecheckFirst = 50'000, kSharedRecheckMax = 10'000'000;

int futex_wait_any(const uint32_t *addr, uint32_t val, int64_t deadline, bool priv) {
    if (priv && green()) return futex_wait(addr, val, deadline, false);
    // A plain thread (main before its first pthread_create), where a
    // handler runs on the thread itself: it ends the wait with EINTR, as it
    // ends the kernel's FUTEX_WAIT (a timed one always, an untimed one
    // after a handler without SA_RESTART; else the wait goes on, its word
    // looked at again).
    if (priv && on())
        for (;;) {
            plain_no_restart = false;
            int r = npshim_futex_wait_intr(addr, val, deadline);
            if (r != -EINTR || deadline || plain_no_restart) return r;
        }
    if (priv) return futex_wait(addr, val, deadline, false);
    // A thread that is not green (a forked child's, the OS main thread)
    // blocks anyway: let it wait in the kernel, where another process's
    // FUTEX_WAKE reaches it at once (our wakes of a shared word go there too).
    if (!green()) {
        if (!real.syscall) real.syscall = reinterpret_cast<decltype(real.syscall)>(dlsym(RTLD_NEXT, "syscall"));
        struct timespec ts, *tp = nullptr;
        if (deadline) {
            int64_t left = deadline - np_now();
            if (left < 0) left = 0;
            ts.tv_sec = time_t(left / 1000000000);
            ts.tv_nsec = long(left % 1000000000);
            tp = &ts;
        }
        long r = real.syscall(SYS_futex, long(addr), FUTEX_WAIT, long(val), long(tp), 0, 0);
        return r < 0 ? -errno : 0;
    }
    for (int64_t gap = kSharedRecheckFirst;; gap = gap < kSharedRecheckMax / 2 ? gap * 2 : kSharedRecheckMax) {
        int64_t step = np_now() + gap;
        bool last = deadline && deadline <= step;
        int r = futex_wait(addr, val, last ? deadline : step, false);
        if (r != -ETIMEDOUT || last) return r;
        if (__atomic_load_n(addr, __ATOMIC_SEQ_CST) != val) return 0;
    }
}

// FUTEX_WAKE_OP (Qt 5's QSemaphore::release): the kernel's atomic
// operation on the second word, then the wakes it decides, on our waiters.
bool wake_op_apply(uint32_t *addr2, uint32_t enc, long *err) {
    int op = (enc >> 28) & 15, cmp = (enc >> 24) & 15;
    int oparg = int32_t(enc << 8) >> 20, cmparg = int32_t(enc << 20) >> 20;
    if (op & FUTEX_OP_OPARG_SHIFT) {
        if (oparg < 0 || oparg > 31) { *err = -EINVAL; return false; }
        oparg = int(1u << oparg);
    }
    op &= ~FUTEX_OP_OPARG_SHIFT;
    uint32_t old = __atomic_load_n(addr2, __ATOMIC_RELAXED), nv;
    do {
        switch (op) {
        case FUTEX_OP_SET: nv = uint32_t(oparg); break;
        case FUTEX_OP_ADD: nv = old + uint32_t(oparg); break;
        case FUTEX_OP_OR: nv = old | uint32_t(oparg); break;
        case FUTEX_OP_ANDN: nv = old & ~uint32_t(oparg); break;
        case FUTEX_OP_XOR: nv = old ^ uint32_t(oparg); break;
        default: *err = -ENOSYS; return false;
        }
    } while (!__atomic_compare_exchange_n(addr2, &old, nv, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    int o = int(old);
    switch (cmp) {
    case FUTEX_OP_CMP_EQ: return o == cmparg;
    case FUTEX_OP_CMP_NE: return o != cmparg;
    case FUTEX_OP_CMP_LT: return o < cmparg;
    case FUTEX_OP_CMP_LE: return o <= cmparg;
    case FUTEX_OP_CMP_GT: return o > cmparg;
    case FUTEX_OP_CMP_GE: return o >= cmparg;
    default: *err = -ENOSYS; return false;
    }
}

} // namespace

extern "C" {

long syscall(long nr, ...) {
    va_list ap;
    va_start(ap, nr);
    long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
    long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
    va_end(ap);
    // libuv closes its descriptors this way: the number must be forgotten.
    if (nr == SYS_close && on()) return own_close(int(a1));
    // ...and programs that predate glibc's wrapper close ranges this way:
    // the engine's own descriptors are stepped over.
    if (nr == SYS_close_range && on()) return own_close_range(unsigned(a1), unsigned(a2), int(a3));
    // A thread signalling its own kernel thread ID (what gettid(2) gave it):
    // see tgkill().
    // libc++abi and Chromium ask the thread's ID this way (see gettid()).
    if (nr == SYS_gettid && on()) return own_gettid();
    // set_tid_address(2) returns the caller's ID, so a green thread's own,
    // as gettid() (stress-ng's pthread stressor compares the two).  The
    // address is left alone: it is the worker's clear_child_tid, which the
    // kernel clears when that OS thread ends, not this thread, and glibc
    // waits on to join it.
    if (nr == SYS_set_tid_address && green()) return own_gettid();
    if (nr == SYS_tgkill && on()) return own_tgkill(pid_t(a1), pid_t(a2), int(a3));
    if (nr == SYS_tkill && on() && (pid_t(a1) == own_gettid() || thread_of_id(pid_t(a1))))
        return own_tgkill(getpid(), pid_t(a1), int(a2));
    // The scheduling calls given the caller's own ID act on its worker, as
    // they did when that ID was the worker's (GLib copies a thread's
    // settings to the threads it starts this way).
    if ((nr == SYS_sched_getattr || nr == SYS_sched_setattr || nr == SYS_sched_getaffinity ||
         nr == SYS_sched_setaffinity || nr == SYS_sched_getparam || nr == SYS_sched_setparam ||
         nr == SYS_sched_getscheduler || nr == SYS_sched_setscheduler) &&
        a1 != 0 && on() && pid_t(a1) == own_gettid())
        a1 = 0;
    if (nr == SYS_futex && on()) {
        bool priv = a2 & FUTEX_PRIVATE_FLAG;
        int cmd = int(a2) & FUTEX_CMD_MASK;
        auto *addr = reinterpret_cast<const uint32_t *>(a1);
        bool all = uint32_t(a6) == FUTEX_BITSET_MATCH_ANY;
        if (cmd == FUTEX_WAIT || (cmd == FUTEX_WAIT_BITSET && all)) {
            auto *ts = reinterpret_cast<const struct timespec *>(a4);
            int64_t deadline = 0;
            if (ts && cmd == FUTEX_WAIT) deadline = deadline_from_rel(ts);
            else if (ts) deadline = deadline_from_abs((a2 & FUTEX_CLOCK_REALTIME) ? CLOCK_REALTIME : CLOCK_MONOTONIC, ts);
            int r = futex_wait_any(addr, uint32_t(a3), deadline, priv);
            return r ? ret(r) : 0;
        }
        if (cmd == FUTEX_WAKE || (cmd == FUTEX_WAKE_BITSET && all)) {
            int n = a3 < 0 || a3 > INT_MAX ? INT_MAX : int(a3);
            long woke = futex_wake(addr, n);
            if (!priv && woke < n) {
                if (!real.syscall) real.syscall = reinterpret_cast<decltype(real.syscall)>(dlsym(RTLD_NEXT, "syscall"));
                long k = real.syscall(nr, a1, a2, n - woke, a4, a5, a6);
                if (k > 0) woke += k;
            }
            return woke;
        }
        // FUTEX_WAKE_OP, and the requeues (woken rather than moved: a
        // futex waiter must look at its word again anyway).
        if (cmd == FUTEX_WAKE_OP || cmd == FUTEX_REQUEUE || cmd == FUTEX_CMP_REQUEUE) {
            auto *addr2 = reinterpret_cast<uint32_t *>(a5);
            int n1 = a3 < 0 || a3 > INT_MAX ? INT_MAX : int(a3);
            int n2 = a4 < 0 || a4 > INT_MAX ? INT_MAX : int(a4);
            if (!real.syscall) real.syscall = reinterpret_cast<decltype(real.syscall)>(dlsym(RTLD_NEXT, "syscall"));
            int fl = int(a2) & ~FUTEX_CMD_MASK;
            if (cmd == FUTEX_CMP_REQUEUE && __atomic_load_n(addr, __ATOMIC_SEQ_CST) != uint32_t(a6)) return ret(-EAGAIN);
            bool second = false;
            if (cmd == FUTEX_WAKE_OP) {
                long err = 0;
                second = wake_op_apply(addr2, uint32_t(a6), &err);
                if (err) return ret(err);
            }
            long woke = futex_wake(addr, n1);
            if (!priv && woke < n1) {
                long k = real.syscall(SYS_futex, a1, FUTEX_WAKE | fl, n1 - woke, 0, 0, 0);
                if (k > 0) woke += k;
            }
            if (cmd != FUTEX_WAKE_OP) {
                // the requeued ones: woken on the first word; kernel waiters requeued by the kernel
                long w2 = futex_wake(addr, n2);
                long k = real.syscall(SYS_futex, a1, FUTEX_REQUEUE | fl, 0, n2 > w2 ? n2 - w2 : 0, a5, 0);
                return woke + w2 + (k > 0 ? k : 0);
            }
            if (second) {
                long w2 = futex_wake(addr2, n2);
                if (!priv && w2 < n2) {
                    long k = real.syscall(SYS_futex, a5, FUTEX_WAKE | fl, n2 - w2, 0, 0, 0);
                    if (k > 0) w2 += k;
                }
                woke += w2;
            }
            return woke;
        }
    }
    if (!real.syscall) real.syscall = reinterpret_cast<decltype(real.syscall)>(dlsym(RTLD_NEXT, "syscall"));
    // A seccomp filter about to go in (Chromium's sandbox code, Firefox's,
    // libseccomp's fallback use syscall(2)): see note_seccomp_filter.
    if (nr == SYS_seccomp && (a1 == SECCOMP_SET_MODE_FILTER || a1 == SECCOMP_SET_MODE_STRICT))
        note_seccomp_filter(a1 == SECCOMP_SET_MODE_FILTER, reinterpret_cast<const void *>(a3));
    if (nr == SYS_prctl && a1 == PR_SET_SECCOMP)
        note_seccomp_filter(a2 == SECCOMP_MODE_FILTER, reinterpret_cast<const void *>(a3));
    // A process made with a raw clone (vsftpd's sessions, in namespaces of
    // their own) is a forked child: our threads and workers stay here.
    if (nr == SYS_clone || nr == SYS_clone3) {
        long r = fork_like_syscall(real.syscall, nr, a1, a2, a3, a4, a5);
        if (r != -ENOSYS) return r;
    }
    long r = real.syscall(nr, a1, a2, a3, a4, a5, a6);
    if (nr == SYS_prctl && a1 == PR_SET_SYSCALL_USER_DISPATCH) note_syscall_dispatch(r, a2, a5);
    // A signal for the thread that came during the call is taken at its
    // return, where the kernel runs a handler.  A poke cannot take it: the
    // thread is in libc there, and one that loops on a slow call
    // (stress-ng's membarrier(2)) is there nearly all the time, so its
    // handler never ran.  Not in a raw fork's or vfork's child.
    bool forked = nr == SYS_clone || nr == SYS_clone3;
#ifdef SYS_fork // not on aarch64
    forked = forked || nr == SYS_fork || nr == SYS_vfork;
#endif
    if (!forked)
        if (Thread *t = green() ? self() : nullptr; t && sig_pending(t)) sig_deliver(t);
    return r;
}

} // extern "C"
