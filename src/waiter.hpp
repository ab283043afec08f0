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

    Waiter();                              // binds to the calling thread
    // Block the caller until wake().  The waiter must already be published
    // where a waker can find it.  deadline (absolute, OS threads only here):
    // returns false on timeout.
    bool wait(int64_t deadline = -1);
    void wake();
};

} // namespace np
