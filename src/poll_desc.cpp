// The descriptor state machine, after Go's runtime/netpoll.go.  The comments
// name the invariant each step relies on.
#include "poll_desc.hpp"

#include <cerrno>
#include <cstring>

#include "clock.hpp"
#include "netpoll.h"
#include "port.hpp"
#include "runtime.hpp"

namespace np {

// ---- pollCache --------------------------------------------------------------

static SpinLock cache_lock;
static PollDesc *free_head, *free_tail;  // FIFO: a freed descriptor is reused last

static bool cache_grow() {
    constexpr size_t kBlock = 4096;
    size_t n = kBlock / sizeof(PollDesc);
    if (n == 0) n = 1;
    char *raw = static_cast<char *>(mem_alloc(n * sizeof(PollDesc) + 64));
    if (!raw) return false;
    char *base = reinterpret_cast<char *>((uintptr_t(raw) + 63) & ~uintptr_t(63));
    for (size_t i = 0; i < n; i++) {
        PollDesc *pd = new (base + i * sizeof(PollDesc)) PollDesc();
        pd->fdseq.store(1, std::memory_order_relaxed);
        pd->link = nullptr;
        if (free_tail) free_tail->link = pd;
        else free_head = pd;
        free_tail = pd;
    }
    return true;
}

void pd_cache_after_fork() { new (&cache_lock) SpinLock(); }

PollDesc *pd_alloc() {
    Guard<SpinLock> g(cache_lock);
    if (!free_head && !cache_grow()) return nullptr;
    PollDesc *pd = free_head;
    free_head = pd->link;
    if (!free_head) free_tail = nullptr;
    pd->link = nullptr;
    pd->is_free.store(false, std::memory_order_relaxed);
    return pd;
}

void pd_free(PollDesc *pd) {
    // New tag: any event the kernel still holds for the old fd is stale.
    uintptr_t s = pd->fdseq.load(std::memory_order_relaxed) + 1;
    if ((s & kTagMask) == 0) s++;
    pd->fdseq.store(s, std::memory_order_release);
    Guard<SpinLock> g(cache_lock);
    pd->is_free.store(true, std::memory_order_relaxed);
    pd->link = nullptr;
    if (free_tail) free_tail->link = pd;
    else free_head = pd;
    free_tail = pd;
}

PollDesc *pd_from_tag(uintptr_t tag, bool *stale) {
    PollDesc *pd = reinterpret_cast<PollDesc *>(tag & ((uintptr_t(1) << kTagShift) - 1));
    uintptr_t seq = tag >> kTagShift;
    *stale = (pd->fdseq.load(std::memory_order_acquire) & kTagMask) != seq;
    return pd;
}

// ---- summary ----------------------------------------------------------------

void PollDesc::publish() {
    uint32_t i = 0;
    if (closing) i |= kInfoClosing;
    if (event_err) i |= kInfoEventErr;
    if (rd < 0) i |= kInfoExpiredRead;
    if (wd < 0) i |= kInfoExpiredWrite;
    i |= uint32_t(fdseq.load(std::memory_order_relaxed) & kTagMask) << kInfoSeqShift;
    info.store(i, std::memory_order_seq_cst);
}

int pd_check_err(PollDesc *pd, int mode) {
    uint32_t i = pd->info.load(std::memory_order_seq_cst);
    if (i & kInfoClosing) return -EBADF;
    if (((mode & NP_READ) && (i & kInfoExpiredRead)) || ((mode & NP_WRITE) && (i & kInfoExpiredWrite)))
        return -ETIMEDOUT;
    // Only reads report the error event: a write gets the precise error
    // from its own syscall (Go reports ErrNotPollable here).
    if ((mode & NP_READ) && (i & kInfoEventErr)) return -ENOTSUP;
    return 0;
}

static std::atomic<uintptr_t> &sem(PollDesc *pd, int mode) {
    return mode == NP_READ ? pd->rg : pd->wg;
}

// Move the direction's semaphore towards ready (I/O) or nil (timeout,
// close); returns the parked waiter to wake, if any.  Timeout and close
// leave no token: a later wait must see the error, not a readiness.
static Waiter *unblock(PollDesc *pd, int mode, bool ioready) {
    std::atomic<uintptr_t> &s = sem(pd, mode);
    for (;;) {
        uintptr_t old = s.load(std::memory_order_acquire);
        if (old == kPdReady) return nullptr;
        if (old == kPdNil && !ioready) return nullptr;
        uintptr_t nv = ioready ? kPdReady : kPdNil;
        if (s.compare_exchange_weak(old, nv, std::memory_order_acq_rel)) {
            if (old == kPdNil || old == kPdWait) return nullptr;
            return reinterpret_cast<Waiter *>(old);
        }
    }
}

int pd_open(PollDesc *pd) {
    Guard<SpinLock> g(pd->lock);
    pd->closing = false;
    __atomic_store_n(&pd->event_err, false, __ATOMIC_RELAXED);
    pd->rseq++;
    pd->wseq++;
    pd->rd = pd->wd = 0;
    pd->rt_armed = pd->wt_armed = false;
    pd->rg.store(kPdNil, std::memory_order_relaxed);
    pd->wg.store(kPdNil, std::memory_order_relaxed);
    pd->hangup.store(false, std::memory_order_relaxed);
    pd->fdmu.reset();
    pd->moves = 0;
    pd->publish();
    // The port's registration (a system call) orders all of this before the
    // poller's reads of an event's descriptor; this release, acquired in
    // pd_from_tag, says so to the race detector as well.
    pd->fdseq.store(pd->fdseq.load(std::memory_order_relaxed), std::memory_order_release);
    return 0;
}

int pd_reset(PollDesc *pd, int mode) {
    if (int e = pd_check_err(pd, mode)) return e;
    // Only the direction's single owner (fdMutex) is here: a stale pdReady
    // from before this operation would just cost a spurious retry.
    if (pd->pollable) sem(pd, mode).store(kPdNil, std::memory_order_relaxed);
    return 0;
}

// Readiness for a green thread is best reported by its own worker's
// poller: no hand-off to another worker, and the descriptor stays in one
// cache.  So when a thread parks on a descriptor registered elsewhere, the
// registration moves to its worker -- unless the other direction has a
// waiter (a reader and a writer on two workers would pull it to and fro)
// or it has moved often already.  The new registration reports what is
// ready at once, so nothing falls between the two.
constexpr uint8_t kMaxMoves = 8;

static void settle(PollDesc *pd, int mode) {
    Port *cur = pd->port.load(std::memory_order_acquire);
    Worker *w = cur_worker();
    Port *mine = w && w->cur ? w->port : nullptr;
    if (!mine || mine == cur || !cur->movable() || pd->moves >= kMaxMoves) {
        cur->arm(pd, mode);
        return;
    }
    if (!pd->move_mu.try_lock()) return; // someone else moves it
    uintptr_t other = sem(pd, mode ^ (NP_READ | NP_WRITE)).load(std::memory_order_acquire);
    if (pd->port.load(std::memory_order_relaxed) == cur && (other == kPdNil || other == kPdReady)) {
        pd->moves++;
        // First: the old port's late completions see it is no longer theirs.
        pd->port.store(mine, std::memory_order_release);
        cur->close(pd->fd, pd);
        if (mine->open(pd->fd, pd) == 0) {
            rt->moves.fetch_add(1, std::memory_order_relaxed);
            NP_TRACE("netpoll: fd=%d moved to worker %d", pd->fd, w->id);
        } else {
            pd->port.store(cur, std::memory_order_release);
            cur->open(pd->fd, pd);
        }
    }
    pd->move_mu.unlock();
}

// One wait: returns 1 when I/O readiness was consumed, 0 when woken without
// it (timer, close, deadline reset), -EBUSY on a second concurrent waiter.
static int block(PollDesc *pd, int mode) {
    std::atomic<uintptr_t> &s = sem(pd, mode);
    for (;;) {
        uintptr_t v = kPdReady;
        if (s.compare_exchange_strong(v, kPdNil, std::memory_order_acq_rel)) return 1;
        v = kPdNil;
        if (s.compare_exchange_strong(v, kPdWait, std::memory_order_acq_rel)) break;
        if (v != kPdReady && v != kPdNil) return -EBUSY; // "double wait"
    }
    // Re-check after announcing pdWait: pairs with closers and timers that
    // set state, publish, then load rg/wg.
    if (pd_check_err(pd, mode) == 0) {
        note_wait(WaitKind::io, pd, mode);
        Waiter w;
        uintptr_t v = kPdWait;
        // Commit: only now does the waiter count, and only if nothing moved
        // the semaphore meanwhile.
        if (s.compare_exchange_strong(v, reinterpret_cast<uintptr_t>(&w), std::memory_order_acq_rel)) {
            rt->netpoll_waiters.fetch_add(1, std::memory_order_relaxed);
            settle(pd, mode);
            w.wait();
            rt->netpoll_waiters.fetch_sub(1, std::memory_order_relaxed);
        }
    }
    uintptr_t old = s.exchange(kPdNil, std::memory_order_acq_rel);
    return old == kPdReady;
}

int pd_wait(PollDesc *pd, int mode) {
    if (int e = pd_check_err(pd, mode)) return e;
    for (;;) {
        int r = block(pd, mode);
        if (r == 1) return 0;
        if (r < 0) return r;
        // Woken without readiness: an error explains it, else it was a
        // timer for a deadline that has since been reset.  Wait again.
        if (int e = pd_check_err(pd, mode)) return e;
    }
}

// ---- deadlines ----------------------------------------------------------------

static void wake_all(Waiter *a, Waiter *b) {
    if (a) a->wake();
    if (b) b->wake();
}

static void deadline_impl(PollDesc *pd, uintptr_t seq, bool read, bool write) {
    pd->lock.lock();
    uintptr_t cur = read ? pd->rseq : pd->wseq;
    if (seq != cur) { // the descriptor was reused or its deadline reset
        pd->lock.unlock();
        return;
    }
    Waiter *r = nullptr, *w = nullptr;
    if (read && pd->rd > 0) {
        pd->rd = -1;
        pd->publish();
        r = unblock(pd, NP_READ, false);
    }
    if (write && pd->wd > 0) {
        pd->wd = -1;
        pd->publish();
        w = unblock(pd, NP_WRITE, false);
    }
    pd->lock.unlock();
    wake_all(r, w);
}

static void read_deadline(void *a, uintptr_t seq) { deadline_impl(static_cast<PollDesc *>(a), seq, true, false); }
static void write_deadline(void *a, uintptr_t seq) { deadline_impl(static_cast<PollDesc *>(a), seq, false, true); }
static void both_deadline(void *a, uintptr_t seq) { deadline_impl(static_cast<PollDesc *>(a), seq, true, true); }

// Out of its heap first: a worker's run_timers reads fn, arg and seq under
// the heap's lock, which timer_del takes (even for a timer it took out).
static void arm(Timer *t, void (*fn)(void *, uintptr_t), PollDesc *pd, uintptr_t seq, int64_t when) {
    timer_del(t);
    t->fn = fn;
    t->arg = pd;
    t->seq = seq;
    timer_add(t, when);
}

void pd_set_deadline(PollDesc *pd, int64_t d, int mode, bool keep_expired) {
    pd->lock.lock();
    if (pd->closing || (keep_expired && (((mode & NP_READ) && pd->rd < 0) || ((mode & NP_WRITE) && pd->wd < 0)))) {
        pd->lock.unlock();
        return;
    }
    int64_t rd0 = pd->rd, wd0 = pd->wd;
    bool combo0 = rd0 > 0 && rd0 == wd0;
    if (d != 0 && d <= now_ns()) d = -1; // already past: expire now
    if (mode & NP_READ) pd->rd = d;
    if (mode & NP_WRITE) pd->wd = d;
    pd->publish();
    bool combo = pd->rd > 0 && pd->rd == pd->wd;
    auto rtf = combo ? both_deadline : read_deadline;
    // One timer serves both directions when the deadlines are equal.  A
    // changed deadline bumps the sequence so an in-flight callback of the
    // old timer is ignored.
    if (!pd->rt_armed) {
        if (pd->rd > 0) {
            pd->rt_armed = true;
            arm(&pd->rt, rtf, pd, pd->rseq, pd->rd);
        }
    } else if (pd->rd != rd0 || combo != combo0) {
        pd->rseq++;
        if (pd->rd > 0) {
            arm(&pd->rt, rtf, pd, pd->rseq, pd->rd);
        } else {
            timer_del(&pd->rt);
            pd->rt_armed = false;
        }
    }
    if (!pd->wt_armed) {
        if (pd->wd > 0 && !combo) {
            pd->wt_armed = true;
            arm(&pd->wt, write_deadline, pd, pd->wseq, pd->wd);
        }
    } else if (pd->wd != wd0 || combo != combo0) {
        pd->wseq++;
        if (pd->wd > 0 && !combo) {
            arm(&pd->wt, write_deadline, pd, pd->wseq, pd->wd);
        } else {
            timer_del(&pd->wt);
            pd->wt_armed = false;
        }
    }
    // A deadline set in the past unblocks the pending operation now.
    Waiter *r = pd->rd < 0 ? unblock(pd, NP_READ, false) : nullptr;
    Waiter *w = pd->wd < 0 ? unblock(pd, NP_WRITE, false) : nullptr;
    pd->lock.unlock();
    wake_all(r, w);
}

void pd_unblock(PollDesc *pd) {
    pd->lock.lock();
    pd->closing = true;
    pd->rseq++;
    pd->wseq++;
    pd->publish();
    Waiter *r = unblock(pd, NP_READ, false);
    Waiter *w = unblock(pd, NP_WRITE, false);
    if (pd->rt_armed) {
        timer_del(&pd->rt);
        pd->rt_armed = false;
    }
    if (pd->wt_armed) {
        timer_del(&pd->wt);
        pd->wt_armed = false;
    }
    pd->lock.unlock();
    wake_all(r, w);
}

// ---- the poller's side ---------------------------------------------------------

int pd_ready_event(uintptr_t tag, int mode, unsigned ev, Waiter **woken) {
    bool stale;
    PollDesc *pd = pd_from_tag(tag, &stale);
    if (stale) return 0; // an event for a previous user of this descriptor
    bool err = ev & kEvErrOnly;
    // Before the readiness is published: whoever consumes it sees this.
    if ((ev & kEvHangup) && !pd->hangup.load(std::memory_order_relaxed))
        pd->hangup.store(true, std::memory_order_release);
    // Read without the lock (it rarely changes), written under it.
    if (err != __atomic_load_n(&pd->event_err, __ATOMIC_RELAXED)) {
        pd->lock.lock();
        if (!stale) {
            __atomic_store_n(&pd->event_err, err, __ATOMIC_RELAXED);
            pd->publish();
        }
        pd->lock.unlock();
    }
    if (mode & NP_READ) pd->read_events.fetch_add(1, std::memory_order_release);
    int n = 0;
    for (int m : {NP_READ, NP_WRITE}) {
        if (!(mode & m)) continue;
        if (Waiter *w = unblock(pd, m, true)) {
            w->next = *woken;
            *woken = w;
            n++;
        }
    }
    return n;
}

} // namespace np
