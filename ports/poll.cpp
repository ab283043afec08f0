// poll(2): the portable fallback.  A growable pollfd array with a parallel
// array of tags (descriptor pointer and fdseq), under mu_; slot 0 is the
// break eventfd.  poll(2) is level triggered, so edges are emulated: a
// direction reported ready is dropped from the descriptor's events (an
// unread socket must not spin the poller) until a waiter parks on it again
// (arm()).  pd->poll_events holds the watched directions, pd->poll_index
// the slot; both under mu_.  Once closed, poll_events remembers the poll
// call that was under way (kClosing | its number): that call holds the file
// until it returns (closing()).
//
// The poller polls a private copy of the array so mu_ is free while it
// blocks; whatever changes what a blocked poller should watch (open, close,
// arm) breaks it so it copies again.
//
// poll(2) has no descriptor a host loop could wait on (np_poll_fd): the
// first fd() call makes one, an epoll set that mirrors the array -- each
// watched descriptor level-triggered for the directions it is watched for,
// and the break -- so it is readable exactly when a poll would report
// something.  From then on, every change to the array changes the set too
// (under mu_); without fd() calls there is no set and no cost.
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.hpp"
#include "mutex.hpp"
#include "netpoll.h"
#include "poll_desc.hpp"
#include "port.hpp"
#include "sys.hpp"
#include "wakeup.hpp"

namespace np {
namespace {

constexpr uint32_t kDirs = NP_READ | NP_WRITE;
constexpr uint32_t kClosing = 1u << 31, kCallMask = kClosing - 1;

short poll_mask(uint32_t dirs) {
    short m = 0;
    if (dirs & NP_READ) m |= POLLIN | POLLRDHUP;
    if (dirs & NP_WRITE) m |= POLLOUT;
    return m;
}

int mode_of(short re) {
    if (re & POLLNVAL) return 0; // closed meanwhile: its tag is stale anyway
    int mode = 0;
    if (re & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) mode |= NP_READ;
    if (re & (POLLOUT | POLLHUP | POLLERR)) mode |= NP_WRITE;
    return mode;
}

PollDesc *desc_of(uintptr_t tag) {
    bool stale;
    return pd_from_tag(tag, &stale);
}

// Parallel arrays that grow by doubling; used entries are kept.
struct Table {
    struct pollfd *fds = nullptr;
    uintptr_t *tags = nullptr;
    size_t cap = 0;

    bool reserve(size_t n, size_t used) {
        if (n <= cap) return true;
        size_t c = cap ? cap : 64;
        while (c < n) c *= 2;
        auto *f = static_cast<struct pollfd *>(mem_alloc(c * sizeof *fds));
        auto *t = static_cast<uintptr_t *>(mem_alloc(c * sizeof *tags));
        if (!f || !t) {
            mem_free(f);
            mem_free(t);
            return false;
        }
        if (used) {
            memcpy(f, fds, used * sizeof *fds);
            memcpy(t, tags, used * sizeof *tags);
        }
        release();
        fds = f;
        tags = t;
        cap = c;
        return true;
    }
    void release() {
        mem_free(fds);
        mem_free(tags);
    }
};

class PollPort final : public Port {
public:
    int init() {
        if (int e = wakeup_.init()) return e;
#ifdef NP_FAULTS
        fault_level_triggered(); // a spurious EAGAIN is seen again (src/fault.hpp)
#endif
        // The snapshot too, now: a worker's first poll may come late, in
        // the steady state, where nothing may allocate.
        if (!live_.reserve(1, 0) || !snap_.reserve(live_.cap, 0)) return -ENOMEM;
        live_.fds[0] = {wakeup_.fd, POLLIN, 0};
        live_.tags[0] = 0; // the break fd: tag 0 is never a descriptor
        n_ = 1;
        NP_TRACE("netpoll: pollfd=%d init", wakeup_.fd);
        return 0;
    }
    ~PollPort() override {
        live_.release();
        snap_.release();
        wakeup_.close_fd();
        if (mirror_ >= 0) sys_close(mirror_);
    }
    const char *name() const override { return "poll"; }
    // The mirror set (see the top), made on the first call.
    int fd() const override { return const_cast<PollPort *>(this)->mirror_fd(); }

