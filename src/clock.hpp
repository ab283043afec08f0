// CLOCK_MONOTONIC in nanoseconds: the one time base of the runtime.
#pragma once
#include <cstdint>
#include <time.h>

namespace np {

inline int64_t now_ns() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// The same clock to a tick (1-4 ms), at a fraction of the cost: how long a
// thread has waited, for np_dump, stamped at every park.
inline int64_t coarse_now_ns() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// a + b without overflowing past INT64_MAX (deadlines may be "never").
inline int64_t add_sat(int64_t a, int64_t b) {
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) return INT64_MAX;
    return r;
}

} // namespace np
