// Green-thread stacks: carved from large mmap'd chunks, committed lazily by
// the kernel on first touch, pooled (a cache per worker, then a global free
// list).  Releasing a stack costs no syscall: the scavenger (run by sysmon)
// returns the pages of the stacks idle beyond a warm reserve, in the
// background, as Go's scavenger does for its heap.
//
// Overflow: one PROT_NONE guard page per stack costs a VMA split, and
// vm.max_map_count (65530 by default) allows ~32K of those, so only the
// first stacks (a budget of an eighth of the limit) get guard pages.  The
// rest are laid out back to back with a canary word at the top of each
// slot: a stack that overflows hits its lower neighbour's canary first, and
// the check at every switch-out reports the thread (check_stack_overflow).
#pragma once
#include <cstddef>
#include <cstdint>

#include <vector>

#include "alloc.hpp"
#include "green_thread.hpp"
#include "spinlock.hpp"

namespace np {

constexpr uint64_t kStackCanary = 0x6e70737461636b21ull; // "npstack!"

// The warm free list: LIFO at the back (the hottest stacks), while the
// scavenger takes the oldest from the front; both O(1) (a vector's front
// erase moved the whole list, under the lock, for every batch).
class StackRing {
public:
    StackRing() = default;
    StackRing(const StackRing &) = delete;
    StackRing &operator=(const StackRing &) = delete;
    ~StackRing() { mem_free(buf_); }
    bool empty() const { return n_ == 0; }
    size_t size() const { return n_; }
    Stack &back() { return buf_[(head_ + n_ - 1) & (cap_ - 1)]; }
    void pop_back() { n_--; }
    void push_back(const Stack &s) { buf_[(head_ + n_++) & (cap_ - 1)] = s; } // room reserved
    Stack pop_front() {
        Stack s = buf_[head_];
        head_ = (head_ + 1) & (cap_ - 1);
        n_--;
        return s;
    }
    bool reserve(size_t want); // doubling; keeps the order
private:
    Stack *buf_ = nullptr;
    size_t cap_ = 0, head_ = 0, n_ = 0;
};

struct StackPool {
    // packed: slots of any 64-byte multiple, back to back with canaries and
    // no guard pages (small stacks for small handlers: np_go_stack).
    void init(size_t stack_size, bool packed = false);
    bool alloc(Stack *out);
    void release(const Stack &s);
    // Batches, for the per-worker caches: one lock per batch.
    int alloc_batch(Stack *out, int n);
    void release_batch(const Stack *s, int n);
    void scavenge(); // madvise idle stacks beyond the warm reserve
    bool in_guard(const void *addr) const; // a fault address in one of our guard pages?
    size_t stack_size() const { return usable_; }
    uint64_t reserved_bytes() const { return reserved_.load(std::memory_order_relaxed); }

private:
    bool grow();
    size_t usable_ = 0, page_ = 4096;
    bool packed_ = false;
    // Free lists live outside the stacks, so a new chunk is not touched.
    using List = std::vector<Stack, ArenaAllocator<Stack>>;
    SpinLock lock_;
    StackRing warm_; // pages may still be committed
    List cold_;      // scavenged, or never used
    size_t nslots_ = 0;
    size_t guard_budget_ = 0;
    std::atomic<uint64_t> reserved_{0};
    // Chunk address ranges, read by the SIGSEGV reporter without locks.
    // Allocated by init, not held here: the pool is value-initialized,
    // and zeroing the table would commit all its pages (which every fork
    // then copies) where a process uses a few entries.
    static constexpr int kMaxChunks = 4096;
    struct Range { uintptr_t lo, hi; size_t slot; bool guarded; };
    Range *chunks_ = nullptr;
    std::atomic<int> nchunks_{0};
    int nguarded_ = 0;
};

// Per-worker cache in front of the pool: spawn and exit without locks, and
// move stacks to and from the pool in batches.
struct StackCache {
    static constexpr int kMax = 128, kBatch = 64;
    Stack s[kMax];
    int n = 0;
    bool alloc(StackPool &p, Stack *out) {
        if (!n) n = p.alloc_batch(s, kBatch);
        if (!n) return false;
        *out = s[--n];
        return true;
    }
    void release(StackPool &p, const Stack &st) {
        if (n == kMax) {
            n -= kBatch;
            p.release_batch(s + n, kBatch);
        }
        s[n++] = st;
    }
};

} // namespace np
