// io_uring: readiness through IORING_OP_POLL_ADD.  A multishot poll posts a
// completion per wake-up of the file, which is edge triggering; the user
// data is the descriptor pointer tagged with its fdseq.  Kernels that refuse
// multishot (before 5.13) get one-shot polls armed per direction when a
// waiter parks (arm()): re-arming one-shot polls on completion would be
// level triggering, and an idle writable socket would complete forever.
//
// Per-descriptor state, under sq_mu_: poll_index holds the fd registered
// with the ring (-1 once closed), poll_events the one-shot directions in
// flight (fallback) or kMultiArmed.
//
// With cooperative task running (see init()) a poll's wake-up is finished
// by the thread that armed it, at its next kernel entry: a poll armed by
// a thread that then computes for long would hold its events back.  So
// only the port's owner (the worker that polls it) arms multishot polls;
// others hand the descriptor over and wake the owner.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include "alloc.hpp"
#include "mutex.hpp"
#include "netpoll.h"
#include "poll_desc.hpp"
#include "port.hpp"
#include "sys.hpp"
#include "wakeup.hpp"

namespace np {
namespace {

// User data that is never a tag (a tag is a descriptor pointer; one-shot
// polls add the direction, NP_READ|NP_WRITE, in its free low bits).
// kIgnoreData marks requests whose completions mean nothing: cancellations
// and the multishot probe.
constexpr uint64_t kBreakData = 0, kIgnoreData = 1;
static_assert(alignof(PollDesc) >= 4, "one-shot polls use the tag's low bits");
constexpr uint64_t kDirMask = NP_READ | NP_WRITE;
constexpr unsigned kSqEntries = 256, kCqMin = 4096, kCqMax = 65536;
// poll_events: besides the one-shot directions (NP_READ|NP_WRITE),
constexpr uint32_t kMultiArmed = 4;   // a multishot poll is in flight
constexpr uint32_t kArmedForeign = 8; // ...armed by a thread not the owner
constexpr unsigned kCancelShift = 8;  // polls cancelled by close, not yet ended
constexpr unsigned kHandoffCap = 1024; // arms waiting for the owner; beyond: arm here
constexpr unsigned kRearmCap = 256;    // polls to re-arm held without allocating (grows)
constexpr int kReapRounds = 64;        // rings emptied per pass while completions overflow
constexpr int64_t kRetryNs = 1000000;  // a refused submission is tried again this soon

// The completion queue must hold a completion per registered descriptor:
// a multishot poll completes as soon as it is armed when its file is ready
// (an idle socket is writable), so arming many at once fills it.  Sized
// when the port is made from the descriptors the process may open then
// (the soft RLIMIT_NOFILE, a quarter more for other events), 16 bytes a
// slot: 4096 (the minimum) for a limit of 1024, 32768 for 20000, at most
// 65536.  Past it, completions wait in the kernel's overflow list and
// reap() moves them in as it makes room.
unsigned cq_entries() {
    struct rlimit rl;
    unsigned long want = kCqMin;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        want = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > kCqMax ? kCqMax : rl.rlim_cur + rl.rlim_cur / 4;
    unsigned c = kCqMin;
    while (c < want && c < kCqMax) c *= 2;
    return c;
}

unsigned poll_mask(int dirs) {
    unsigned m = 0;
    if (dirs & NP_READ) m |= POLLIN | POLLRDHUP | POLLPRI;
    if (dirs & NP_WRITE) m |= POLLOUT;
    return m;
}

class UringPort final : public Port {
public:
    int init() {
        // COOP_TASKRUN: a poll's wake-up is finished by the arming thread
        // at its next kernel entry, not by an interrupt (half the cost of an
        // event).  The ring's owner arms nearly every poll (registrations
        // follow their waiters) and enters the kernel for all its I/O; a
        // sleeping arming thread is still woken.  TASKRUN_FLAG makes a
        // non-blocking peek enter the kernel when such work is pending.
        struct io_uring_params p = {};
        unsigned flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_COOP_TASKRUN |
                         IORING_SETUP_TASKRUN_FLAG;
        unsigned cq = cq_entries();
        auto setup = [&] {
            p = {};
            p.flags = flags;
            p.cq_entries = cq;
            return io_uring_queue_init_params(kSqEntries, &ring_, &p);
        };
        int e0 = setup();
        if (e0 == -EINVAL) { // before 5.19
            flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
            e0 = setup();
        }
        if (e0 == -ENOMEM && cq > kCqMin) { // before 5.12 the rings count against RLIMIT_MEMLOCK
            cq = kCqMin;
            e0 = setup();
        }
        if (e0) return e0;
        int fd = sys_above_stdio(ring_.ring_fd); // a dup is the same ring
        if (ring_.enter_ring_fd == ring_.ring_fd) ring_.enter_ring_fd = fd;
        ring_.ring_fd = fd;
        ring_ok_ = true;
        coop_ = p.flags & IORING_SETUP_COOP_TASKRUN;
        if (coop_ && !(handoff_ = static_cast<PollDesc **>(mem_alloc(kHandoffCap * sizeof(PollDesc *)))))
            return -ENOMEM;
        if (!(rearm_ = static_cast<uint64_t *>(mem_alloc(kRearmCap * sizeof *rearm_)))) return -ENOMEM;
        rearm_cap_ = kRearmCap;
        // Without EXT_ARG a timed wait submits a timeout SQE, racing the
        // producers that hold sq_mu_ (kernels before 5.11).
        if (!(p.features & IORING_FEAT_EXT_ARG)) return -ENOSYS;
        probe_fd_ = epoll_create1(EPOLL_CLOEXEC);
        if (probe_fd_ < 0) return -errno;
        if (int e = wakeup_.init()) return e;
        // A refused multishot poll completes with -EINVAL during submission;
        // an accepted one (on the idle eventfd) is cancelled again.
        if (int e = submit_poll(wakeup_.fd, kIgnoreData, POLLIN)) return e;
        struct io_uring_cqe *cqe;
        if (io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe->res == -EINVAL) {
            io_uring_cqe_seen(&ring_, cqe);
            multishot_ = false;
            NP_TRACE("netpoll: multishot poll refused: one-shot polls");
        } else if (int e = prep_cancel(kIgnoreData); e || (e = submit())) {
            return e;
        }
        if (int e = arm_break()) return e;
        NP_TRACE("netpoll: ringfd=%d init", ring_.ring_fd);
        return 0;
    }
    ~UringPort() override {
        if (ring_ok_) io_uring_queue_exit(&ring_);
        mem_free(handoff_);
        mem_free(rearm_);
        mem_free(pending_);
        wakeup_.close_fd();
        if (probe_fd_ >= 0) sys_close(probe_fd_);
    }
    const char *name() const override { return "io_uring"; }
    // Readable while completions are pending.
    int fd() const override { return ring_.ring_fd; }

