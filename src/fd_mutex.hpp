// internal/poll's fdMutex: readers serialise with readers, writers with
// writers, a read and a write run concurrently.  close marks it closed,
// wakes queued lockers (they fail with -EBADF) and waits until every
// reference (in-flight operation) has gone, so the fd number cannot be
// reused under an operation.
#pragma once
#include <atomic>
#include <cstdint>

#include "spinlock.hpp"
#include "waiter.hpp"

namespace np {

struct FdMutex {
    SpinLock lk;
    bool closed = false;
    int refs = 0;
    bool held[2] = {false, false};          // [0] read, [1] write
    Waiter *q[2] = {nullptr, nullptr};      // queued lockers (LIFO list, FIFO wake)
    Waiter *closer = nullptr;
    // Acquisitions and releases per direction, never reset: a caller that
    // read it before an attempt of its own knows from it whether another
    // operation ran (and took a readiness) between that attempt and its own
    // turn, also one that held the direction already and let it go since.
    std::atomic<uint32_t> taken[2] = {0, 0};

    void reset() {
        closed = false;
        refs = 0;
        held[0] = held[1] = false;
        q[0] = q[1] = nullptr;
        closer = nullptr;
    }
    int rwlock(int dir);                    // dir 0 read, 1 write; -EBADF if closed
    int rwtrylock(int dir);                 // -EBUSY at once if held
    void rwunlock(int dir);
    int incref();                           // for ops needing no serialisation
    void decref();
    int mark_closed();                      // -EBADF if already closed
    void wait_idle();                       // until the last reference left
};

} // namespace np
