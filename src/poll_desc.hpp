// pollDesc: Go's per-descriptor readiness state machine (runtime/netpoll.go).
//
// rg / wg are per-direction binary semaphores:
//   kPdNil    no notification pending, nobody waiting
//   kPdReady  a readiness notification is pending (consumed by the waiter)
//   kPdWait   a waiter is about to park (committed below)
//   Waiter*   the parked waiter (green thread or OS thread)
// Only the single waiter of a direction (serialised by the fdMutex) moves
// nil->wait->waiter and back; the poller, deadline timers and close move
// {nil,wait,waiter}->{ready,nil} via unblock().
//
// info is a lock-free summary (closing, eventErr, expired deadlines, fdseq
// low bits) rebuilt under lock by publish() before anything is unblocked,
// so a waiter that re-checks it after committing sees why it was woken.
#pragma once
#include <atomic>
#include <cstdint>

#include "fd_mutex.hpp"
#include "spinlock.hpp"
#include "timer_heap.hpp"

namespace np {

class Port;

constexpr uintptr_t kPdNil = 0, kPdReady = 1, kPdWait = 2;

enum : uint32_t {
    kInfoClosing = 1u << 0,
    kInfoEventErr = 1u << 1,
    kInfoExpiredRead = 1u << 2,
    kInfoExpiredWrite = 1u << 3,
    kInfoSeqShift = 4,  // fdseq low bits above the flags
};

// Descriptors are tagged with fdseq in the kernel's user data: the low bits
// of the (64-byte aligned) pointer are free, and the high 16 bits of a
// user-space x86-64/aarch64 pointer are zero.
constexpr uintptr_t kTagBits = 16, kTagShift = 48;
constexpr uintptr_t kTagMask = (uintptr_t(1) << kTagBits) - 1;

struct PollDesc {
    PollDesc *link = nullptr;               // free list (under the cache lock)
    int fd = -1;
    bool pollable = false;                  // registered with the port
    bool user_nonblock = false;             // NP_OPEN_NONBLOCK: EAGAIN, never wait
    // The port saw a hang-up, an error or urgent data: from then on a short
    // read no longer shows that nothing is left to read (npshim_io's
    // NPSHIM_DRAINED).
    std::atomic<bool> hangup{false};
    // Read readiness events the poller took for it, never reset (a read
    // that came back short compares it: npshim_io_events).
    std::atomic<uint32_t> read_events{0};
    std::atomic<bool> is_free{true};        // on the free list (double-close check)
    uint8_t moves = 0;                      // registrations moved (poll_desc.cpp)
    SpinLock move_mu;                       // one move at a time
    std::atomic<uintptr_t> fdseq{0};        // bumped at free; 0 unused
    std::atomic<uint32_t> info{0};
    std::atomic<uintptr_t> rg{kPdNil};
    std::atomic<uintptr_t> wg{kPdNil};
    std::atomic<Port *> port{nullptr};     // registered with (if pollable)
    uint32_t poll_events = 0;               // poll(2) port: directions to watch
    int poll_index = -1;                    // poll(2) port: slot in its array

    SpinLock lock;                          // guards what follows
    bool closing = false;
    bool event_err = false;
    uintptr_t rseq = 0, wseq = 0;           // deadline timer generations
    int64_t rd = 0, wd = 0;                 // >0 deadline, 0 none, <0 expired
    Timer rt, wt;
    bool rt_armed = false, wt_armed = false;

    FdMutex fdmu;                           // internal/poll's fdMutex

    void publish();                         // under lock
    uintptr_t tag() const {
        return uintptr_t(this) | ((fdseq.load(std::memory_order_relaxed) & kTagMask) << kTagShift);
    }
};

static_assert(alignof(PollDesc) <= 64, "tag needs the pointer's low bits free");

// pollCache: descriptors come from 4 KiB blocks and are never freed, so a
// stale kernel event always points at a valid descriptor; fdseq tells it is
// stale.
PollDesc *pd_alloc();
void pd_free(PollDesc *pd);
PollDesc *pd_from_tag(uintptr_t tag, bool *stale);
// Ask for the descriptor of an event before its turn in a batch: with
// thousands of descriptors each is cold when its readiness comes.
inline void pd_prefetch(uintptr_t tag) {
    __builtin_prefetch(reinterpret_cast<const void *>(tag & ((uintptr_t(1) << kTagShift) - 1)));
}
inline int pd_trace_fd(uintptr_t tag) {
    return reinterpret_cast<PollDesc *>(tag & ((uintptr_t(1) << kTagShift) - 1))->fd;
}

// The state machine (poll_desc.cpp).
int pd_open(PollDesc *pd);                       // reset state for a new fd
int pd_check_err(PollDesc *pd, int mode);        // 0 or -EBADF/-ETIMEDOUT/-ENOTSUP
int pd_reset(PollDesc *pd, int mode);            // check errors, drop stale pdReady
int pd_wait(PollDesc *pd, int mode);             // park until ready or error
// keep_expired: not over a deadline already expired (an interrupter's,
// set between a caller's publishing its wait and its call's own deadline).
void pd_set_deadline(PollDesc *pd, int64_t d, int mode, bool keep_expired = false);
void pd_unblock(PollDesc *pd);                   // close: wake both with -EBADF
int pd_retire(PollDesc *pd);  // close but for close(2) (api_io.cpp); -EBADF if closing
// Poller: readiness for mode (NP_READ|NP_WRITE bits); collects the woken.
// ev: kEvErrOnly when the error bit came alone (Go's eventErr), kEvHangup
// when a hang-up, an error or urgent data was seen (a read may stop short
// of what is there, with no edge to follow).
constexpr unsigned kEvErrOnly = 1, kEvHangup = 2;
struct Waiter;
int pd_ready_event(uintptr_t tag, int mode, unsigned ev, Waiter **woken);

} // namespace np
