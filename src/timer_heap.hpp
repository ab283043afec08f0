// Timers: a 4-ary min-heap per worker (as Go's), O(log n) add, delete and
// modify; the index lives in the timer so delete needs no search.
#pragma once
#include <atomic>
#include <cstdint>
#include <vector>

#include "alloc.hpp"
#include "spinlock.hpp"

namespace np {

struct Timer {
    int64_t when = 0;
    void (*fn)(void *arg, uintptr_t seq) = nullptr;
    void *arg = nullptr;
    uintptr_t seq = 0;
    int32_t idx = -1;                 // position in heap; -1 when not queued
    struct TimerHeap *heap = nullptr; // which heap holds it
};

struct TimerHeap {
    SpinLock lock;
    std::vector<Timer *, ArenaAllocator<Timer *>> h;
    std::atomic<int64_t> next_when{INT64_MAX}; // earliest when, readable unlocked

    // Under lock:
    void push(Timer *t);
    void remove(Timer *t);
    void fix(Timer *t); // after t->when changed
    Timer *top() const { return h.empty() ? nullptr : h[0]; }

private:
    void up(size_t i);
    void down(size_t i);
    void set(size_t i, Timer *t) {
        h[i] = t;
        t->idx = int32_t(i);
    }
    void publish() { next_when.store(h.empty() ? INT64_MAX : h[0]->when, std::memory_order_release); }
};

} // namespace np
