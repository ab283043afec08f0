// The one internal interface every readiness mechanism implements (one file
// each under ports/): open/close a descriptor, poll with a delay, break a
// blocking poll.  Every worker has a port of its own.  Ports report
// readiness only through pd_ready_event(); all the cleverness lives in the
// descriptor state machine.
#pragma once
#include <atomic>
#include <cstdint>

#include "alloc.hpp"
#include "config.hpp"

namespace np {

struct PollDesc;
struct Waiter;

class Port {
public:
    virtual ~Port() = default;
    // From the engine's heap, as the rest of the runtime (alloc.hpp).
    static void *operator new(size_t n) {
        if (void *p = mem_alloc(n)) return p;
        throw std::bad_alloc();
    }
    static void operator delete(void *p) { mem_free(p); }
    virtual const char *name() const = 0;
    // Register fd for both directions, edge-triggered, tagged with pd's
    // fdseq.  -EPERM: the fd cannot be polled (regular file).
    virtual int open(int fd, PollDesc *pd) = 0;
    virtual int close(int fd, PollDesc *pd) = 0;
    // Wait at most delay_ns (<0 forever, 0 not at all); collect the woken
    // waiters into *woken; returns the number of events seen.
    virtual int poll(int64_t delay_ns, Waiter **woken) = 0;
    // netpollBreak: interrupt a blocking poll; deduplicated.
    virtual void wake() = 0;
    // Readable when poll has work (embedding in a host event loop).
    virtual int fd() const = 0;
    // A waiter is about to park on mode (level-triggered ports re-arm).
    virtual void arm(PollDesc *, int) {}
    // A registration may be closed here and opened on another port of the
    // same kind while the descriptor is in use: opening reports what is
    // ready already (edge-triggered ports), and arm() does nothing.
    virtual bool movable() const { return false; }
    // After close(): the kernel may still hold the file through this port
    // (io_uring: until another thread finishes the cancelled poll).
    virtual bool closing(PollDesc *) { return false; }

    // Only a blocking poll may drain the break (a non-blocking one would
    // steal the wake-up meant for it) -- unless there is one poller only:
    // the host thread in embedded mode, whose loop polls with delay 0.
    bool sole_poller = false;
    bool may_drain(int64_t delay) const { return delay != 0 || sole_poller; }

    // The thread that polls this port: its worker, or the embedding host
    // (netpoll.cpp).  Ports whose registrations depend on the thread that
    // made them (io_uring) leave that to it.
    void bind_owner();
    bool owned_here() const;

private:
    std::atomic<const void *> owner_{nullptr};
};

int port_create(Port **out, PollerKind k);

// A descriptor number registered with any port (fd_claim.cpp): every
// port's open() claims it first (-EEXIST: registered already, on this port
// or another) and gives it back when it fails; close() gives it back.
int fd_claim(int fd);
void fd_claims_forget();   // a forked child: none of them is its own
void fd_release(int fd);
Port *port_epoll_create(int *err);
Port *port_io_uring_create(int *err);
Port *port_poll_create(int *err);

// A seccomp filter is in place or coming (npshim_sandboxed): the ports keep
// to the waits every filter knows, not epoll_pwait2 (Linux 5.11), which a
// filter may trap (a SIGSYS the program's handler takes for an attack).
void ports_sandboxed();

// epoll's timeout rule, shared by the ports that take milliseconds:
// <0 forever, 0 none, under 1 ms rounds up to 1 ms, else truncated, capped.
inline int delay_to_ms(int64_t ns) {
    if (ns < 0) return -1;
    if (ns == 0) return 0;
    if (ns < 1000000) return 1;
    if (ns < 1000000000000ll) return int(ns / 1000000);
    return 1000000000; // ~11.5 days; the caller loops
}

} // namespace np
