#include "stack_pool.hpp"

#include "config.h"
#include "sys.hpp"
#if HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace np {

// Read once: every pool (one per stack size) asks it at its start.
static size_t read_max_map_count() {
    static std::atomic<size_t> known{0};
    if (size_t v = known.load(std::memory_order_relaxed)) return v;
    unsigned long v = 65530;
    char buf[32];
    int fd = sys_open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = sys_read(fd, buf, sizeof buf - 1);
        sys_close(fd);
        if (n > 0) {
            buf[n] = 0;
            v = strtoul(buf, nullptr, 10);
        }
    }
    known.store(v ? v : 65530, std::memory_order_relaxed);
    return v ? v : 65530;
}

bool StackRing::reserve(size_t want) {
    if (want <= cap_) return true;
    size_t c = cap_ ? cap_ : 64;
    while (c < want) c *= 2;
    auto *b = static_cast<Stack *>(mem_alloc(c * sizeof(Stack)));
    if (!b) return false;
    for (size_t i = 0; i < n_; i++) b[i] = buf_[(head_ + i) & (cap_ - 1)];
    mem_free(buf_);
    buf_ = b;
    cap_ = c;
    head_ = 0;
    return true;
}

void StackPool::init(size_t stack_size, bool packed) {
    page_ = size_t(sysconf(_SC_PAGESIZE));
    packed_ = packed;
    size_t align = packed ? 64 : page_;
    usable_ = (stack_size + align - 1) & ~(align - 1);
    guard_budget_ = packed ? 0 : read_max_map_count() / 8;
    chunks_ = static_cast<Range *>(mem_alloc(kMaxChunks * sizeof(Range)));
}

// One chunk: guarded slots (guard page + stack) while the budget lasts,
// else canary slots under a single guard page at the chunk's bottom.
bool StackPool::grow() {
    int nc = nchunks_.load(std::memory_order_relaxed);
    if (nc == kMaxChunks || !chunks_) return false;
    bool guard = guard_budget_ > 0;
    size_t slot = guard ? usable_ + page_ : usable_;
    // Guarded chunks double from one slot up to 64: every slot is two
    // mappings, which each fork copies and each exit tears down, so a
    // program with a few threads keeps a few.
    size_t n = guard ? std::min<size_t>(64, std::max<size_t>(1, nslots_)) : (64u << 20) / slot;
    if (!guard && n < 16) n = 16;
    if (guard && n > guard_budget_) n = guard_budget_;
    size_t bytes = n * slot + (guard ? 0 : page_);
    // Room for every slot in both lists first, so that releasing a stack --
    // which may run on a small stack -- never allocates.  Doubling, as
    // chunks come a few slots at a time at first.
    if (!warm_.reserve(nslots_ + n)) return false;
    if (cold_.capacity() < nslots_ + n) cold_.reserve(std::max(nslots_ + n, 2 * cold_.capacity()));
    void *m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return false;
    char *base = static_cast<char *>(m);
    reserved_.fetch_add(bytes, std::memory_order_relaxed);
    nslots_ += n;
    chunks_[nc] = Range{uintptr_t(base), uintptr_t(base + bytes), slot, guard};
    nchunks_.store(nc + 1, std::memory_order_release);
    if (guard) {
        guard_budget_ -= n;
        nguarded_++;
    } else {
        mprotect(base, page_, PROT_NONE); // below the lowest slot
        base += page_;
    }
    for (size_t i = n; i-- > 0;) {  // lowest addresses handed out last
        char *slot_lo = base + i * slot;
        Stack s;
        s.pool = this;
        s.hi = slot_lo + slot;
        if (guard) {
            mprotect(slot_lo, page_, PROT_NONE);
            s.lo = slot_lo + page_;
            s.guarded = true;
        } else {
            s.lo = slot_lo;
            // Our own canary, checked by the slot above, sits at our top
            // (written when the slot is first used, so an unused slot's page
            // stays untouched); the one we check is the lower neighbour's.
            s.canary = i > 0 ? reinterpret_cast<uint64_t *>(slot_lo - 16) : nullptr;
        }
        cold_.push_back(s);
    }
    return true;
}

