// The timer API: each worker's timers in its own heap (timer_heap.cpp),
// fired by that worker on its way through the scheduler, or by sysmon for
// a worker blocked in a call.
#include "runtime.hpp"

#include "clock.hpp"

namespace np {

void run_timers_of(Worker *w) { run_timers(w, now_ns()); }

void run_timers(Worker *w, int64_t now) {
    TimerHeap &h = w->timers;
    h.lock.lock();
    for (;;) {
        Timer *t = h.top();
        if (!t || t->when > now) break;
        h.remove(t);
        auto fn = t->fn;
        void *arg = t->arg;
        uintptr_t seq = t->seq;
        h.lock.unlock();
        fn(arg, seq); // may free t (it may live on a stack that now resumes)
        h.lock.lock();
    }
    h.lock.unlock();
}

static Worker *timer_owner() {
    Worker *w = cur_worker();
    if (w) return w;
    return rt->nworkers ? rt->workers[0] : rt->host;
}

void timer_add(Timer *t, int64_t when) {
    Worker *w = timer_owner();
    t->when = when;
    w->timers.lock.lock();
    w->timers.push(t);
    bool first = w->timers.top() == t;
    w->timers.lock.unlock();
    if (first && w != cur_worker() && when < w->sleep_until.load(std::memory_order_acquire))
        wake_worker(w);
}

bool timer_del(Timer *t) {
    for (;;) {
        TimerHeap *h = t->heap;
        if (!h) return false;
        h->lock.lock();
        if (t->heap != h) { // moved meanwhile
            h->lock.unlock();
            continue;
        }
        bool queued = t->idx >= 0;
        if (queued) h->remove(t);
        t->heap = nullptr;
        h->lock.unlock();
        return queued;
    }
}

void timer_modify(Timer *t, int64_t when) {
    timer_del(t);
    timer_add(t, when);
}

} // namespace np
