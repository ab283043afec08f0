// Waits on many descriptors or on time: poll, select, epoll_wait and the
// sleeps.  A wait first asks the kernel without blocking; if nothing is
// ready it parks on one registered descriptor: the fd itself, the
// program's epoll instance, or a short-lived epoll set over the fds.
#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>
#include <dlfcn.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include "fd_table.hpp"
#include "real.hpp"
#include "shim.hpp"

namespace shim {

int sleep_until(Thread *t, int64_t deadline) {
    npshim_safe_point();
    test_cancel(t);
    if (sig_pending(t)) sig_deliver(t);
    int r;
    do {
        r = futex_wait(&t->sleep_word, 0, deadline, true);
        // A handler ends a sleep, SA_RESTART or not; a process's signal
        // another thread took first does not.
        if (sig_pending(t)) {
            test_cancel(t);
            if (sig_deliver(t) != 0) return -EINTR;
        }
    } while (r == 0 && !t->cancel_pending.load() && (deadline == 0 || np_now() < deadline));
    test_cancel(t);
    return r;
}

namespace {

struct PollArgs {
    struct pollfd *fds;
    nfds_t n;
};

// A zero-timeout poll, call().  It fails with EINTR when a signal is
// pending for the worker: a poke sent to a thread that, by the time it
// lands, has nothing left to take (another took the process's signal).  No
// handler ran: it is no interruption, only nothing ready yet, with errno
// as it was.
template <class F> int nowait(Thread *t, F call) {
    int e = errno;
    uint32_t before = t ? t->handlers_run : 0;
    int r = call();
    if (r < 0 && errno == EINTR && t && t->handlers_run == before) {
        errno = e;
        return 0;
    }
    return r;
}

ssize_t op_poll(int, void *c) {
    auto *a = static_cast<PollArgs *>(c);
    int r = nowait(self(), [a] { return real.poll(a->fds, a->n, 0); });
    return r < 0 ? -errno : r == 0 ? -EAGAIN : r;
}

struct EpollArgs {
    struct epoll_event *evs;
    int max;
};

ssize_t op_epoll(int fd, void *c) {
    auto *a = static_cast<EpollArgs *>(c);
    int r = nowait(self(), [fd, a] { return real.epoll_wait(fd, a->evs, a->max, 0); });
    return r < 0 ? -errno : r == 0 ? -EAGAIN : r;
}

// Park on fd (registered as the program's) until op says something is ready.
ssize_t park_on(int fd, int mode, int64_t deadline, npshim_op op, void *ctx) {
    Fd *e = fd_entry(fd);
    np_fd *pd = e ? fd_registered(fd, e) : nullptr;
    if (!pd) return -ENOTSUP;
    Thread *t = self();
    for (;;) {
        bool interrupted;
        ssize_t r = fd_park(t, fd, pd, mode, deadline, op, ctx, &interrupted, nullptr); // poll first, under the lock
        // The deadline: one last look, as the kernel's poll takes when its
        // timeout runs out (a descriptor of the set closed meanwhile, which
        // left the epoll set, is POLLNVAL there, not nothing).
        if (!interrupted && r == -ETIMEDOUT) return std::max<ssize_t>(op(fd, ctx), 0);
        if (!interrupted || r != -ETIMEDOUT) return r;
        test_cancel(t);
        // poll, select and epoll_wait are never restarted after a handler;
        // woken for a process's signal another thread took, they wait on.
        if (sig_deliver(t) != 0) return -EINTR;
        if (deadline && np_now() >= deadline) return 0;
    }
}

uint32_t to_epoll(short ev) {
    uint32_t e = 0;
    if (ev & (POLLIN | POLLRDNORM | POLLRDBAND)) e |= EPOLLIN;
    if (ev & POLLPRI) e |= EPOLLPRI;
    if (ev & (POLLOUT | POLLWRNORM | POLLWRBAND)) e |= EPOLLOUT;
    if (ev & POLLRDHUP) e |= EPOLLRDHUP;
    return e;
}

// The general case: a short-lived epoll set over the fds, level-triggered.
ssize_t park_on_set(struct pollfd *fds, nfds_t n, int64_t deadline) {
    Errno keep;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return -errno;
    for (nfds_t i = 0; i < n; i++) {
        if (fds[i].fd < 0) continue;
        struct epoll_event ev = {};
        ev.events = to_epoll(fds[i].events);
        ev.data.fd = fds[i].fd;
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i].fd, &ev); // EEXIST (a repeat), EPERM (a file: ready anyway)
    }
    fd_reset(ep);
    PollArgs a{fds, n};
    ssize_t r = park_on(ep, NP_READ, deadline, op_poll, &a);
    fd_forget(ep);
    real.close(ep);
    return keep.pass(r);
}

