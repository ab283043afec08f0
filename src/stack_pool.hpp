// Green-thread stacks: carved from large mmap'd chunks, committed lazily by
// the kernel on first touch, pooled (a small cache per worker, then a global
// free list), with pages of idle stacks returned above a watermark.
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

#include "green_thread.hpp"
#include "spinlock.hpp"

namespace np {

constexpr uint64_t kStackCanary = 0x6e70737461636b21ull; // "npstack!"

struct FreeSlot;

struct StackPool {
    void init(size_t stack_size);
    bool alloc(Stack *out);
    void release(const Stack &s);
    bool in_guard(const void *addr) const; // a fault address in one of our guard pages?
    size_t stack_size() const { return usable_; }
    uint64_t reserved_bytes() const { return reserved_.load(std::memory_order_relaxed); }

private:
    bool grow();
    size_t usable_ = 0, page_ = 4096;
    SpinLock lock_;
    FreeSlot *free_ = nullptr;
    size_t nfree_ = 0;
    size_t guard_budget_ = 0;
    std::atomic<uint64_t> reserved_{0};
    // Chunk address ranges, read by the SIGSEGV reporter without locks.
    static constexpr int kMaxChunks = 4096;
    struct Range { uintptr_t lo, hi; size_t slot; bool guarded; };
    Range chunks_[kMaxChunks];
    std::atomic<int> nchunks_{0};
    int nguarded_ = 0;
};

// Per-worker cache in front of the pool: spawn and exit without locks.
struct StackCache {
    static constexpr int kMax = 32;
    Stack s[kMax];
    int n = 0;
    bool alloc(StackPool &p, Stack *out) {
        if (n) {
            *out = s[--n];
            return true;
        }
        return p.alloc(out);
    }
    void release(StackPool &p, const Stack &st) {
        if (n < kMax) s[n++] = st;
        else p.release(st);
    }
};

} // namespace np
