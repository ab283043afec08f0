// Raw futex wait/wake on a 32-bit word: how plain OS threads and idle
// workers sleep without a mutex/condvar pair.
#pragma once
#include <atomic>
#include <cstdint>
#include <climits>
#include <linux/futex.h>
#include <time.h>

#include "sys.hpp"

namespace np {

// Sleep while *w == expect, at most until the absolute monotonic deadline
// (INT64_MAX or <0: no deadline).  Returns early on any wake or signal:
// true if a signal's handler ended it (EINTR).
inline bool futex_wait(std::atomic<uint32_t> *w, uint32_t expect, int64_t deadline = -1) {
    struct timespec ts, *tp = nullptr;
    if (deadline >= 0 && deadline != INT64_MAX) {
        ts.tv_sec = deadline / 1000000000;
        ts.tv_nsec = deadline % 1000000000;
        tp = &ts;
    }
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time.
    return sys_futex(reinterpret_cast<uint32_t *>(w), FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expect, tp,
                     nullptr, FUTEX_BITSET_MATCH_ANY) < 0 &&
           errno == EINTR;
}

inline void futex_wake(std::atomic<uint32_t> *w, int n = INT_MAX) {
    sys_futex(reinterpret_cast<uint32_t *>(w), FUTEX_WAKE | FUTEX_PRIVATE_FLAG, uint32_t(n), nullptr,
              nullptr, 0);
}

} // namespace np
