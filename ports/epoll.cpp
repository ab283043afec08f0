// epoll: the default port on Linux.  Each descriptor is registered once, for
// both directions, edge-triggered; the kernel's user data is the descriptor
// pointer tagged with its fdseq.
#include <cerrno>
#include <sys/epoll.h>
#include <unistd.h>

#include "netpoll.h"
#include "poll_desc.hpp"
#include "port.hpp"
#include "wakeup.hpp"

namespace np {
namespace {

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
        if (epfd_ >= 0) ::close(epfd_);
    }
    const char *name() const override { return "epoll"; }
    int fd() const override { return epfd_; }

    int open(int fd, PollDesc *pd) override {
        struct epoll_event ev = {};
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.u64 = pd->tag();
        if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) return -errno;
        NP_TRACE("netpoll: fd=%d ev=%#x add", fd, ev.events);
        return 0;
    }

    int close(int fd, PollDesc *) override {
        struct epoll_event ev = {};
        if (epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev) < 0) return -errno;
        NP_TRACE("netpoll: fd=%d del", fd);
        return 0;
    }

    int poll(int64_t delay, Waiter **woken) override {
        struct epoll_event evs[128];
        int n;
        for (;;) {
            n = epoll_wait(epfd_, evs, 128, delay_to_ms(delay));
            if (n >= 0) break;
            // EINTR: with a timeout the caller recomputes it; else retry.
            if (errno != EINTR || delay > 0) return 0;
        }
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
                          (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR) ? kEvHangup : 0);
            pd_ready_event(tag, mode, ev, woken);
        }
        return n;
    }

    void wake() override { wakeup_.wake(); }

private:
    int epfd_ = -1;
    Wakeup wakeup_;
};

} // namespace

Port *port_epoll_create(int *err) {
    auto *p = new EpollPort();
    *err = p->init();
    if (*err) {
        delete p;
        return nullptr;
    }
    return p;
}

} // namespace np
