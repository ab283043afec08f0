// A green thread's life outside the switch: its id and stack, the registry
// np_dump walks, spawn, join and detach, and its release once it ended
// (finish_dead, right after the switch away from it: scheduler.cpp).
#include "runtime.hpp"

#include <cerrno>
#include <mutex>
#include <unistd.h>

#include "context.hpp"
#include "mutex.hpp"
#include "sanitizer.hpp"
#include "thread_pointer.hpp"

namespace np {

static std::atomic<uint64_t> next_id{1};

uint64_t new_thread_id() { return next_id.fetch_add(1, std::memory_order_relaxed); }

// One more live thread.  The second ever: the workers start-up left for
// later start now.
void count_new_thread() {
    rt->live.fetch_add(1, std::memory_order_relaxed);
    if (rt->spawned.fetch_add(1, std::memory_order_relaxed) == 1 &&
        rt->rest_pending.load(std::memory_order_acquire))
        start_rest();
}

// The registry (np_dump's): into its home worker's list when it first runs
// there, out of it at release.  Both happen on that worker (but for a join
// from elsewhere, or a thread with a TCB of its own that moved), so the
// lock is the worker's own and seldom contended; a list per creator would
// have the creator and the thief of every stolen thread share it.
void register_thread(GThread *g, Worker *w) {
    ThreadList *l = &w->threads;
    g->all.g = g;
    g->all_list = l;
    l->lock.lock();
    g->all.prev = &l->head;
    g->all.next = l->head.next;
    l->head.next->prev = &g->all;
    l->head.next = &g->all;
    l->lock.unlock();
}

static void unregister_thread(GThread *g) {
    ThreadList *l = g->all_list;
    l->lock.lock();
    g->all.prev->next = g->all.next;
    g->all.next->prev = g->all.prev;
    l->lock.unlock();
}

static void release_thread(GThread *g) {
    // First: while a dump holds the list's lock, the stack stays this one's.
    if (g->all_list) unregister_thread(g);
    san_thread_release(g);
    if (g->tls && tls_release) tls_release(g->tls);
    Stack s = g->stack;
    g->~GThread();
    Worker *w = cur_worker();
    if (!s.pool) {
    } // the program's own stack (pthread_attr_setstack): its to free
    else if (s.pool != &rt->stacks) s.pool->release(s);
    else if (w) w->stacks.release(rt->stacks, s);
    else rt->stacks.release(s);
    rt->live.fetch_sub(1, std::memory_order_relaxed);
}

// Runs right after the switch away from a thread that returned: its stack is
// no longer in use, so it can be recycled or handed to its joiner.
void finish_dead(Worker *w) {
    GThread *g = w->dead;
    w->dead = nullptr;
    if (!g->joinable) {
        release_thread(g);
        return;
    }
    int was = g->join_state.exchange(2, std::memory_order_acq_rel);
    if (was == 1) g->joiner->wake();
    else if (was == 3) release_thread(g); // detached meanwhile
}

void detach(GThread *g) {
    int expect = 0;
    if (g->join_state.compare_exchange_strong(expect, 3, std::memory_order_acq_rel)) return;
    if (expect == 2) release_thread(g); // already finished
}

// The pool for one stack size (one per size; a handful of sizes expected).
static Mutex sized_mu;

// A forked child: no other thread holds it any more.
void sized_pools_after_fork() { new (&sized_mu) Mutex(); }

static StackPool *sized_pool(size_t size) {
    Mutex &mu = sized_mu;
    for (int i = 0; i < Runtime::kMaxSizedPools; i++) {
        if (rt->sized_size[i].load(std::memory_order_acquire) == size) return rt->sized[i].load();
    }
    std::lock_guard<Mutex> lk(mu);
    for (int i = 0; i < Runtime::kMaxSizedPools; i++) {
        size_t have = rt->sized_size[i].load(std::memory_order_acquire);
        if (have == size) return rt->sized[i].load();
        if (have) continue;
        StackPool *p = make<StackPool>();
        if (!p) return nullptr;
        p->init(size, size % size_t(sysconf(_SC_PAGESIZE)) != 0);
        rt->sized[i].store(p, std::memory_order_release);
        rt->sized_size[i].store(size, std::memory_order_release);
        return p;
    }
    return nullptr; // too many distinct sizes
}

int spawn(void (*fn)(void *), void *(*fn_ret)(void *), void *arg, bool joinable, GThread **out,
          size_t stack_size) {
    GThread *g;
    if (int e = create(fn, fn_ret, arg, joinable, &g, stack_size)) return e;
    if (out) *out = g;
    ready(g);
    return 0;
}

int create(void (*fn)(void *), void *(*fn_ret)(void *), void *arg, bool joinable, GThread **out,
           size_t stack_size, const Stack *given) {
    if (int e = runtime_ensure()) return e;
    Worker *w = cur_worker();
    Stack s;
    bool ok;
    if (given) {
        s = *given;
        s.pool = nullptr;
        ok = true;
    } else if (stack_size && stack_size != rt->stacks.stack_size()) {
        StackPool *p = sized_pool(stack_size);
        if (!p) return -EAGAIN;
        ok = p->alloc(&s);
    } else {
        ok = w ? w->stacks.alloc(rt->stacks, &s) : rt->stacks.alloc(&s);
    }
    if (!ok) return -ENOMEM;
    uintptr_t top = uintptr_t(s.hi) - 128 - sizeof(GThread);
    top &= ~uintptr_t(63);
    san_stack_fresh(s.lo, size_t(s.hi - s.lo));
    GThread *g = new (reinterpret_cast<void *>(top)) GThread();
    g->stack = s;
    g->fn = fn;
    g->fn_ret = fn_ret;
    g->arg = arg;
    g->joinable = joinable;
    g->id = new_thread_id();
    g->gs = gs_get(); // its creator's, as clone(2) gives a new thread
    g->sp = np_ctx_make(reinterpret_cast<void *>(top), thread_main);
    count_new_thread();
    *out = g;
    return 0;
}

int join(GThread *g, void **result) {
    if (g == current_g()) return -EDEADLK;
    if (g->join_state.load(std::memory_order_acquire) != 2) {
        note_wait(WaitKind::join, reinterpret_cast<const void *>(uintptr_t(g->id)));
        Waiter wt;
        g->joiner = &wt;
        int expect = 0;
        if (g->join_state.compare_exchange_strong(expect, 1, std::memory_order_acq_rel))
            wt.wait();
    }
    if (result) *result = g->result;
    release_thread(g);
    return 0;
}

} // namespace np