    int open(int fd, PollDesc *pd) override {
        // poll(2) reports regular files and directories always ready.
        struct stat st;
        if (fstat(fd, &st) < 0) return -errno;
        if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) return -EPERM;
        if (int e = fd_claim(fd)) return e; // registered already (here or on another port)
        bool kick;
        {
            std::lock_guard<Mutex> lk(mu_);
            int e = live_.reserve(n_ + 1, n_) ? mirror_ctl(EPOLL_CTL_ADD, fd, kDirs) : -ENOMEM;
            if (e) {
                fd_release(fd);
                return e;
            }
            live_.fds[n_] = {fd, poll_mask(kDirs), 0};
            live_.tags[n_] = pd->tag();
            pd->poll_events = kDirs;
            pd->poll_index = int(n_++);
            kick = blocked_; // a blocked poller does not watch it yet
        }
        NP_TRACE("netpoll: fd=%d ev=%#x add", fd, unsigned(poll_mask(kDirs)));
        if (kick) wake();
        return 0;
    }

    int close(int fd, PollDesc *pd) override {
        bool kick;
        {
            std::lock_guard<Mutex> lk(mu_);
            int i = pd->poll_index;
            if (i < 0) return -ENOENT;
            int rfd = live_.fds[i].fd;
            if (rfd >= 0) mirror_ctl(EPOLL_CTL_DEL, rfd, 0);
            fd_release(rfd < 0 ? ~rfd : rfd);
            size_t last = n_ - 1;
            if (size_t(i) != last) { // swap-remove
                live_.fds[i] = live_.fds[last];
                live_.tags[i] = live_.tags[last];
                desc_of(live_.tags[i])->poll_index = i;
            }
            n_--;
            pd->poll_index = -1;
            // poll(2) holds a reference to every file it watches until it
            // returns: the call under way keeps this one open till then.
            pd->poll_events = in_call_ ? kClosing | (calls_ & kCallMask) : 0;
            kick = blocked_; // it must not poll the fd once the owner closes it
        }
        NP_TRACE("netpoll: fd=%d del", fd);
        if (kick) wake();
        return 0;
    }

    bool closing(PollDesc *pd) override {
        std::lock_guard<Mutex> lk(mu_);
        uint32_t v = pd->poll_events;
        return (v & kClosing) && in_call_ && (calls_ & kCallMask) == (v & kCallMask);
    }

    void arm(PollDesc *pd, int mode) override {
        uint32_t m = uint32_t(mode) & kDirs;
        bool kick;
        {
            std::lock_guard<Mutex> lk(mu_);
            int i = pd->poll_index;
            if (i < 0 || (pd->poll_events & m) == m) return;
            pd->poll_events |= m;
            watch(size_t(i), pd->poll_events);
            kick = blocked_;
        }
        if (kick) wake();
    }

    int poll(int64_t delay, Waiter **woken) override {
        std::unique_lock<Mutex> lk(reap_mu_, std::try_to_lock);
        if (!lk.owns_lock()) {
            // Someone else polls.  Wait for its pass (at most delay), then
            // take what is left without blocking: a second blocked poller
            // could sleep through the break the first one consumed.
            if (delay == 0) return 0;
            if (delay < 0) lk.lock();
            else if (!lk.try_lock_for(std::chrono::nanoseconds(delay))) return 0;
            delay = 0;
        }
        size_t cnt;
        int n;
        for (;;) {
            {
                std::lock_guard<Mutex> g(mu_);
                cnt = n_;
                if (!snap_.reserve(cnt, 0)) return 0;
                memcpy(snap_.fds, live_.fds, cnt * sizeof *snap_.fds);
                memcpy(snap_.tags, live_.tags, cnt * sizeof *snap_.tags);
                blocked_ = delay != 0;
                in_call_ = true;
            }
            n = sys_poll(snap_.fds, nfds_t(cnt), delay);
            int err = errno;
            {
                std::lock_guard<Mutex> g(mu_);
                in_call_ = false;
                calls_++;
            }
            if (n >= 0) break;
            // EINTR: with a timeout the caller recomputes it; else retry
            // (copying again: the array may have changed meanwhile).
            if (err != EINTR || delay > 0) {
                std::lock_guard<Mutex> g(mu_);
                blocked_ = false;
                return 0;
            }
        }
        // Drop the reported directions before reporting them: an arm()
        // in between then either re-enables them or is woken by the report.
        {
            std::lock_guard<Mutex> g(mu_);
            blocked_ = false;
            for (size_t i = 1; i < cnt; i++) {
                int mode = mode_of(snap_.fds[i].revents);
                if (!mode) continue;
                PollDesc *pd = desc_of(snap_.tags[i]);
                int j = pd->poll_index;
                // Closed or moved on meanwhile: nothing to drop.
                if (j < 0 || live_.tags[j] != snap_.tags[i]) continue;
                pd->poll_events &= ~uint32_t(mode);
                watch(size_t(j), pd->poll_events);
            }
        }
        if (n > 0 && (snap_.fds[0].revents & POLLIN) && may_drain(delay)) wakeup_.drain();
        for (size_t i = 1; i < cnt; i++) {
            short re = snap_.fds[i].revents;
            int mode = mode_of(re);
            if (!mode) continue;
            NP_TRACE("netpoll: fd=%d ev=%#x ready", pd_trace_fd(snap_.tags[i]), unsigned(re));
            // Only POLLERR alone is an error event (see the epoll port).  No
            // POLLPRI asked: level-triggered, it would come back at every
            // poll while urgent data waits, and a read that stops short at
            // the urgent mark sees POLLIN again anyway.
            unsigned ev = (re == POLLERR ? kEvErrOnly : 0) | (re & (POLLRDHUP | POLLHUP | POLLERR) ? kEvHangup : 0);
            pd_ready_event(snap_.tags[i], mode, ev, woken);
        }
        return n;
    }

