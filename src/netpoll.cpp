// The pollers as the scheduler sees them: each worker owns one port, sleeps
// in it when idle and polls it without blocking in between; a descriptor is
// registered with the port of the worker its waiters run on (poll_desc.cpp
// moves it there), so readiness reaches the right worker directly, with no
// hand-off.  Also the ABI for driving the pollers from outside (np_poll,
// np_poll_fd, embedding).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <sys/epoll.h>
#include <unistd.h>

#include "libc_real.hpp"
#include "config.h"

#include "clock.hpp"
#include "mutex.hpp"
#include "netpoll.h"
#include "port.hpp"
#include "runtime.hpp"
#include "sys.hpp"
#include "wakeup.hpp"

namespace np {

#if !HAVE_IO_URING
Port *port_io_uring_create(int *err) {
    *err = -ENOSYS; // built without liburing
    return nullptr;
}
#endif

int port_create(Port **out, PollerKind k) {
    int err = 0;
    Port *p = nullptr;
    switch (k) {
    case PollerKind::epoll: p = port_epoll_create(&err); break;
    case PollerKind::io_uring: p = port_io_uring_create(&err); break;
    case PollerKind::poll: p = port_poll_create(&err); break;
    }
    if (!p) return err ? err : -ENOSYS;
    *out = p;
    return 0;
}

static int create_all(Runtime *r, PollerKind k) {
    for (int i = 0; i < r->nworkers; i++)
        if (int e = port_create(&r->workers[i]->port, k)) return e;
    if (r->host) {
        if (int e = port_create(&r->host->port, k)) return e;
        r->host->port->sole_poller = true; // its loop polls with delay 0
    }
    return 0;
}

void ports_destroy(Runtime *r) {
    for (int i = 0; i < r->nworkers; i++) {
        delete r->workers[i]->port;
        r->workers[i]->port = nullptr;
    }
    if (r->host) {
        delete r->host->port;
        r->host->port = nullptr;
    }
}

int ports_create(Runtime *r, const Config &c) {
    int e = create_all(r, c.poller);
    if (e && c.poller_from_env && c.poller != PollerKind::epoll) {
        // The message says what happens: out of descriptors or memory,
        // epoll fails as well, and the runtime does not start.
        ports_destroy(r);
        r->cfg.poller = PollerKind::epoll;
        int e2 = create_all(r, PollerKind::epoll);
        if (e2) {
            say("netpoll: NP_POLLER=%s unavailable (%s), and epoll too (%s): not started\n",
                    poller_name(c.poller), strerror(-e), strerror(-e2));
            r->cfg.poller = c.poller;
        } else {
            say("netpoll: NP_POLLER=%s unavailable (%s); using epoll\n",
                    poller_name(c.poller), strerror(-e));
            e = 0;
        }
    }
    if (e) ports_destroy(r);
    return e;
}

void Port::bind_owner() { owner_.store(os_thread_self(), std::memory_order_relaxed); }
bool Port::owned_here() const { return owner_.load(std::memory_order_relaxed) == os_thread_self(); }

Port *open_port() {
    if (Worker *w = cur_worker()) return w->port;
    if (rt->host) return rt->host->port;
    uint32_t i = rt->open_rr.fetch_add(1, std::memory_order_relaxed);
    return rt->workers[i % uint32_t(rt->nworkers)]->port;
}

void netpoll_port(Port *p) {
    for (int i = 0; i < rt->nworkers; i++)
        if (rt->workers[i]->port == p) {
            netpoll(rt->workers[i], 0);
            return;
        }
    if (rt->host && rt->host->port == p) netpoll(rt->host, 0);
}

bool netpoll_has_waiters() {
    return rt->netpoll_waiters.load(std::memory_order_relaxed) > 0;
}

int netpoll(Worker *w, int64_t delay_ns) {
    Waiter *woken = nullptr;
    w->port->poll(delay_ns, &woken);
    rt->polls.fetch_add(1, std::memory_order_relaxed);
    w->last_poll.store(now_ns(), std::memory_order_relaxed);
    int n = 0;
    while (woken) {
        Waiter *nx = woken->next; // woken may be gone once it runs
        woken->wake();
        woken = nx;
        n++;
    }
    return n;
}

// With workers, a host that wants to watch netpoll (np_poll_fd) gets an
// epoll set over the workers' ports plus a break of its own.
static Mutex outer_mu;

void outer_after_fork() { new (&outer_mu) Mutex(); }

static int outer_fd() {
    int fd = rt->outer_fd.load(std::memory_order_acquire);
    if (fd >= 0) return fd;
    std::lock_guard<Mutex> lk(outer_mu);
    if ((fd = rt->outer_fd.load(std::memory_order_relaxed)) >= 0) return fd;
    auto *wk = make<Wakeup>();
    if (!wk) return -ENOMEM;
    int e = wk->init();
    fd = e ? -1 : epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0 && !e) e = -errno;
    struct epoll_event ev = {};
    ev.events = EPOLLIN;
    for (int i = -1; !e && i < rt->nworkers; i++) {
        int pfd = i < 0 ? wk->fd : rt->workers[i]->port->fd();
        ev.data.u32 = uint32_t(i + 1); // 0: the break
        if (epoll_ctl(fd, EPOLL_CTL_ADD, pfd, &ev) < 0) e = -errno;
    }
    if (e) {
        if (fd >= 0) sys_close(fd);
        wk->close_fd();
        destroy(wk);
        return e;
    }
    rt->outer_wake = wk;
    rt->outer_fd.store(fd, std::memory_order_release);
    return fd;
}

