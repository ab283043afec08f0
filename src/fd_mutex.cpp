#include "fd_mutex.hpp"

#include <cerrno>

#include "netpoll.h"
#include "runtime.hpp"

namespace np {

static void enqueue(Waiter **head, Waiter *w) {
    w->next = nullptr;
    while (*head) head = &(*head)->next;
    *head = w;
}

int FdMutex::rwlock(int dir) {
    lk.lock();
    if (closed) {
        lk.unlock();
        return -EBADF;
    }
    refs++;
    if (!held[dir]) {
        held[dir] = true;
        taken[dir].fetch_add(1, std::memory_order_relaxed);
        lk.unlock();
        return 0;
    }
    note_wait(WaitKind::fd_lock, this, dir ? NP_WRITE : NP_READ);
    Waiter w;
    w.result = 0;
    enqueue(&q[dir], &w);
    lk.unlock();
    w.wait();
    // Woken either with the lock handed over, or because of close.
    if (w.result) {
        decref();
        return w.result;
    }
    return 0;
}

int FdMutex::rwtrylock(int dir) {
    Guard<SpinLock> g(lk);
    if (closed) return -EBADF;
    if (held[dir]) return -EBUSY;
    held[dir] = true;
    taken[dir].fetch_add(1, std::memory_order_relaxed);
    refs++;
    return 0;
}

void FdMutex::rwunlock(int dir) {
    lk.lock();
    Waiter *n = q[dir];
    if (n) {
        q[dir] = n->next; // hand the lock over: held stays true
        taken[dir].fetch_add(1, std::memory_order_relaxed);
    } else {
        held[dir] = false;
        taken[dir].fetch_add(1, std::memory_order_relaxed);
    }
    Waiter *c = (--refs == 0 && closed) ? closer : nullptr;
    lk.unlock();
    if (n) n->wake();
    if (c) c->wake();
}

int FdMutex::incref() {
    Guard<SpinLock> g(lk);
    if (closed) return -EBADF;
    refs++;
    return 0;
}

void FdMutex::decref() {
    lk.lock();
    Waiter *c = (--refs == 0 && closed) ? closer : nullptr;
    lk.unlock();
    if (c) c->wake();
}

int FdMutex::mark_closed() {
    lk.lock();
    if (closed) {
        lk.unlock();
        return -EBADF;
    }
    closed = true;
    Waiter *woken[2] = {q[0], q[1]};
    q[0] = q[1] = nullptr;
    for (Waiter *w : woken)
        for (; w; w = w->next) w->result = -EBADF;
    lk.unlock();
    for (Waiter *w : woken)
        while (w) {
            Waiter *nx = w->next; // w may be gone once woken
            w->wake();
            w = nx;
        }
    return 0;
}

void FdMutex::wait_idle() {
    lk.lock();
    if (refs == 0) {
        lk.unlock();
        return;
    }
    note_wait(WaitKind::close, this);
    Waiter me;
    closer = &me;
    lk.unlock();
    me.wait();
}

} // namespace np
