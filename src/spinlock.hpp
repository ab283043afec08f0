// A test-and-test-and-set lock for short critical sections.  Spins briefly,
// then yields the CPU so a preempted holder can finish (2-core machines).
#pragma once
#include <atomic>
#include <cstdint>

#include "sys.hpp"

namespace np {

inline void cpu_relax() {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

class SpinLock {
public:
    void lock() {
        for (int spins = 0;; ) {
            if (!v_.exchange(1, std::memory_order_acquire)) return;
            while (v_.load(std::memory_order_relaxed)) {
                if (++spins < 100) cpu_relax();
                else sys_sched_yield();
            }
        }
    }
    bool try_lock() {
        return !v_.load(std::memory_order_relaxed) &&
               !v_.exchange(1, std::memory_order_acquire);
    }
    void unlock() { v_.store(0, std::memory_order_release); }
    // In a forked child, where the holder is gone: written only when held,
    // as a page the child writes is copied.
    void reset() {
        if (v_.load(std::memory_order_relaxed)) v_.store(0, std::memory_order_relaxed);
    }

private:
    std::atomic<uint32_t> v_{0};
};

template <class L> struct Guard {
    explicit Guard(L &l) : l_(l) { l_.lock(); }
    ~Guard() { l_.unlock(); }
    Guard(const Guard &) = delete;
    Guard &operator=(const Guard &) = delete;
    L &l_;
};

} // namespace np
