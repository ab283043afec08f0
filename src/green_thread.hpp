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
    // The shim's thread pointer (a TCB of its own), entered at each switch
    // into this thread; null: it runs on its worker's.
    void *tls = nullptr;
    bool keep_tid = false;           // its TCB's tid is not the worker's
    // Such a thread may be readied onto another worker while it still runs
    // its last instructions on the old one: taken only once this is false.
    std::atomic<bool> oncpu{false};
    // Join: 0 running, 1 a joiner waits (joiner set), 2 finished, 3 detached
    // (the shim's pthread_detach: released when it finishes).
    std::atomic<int> join_state{0};
    Waiter *joiner = nullptr;
    [[no_unique_address]] SanThread san; // sanitizer.hpp (empty without one)
};

} // namespace np
