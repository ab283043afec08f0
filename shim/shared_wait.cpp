// A second waiter on one descriptor.  The engine's lock per direction is
// Go's: one operation waits on a descriptor's registration at a time, the
// others queue behind it.  A legacy program may block several threads on
// one file (an accept pool on one listener, readers of one pipe, polls of
// one socket), each with its own timeout, signals and cancellation, as
// the kernel keeps them.  So while one thread waits on the registration,
// each other one waits on an epoll set of its own over the same file:
// what interrupts or times out one leaves the others waiting.
// EPOLLEXCLUSIVE: a readiness wakes one of those sets, as a blocking
// accept or read wakes one thread, not all of them.
#include <atomic>
#include <cerrno>
#include <sys/epoll.h>

#include "fd_table.hpp"
#include "cpu_relax.hpp"
#include "real.hpp"
#include "shim.hpp"

namespace shim {
namespace {

struct Waiting {
    Thread *t;
    int fd;
    Waiting *prev, *next;
};

std::atomic_flag list_lock = ATOMIC_FLAG_INIT;
Waiting *head; // on the waiters' stacks, for as long as they wait

void take() {
    while (list_lock.test_and_set(std::memory_order_acquire)) cpu_relax();
}
void give() { list_lock.clear(std::memory_order_release); }

// fd is being closed: its private waiters wake, see it, and fail (EBADF).
void closing(int fd) {
    take();
    for (Waiting *w = head; w; w = w->next)
        if (w->fd == fd) interrupt(w->t);
    give();
}

// Before main (fd_table.cpp is also linked alone, by a fuzzer).
const bool hooked = (fd_closing = closing, true);

void enlist(Waiting *w) {
    take();
    w->prev = nullptr;
    w->next = head;
    if (head) head->prev = w;
    head = w;
    give();
}

void delist(Waiting *w) {
    take();
    if (w->prev) w->prev->next = w->next;
    else head = w->next;
    if (w->next) w->next->prev = w->prev;
    give();
}

ssize_t op_ready(int ep, void *) {
    struct epoll_event ev;
    int r = real.epoll_wait(ep, &ev, 1, 0);
    return r < 0 ? -errno : r == 0 ? -EAGAIN : r;
}

} // namespace

ssize_t park_private(Thread *t, int fd, np_fd *pd, int mode, int64_t deadline, npshim_op op, void *ctx,
                     bool *interrupted) {
    *interrupted = false;
    Fd *e = fd_entry(fd);
    if (!e) return -EBADF;
    // No set to be had (out of descriptors): in line behind the thread that
    // waits on the registration, which is all a timeout or a signal for
    // this one cannot reach until its turn comes.
    auto queue = [&] { return park_pd(t, pd, mode, deadline, 0, 0, op, ctx, interrupted); };
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return queue();
    struct epoll_event ev = {};
    ev.events = mode == NP_READ ? EPOLLIN : EPOLLOUT;
    ev.data.fd = fd;
    ev.events |= EPOLLEXCLUSIVE;
    int added = epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    if (added != 0 && errno == EINVAL) { // an epoll set is watched: not exclusively
        ev.events &= ~uint32_t(EPOLLEXCLUSIVE);
        added = epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    if (added != 0) {
        int err = errno;
        real.close(ep);
        return -err; // EBADF: closed meanwhile
    }
    fd_reset(ep);
    Fd *pe = fd_entry(ep);
    np_fd *epd = pe ? fd_registered(ep, pe) : nullptr;
    if (!epd) {
        real.close(ep);
        return queue();
    }
    Waiting w{t, fd, nullptr, nullptr};
    e->private_waits.fetch_add(1, std::memory_order_seq_cst);
    enlist(&w);
    // Read after joining the list: a close either finds this thread there,
    // or moved the count on before (park_pd sees it).
    uint32_t seen = e->closes.load(std::memory_order_seq_cst);
    ssize_t r;
    for (;;) {
        r = park_pd(t, epd, NP_READ, deadline, 0, 0, op_ready, nullptr, interrupted, &e->closes, seen);
        if (e->closes.load(std::memory_order_seq_cst) != seen) {
            *interrupted = false;
            r = -EBADF; // as a close during a parked call on the registration
            break;
        }
        if (r < 0) break; // -ETIMEDOUT: the deadline, or *interrupted
        r = op(fd, ctx);
        if (r != -EAGAIN) break; // else another thread took what was ready
    }
    delist(&w);
    e->private_waits.fetch_sub(1, std::memory_order_seq_cst);
    fd_forget(ep);
    real.close(ep);
    return r;
}

void private_waits_after_fork() {
    head = nullptr; // the waiters stayed in the parent
    list_lock.clear();
}

} // namespace shim
