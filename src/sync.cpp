// Green-aware mutex and condition variable: a waiter parks its green thread
// (or, on a plain OS thread, sleeps on a futex); the worker runs on.  Both
// live in the caller's 32-byte np_mutex / np_cond; all-zero is unlocked.
#include <cerrno>
#include <pthread.h>

#include "clock.hpp"
#include "netpoll.h"
#include "runtime.hpp"

using namespace np;

namespace {

struct MutexImpl {
    SpinLock lk;
    uint32_t locked;
    WaitList q;
    uintptr_t owner;
};

struct CondImpl {
    SpinLock lk;
    uint32_t unused;
    WaitList q;
    uintptr_t reserved;
};

static_assert(sizeof(MutexImpl) <= sizeof(np_mutex), "np_mutex too small");
static_assert(sizeof(CondImpl) <= sizeof(np_cond), "np_cond too small");

MutexImpl *impl(np_mutex *m) { return reinterpret_cast<MutexImpl *>(m); }
CondImpl *impl(np_cond *c) { return reinterpret_cast<CondImpl *>(c); }

// Who holds a mutex: the green thread, or the OS thread (low bit set).
uintptr_t self_id() {
    if (GThread *g = current_g()) return uintptr_t(g);
    return uintptr_t(pthread_self()) | 1;
}

// Waiter states for cond waits, under the cond lock.
enum { kWaiting = 0, kSignalled = 1, kTimedOut = 2 };

struct CondTimeout {
    Waiter *w;
    CondImpl *c;
};

void cond_timer_fire(void *arg, uintptr_t) {
    auto *t = static_cast<CondTimeout *>(arg);
    CondImpl *c = t->c;
    Waiter *w = t->w;
    c->lk.lock();
    bool fire = w->state.load(std::memory_order_relaxed) == kWaiting;
    if (fire) {
        c->q.unlink(w);
        w->state.store(kTimedOut, std::memory_order_relaxed);
    }
    c->lk.unlock();
    if (fire) w->wake();
}

} // namespace

extern "C" {

int np_mutex_init(np_mutex *m) {
    if (!m) return -EINVAL;
    new (m) MutexImpl{};
    return 0;
}

int np_mutex_destroy(np_mutex *m) {
    if (!m) return -EINVAL;
    MutexImpl *x = impl(m);
    Guard<SpinLock> g(x->lk);
    return x->locked || x->q.head ? -EBUSY : 0;
}

int np_mutex_lock(np_mutex *m) {
    if (!m) return -EINVAL;
    MutexImpl *x = impl(m);
    uintptr_t me = self_id();
    preempt_point();
    x->lk.lock();
    if (!x->locked) {
        x->locked = 1;
        x->owner = me;
        x->lk.unlock();
        return 0;
    }
    if (x->owner == me) {
        x->lk.unlock();
        return -EDEADLK;
    }
    note_wait(WaitKind::mutex, m);
    Waiter w;
    w.tag = me;
    x->q.push(&w);
    x->lk.unlock();
    w.wait(); // ownership is handed to us by unlock
    return 0;
}

int np_mutex_trylock(np_mutex *m) {
    if (!m) return -EINVAL;
    MutexImpl *x = impl(m);
    Guard<SpinLock> g(x->lk);
    if (x->locked) return -EBUSY;
    x->locked = 1;
    x->owner = self_id();
    return 0;
}

int np_mutex_unlock(np_mutex *m) {
    if (!m) return -EINVAL;
    MutexImpl *x = impl(m);
    uintptr_t me = self_id();
    x->lk.lock();
    if (!x->locked || x->owner != me) {
        x->lk.unlock();
        return -EPERM;
    }
    // Hand over directly: no barging, so a woken waiter never finds it taken.
    Waiter *w = x->q.pop();
    if (w) x->owner = w->tag;
    else x->locked = 0;
    x->lk.unlock();
    if (w) w->wake();
    return 0;
}

int np_cond_init(np_cond *c) {
    if (!c) return -EINVAL;
    new (c) CondImpl{};
    return 0;
}

int np_cond_destroy(np_cond *c) {
    if (!c) return -EINVAL;
    CondImpl *x = impl(c);
    Guard<SpinLock> g(x->lk);
    return x->q.head ? -EBUSY : 0;
}

int np_cond_timedwait(np_cond *c, np_mutex *m, int64_t deadline) {
    if (!c || !m) return -EINVAL;
    CondImpl *x = impl(c);
    MutexImpl *mx = impl(m);
    uintptr_t me = self_id();
    {
        Guard<SpinLock> g(mx->lk);
        if (!mx->locked || mx->owner != me) return -EPERM;
    }
    note_wait(WaitKind::cond, c, 0, deadline > 0 && deadline != INT64_MAX ? deadline : 0);
    Waiter w;
    x->lk.lock();
    x->q.push(&w);
    x->lk.unlock();
    np_mutex_unlock(m);

    int r = 0;
    if (w.g) {
        CondTimeout ct{&w, x};
        Timer t;
        bool timed = deadline > 0 && deadline != INT64_MAX;
        if (timed) {
            t.fn = cond_timer_fire;
            t.arg = &ct;
            timer_add(&t, deadline);
        }
        w.wait();
        // The timer runs on this worker only, so it is not firing now.
        if (timed) timer_del(&t);
        if (w.state.load(std::memory_order_relaxed) == kTimedOut) r = -ETIMEDOUT;
    } else if (!w.wait(deadline > 0 ? deadline : -1)) {
        x->lk.lock();
        bool still = w.state.load(std::memory_order_relaxed) == kWaiting;
        if (still) {
            x->q.unlink(&w);
            w.state.store(kTimedOut, std::memory_order_relaxed);
        }
        x->lk.unlock();
        if (still) r = -ETIMEDOUT;
        else w.wait(); // signalled at the last moment: take that wake-up
    }
    np_mutex_lock(m);
    return r;
}

int np_cond_wait(np_cond *c, np_mutex *m) { return np_cond_timedwait(c, m, 0); }

int np_cond_signal(np_cond *c) {
    if (!c) return -EINVAL;
    CondImpl *x = impl(c);
    x->lk.lock();
    Waiter *w = x->q.pop();
    if (w) w->state.store(kSignalled, std::memory_order_relaxed);
    x->lk.unlock();
    if (w) w->wake();
    return 0;
}

int np_cond_broadcast(np_cond *c) {
    if (!c) return -EINVAL;
    CondImpl *x = impl(c);
    x->lk.lock();
    Waiter *all = x->q.head;
    for (Waiter *w = all; w; w = w->next) w->state.store(kSignalled, std::memory_order_relaxed);
    x->q.head = x->q.tail = nullptr;
    x->lk.unlock();
    while (all) {
        Waiter *nx = all->next; // all may be gone once woken
        all->wake();
        all = nx;
    }
    return 0;
}

} // extern "C"
