// epoll: the default port on Linux.  Each descriptor is registered once, for
// both directions, edge-triggered; the kernel's user data is the descriptor
// pointer tagged with its fdseq.
#include <atomic>
#include <cerrno>
#include <sys/epoll.h>
#include <unistd.h>

#include "config.h"
#include "netpoll.h"
#include "poll_desc.hpp"
#include "port.hpp"
#include "sys.hpp"
#include "wakeup.hpp"
#if HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

namespace np {
namespace {

// epoll_pwait2 refused (ENOSYS, EPERM), or not to be made (ports_sandboxed):
// every worker's idle wait takes milliseconds from then on.
std::atomic<bool> ns_wait_off{false};

class EpollPort final : public Port {
public:
    int init() {
        epfd_ = epoll_create1(EPOLL_CLOEXEC);
        if (epfd_ < 0) return -errno;
        if (int e = wakeup_.init()) return e;
        struct epoll_event ev = {};
        ev.events = EPOLLIN;
        ev.data.u64 = 0; // the break fd: tag 0 is never a descriptor
        if (epoll_ctl(epfd_, EPOLL_CTL_ADD, wakeup_.fd, &ev) < 0) return -errno;
        NP_TRACE("netpoll: epfd=%d init", epfd_);
        return 0;
    }
    ~EpollPort() override {
        wakeup_.close_fd();
        if (epfd_ >= 0) sys_close(epfd_);
    }
    const char *name() const override { return "epoll"; }
    int fd() const override { return epfd_; }

    int open(int fd, PollDesc *pd) override {
        struct epoll_event ev = {};
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;
        ev.data.u64 = pd->tag();
        if (int e = fd_claim(fd)) return e; // registered already, maybe on another worker's set
        if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
            int e = -errno;
            fd_release(fd);
            return e;
        }
        NP_TRACE("netpoll: fd=%d ev=%#x add", fd, ev.events);
        return 0;
    }

    int close(int fd, PollDesc *) override {
        struct epoll_event ev = {};
        int r = epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev);
        int e = r < 0 ? -errno : 0;
        fd_release(fd);
        if (e) return e;
        NP_TRACE("netpoll: fd=%d del", fd);
        return 0;
    }

    bool movable() const override { return true; }

    int poll(int64_t delay, Waiter **woken) override {
        // The owner polls from green stacks too (small ones): the big event
        // array is the port's, and a second concurrent poller (sysmon, a
        // host's np_poll) makes do with a small one on its stack.
        struct epoll_event small[8];
        bool mine = !evs_busy_.exchange(true, std::memory_order_acquire);
        struct epoll_event *evs = mine ? evs_ : small;
        int cap = mine ? kEvents : 8;
        int n = wait(evs, cap, delay);
        handle(evs, n, delay, woken);
        if (mine) evs_busy_.store(false, std::memory_order_release);
        return n;
    }

    void wake() override { wakeup_.wake(); }

private:
    static constexpr int kEvents = 128;

    int wait(struct epoll_event *evs, int cap, int64_t delay) {
        for (;;) {
            // A positive delay to the nanosecond where the kernel has
            // epoll_pwait2: epoll_pwait's milliseconds round a timer due in
            // 5 us up to 1 ms, so every short sleep or timed wait of a
            // green thread took 1 ms or more (the kernel's take ~55 us).
            int n;
            if (delay > 0 && !ns_wait_off.load(std::memory_order_relaxed)) {
                n = sys_epoll_wait_ns(epfd_, evs, cap, delay);
                if (n < 0 && (errno == ENOSYS || errno == EPERM)) { // an old kernel, valgrind, a filter
                    ns_wait_off.store(true, std::memory_order_relaxed);
                    continue;
                }
            } else {
                n = sys_epoll_wait(epfd_, evs, cap, delay_to_ms(delay));
            }
            if (n >= 0) return n;
            // EINTR: with a timeout the caller recomputes it; else retry.
            if (errno != EINTR || delay > 0) return 0;
        }
    }

    void handle(const struct epoll_event *evs, int n, int64_t delay, Waiter **woken) {
        for (int i = 0; i < n; i++)
            if (evs[i].data.u64) pd_prefetch(evs[i].data.u64);
        for (int i = 0; i < n; i++) {
            uint32_t e = evs[i].events;
            uint64_t tag = evs[i].data.u64;
            if (tag == 0) {
                if (may_drain(delay)) wakeup_.drain();
                continue;
            }
            int mode = 0;
            if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) mode |= NP_READ;
            if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) mode |= NP_WRITE;
            if (!mode) continue;
            NP_TRACE("netpoll: fd=%d ev=%#x ready", pd_trace_fd(tag), e);
            // Only EPOLLERR alone is an error event: with data or hang-up
            // present the read reports the precise state (Go #59545).
            unsigned ev = (e == EPOLLERR ? kEvErrOnly : 0) |
                          (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI) ? kEvHangup : 0);
            pd_ready_event(tag, mode, ev, woken);
        }
    }

    int epfd_ = -1;
    Wakeup wakeup_;
    std::atomic<bool> evs_busy_{false};
    struct epoll_event evs_[kEvents];
};

} // namespace

void ports_sandboxed() { ns_wait_off.store(true, std::memory_order_seq_cst); }

Port *port_epoll_create(int *err) {
#if HAVE_VALGRIND_H
    // Valgrind 3.19 does not know epoll_pwait2: it would say so, at length.
    if (RUNNING_ON_VALGRIND) ns_wait_off.store(true, std::memory_order_relaxed);
#endif
    auto *p = new EpollPort();
    *err = p->init();
    if (*err) {
        delete p;
        return nullptr;
    }
    return p;
}

} // namespace np