    int open(int fd, PollDesc *pd) override {
        if (int e = check_pollable(fd)) return e;
        if (int e = fd_claim(fd)) return e; // registered already (here or on another port)
        std::lock_guard<Mutex> lk(sq_mu_);
        pd->poll_index = fd;
        pd->poll_events = 0;
        if (multishot_ && !hand_over(pd)) {
            if (int e = arm_multishot(pd)) {
                pd->poll_index = -1;
                fd_release(fd);
                return e;
            }
        }
        NP_TRACE("netpoll: fd=%d ev=%#x add", fd, poll_mask(kDirMask));
        return 0;
    }

    // The ring holds a reference to the file until the poll is gone, and a
    // cancelled poll is finished (the reference dropped) by the thread that
    // armed it, on its way back from the kernel.  When that is the caller,
    // the file is released before this returns; otherwise closing() stays
    // true until the poll's end is reaped.
    int close(int fd, PollDesc *pd) override {
        std::lock_guard<Mutex> lk(sq_mu_);
        if (pd->poll_index < 0) return -ENOENT;
        fd_release(pd->poll_index);
        pd->poll_index = -1;
        uint64_t tag = pd->tag();
        int e = 0;
        uint32_t cancelled = 0; // a handed-over, not yet armed poll has nothing to cancel
        if (multishot_) {
            if (pd->poll_events & kMultiArmed) {
                cancelled = kMultiArmed;
                e = cancel(tag);
            }
        } else {
            for (int d : {NP_READ, NP_WRITE})
                if ((pd->poll_events & d) && !e) {
                    cancelled |= uint32_t(d);
                    e = cancel(tag | d);
                }
        }
        bool here = multishot_ && !(pd->poll_events & kArmedForeign) && owned_here();
        pd->poll_events = cancelled && !here ? cancelled << kCancelShift : 0;
        if (!e && cancelled) e = submit();
        if (e) pd->poll_events = 0; // nothing to wait for
        NP_TRACE("netpoll: fd=%d del", fd);
        return e;
    }

