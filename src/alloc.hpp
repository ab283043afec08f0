// The engine's own heap: a private jemalloc arena, so the runtime never
// touches (or is disturbed by) the host program's malloc state.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

namespace np {

void *mem_alloc(size_t n);        // nullptr on exhaustion
void *mem_zalloc(size_t n);       // zeroed
void mem_free(void *p);
uint64_t mem_allocated();         // bytes live in the arena (mallctl)
uint64_t mem_alloc_count();       // allocations made in the arena so far

// Every call into the heap (jemalloc) from the engine, between these: a
// fork waits until none is inside, and a forked child resets the heap on
// its first use rather than at the fork (heap_fork.cpp).
constexpr uint32_t kHeapForking = 1u << 31;
extern std::atomic<uint32_t> heap_users; // threads inside, and kHeapForking
extern std::atomic<bool> heap_fork_pending; // a forked child has not reset it yet
void heap_wait();
void heap_fork_finish();
inline void heap_enter() {
    if (__builtin_expect(heap_users.fetch_add(1, std::memory_order_seq_cst) & kHeapForking, false)) heap_wait();
    if (__builtin_expect(heap_fork_pending.load(std::memory_order_relaxed), false)) heap_fork_finish();
}
inline void heap_leave() { heap_users.fetch_sub(1, std::memory_order_release); }
// jemalloc's TSD destructor, as registered: it enters the heap too.
void (*heap_key_dtor(void (*dtor)(void *)))(void *);

template <class T, class... A> T *make(A &&...a) {
    void *p = mem_alloc(sizeof(T));
    return p ? new (p) T(static_cast<A &&>(a)...) : nullptr;
}
template <class T> void destroy(T *p) {
    if (!p) return;
    p->~T();
    mem_free(p);
}

// For standard containers inside the engine.
template <class T> struct ArenaAllocator {
    using value_type = T;
    ArenaAllocator() = default;
    template <class U> ArenaAllocator(const ArenaAllocator<U> &) {}
    T *allocate(size_t n) {
        void *p = mem_alloc(n * sizeof(T));
        if (!p) throw std::bad_alloc();
        return static_cast<T *>(p);
    }
    void deallocate(T *p, size_t) { mem_free(p); }
    template <class U> bool operator==(const ArenaAllocator<U> &) const { return true; }
};

} // namespace np
