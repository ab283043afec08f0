// The helper pool: plain OS threads that make the calls a green thread
// cannot park in (name resolution, NSS lookups), as Go's cgo calls take an
// OS thread each (bounded there by a semaphore, here by kMaxHelpers).  A
// helper starts when every helper is busy; idle helpers end.
#include <atomic>
#include <cerrno>
#include <csignal>
#include <netdb.h>
#include <new>
#include <sys/syscall.h>

#include "helpers.hpp"
#include "real.hpp"

namespace shim {

namespace {

constexpr int kMaxHelpers = 256; // calls in flight at once (Go: 500); more queue
constexpr int64_t kHelperIdle = 10'000'000'000; // an idle helper exits after 10 s

struct Pool {
    std::atomic<bool> lk{false};
    HelperJob *head = nullptr, *tail = nullptr;
    int queued = 0, threads = 0, idle = 0;
    uint32_t seq = 0;     // futex word idle helpers sleep on
};
Pool pool;

inline void relax() {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}
// Held for a few instructions only, by green and plain threads alike; a
// holder the kernel preempted gets the CPU back (a worker spinning on it
// would stall every thread queued there).
void lock() {
    for (int spins = 0; pool.lk.exchange(true, std::memory_order_acquire);)
        while (pool.lk.load(std::memory_order_relaxed))
            if (++spins < 100) relax();
            else real.syscall(SYS_sched_yield, 0, 0, 0, 0, 0, 0);
}
void unlock() { pool.lk.store(false, std::memory_order_release); }

HelperJob *pop_locked() {
    HelperJob *j = pool.head;
    if (j) {
        pool.head = j->next;
        if (!pool.head) pool.tail = nullptr;
        pool.queued--;
    }
    return j;
}

void *helper_main(void *) {
    bool idle_long = false;
    for (;;) {
        uint32_t s = __atomic_load_n(&pool.seq, __ATOMIC_ACQUIRE);
        lock();
        HelperJob *j = pop_locked();
        if (!j && idle_long) {
            pool.threads--;
            unlock();
            return nullptr;
        }
        if (!j) pool.idle++;
        unlock();
        if (!j) {
            idle_long = npshim_futex_wait(&pool.seq, s, np_now() + kHelperIdle) == -ETIMEDOUT;
            lock();
            pool.idle--;
            unlock();
            continue;
        }
        idle_long = false;
        errno = j->err;
        h_errno = j->herr;
        j->run(j->ctx);
        j->err = errno;
        j->herr = h_errno;
        __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
        // j may be gone now (its caller saw done): the wake uses the address only.
        npshim_futex_wake(&j->done, 1);
    }
}

} // namespace

// A forked child has none of the helpers, nor the callers of queued jobs.
void helpers_after_fork() { new (&pool) Pool(); }

bool helper_submit(HelperJob *j) {
    lock();
    if (pool.tail) pool.tail->next = j;
    else pool.head = j;
    pool.tail = j;
    pool.queued++;
    // More jobs waiting than helpers free to take them: one more helper, so
    // calls never queue behind each other below the cap.
    bool spawn = pool.queued > pool.idle && pool.threads < kMaxHelpers;
    if (spawn) pool.threads++;
    bool wake = pool.idle > 0;
    unlock();
    if (wake) {
        __atomic_fetch_add(&pool.seq, 1, __ATOMIC_RELEASE);
        npshim_futex_wake(&pool.seq, 1);
    }
    if (!spawn) return true;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    sigset_t all, old;
    sigfillset(&all);
    real.pthread_sigmask(SIG_SETMASK, &all, &old); // the program's signals are not for helpers
    pthread_t th;
    int e = real.pthread_create(&th, &a, helper_main, nullptr);
    real.pthread_sigmask(SIG_SETMASK, &old, nullptr);
    pthread_attr_destroy(&a);
    if (!e) return true;
    lock();
    pool.threads--;
    bool orphan = false;
    if (pool.threads == 0) { // nobody will take it: the caller runs it itself
        for (HelperJob **p = &pool.head; *p; p = &(*p)->next) {
            if (*p != j) continue;
            *p = j->next;
            if (pool.tail == j) {
                pool.tail = nullptr;
                for (HelperJob *q = pool.head; q; q = q->next) pool.tail = q;
            }
            pool.queued--;
            orphan = true;
            break;
        }
    }
    unlock();
    return !orphan;
}

void helper_wait(Thread *t, HelperJob *j) {
    while (!__atomic_load_n(&j->done, __ATOMIC_ACQUIRE)) {
        t->wait_word.store(&j->done, std::memory_order_seq_cst);
        uint32_t seen = t->interrupts.load(std::memory_order_seq_cst); // as interruptible() in sync.cpp
        if (sig_pending(t)) {
            t->wait_word.store(nullptr, std::memory_order_relaxed);
            sig_deliver(t);
            continue;
        }
        npshim_futex_wait_stop(&j->done, 0, 0, reinterpret_cast<const uint32_t *>(&t->interrupts), seen);
        t->wait_word.store(nullptr, std::memory_order_relaxed);
    }
}

} // namespace shim
