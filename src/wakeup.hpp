// netpollBreak for the ports: an eventfd the blocking poll watches, and a
// flag so concurrent breaks cost one write (only a blocking poll drains it
// and clears the flag).
#pragma once
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <sys/eventfd.h>

#include "sys.hpp"

namespace np {

struct Wakeup {
    int fd = -1;
    std::atomic<uint32_t> pending{0};

    int init() {
        fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        return fd < 0 ? -errno : 0;
    }
    void close_fd() {
        if (fd >= 0) sys_close(fd);
        fd = -1;
    }
    void wake() {
        uint32_t z = 0;
        // Failing to swap means a wake-up is already in flight.
        if (!pending.compare_exchange_strong(z, 1, std::memory_order_acq_rel)) return;
        uint64_t one = 1;
        for (;;) {
            ssize_t n = sys_write(fd, &one, sizeof one);
            if (n >= 0 || errno == EAGAIN) return; // EAGAIN: counter full, still readable
            if (errno != EINTR) return;
        }
    }
    // After a blocking poll saw the fd readable.
    void drain() {
        uint64_t v;
        ssize_t n;
        do n = sys_read(fd, &v, sizeof v);
        while (n < 0 && errno == EINTR);
        pending.store(0, std::memory_order_release);
    }
};

} // namespace np