// np_poll with workers: wait on the outer set, then one non-blocking pass
// over every worker's port (they poll their own ports too: whoever gets an
// event first readies its thread).
static int poll_outside(int64_t delay_ns) {
    if (Worker *self = cur_worker()) return self->cur ? netpoll(self, 0) : 0;
    if (delay_ns != 0) {
        int fd = outer_fd();
        if (fd < 0) return fd;
        struct epoll_event evs[8];
        int n = sys_epoll_wait(fd, evs, 8, delay_to_ms(delay_ns));
        if (n < 0 && errno != EINTR) return -errno;
        for (int i = 0; i < n; i++)
            if (evs[i].data.u32 == 0) rt->outer_wake->drain();
    }
    int n = 0;
    for (int i = 0; i < rt->nworkers; i++) n += netpoll(rt->workers[i], 0);
    return n;
}

} // namespace np

using namespace np;

extern "C" {

int np_poll(int64_t delay_ns) {
    if (int e = runtime_ensure()) return e;
    if (current_g()) delay_ns = 0; // a green thread must not block its worker
    if (rt->host) {
        // Embedded: the host thread is the worker.  Never sleep past the
        // next timer, nor at all when threads are already runnable.
        int64_t t = next_timer_delay();
        if (t >= 0 && (delay_ns < 0 || t < delay_ns)) delay_ns = t;
        rt->host->port->bind_owner(); // whichever thread drives the loop
        int n = netpoll(rt->host, delay_ns);
        int ran = run_embedded();
        return ran < 0 ? ran : n;
    }
    return poll_outside(delay_ns);
}

int np_poll_fd(void) {
    if (int e = runtime_ensure()) return e;
    return rt->host ? rt->host->port->fd() : outer_fd();
}

int64_t np_poll_timeout(void) {
    if (int e = runtime_ensure()) return e;
    return next_timer_delay();
}

int np_poll_break(void) {
    if (int e = runtime_ensure()) return e;
    if (rt->host) {
        rt->host->port->wake();
        return 0;
    }
    int fd = outer_fd();
    if (fd < 0) return fd;
    rt->outer_wake->wake();
    return 0;
}

} // extern "C"
