// A green thread: its saved stack pointer, its place in run queues and the
// bookkeeping for join.  The object lives at the top of its own stack, so a
// spawn costs no allocation beyond the (pooled) stack.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "sanitizer.hpp"

namespace np {

struct Worker;
struct Waiter;

struct StackPool;

struct Stack {
    StackPool *pool = nullptr;   // where it goes back to
    char *lo = nullptr;          // lowest usable byte
    char *hi = nullptr;          // one past the top of the slot
    uint64_t *canary = nullptr;  // neighbour's canary below lo (unguarded slots)
    bool guarded = false;
    unsigned vg_id = 0;          // valgrind's id while in use (see stack_pool.cpp)
};

// What a parked thread waits for, for np_dump (dump.cpp).  Written by the
// thread itself just before it publishes its Waiter (so a waker's ready(),
// which sets runnable again, always comes after), read by the dump without a
// lock: a dump is a snapshot of racing threads, never a synchronisation.
enum class WaitKind : uint8_t { runnable, io, sleep, mutex, cond, join, futex, fd_lock, syscall, close, park };

// The registry of started threads (scheduler.cpp), a circular list per
// home worker: a first run and an exit take that worker's lock, seldom
// contended, and np_dump walks it.  A dump's cursor is a link with no
// thread around it.  Threads not started yet are in the run queues.
struct GThread;
struct ThreadLink {
    ThreadLink *prev = nullptr, *next = nullptr;
    GThread *g = nullptr;            // null: a list's head, or a cursor
};

struct GThread {
    void *sp = nullptr;              // saved by np_ctx_switch while not running
    GThread *next = nullptr;         // run queue link
    Worker *home = nullptr;          // set when it first runs; never changes after
    bool started = false;            // only never-run threads may move between workers
    bool joinable = false;
    void (*fn)(void *) = nullptr;
    void *(*fn_ret)(void *) = nullptr;
    void *arg = nullptr;
    void *result = nullptr;
    Stack stack;
    uint64_t id = 0;
    uintptr_t gs = 0;                // its gs base while not running (thread_pointer.hpp)
    // The shim's thread pointer (a TCB of its own), entered at each switch
    // into this thread; null: it runs on its worker's.
    void *tls = nullptr;
    bool keep_tid = false;           // its TCB's tid is not the worker's
    // It parked holding a lock of glibc's own that names its owner by the
    // TCB's tid (npshim_tid_owner_words): its TCB and the lock carry an id
    // of its own until it lets go of the lock (see enter_tls).
    bool word_tid = false;
    // Set by the thread itself (npshim_thread_pin): it stays on its home
    // worker from now on, as a thread without a TCB of its own does, for
    // state the kernel keeps per OS thread (a ptrace tracer).
    bool pinned = false;
    // Such a thread may be readied onto another worker while it still runs
    // its last instructions on the old one: taken only once this is false.
    std::atomic<bool> oncpu{false};
    // Join: 0 running, 1 a joiner waits (joiner set), 2 finished, 3 detached
    // (the shim's pthread_detach: released when it finishes).
    std::atomic<int> join_state{0};
    Waiter *joiner = nullptr;
    // For np_dump: what it waits for and since when (coarse clock), on
    // what (a PollDesc, a lock, a futex word; a join: the joined thread's
    // id, not a pointer to it), the direction of an I/O wait; its registry
    // link and list; a name (the shim's pthread_setname_np).
    std::atomic<WaitKind> why{WaitKind::runnable};
    uint8_t wait_mode = 0;
    const void *wait_obj = nullptr;
    int64_t wait_since = 0;
    int64_t wait_deadline = 0;       // sleeps, timed cond and futex waits (0 none)
    ThreadLink all;
    struct ThreadList *all_list = nullptr;
    char name[16] = {};
    [[no_unique_address]] SanThread san; // sanitizer.hpp (empty without one)
};

// Whether a started thread may run on another worker than its home: one
// with a TCB of its own, unless it pinned itself.
inline bool movable(const GThread *g) { return g->tls && !g->pinned; }

// The next thread of a run queue, while the one before it runs: the lines
// its switch and return will touch (its saved registers and the frames
// above them, its TCB), and the thread after it.  With thousands of
// threads each is cold by its turn; the thread itself was fetched the same
// way one turn earlier, so reading it here costs nothing.
// Only addresses to prefetch: a thread readied while its old worker still
// switches away from it may be writing sp meanwhile.
inline void warm_up(const GThread *n) {
    __builtin_prefetch(n->next);
    if (auto *sp = static_cast<const char *>(__atomic_load_n(&n->sp, __ATOMIC_RELAXED)))
        for (int i = 0; i < 8; i++) __builtin_prefetch(sp + 64 * i);
    if (void *tls = __atomic_load_n(&n->tls, __ATOMIC_RELAXED)) __builtin_prefetch(tls);
}

} // namespace np
