// Something that can wait and be woken: a parked green thread, or a plain OS
// thread sleeping on a futex.  Every blocking primitive (descriptors, join,
// mutex, cond, sleep) queues one of these, so each works from both kinds of
// caller.
#pragma once
#include <atomic>
#include <cstdint>

namespace np {

struct GThread;

struct Waiter {
    GThread *g = nullptr;                  // null: an OS thread on futex
    std::atomic<uint32_t> futex{0};        // OS thread: 1 once woken
    Waiter *next = nullptr;                // intrusive wait lists
    Waiter *prev = nullptr;
    std::atomic<int> state{0};             // owner-defined (e.g. signalled/timed out)
    int result = 0;
    uintptr_t tag = 0;                     // owner-defined (e.g. mutex owner id)
    bool intr = false;                     // OS thread: a handler run here ends wait()

    Waiter();                              // binds to the calling thread
    // Block the caller until wake().  The waiter must already be published
    // where a waker can find it.  deadline (absolute, OS threads only here):
    // returns false on timeout.
    bool wait(int64_t deadline = -1);
    void wake();
};

// An intrusive FIFO of waiters (through next/prev), under its owner's lock.
struct WaitList {
    Waiter *head = nullptr, *tail = nullptr;
    void push(Waiter *w) {
        w->next = nullptr;
        w->prev = tail;
        if (tail) tail->next = w;
        else head = w;
        tail = w;
    }
    void unlink(Waiter *w) {
        if (w->prev) w->prev->next = w->next;
        else head = w->next;
        if (w->next) w->next->prev = w->prev;
        else tail = w->prev;
        w->next = w->prev = nullptr;
    }
    Waiter *pop() {
        Waiter *w = head;
        if (w) unlink(w);
        return w;
    }
};

} // namespace np