int poll_green(struct pollfd *fds, nfds_t n, int64_t deadline, bool forever) {
    Thread *t = self();
    npshim_safe_point(); // a loop of polls that never wait must still give way
    test_cancel(t);
    int r = nowait(t, [fds, n] { return real.poll(fds, n, 0); });
    if (r != 0 || (!forever && deadline <= np_now())) return r;
    if (n == 0) {
        if (sleep_until(t, forever ? 0 : deadline) == -EINTR) return int(ret(-EINTR));
        return 0;
    }
    if (forever) deadline = 0;
    PollArgs a{fds, n};
    short ev = n == 1 ? fds[0].events : 0;
    bool in = ev & (POLLIN | POLLRDNORM), out = ev & (POLLOUT | POLLWRNORM);
    ssize_t w = -ENOTSUP;
    if (n == 1 && fds[0].fd >= 0 && in != out && !(ev & (POLLPRI | POLLRDBAND | POLLWRBAND))) {
        Fd *e = fd_entry(fds[0].fd);
        Kind k = e ? fd_kind(fds[0].fd, e) : kUnknown;
        if (k == kStream || k == kDgram || k == kPollable)
            w = park_on(fds[0].fd, in ? NP_READ : NP_WRITE, deadline, op_poll, &a);
        // Closed by another thread while parked on it: poll(2) never fails
        // with EBADF (Python's poll() raised it, a C loop took it for a
        // broken poll); the kernel reports a descriptor that is no longer
        // open as POLLNVAL, which is what its last look finds.
        if (w == -EBADF) {
            fds[0].revents = POLLNVAL;
            return 1;
        }
    }
    if (w == -ENOTSUP) w = park_on_set(fds, n, deadline);
    return int(ret(w));
}

int64_t ms_deadline(int ms) { return ms < 0 ? 0 : np_now() + int64_t(ms) * 1000000; }

bool bad_ts(const struct timespec *ts) { return ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000; }

// select as poll: its sets rebuilt from the revents.
int select_green(int nfds, fd_set *r, fd_set *w, fd_set *x, int64_t deadline, bool forever) {
    if (nfds < 0 || nfds > FD_SETSIZE) {
        errno = EINVAL;
        return -1;
    }
    struct pollfd fds[FD_SETSIZE];
    nfds_t n = 0;
    for (int fd = 0; fd < nfds; fd++) {
        short ev = 0;
        if (r && FD_ISSET(fd, r)) ev |= POLLIN;
        if (w && FD_ISSET(fd, w)) ev |= POLLOUT;
        if (x && FD_ISSET(fd, x)) ev |= POLLPRI;
        if (ev) fds[n++] = {fd, ev, 0};
    }
    int got = poll_green(fds, n, deadline, forever);
    if (got < 0) return -1;
    for (nfds_t i = 0; i < n; i++)
        if (fds[i].revents & POLLNVAL) {
            errno = EBADF;
            return -1;
        }
    if (r) FD_ZERO(r);
    if (w) FD_ZERO(w);
    if (x) FD_ZERO(x);
    int count = 0;
    for (nfds_t i = 0; i < n; i++) {
        short re = fds[i].revents;
        if ((fds[i].events & POLLIN) && (re & (POLLIN | POLLHUP | POLLERR))) FD_SET(fds[i].fd, r), count++;
        if ((fds[i].events & POLLOUT) && (re & (POLLOUT | POLLERR))) FD_SET(fds[i].fd, w), count++;
        if ((fds[i].events & POLLPRI) && (re & POLLPRI)) FD_SET(fds[i].fd, x), count++;
    }
    return count;
}

int epoll_green(int ep, struct epoll_event *evs, int max, int64_t deadline, bool forever) {
    Thread *t = self();
    npshim_safe_point();
    test_cancel(t);
    int r = nowait(t, [ep, evs, max] { return real.epoll_wait(ep, evs, max, 0); });
    if (r != 0 || (!forever && deadline <= np_now())) return r;
    EpollArgs a{evs, max};
    ssize_t w = park_on(ep, NP_READ, forever ? 0 : deadline, op_epoll, &a);
    if (w == -ENOTSUP) {
        int64_t left = forever ? -1 : (deadline - np_now()) / 1000000;
        if (left > INT_MAX) left = INT_MAX;
        return real.epoll_wait(ep, evs, max, forever ? -1 : left < 0 ? 0 : int(left));
    }
    return int(ret(w));
}

} // namespace

} // namespace shim

using namespace shim;

extern "C" {

int poll(struct pollfd *fds, nfds_t n, int ms) {
    if (!green()) return real.poll(fds, n, ms);
    return poll_green(fds, n, ms_deadline(ms), ms < 0);
}

int __poll_chk(struct pollfd *fds, nfds_t n, int ms, size_t len) {
    if (len / sizeof *fds < n) __chk_fail();
    return poll(fds, n, ms);
}

int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask, size_t len) {
    if (len / sizeof *fds < n) __chk_fail();
    return ppoll(fds, n, ts, mask);
}