// A stack going into use: its canary, and valgrind told that this range
// is a stack (otherwise it takes a switch between nearby stacks for a huge
// alloca and reports the other stacks' contents as undefined).  The client
// request costs a few instructions natively.
static void mark(Stack *s) {
    if (!s->guarded) *reinterpret_cast<uint64_t *>(s->hi - 16) = kStackCanary;
#if HAVE_VALGRIND_H
    s->vg_id = VALGRIND_STACK_REGISTER(s->lo, s->hi);
#endif
}

static void unmark(const Stack &s) {
#if HAVE_VALGRIND_H
    VALGRIND_STACK_DEREGISTER(s.vg_id);
#else
    (void)s;
#endif
}

int StackPool::alloc_batch(Stack *out, int n) {
    int got = 0;
    Guard<SpinLock> g(lock_);
    while (got < n) {
        if (!warm_.empty()) {
            out[got] = warm_.back();
            warm_.pop_back();
        } else if (!cold_.empty()) {
            out[got] = cold_.back();
            cold_.pop_back();
        } else {
            if (got || !grow()) break;
            continue;
        }
        mark(&out[got]);
        got++;
    }
    return got;
}

bool StackPool::alloc(Stack *out) { return alloc_batch(out, 1) == 1; }

void StackPool::release_batch(const Stack *st, int n) {
    for (int i = 0; i < n; i++) unmark(st[i]);
    Guard<SpinLock> g(lock_);
    for (int i = 0; i < n; i++) warm_.push_back(st[i]);
}

void StackPool::release(const Stack &s) { release_batch(&s, 1); }

// Keep the most recently used stacks committed, up to 256 of them and 32 MiB
// of stack (a pool of glibc-sized stacks, 8 MiB each, keeps 16: 256 of them,
// each used to 1 MiB once, held 256 MiB after the threads had ended, where
// glibc gives a stack's pages back at the thread's exit); give back the
// pages of the older ones (all but the top page, where the canary is)
// outside the lock, a batch at a time, with no allocation (it runs on
// sysmon's stack).  Paced like Go's scavenger: at most kPerRound stacks a
// call (a system call each, and each takes the address-space lock the page
// faults of running threads need), so a million idle stacks go back over
// minutes rather than in a burst that stalls a process spawning threads
// again.
void StackPool::scavenge() {
    constexpr size_t kBatch = 128, kPerRound = 2048;
    const size_t kWarm = std::clamp<size_t>((size_t(32) << 20) / usable_, 16, 256);
    Stack batch[kBatch];
    for (size_t done = 0; done < kPerRound; done += kBatch) {
        size_t n;
        {
            Guard<SpinLock> g(lock_);
            if (warm_.size() <= kWarm) return;
            n = std::min(kBatch, warm_.size() - kWarm);
            for (size_t i = 0; i < n; i++) batch[i] = warm_.pop_front();
        }
        for (size_t i = 0; i < n; i++) {
            // Whole pages only (packed slots share pages), never the top one.
            uintptr_t lo = (uintptr_t(batch[i].lo) + page_ - 1) & ~(page_ - 1);
            uintptr_t hi = (uintptr_t(batch[i].hi) - page_) & ~(page_ - 1);
            if (hi > lo) madvise(reinterpret_cast<void *>(lo), hi - lo, MADV_DONTNEED);
        }
        Guard<SpinLock> g(lock_);
        cold_.insert(cold_.end(), batch, batch + n); // capacity reserved in grow()
    }
}

bool StackPool::in_guard(const void *addr) const {
    uintptr_t a = uintptr_t(addr);
    int n = nchunks_.load(std::memory_order_acquire);
    for (int i = 0; i < n; i++) {
        const Range &r = chunks_[i];
        if (a < r.lo || a >= r.hi) continue;
        return r.guarded ? (a - r.lo) % r.slot < page_ : a < r.lo + page_;
    }
    return false;
}

} // namespace np