    bool closing(PollDesc *pd) override {
        std::lock_guard<Mutex> lk(sq_mu_);
        return (pd->poll_events >> kCancelShift) != 0;
    }

    // Fallback only: a one-shot poll per direction a waiter parks on.
    void arm(PollDesc *pd, int mode) override {
        if (multishot_) return;
        std::lock_guard<Mutex> lk(sq_mu_);
        if (pd->poll_index < 0) return;
        for (int d : {NP_READ, NP_WRITE}) {
            if (!(mode & d) || (pd->poll_events & d)) continue;
            if (submit_poll(pd->poll_index, pd->tag() | d, poll_mask(d)) == 0)
                pd->poll_events |= d;
        }
    }

    int poll(int64_t delay, Waiter **woken) override {
        std::unique_lock<Mutex> lk(reap_mu_, std::try_to_lock);
        if (!lk.owns_lock()) {
            // Someone else reaps.  Wait for its pass (at most delay), then
            // take what is left without blocking: a second blocked reaper
            // could sleep through the break the first one consumed.
            if (delay == 0) return 0;
            if (delay < 0) lk.lock();
            else if (!lk.try_lock_for(std::chrono::nanoseconds(delay))) return 0;
            delay = 0;
        }
        bool blocking = delay != 0;
        if (handoff_n_.load(std::memory_order_acquire) && owned_here()) arm_handed_over();
        if (!break_armed_ && arm_break()) delay = 0; // unbreakable: do not block
        // Entries the kernel refused (submit()) are in no kernel's hands
        // -- the break's poll among them, maybe: nothing would end a
        // blocking wait.  Try them again, and wait no longer than a retry.
        if (delay != 0) {
            std::lock_guard<Mutex> sq(sq_mu_);
            if (pending_n_) flush_cancels();
            if (unsubmitted_) submit();
            if ((unsubmitted_ || pending_n_) && (delay < 0 || delay > kRetryNs)) delay = kRetryNs;
        }
        for (;;) {
            struct io_uring_cqe *cqe;
            int r = 0;
#ifdef NP_FAULTS
            if (delay != 0 && fault_wait()) r = -EINTR; // a signal (src/fault.hpp)
            else
#endif
            if (delay < 0) {
                r = io_uring_wait_cqe(&ring_, &cqe);
            } else if (delay == 0) {
                // Completions held back: our own deferred wake-ups, or a
                // CQ overflow.  Only a kernel entry posts them.
                if (IO_URING_READ_ONCE(*ring_.sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW))
                    io_uring_get_events(&ring_);
            } else {
                struct __kernel_timespec ts = {delay / 1000000000, delay % 1000000000};
                r = io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
            }
            // EINTR: with a timeout the caller recomputes it; else retry.
            if (r == -EINTR && delay < 0) continue;
            if (r == -EINTR) return 0;
            break; // -ETIME or completions: reap whatever is there
        }
        return reap(blocking, woken);
    }

    void wake() override { wakeup_.wake(); }
    // One-shot polls are armed per park on the port that owns the
    // descriptor: only multishot registrations can move.
    bool movable() const override { return multishot_; }

private:
    // epoll refuses files without a wait queue (regular files, directories,
    // /dev/null); io_uring polls them as always ready, and a poll that never
    // waits ends at once, so re-arming it would spin.  Sockets and pipes
    // always wait; anything else is asked of epoll.
    int check_pollable(int fd) {
        struct stat st;
        if (fstat(fd, &st) < 0) return -errno;
        if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) return -EPERM;
        if (S_ISSOCK(st.st_mode) || S_ISFIFO(st.st_mode)) return 0;
        struct epoll_event ev = {};
        ev.events = EPOLLIN;
        if (epoll_ctl(probe_fd_, EPOLL_CTL_ADD, fd, &ev) < 0)
            return errno == EEXIST ? 0 : -errno;
        epoll_ctl(probe_fd_, EPOLL_CTL_DEL, fd, &ev);
        return 0;
    }