int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask) {
    if (!green()) {
        return real.ppoll(fds, n, ts, mask);
    }
    if (ts && bad_ts(ts)) {
        errno = EINVAL;
        return -1;
    }
    WaitMask wm(self(), mask);
    return poll_green(fds, n, ts ? deadline_from_rel(ts) : 0, !ts);
}

int select(int nfds, fd_set *r, fd_set *w, fd_set *x, struct timeval *tv) {
    if (!green()) return real.select(nfds, r, w, x, tv);
    if (tv && (tv->tv_sec < 0 || tv->tv_usec < 0)) {
        errno = EINVAL;
        return -1;
    }
    int64_t d = 0;
    if (tv) {
        int64_t rel = ns_sat(int64_t(tv->tv_sec), int64_t(tv->tv_usec) * 1000), now = np_now();
        d = INT64_MAX - now < rel ? INT64_MAX : now + rel;
    }
    int res = select_green(nfds, r, w, x, d, !tv);
    if (tv) { // Linux reports the time left
        int64_t left = d - np_now();
        if (left < 0 || res > 0) left = left < 0 ? 0 : left;
        tv->tv_sec = left / 1000000000;
        tv->tv_usec = (left % 1000000000) / 1000;
    }
    return res;
}

int pselect(int nfds, fd_set *r, fd_set *w, fd_set *x, const struct timespec *ts, const sigset_t *mask) {
    if (!green()) {
        return real.pselect(nfds, r, w, x, ts, mask);
    }
    if (ts && bad_ts(ts)) {
        errno = EINVAL;
        return -1;
    }
    WaitMask wm(self(), mask);
    return select_green(nfds, r, w, x, ts ? deadline_from_rel(ts) : 0, !ts);
}

int epoll_wait(int ep, struct epoll_event *evs, int max, int ms) {
    if (!green()) return real.epoll_wait(ep, evs, max, ms);
    return epoll_green(ep, evs, max, ms_deadline(ms), ms < 0);
}

int epoll_pwait(int ep, struct epoll_event *evs, int max, int ms, const sigset_t *mask) {
    if (!green()) {
        return real.epoll_pwait(ep, evs, max, ms, mask);
    }
    WaitMask wm(self(), mask);
    return epoll_green(ep, evs, max, ms_deadline(ms), ms < 0);
}

int epoll_pwait2(int ep, struct epoll_event *evs, int max, const struct timespec *ts, const sigset_t *mask) {
    if (!green()) {
        return real.epoll_pwait2(ep, evs, max, ts, mask);
    }
    if (ts && bad_ts(ts)) {
        errno = EINVAL;
        return -1;
    }
    WaitMask wm(self(), mask);
    return epoll_green(ep, evs, max, ts ? deadline_from_rel(ts) : 0, !ts);
}

// ---- sleeps ---------------------------------------------------------------

int nanosleep(const struct timespec *req, struct timespec *rem) {
    if (!green()) return real.nanosleep(req, rem);
    if (!req || bad_ts(req)) {
        errno = EINVAL;
        return -1;
    }
    int64_t d = deadline_from_rel(req);
    if (sleep_until(self(), d) == -EINTR) {
        int64_t left = d - np_now();
        if (left < 0) left = 0;
        if (rem) *rem = {time_t(left / 1000000000), long(left % 1000000000)};
        errno = EINTR;
        return -1;
    }
    if (rem) *rem = {0, 0};
    return 0;
}

int __nanosleep(const struct timespec *req, struct timespec *rem) { return nanosleep(req, rem); }

int clock_nanosleep(clockid_t clock, int flags, const struct timespec *req, struct timespec *rem) {
    if (!green()) return real.clock_nanosleep(clock, flags, req, rem);
    if (!req || bad_ts(req)) return EINVAL;
    if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC && clock != CLOCK_BOOTTIME && clock != CLOCK_TAI)
        return real.clock_nanosleep(clock, flags, req, rem); // CPU clocks: the kernel's business
    int64_t d = (flags & TIMER_ABSTIME) ? deadline_from_abs(clock, req) : deadline_from_rel(req);
    bool intr = sleep_until(self(), d) == -EINTR;
    if (rem && !(flags & TIMER_ABSTIME)) {
        int64_t left = intr && d > np_now() ? d - np_now() : 0;
        *rem = {time_t(left / 1000000000), long(left % 1000000000)};
    }
    return intr ? EINTR : 0;
}

unsigned sleep(unsigned s) {
    struct timespec ts = {time_t(s), 0}, rem = {0, 0};
    if (nanosleep(&ts, &rem) == 0) return 0;
    // The whole seconds left, as glibc's sleep() counts them (2.7 s left is
    // 2, 0.7 s is 0): a loop of sleep(left) ends when glibc's would.
    return unsigned(rem.tv_sec);
}

int usleep(useconds_t us) {
    struct timespec ts = {time_t(us / 1000000), long(us % 1000000) * 1000};
    return nanosleep(&ts, nullptr);
}

} // extern "C"
