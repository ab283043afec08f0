// The engine's sleeping lock, for sections that may block (a poll under way)
// or wait long: a futex word, never the program's pthread_mutex_* (a preload
// shim interposes those).  Drepper's three states (Futexes Are Tricky):
// 0 free, 1 held, 2 held with sleepers.  Fits std::lock_guard and
// std::unique_lock, timed waits included.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

#include "clock.hpp"
#include "futex.hpp"

namespace np {

class Mutex {
public:
    void lock() { try_lock_until(-1); }
    bool try_lock() {
        uint32_t c = 0;
        return v_.compare_exchange_strong(c, 1, std::memory_order_acquire);
    }
    // deadline: absolute monotonic ns, <0 for none.
    bool try_lock_until(int64_t deadline) {
        uint32_t c = 0;
        if (v_.compare_exchange_strong(c, 1, std::memory_order_acquire)) return true;
        // Held: mark it contended, so the holder's unlock wakes a sleeper.
        while (v_.exchange(2, std::memory_order_acquire) != 0) {
            if (deadline >= 0 && now_ns() >= deadline) return false;
            futex_wait(&v_, 2, deadline);
        }
        return true;
    }
    template <class Rep, class Period> bool try_lock_for(const std::chrono::duration<Rep, Period> &d) {
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
        return try_lock_until(add_sat(now_ns(), ns < 0 ? 0 : int64_t(ns)));
    }
    // In a forked child, where the holder is gone: written only when held,
    // as a page the child writes is copied.
    void reset() {
        if (v_.load(std::memory_order_relaxed)) v_.store(0, std::memory_order_relaxed);
    }
    void unlock() {
        if (v_.exchange(0, std::memory_order_release) == 2) futex_wake(&v_, 1);
    }

private:
    std::atomic<uint32_t> v_{0};
};

// std::call_once without pthread_once.
class Once {
public:
    template <class F> void call(F f) {
        if (done_.load(std::memory_order_acquire)) return;
        std::lock_guard<Mutex> lk(mu_);
        if (done_.load(std::memory_order_relaxed)) return;
        f();
        done_.store(true, std::memory_order_release);
    }

private:
    std::atomic<bool> done_{false};
    Mutex mu_;
};

} // namespace np