    // Under sq_mu_ (single producer), or before the port is shared.
    struct io_uring_sqe *get_sqe() {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring_);
        if (!sqe) { // full: a batch of re-arms, or a refused submit left entries queued
            submit();
            sqe = io_uring_get_sqe(&ring_);
        }
        return sqe;
    }
    // Under sq_mu_.  -EBUSY (kernels that refuse new requests while
    // completions overflow) and -EAGAIN (no memory for requests now) leave
    // the entries queued in the ring: the reaper submits them once it has
    // made room (reap()), so they count as submitted.
    int submit() {
#ifdef NP_FAULTS
        int r = fault_submit(); // the kernel refused: nothing taken (src/fault.hpp)
        if (!r) r = io_uring_submit(&ring_);
#else
        int r = io_uring_submit(&ring_);
#endif
        if (r == -EBUSY || r == -EAGAIN) {
            unsubmitted_ = true;
            wakeup_.wake();
            return 0;
        }
        unsubmitted_ = false;
        return r < 0 ? r : 0;
    }
    // Under sq_mu_.  Not the owner: queue pd for it and wake it (true).
    bool hand_over(PollDesc *pd) {
        if (!coop_ || owned_here()) return false;
        unsigned n = handoff_n_.load(std::memory_order_relaxed);
        if (n == kHandoffCap) return false; // arm here: slower events, but sure
        handoff_[n] = pd;
        handoff_n_.store(n + 1, std::memory_order_release);
        wakeup_.wake();
        return true;
    }
    // The owner arms what others handed over.  An entry may be stale (the
    // descriptor closed, moved, or armed meanwhile): the state tells.
    void arm_handed_over() {
        std::lock_guard<Mutex> lk(sq_mu_);
        unsigned n = handoff_n_.load(std::memory_order_relaxed), kept = 0;
        for (unsigned i = 0; i < n; i++) {
            PollDesc *pd = handoff_[i];
            if (pd->port.load(std::memory_order_acquire) != this || pd->poll_index < 0 ||
                (pd->poll_events & kMultiArmed))
                continue;
            if (arm_multishot(pd, false)) handoff_[kept++] = pd; // ring busy: next pass
        }
        handoff_n_.store(kept, std::memory_order_release);
        if (unsubmitted_) submit(); // all of them in one system call
    }
    // now: submit at once; else leave it queued for the caller's batch
    // (unsubmitted_), submitted before sq_mu_ is let go, by the same
    // thread: the thread that submits a poll is the one that finishes it.
    int arm_multishot(PollDesc *pd, bool now = true) {
        int e = submit_poll(pd->poll_index, pd->tag(), poll_mask(kDirMask), now);
        if (!e) pd->poll_events = kMultiArmed | (owned_here() ? 0 : kArmedForeign);
        return e;
    }
    int submit_poll(int fd, uint64_t data, unsigned mask, bool now = true) {
        struct io_uring_sqe *sqe = get_sqe();
        if (!sqe) return -EAGAIN;
        if (multishot_) io_uring_prep_poll_multishot(sqe, fd, mask);
        else io_uring_prep_poll_add(sqe, fd, mask);
        io_uring_sqe_set_data64(sqe, data);
        if (!now) {
            unsubmitted_ = true;
            return 0;
        }
        return submit();
    }
    // IORING_OP_ASYNC_CANCEL, not POLL_REMOVE: POLL_REMOVE gives up with
    // -EALREADY while the poll's wake-up is being processed (its task work
    // pending on the thread that armed it), leaving the poll, and the file,
    // alive.  A cancel marks the poll so that this processing ends it.
    int prep_cancel(uint64_t data) {
        struct io_uring_sqe *sqe = get_sqe();
        if (!sqe) return -EAGAIN;
        io_uring_prep_cancel64(sqe, data, 0);
        io_uring_sqe_set_data64(sqe, kIgnoreData);
        return 0;
    }
    // close()'s cancel.  With the ring full of entries the kernel refuses
    // (-EBUSY, -EAGAIN) there is no room for it, and a poll left in flight
    // keeps its file open (the peer never sees the close): it waits here
    // until a pass finds room (flush_cancels()).  Under sq_mu_.
    int cancel(uint64_t data) {
        int e = pending_n_ ? -EAGAIN : prep_cancel(data);
        if (e != -EAGAIN || !push_tag(pending_, pending_n_, pending_cap_, data)) return e;
        unsubmitted_ = true; // the reaper retries soon (poll())
        return 0;
    }
    void flush_cancels() {
        unsigned done = 0;
        while (done < pending_n_ && prep_cancel(pending_[done]) == 0) done++;
        if (!done) return;
        pending_n_ -= done;
        memmove(pending_, pending_ + done, pending_n_ * sizeof *pending_);
        unsubmitted_ = true;
    }

