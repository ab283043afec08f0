#include "alloc.hpp"
#include "config.h"
#include "context.hpp"
#include "mutex.hpp"

#include <cstdio>
#include <atomic>
#include <cstring>
#include <mutex>

#if HAVE_JEMALLOC
// jemalloc is linked statically and hidden, so these are our private copy,
// built with the npje_ prefix (src/jemalloc/build.sh).
extern "C" {
void *npje_mallocx(size_t size, int flags);
void npje_dallocx(void *ptr, int flags);
int npje_mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);
}
#define mallocx npje_mallocx
#define dallocx npje_dallocx
#define mallctl npje_mallctl
#define NP_MALLOCX_ARENA(a) ((int)(((unsigned)(a) + 1) << 20))
#define NP_MALLOCX_ZERO 0x40
#else
#include <cstdlib>
#endif

namespace np {

// Counted here, exactly: jemalloc's own counters are merged from its
// per-thread caches lazily.
static std::atomic<uint64_t> alloc_calls;
uint64_t mem_alloc_count() { return alloc_calls.load(std::memory_order_relaxed); }
static inline void count() { alloc_calls.fetch_add(1, std::memory_order_relaxed); }

#if HAVE_JEMALLOC
static unsigned arena_index;
static int arena_flags;
static Once arena_once;

// The heap is the engine's alone (jemalloc linked in, its names hidden), so
// its first arena is: no other is made (nor, by naming it in every call,
// one per CPU as threads come), and no mallctl runs at start-up, whose
// first call sets up the statistics of every arena (a process under the
// shim pays for what runs before main).
static void arena_create() {
    arena_index = 0;
    arena_flags = NP_MALLOCX_ARENA(0);
}

static int flags() {
    arena_once.call(arena_create);
    return arena_flags;
}

static void *raw_alloc(size_t n, bool zero) {
    int f = flags();
    heap_enter();
    void *p = mallocx(n, f | (zero ? NP_MALLOCX_ZERO : 0));
    heap_leave();
    return p;
}
static void raw_free(void *p) {
    int f = flags();
    heap_enter();
    dallocx(p, f);
    heap_leave();
}

static void stats_here(void *a) {
    auto *r = static_cast<uint64_t *>(a);
    heap_enter();
    uint64_t epoch = 1;
    size_t sz = sizeof epoch;
    mallctl("epoch", &epoch, &sz, &epoch, sz); // refresh the statistics
    char name[96];
    size_t small = 0, large = 0;
    sz = sizeof small;
    snprintf(name, sizeof name, "stats.arenas.%u.small.allocated", arena_index);
    if (mallctl(name, &small, &sz, nullptr, 0) != 0) small = 0;
    sz = sizeof large;
    snprintf(name, sizeof name, "stats.arenas.%u.large.allocated", arena_index);
    if (mallctl(name, &large, &sz, nullptr, 0) != 0) large = 0;
    heap_leave();
    *r = small + large;
}

uint64_t mem_allocated() {
    flags();
    uint64_t r = 0;
    on_os_stack(stats_here, &r);
    return r;
}

#else
static void *raw_alloc(size_t n, bool zero) { return zero ? calloc(1, n) : malloc(n); }
static void raw_free(void *p) { free(p); }
uint64_t mem_allocated() { return 0; }
#endif

// The allocator's slow paths (a thread's first call sets up its cache;
// refills and flushes reach the arena) run deeper than a small green
// thread's stack allows: every call goes through the worker's OS stack.
struct Call {
    size_t n;
    bool zero;
    void *p;
};
static void alloc_here(void *a) {
    auto *c = static_cast<Call *>(a);
    c->p = raw_alloc(c->n, c->zero);
}
static void free_here(void *a) { raw_free(static_cast<Call *>(a)->p); }

static void *alloc(size_t n, bool zero) {
    count();
    Call c{n ? n : 1, zero, nullptr};
    on_os_stack(alloc_here, &c);
    return c.p;
}
void *mem_alloc(size_t n) { return alloc(n, false); }
void *mem_zalloc(size_t n) { return alloc(n, true); }
void mem_free(void *p) {
    if (!p) return;
    Call c{0, false, p};
    on_os_stack(free_here, &c);
}

} // namespace np