    void wake() override { wakeup_.wake(); }

private:
    // Under mu_: slot i watches dirs; none at all is a negative fd, which
    // poll(2) skips (it would still report POLLHUP/POLLERR with no events).
    void watch(size_t i, uint32_t dirs) {
        struct pollfd &p = live_.fds[i];
        int fd = p.fd < 0 ? ~p.fd : p.fd;
        if (mirror_ >= 0 && (p.fd >= 0 || dirs) && (p.fd < 0 || p.events != poll_mask(dirs)))
            mirror_ctl(p.fd < 0 ? EPOLL_CTL_ADD : dirs ? EPOLL_CTL_MOD : EPOLL_CTL_DEL, fd, dirs);
        p.fd = dirs ? fd : ~fd;
        p.events = poll_mask(dirs);
    }

    // Under mu_: the mirror set follows a change of the array (once made).
    // A descriptor watched for nothing is not in it (epoll, like poll(2),
    // would report hang-ups and errors whatever it is asked for).
    int mirror_ctl(int op, int fd, uint32_t dirs) {
        if (mirror_ < 0) return 0;
        return mirror_add(mirror_, op, fd, dirs);
    }
    static int mirror_add(int ep, int op, int fd, uint32_t dirs) {
        struct epoll_event ev = {};
        if (dirs & NP_READ) ev.events |= EPOLLIN | EPOLLRDHUP;
        if (dirs & NP_WRITE) ev.events |= EPOLLOUT;
        ev.data.fd = fd;
        return epoll_ctl(ep, op, fd, &ev) < 0 ? -errno : 0;
    }
    int mirror_fd() {
        std::lock_guard<Mutex> lk(mu_);
        if (mirror_ >= 0) return mirror_;
        int ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0) return -errno;
        int e = mirror_add(ep, EPOLL_CTL_ADD, wakeup_.fd, NP_READ); // slot 0: the break
        for (size_t i = 1; i < n_ && !e; i++) {
            const struct pollfd &p = live_.fds[i];
            if (p.fd < 0) continue;
            uint32_t dirs = (p.events & POLLIN ? NP_READ : 0) | (p.events & POLLOUT ? NP_WRITE : 0);
            e = mirror_add(ep, EPOLL_CTL_ADD, p.fd, dirs);
            if (e == -EPERM) e = 0; // a file epoll cannot watch (as np_open on epoll would say)
        }
        if (e) {
            sys_close(ep);
            return e;
        }
        mirror_ = ep;
        return ep;
    }

    Wakeup wakeup_;
    Mutex mu_;                 // live_, n_, blocked_, in_call_, calls_, pd->poll_*
    Table live_;
    size_t n_ = 0;
    bool blocked_ = false;     // a poller blocks on a copy of live_
    bool in_call_ = false;     // poll(2) is under way (blocking or not)
    uint32_t calls_ = 0;       // poll(2) calls returned
    Mutex reap_mu_;            // one poller at a time; owns snap_
    Table snap_;
    int mirror_ = -1;          // the epoll set fd() returns, once asked for (under mu_)
};

} // namespace

Port *port_poll_create(int *err) {
    auto *p = new PollPort();
    *err = p->init();
    if (*err) {
        delete p;
        return nullptr;
    }
    return p;
}

} // namespace np
