// The poller as the scheduler sees it: one pass over the port that makes
// the woken threads runnable, the break, the waiter count; and the ABI for
// driving it from outside (np_poll, np_poll_fd, embedding).
#include <cerrno>

#include "config.h"

#include "clock.hpp"
#include "netpoll.h"
#include "port.hpp"
#include "runtime.hpp"

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

bool netpoll_has_waiters() {
    return rt->netpoll_waiters.load(std::memory_order_relaxed) > 0;
}

int netpoll(int64_t delay_ns) {
    Waiter *woken = nullptr;
    rt->port->poll(delay_ns, &woken);
    rt->polls.fetch_add(1, std::memory_order_relaxed);
    rt->last_poll.store(now_ns(), std::memory_order_relaxed);
    int n = 0;
    while (woken) {
        Waiter *nx = woken->next; // woken may be gone once it runs
        woken->wake();
        woken = nx;
        n++;
    }
    return n;
}

void netpoll_break() {
    if (rt && rt->port) rt->port->wake();
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
        int n = netpoll(delay_ns);
        int ran = run_embedded();
        return ran < 0 ? ran : n;
    }
    return netpoll(delay_ns);
}

int np_poll_fd(void) {
    if (int e = runtime_ensure()) return e;
    return rt->port->fd();
}

int64_t np_poll_timeout(void) {
    if (int e = runtime_ensure()) return e;
    return next_timer_delay();
}

int np_poll_break(void) {
    if (int e = runtime_ensure()) return e;
    rt->port->wake();
    return 0;
}

} // extern "C"