    // The break is a one-shot poll re-armed after each completion, so it
    // is level triggered like epoll's: until a blocking poll drains the
    // eventfd, every pass sees it (and the ring fd stays readable).  The
    // poll and break_armed_ belong to the reaper (reap_mu_).
    int arm_break() {
        std::lock_guard<Mutex> lk(sq_mu_);
        struct io_uring_sqe *sqe = get_sqe();
        if (!sqe) return -EAGAIN;
        io_uring_prep_poll_add(sqe, wakeup_.fd, POLLIN);
        io_uring_sqe_set_data64(sqe, kBreakData);
        int e = submit();
        break_armed_ = e == 0;
        return e;
    }

    // A completion that does not fit the ring waits in the kernel's
    // overflow list, and while that list is not empty no multishot poll
    // can post: each one that fires ends, its last completion overflowing
    // too.  So a poll that ends is armed again (rearm_deferred()) only once
    // the list is empty, all of them in one submission.  Re-armed at once,
    // one system call each, a ready file's poll ended again at once: past
    // twice the ring's size of ready descriptors, every pass re-armed
    // thousands of polls, for ever (10 ms a wake-up).  Each round empties
    // the ring, then moves what overflowed into it.
    int reap(bool blocking, Waiter **woken) {
        unsigned n = 0;
        {
            std::lock_guard<Mutex> lk(sq_mu_); // ended() and the re-arms
            bool overflow = true;
            for (int round = 0; round < kReapRounds && overflow; round++) {
                unsigned head, got = 0;
                struct io_uring_cqe *cqe;
                io_uring_for_each_cqe(&ring_, head, cqe) {
                    uint64_t data = io_uring_cqe_get_data64(cqe);
                    bool more = cqe->flags & IORING_CQE_F_MORE;
                    if (data == kBreakData) {
                        break_armed_ = false;
                        if (blocking || sole_poller) wakeup_.drain();
                    } else if (data != kIgnoreData) {
                        event(data, cqe->res, more, woken);
                    }
                    if (++got == ring_.cq.ring_entries) break;
                }
                io_uring_cq_advance(&ring_, got);
                n += got;
                overflow = IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_CQ_OVERFLOW;
                if (overflow) io_uring_get_events(&ring_);
            }
            if (!overflow && rearm_n_) rearm_deferred();
            if (pending_n_) flush_cancels();
            if (unsubmitted_) submit();
        }
        // After the loop: an undrained eventfd completes the new poll at
        // once, and this pass must not see that completion again.
        if (!break_armed_) arm_break();
        return int(n);
    }

    // Under sq_mu_: keep a multishot poll that ended for rearm_deferred().
    bool defer_rearm(uint64_t tag) { return push_tag(rearm_, rearm_n_, rearm_cap_, tag); }
    // Appends to a list of tags that doubles when full (false: no memory).
    static bool push_tag(uint64_t *&list, unsigned &n, unsigned &cap, uint64_t tag) {
        if (n == cap) {
            unsigned c = cap ? cap * 2 : kRearmCap;
            auto *a = static_cast<uint64_t *>(mem_alloc(c * sizeof(uint64_t)));
            if (!a) return false;
            if (n) memcpy(a, list, n * sizeof *a);
            mem_free(list);
            list = a;
            cap = c;
        }
        list[n++] = tag;
        return true;
    }
    // Under sq_mu_, the overflow list empty: arm them again, in one batch
    // (get_sqe() submits a full queue).  An entry may be stale (closed,
    // moved, armed meanwhile): the state tells.
    void rearm_deferred() {
        unsigned kept = 0;
        for (unsigned i = 0; i < rearm_n_; i++) {
            uint64_t tag = rearm_[i];
            bool stale;
            PollDesc *pd = pd_from_tag(tag, &stale);
            if (stale || pd->port.load(std::memory_order_acquire) != this || pd->tag() != tag ||
                pd->poll_index < 0 || (pd->poll_events & kMultiArmed))
                continue;
            if (arm_multishot(pd, false)) rearm_[kept++] = tag; // ring busy: next pass
        }
        rearm_n_ = kept;
    }

