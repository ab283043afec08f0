// The C ABI of the runtime: threads, sleep, time, statistics.  Every entry
// returns a negative errno on failure and leaves errno as it found it.
#include <cerrno>
#include <cstring>
#include <ctime>
#include <sched.h>

#include "clock.hpp"
#include "errno_guard.hpp"
#include "netpoll.h"
#include "runtime.hpp"
#include "sys.hpp"

using namespace np;

namespace {


struct MainArg {
    int (*fn)(void *);
    void *arg;
};

void *main_trampoline(void *p) {
    auto *m = static_cast<MainArg *>(p);
    return reinterpret_cast<void *>(intptr_t(m->fn(m->arg)));
}

struct SleepCtx {
    GThread *g;
};

void sleep_fire(void *arg, uintptr_t) { ready(static_cast<SleepCtx *>(arg)->g); }

int run_embedded_main(GThread *t) {
    // The host thread drives: poll and run until the main thread is done.
    while (t->join_state.load(std::memory_order_acquire) != 2) np_poll(-1);
    return 0;
}

} // namespace

extern "C" {

int np_init(const np_config *cfg) {
    ErrnoGuard eg;
    if (!cfg) return runtime_ensure();
    return runtime_start(cfg);
}

int np_main(int (*fn)(void *), void *arg) {
    ErrnoGuard eg;
    if (!fn) return -EINVAL;
    MainArg m{fn, arg};
    GThread *t;
    if (int e = spawn(nullptr, main_trampoline, &m, true, &t)) return e;
    if (rt->host && !current_g()) run_embedded_main(t);
    void *res = nullptr;
    join(t, &res);
    return int(intptr_t(res));
}

int np_go(void (*fn)(void *), void *arg) {
    ErrnoGuard eg;
    if (!fn) return -EINVAL;
    return spawn(fn, nullptr, arg, false, nullptr);
}

int np_go_stack(void (*fn)(void *), void *arg, size_t stack_size) {
    ErrnoGuard eg;
    if (!fn || stack_size < kMinSmallStack || stack_size > kMaxStackSize) return -EINVAL;
    return spawn(fn, nullptr, arg, false, nullptr, stack_size);
}

int np_spawn(np_thread **t, void *(*fn)(void *), void *arg) {
    ErrnoGuard eg;
    if (!t || !fn) return -EINVAL;
    GThread *g;
    if (int e = spawn(nullptr, fn, arg, true, &g)) return e;
    *t = reinterpret_cast<np_thread *>(g);
    return 0;
}

int np_join(np_thread *t, void **result) {
    ErrnoGuard eg;
    if (!t) return -EINVAL;
    GThread *g = reinterpret_cast<GThread *>(t);
    if (rt->host && !current_g()) run_embedded_main(g);
    return join(g, result);
}

void np_yield(void) { yield(); }

int np_sleep(int64_t ns) {
    ErrnoGuard eg;
    GThread *g = current_g();
    if (ns <= 0) {
        yield();
        return 0;
    }
    int64_t deadline = add_sat(now_ns(), ns);
    if (!g) {
        // A plain OS thread: sleep it, to the absolute deadline.
        struct timespec ts = {time_t(deadline / 1000000000), long(deadline % 1000000000)};
        while (sys_clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
        }
        return 0;
    }
    note_wait(WaitKind::sleep, nullptr, 0, deadline);
    SleepCtx ctx{g};
    Timer t;
    t.fn = sleep_fire;
    t.arg = &ctx;
    timer_add(&t, deadline);
    park();
    return 0;
}

int64_t np_now(void) { return now_ns(); }

int np_in_green(void) { return current_g() != nullptr; }

int np_stats_get(np_stats *out) {
    ErrnoGuard eg;
    if (!out || out->size < offsetof(np_stats, threads) + sizeof(uint64_t)) return -EINVAL;
    if (int e = runtime_ensure()) return e;
    np_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    s.threads = rt->live.load(std::memory_order_relaxed);
    uint64_t runnable = rt->global.len.load(std::memory_order_relaxed), running = 0;
    auto count = [&](Worker *w) {
        runnable += w->q.len.load(std::memory_order_relaxed) + w->local_n.load(std::memory_order_relaxed);
        if (w->running()) running++;
        s.switches += w->switches.load(std::memory_order_relaxed);
        w->timers.lock.lock();
        s.timers += w->timers.h.size();
        w->timers.lock.unlock();
    };
    for (int i = 0; i < rt->nworkers; i++) count(rt->workers[i]);
    if (rt->host) count(rt->host);
    s.runnable = runnable;
    s.parked = s.threads > runnable + running ? s.threads - runnable - running : 0;
    s.workers = uint64_t(rt->nworkers);
    s.spawned = rt->spawned.load(std::memory_order_relaxed);
    int64_t w = rt->netpoll_waiters.load(std::memory_order_relaxed);
    s.poll_waiters = w > 0 ? uint64_t(w) : 0;
    s.descriptors = rt->descriptors.load(std::memory_order_relaxed);
    s.stack_bytes = rt->stacks.reserved_bytes();
    for (auto &p : rt->sized)
        if (StackPool *sp = p.load(std::memory_order_acquire)) s.stack_bytes += sp->reserved_bytes();
    s.alloc_bytes = mem_allocated();
    s.polls = rt->polls.load(std::memory_order_relaxed);
    s.handoffs = rt->handoffs.load(std::memory_order_relaxed);
    s.alloc_count = mem_alloc_count();
    s.moves = rt->moves.load(std::memory_order_relaxed);
    size_t n = out->size < sizeof s ? out->size : sizeof s;
    size_t caller_size = out->size;
    memcpy(out, &s, n);
    out->size = caller_size;
    return 0;
}

} // extern "C"