    void event(uint64_t data, int res, bool more, Waiter **woken) {
        uint64_t tag = data & ~kDirMask;
        int dir = int(data & kDirMask); // 0: multishot
        if (!more) ended(tag, dir, res);
        if (res <= 0) return; // -ECANCELED after close, -EBADF: no readiness
        uint32_t e = uint32_t(res);
        int mode = 0;
        if (e & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) mode |= NP_READ;
        if (e & (POLLOUT | POLLHUP | POLLERR)) mode |= NP_WRITE;
        if (!mode) return;
        NP_TRACE("netpoll: fd=%d ev=%#x ready", pd_trace_fd(tag), e);
        // Never an error event (the epoll port's EPOLLERR alone): a ring's
        // poll reports the mask of the wake-up that fired it, and a
        // socket's error report wakes with POLLERR alone even when data or
        // a hang-up is there too (epoll polls the file again and sees
        // them).  The read or write that follows reports the precise error.
        // POLLPRI (urgent data) comes with the wake-up of every socket's
        // data: no read here counts as having emptied its socket.
        unsigned ev = e & (POLLRDHUP | POLLHUP | POLLERR | POLLPRI) ? kEvHangup : 0;
        pd_ready_event(tag, mode, ev, woken);
    }

    // A poll finished.  A multishot poll ends on CQ overflow or when the
    // thread that submitted it exits (-ECANCELED): re-arm it (at the end of
    // this pass, see reap()); an edge-triggered arm reports what is ready
    // now, so no edge is lost.  A
    // one-shot poll is re-armed only for a waiter that is still parked
    // (the direction's poll was cancelled), else by the next arm().
    // Under sq_mu_ (reap() holds it): close, free and reuse cannot slip in.
    void ended(uint64_t tag, int dir, int res) {
        bool stale;
        PollDesc *pd = pd_from_tag(tag, &stale);
        // Moved to another worker's ring: a move stores the new port before
        // it takes sq_mu_ to close here, and the new port owns poll_events.
        if (pd->port.load(std::memory_order_acquire) != this || pd->tag() != tag) return;
        uint32_t mine = (dir ? uint32_t(dir) : kMultiArmed) << kCancelShift;
        if (pd->poll_events & mine) { // a poll close() cancelled: the file is free
            pd->poll_events &= ~mine;
            return;
        }
        if (pd->poll_index < 0) return; // closed
        bool rearm = res == -ECANCELED || (res >= 0 && multishot_);
        if (res < 0 && !rearm) NP_TRACE("netpoll: fd=%d poll ended (%d)", pd->poll_index, res);
        if (!dir) {
            pd->poll_events &= ~(kMultiArmed | kArmedForeign);
            if (rearm && !hand_over(pd) && !defer_rearm(tag)) arm_multishot(pd);
        } else if (!rearm || submit_poll(pd->poll_index, tag | dir, poll_mask(dir), false)) {
            pd->poll_events &= ~uint32_t(dir);
        }
    }

    struct io_uring ring_ = {};
    bool ring_ok_ = false;
    bool multishot_ = true;
    bool coop_ = false;             // IORING_SETUP_COOP_TASKRUN
    PollDesc **handoff_ = nullptr;  // arms for the owner (under sq_mu_)
    std::atomic<unsigned> handoff_n_{0};
    int probe_fd_ = -1;
    Wakeup wakeup_;
    Mutex sq_mu_;
    Mutex reap_mu_;
    bool break_armed_ = false; // the break poll is in flight
    bool unsubmitted_ = false; // entries queued in the ring, not submitted yet (under sq_mu_)
    uint64_t *rearm_ = nullptr; // tags of multishot polls to arm again (under sq_mu_)
    unsigned rearm_n_ = 0, rearm_cap_ = 0;
    uint64_t *pending_ = nullptr;   // close()'s cancels waiting for room (under sq_mu_)
    unsigned pending_n_ = 0, pending_cap_ = 0;
};

} // namespace

Port *port_io_uring_create(int *err) {
    auto *p = new UringPort();
    *err = p->init();
    if (*err) {
        delete p;
        return nullptr;
    }
    return p;
}

} // namespace np
