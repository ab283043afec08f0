// The M:N scheduler.  Each worker runs green threads from its own queue and
// switches directly from one to the next; only when nothing is runnable does
// it switch to its scheduler context (g0, the OS thread's own stack), where
// find_runnable() is shaped like Go's findRunnable: timers, local queue,
// global queue, then (when another worker has threads to steal) a
// non-blocking poll and stealing, then it blocks in its own
// poller (each worker has one: see netpoll.cpp).
//
// Placement: a thread runs on the worker that first runs it and stays there.
// Compilers cache thread-local addresses across calls (__errno_location is
// declared const), so a started thread that resumed on another OS thread
// could write the old worker's errno.  Only never-run threads are moved
// (stolen by idle workers, or handed off by sysmon from a stuck worker),
// and the shim's threads, each with a TCB of its own (errno included), when
// their worker is blocked or its queue waits while another worker idles.
#include "runtime.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

#include "config.h"
#if HAVE_VALGRIND_H
#include <valgrind/memcheck.h>
#endif

#include "clock.hpp"
#include "context.hpp"
#include "futex.hpp"
#include "libc_real.hpp"
#include "port.hpp"
#include "sys.hpp"
#include "thread_pointer.hpp"

namespace np {

Runtime *rt;
thread_local Worker *tls_worker;
long tls_worker_off;
long tls_worker_static;
long starter_off; // the thread that started the workers: its tls_worker's offset
long tcb_tid_off = -1;
int *tid_owner_words[4];
int tid_owner_nwords;
uint64_t worker_sync_signals;
void (*tls_release)(void *tp);


// ---- run queues and wake-ups ---------------------------------------------

// Make w notice new work: break its poll if it sleeps there.
void wake_worker(Worker *w) {
    // The work was published before; a worker going to sleep publishes its
    // state, then looks at its queues: one of the two sees the other.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (w->embedded) {
        // The host may be anywhere in its own loop: make np_poll_fd readable.
        if (cur_worker() != w) w->port->wake();
        return;
    }
    // Claim the wake-up: of many wakers only one pays for the syscall.
    int st = w->state.load(std::memory_order_seq_cst);
    if (st == kRunning || !w->state.compare_exchange_strong(st, kRunning, std::memory_order_seq_cst))
        return;
    w->port->wake();
}

// How many never-run threads thief may take from victim.  A thread stays
// where it first runs, so taking more than evens out the two workers'
// shares (threads homed there, plus those waiting to start) would pile a
// burst of connection handlers onto whichever worker was idle when they
// were spawned.  From a stuck victim (sysmon says so) everything is fair
// game: its threads would wait for it otherwise.
size_t stealable(const Worker *thief, const Worker *victim) {
    size_t fresh = victim->q.nfresh.load(std::memory_order_relaxed);
    if (!fresh || victim->stuck.load(std::memory_order_relaxed)) return fresh;
    long gap = long(victim->homed.load(std::memory_order_relaxed)) + long(fresh) -
               long(thief->homed.load(std::memory_order_relaxed));
    return gap > 1 ? std::min(fresh, size_t(gap / 2)) : 0;
}

// Some idle worker should look for work: what it could steal from this
// worker's inbox (inbox), or the global queue.
static bool is_dormant(const Worker *w) { return w->dormant.load(std::memory_order_relaxed); }

static void wake_idle(bool inbox) {
    std::atomic_thread_fence(std::memory_order_seq_cst); // the push first (see push_global)
    Worker *self = cur_worker();
    for (int i = 0; i < rt->nworkers; i++) {
        Worker *w = rt->workers[i];
        // A thread in the global queue is any worker's: stealable() counts
        // only this one's inbox, and a dormant worker's spawn (its thread
        // did not park when sysmon told it to rest) woke none for it, so
        // it never started, and its creator's join never returned.
        if (inbox && self && !self->embedded && !stealable(w, self)) continue; // it would take none
        if (w != cur_worker() && w->state.load(std::memory_order_relaxed) != kRunning && !is_dormant(w)) {
            wake_worker(w);
            return;
        }
    }
    if (rt->host && rt->host != cur_worker()) wake_worker(rt->host);
}

// Any worker takes it; one that idles is woken for it.
void push_global(GThread *g) {
    rt->global.lock.lock();
    rt->global.push(g);
    rt->global.lock.unlock();
    // The push before the look at the workers' states: a worker going to
    // sleep stores its state, then looks at the queues (findrunnable), and
    // without this each side could see the other's old value.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    Worker *self = cur_worker();
    for (int i = 0; i < rt->nworkers; i++) {
        Worker *w = rt->workers[i];
        if (w != self && w->state.load(std::memory_order_relaxed) != kRunning && !is_dormant(w)) {
            wake_worker(w);
            return;
        }
    }
}

static void local_push_chain(Worker *w, GThread *g);

// At most this many at once: each is a cache miss under the global lock.
constexpr size_t kGlobalBatch = 64;

// The global queue's head, or null (an unlocked look first: it is mostly
// empty).  A worker that runs takes its share of the rest into its own
// queue as well, as Go's globrunqget does: a busy worker looks here only
// at every 61st switch, so hundreds of threads sysmon moved here (from a
// worker that lost its CPU for a moment), taken one a look, waited
// seconds while the threads readied after them ran (HTTP p99 0.5-1.4 s
// where the local queues' longest wait was 0.25 s).
static GThread *pop_global(Worker *w) {
    if (rt->global.empty()) return nullptr;
    GThread *more = nullptr;
    rt->global.lock.lock();
    GThread *g = rt->global.pop();
    if (g && w && !w->embedded && !is_dormant(w)) {
        size_t procs = size_t(rt->cfg.procs > 0 ? rt->cfg.procs : 1);
        size_t share = rt->global.len.load(std::memory_order_relaxed) / procs;
        if (share) more = rt->global.take_head(share < kGlobalBatch ? share : kGlobalBatch);
    }
    rt->global.lock.unlock();
    if (more) local_push_chain(w, more);
    return g;
}

static void push_inbox(Worker *w, GThread *g) {
    w->q.lock.lock();
    w->q.push(g);
    w->q.lock.unlock();
}

// Each use of the owner's queue (Worker::local_head) is marked, and waits
// while sysmon holds it (take_local).  Plain stores and a load, no fence:
// sysmon takes the queue only from a thread the kernel shows asleep, and
// a thread goes to sleep through the kernel's barriers, so its marks are
// seen; the uses make no system call, so one asleep is between uses (or
// in a page fault, with its mark up).
struct LocalUse {
    Worker *w;
    explicit LocalUse(Worker *w_) : w(w_) {
        __atomic_store_n(&w->local_busy, 1, __ATOMIC_RELAXED);
        __atomic_signal_fence(__ATOMIC_SEQ_CST); // the mark before the uses
        for (int spins = 0; __atomic_load_n(&w->local_claim, __ATOMIC_ACQUIRE); spins++)
            if (spins < 100) cpu_relax();
            else sys_sched_yield();
    }
    ~LocalUse() { __atomic_store_n(&w->local_busy, 0, __ATOMIC_RELEASE); }
};

// The threads of a detached local queue: one with a TCB of its own goes to
// any worker (unless pinned); the rest to the inbox, where sysmon finds them.
static void hand_on(Worker *w, GThread *g) {
    while (g) {
        GThread *nx = g->next;
        if (movable(g)) push_global(g);
        else push_inbox(w, g);
        g = nx;
    }
}

static GThread *local_detach(Worker *w) {
    GThread *g = w->local_head;
    w->local_head = w->local_tail = nullptr;
    w->local_n.store(0, std::memory_order_relaxed);
    return g;
}

// A call is about to block this worker in the kernel where the engine
// cannot see (waitpid, flock, system): the threads it readied for itself
// sit in a queue only it touches, so they are handed where others reach
// them first.
void local_handoff() {
    Worker *w = cur_worker();
    if (!w) return;
    GThread *g;
    {
        LocalUse use(w);
        g = local_detach(w);
    }
    hand_on(w, g);
}

// Any other call that blocks unseen (stdio's read, a read the shim does not
// park) would strand those threads until it returns, and the call may wait
// for one of them: sysmon takes them (Go's handoff of a P in a system call).
bool take_local(Worker *w, bool (*asleep)(Worker *)) {
    if (!w->local_n.load(std::memory_order_relaxed)) return false;
    __atomic_store_n(&w->local_claim, 1, __ATOMIC_SEQ_CST); // seen before the look below
    GThread *g = nullptr;
    bool ok = asleep(w) && !__atomic_load_n(&w->local_busy, __ATOMIC_SEQ_CST);
    if (ok) g = local_detach(w);
    __atomic_store_n(&w->local_claim, 0, __ATOMIC_RELEASE);
    hand_on(w, g);
    return g != nullptr;
}

// The owner-only queue (see Worker::local_head).  A look without a mark:
// the count, which sysmon may zero meanwhile (the pop then finds none).
static inline bool local_any(Worker *w) { return w->local_n.load(std::memory_order_relaxed) != 0; }

static inline void local_push_unmarked(Worker *w, GThread *g) {
    g->next = nullptr;
    if (w->local_tail) w->local_tail->next = g;
    else w->local_head = g;
    w->local_tail = g;
    w->local_n.store(w->local_n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

static inline GThread *local_pop_unmarked(Worker *w) {
    GThread *g = w->local_head;
    if (!g) return nullptr;
    w->local_head = g->next;
    if (!w->local_head) w->local_tail = nullptr;
    else warm_up(w->local_head);
    w->local_n.store(w->local_n.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
    return g;
}

static inline void local_push(Worker *w, GThread *g) {
    LocalUse use(w);
    local_push_unmarked(w, g);
}

static void local_push_chain(Worker *w, GThread *g) {
    LocalUse use(w);
    for (GThread *nx; g; g = nx) {
        nx = g->next;
        local_push_unmarked(w, g);
    }
}

static inline GThread *local_pop(Worker *w) {
    LocalUse use(w);
    return local_pop_unmarked(w);
}

// A yield's pair, under one mark.
static inline GThread *local_rotate(Worker *w, GThread *g) {
    LocalUse use(w);
    local_push_unmarked(w, g);
    return local_pop_unmarked(w);
}

static inline GThread *inbox_pop(Worker *w) {
    if (w->q.empty()) return nullptr;
    w->q.lock.lock();
    GThread *g = w->q.pop();
    w->q.lock.unlock();
    return g;
}

// Next from this worker's two queues; alternate when both have threads, so
// neither local yielders nor remote wake-ups can starve the other.
static inline GThread *pop_own(Worker *w) {
    bool inbox = !w->q.empty();
    if (local_any(w) && (!inbox || (w->tick & 1)))
        if (GThread *g = local_pop(w)) return g; // none if sysmon took them since the look
    if (inbox)
        if (GThread *g = inbox_pop(w)) return g;
    return local_pop(w);
}

static inline bool has_own_work(Worker *w) { return local_any(w) || !w->q.empty(); }

// A thread about to run for the first time settles on this worker for good.
// If an idle worker has clearly fewer threads (two fewer: the one about to
// start would only swap the imbalance), send it there instead; a burst of
// long-lived handlers from one accept loop is thus shared, whichever worker
// happened to be free when they came.  Two random candidates, not a scan:
// the choice of two is nearly as good and costs the same at any size.
static Worker *lighter(Worker *self) {
    int n = rt->nworkers;
    if (n < 2 || self->embedded) return nullptr;
    int mine = self->homed.load(std::memory_order_relaxed);
    if (mine < 2) return nullptr;
    Worker *best = nullptr;
    int least = mine - 1;
    uint32_t r = self->tick * 2654435761u;
    for (int k = 0; k < (n > 2 ? 2 : 1); k++) {
        Worker *o = rt->workers[(uint32_t(self->id) + 1 + (r >> (16 * k)) % uint32_t(n - 1)) % uint32_t(n)];
        // Only to one that sleeps, so it starts the thread now (a busy or
        // stuck one would just have it stolen back).
        if (o->state.load(std::memory_order_relaxed) == kRunning || is_dormant(o)) continue;
        // Counting the threads on their way there, so a burst is split,
        // not all sent over before the other worker starts any.
        int h = o->homed.load(std::memory_order_relaxed) + int(o->q.nfresh.load(std::memory_order_relaxed));
        if (h < least) {
            least = h;
            best = o;
        }
    }
    return best;
}

// Pop from this worker's queues, handing a never-run thread to a lighter
// worker when there is one.
static GThread *pop_placed(Worker *w) {
    for (;;) {
        GThread *g = pop_own(w);
        if (!g) return g;
        if (is_dormant(w) && (!g->started || movable(g))) { // to those that run
            push_global(g);
            continue;
        }
        if (g->started) return g;
        Worker *o = lighter(w);
        if (!o) return g;
        push_inbox(o, g);
        wake_worker(o);
    }
}

void ready(GThread *g) {
    Worker *self = cur_worker();
    g->why.store(WaitKind::runnable, std::memory_order_relaxed);
    if (g->started) {
        Worker *home = g->home;
        bool away = is_dormant(home);
        if (home == self && !away) {
            local_push(home, g);
            return;
        }
        // A thread with a TCB of its own may run anywhere: not behind a
        // worker that is blocked in a call the engine cannot see, nor on
        // one that is to run no more.
        if (movable(g) && (away || home->blocked.load(std::memory_order_relaxed))) {
            push_global(g);
            return;
        }
        push_inbox(home, g);
        wake_worker(home);
        return;
    }
    // Never run: keep it here (cache-warm) where an idle worker can steal it.
    bool inbox = self && !is_dormant(self);
    if (inbox) {
        push_inbox(self, g);
    } else {
        rt->global.lock.lock();
        rt->global.push(g);
        rt->global.lock.unlock();
    }
    wake_idle(inbox);
}

// ---- switching ------------------------------------------------------------

void check_stack_overflow(GThread *g) {
    NP_STACK_HERE(here);
    // Near the low end, or just past it into the guard.  Far from the stack
    // the thread runs on one of the program's own (makecontext, a coroutine
    // library's: pdns_recursor's queries), which is none of our business.
    uintptr_t at = uintptr_t(here), lo = uintptr_t(g->stack.lo);
    bool low = at < lo + 256 && at + 65536 >= lo;
    // An unused neighbour's page was never written: 0 is fine there.
    uint64_t c = g->stack.canary ? *g->stack.canary : kStackCanary;
    bool smashed = c != kStackCanary && c != 0;
    if (!low && !smashed) return;
    char msg[160];
    int n = snprintf(msg, sizeof msg,
                     "netpoll: green thread %llu overflowed its %zu-byte stack\n",
                     (unsigned long long)g->id, size_t(g->stack.hi - g->stack.lo));
    ssize_t r = sys_write(2, msg, size_t(n));
    (void)r;
    abort();
}

// First thing on the new stack: the thread switched away from is off this
// CPU now (its sp is saved), and a thread that ended can be released.
static inline void after_switch(Worker *w) {
    if (GThread *g = w->leaving) {
        w->leaving = nullptr;
        g->oncpu.store(false, std::memory_order_release);
    }
    if (w->dead) finish_dead(w);
}

// glibc's own recursive locks that name their owner by the TCB's tid (the
// dynamic linker's dl_load_lock, held while dlopen() and dlclose() run a
// library's constructors and destructors, which may park): a thread that
// parks holding one would leave it to the worker's tid, so another thread
// of that worker would take it as its own (a second dlopen() returning the
// library while its constructor still runs) and the holder, woken on
// another worker, could not unlock it (EPERM, ignored by ld.so: every later
// dlopen(), dlsym() or exit() of another worker's thread waits for ever).
// So as it leaves holding one, the lock and its TCB take its own id, as
// the shim does for a robust mutex (sync.cpp); once it let go of them all,
// its TCB takes its worker's tid again.
pid_t own_tid(const GThread *g) { return pid_t(0x20000000 | (g->id & 0x1fffffff)); }
bool claim_owner_words(pid_t from, pid_t to) {
    bool any = false;
    for (int i = 0; i < tid_owner_nwords; i++)
        if (__atomic_load_n(tid_owner_words[i], __ATOMIC_RELAXED) == from) {
            if (from != to) __atomic_store_n(tid_owner_words[i], to, __ATOMIC_RELAXED);
            any = true;
        }
    return any;
}

// Enter to's TCB (or the worker's own) before switching to it.  Only
// here, right before the assembly switch, so no C code runs with a TCB that
// is not its thread's; the TCB learns its worker (tls_worker) and its
// kernel tid first, as glibc's own reads of them need.
static inline void enter_tls(Worker *w, GThread *from, GThread *to) {
    void *cur = from && from->tls ? from->tls : w->os_tp;
    void *next = to && to->tls ? to->tls : w->os_tp;
    if (cur == next) return;
    // A TCB may be shared with a parked OS thread (the program's main
    // thread): it must not see this worker there once the thread left.
    long off = __atomic_load_n(&tls_worker_off, __ATOMIC_RELAXED);
    if (from && from->tls) {
        char *tcb = static_cast<char *>(from->tls);
        *reinterpret_cast<Worker **>(tcb + off) = nullptr;
        // Only the thread leaving can hold such a lock under w->tid: one
        // that left holding one carries its own id (above).
        if (tcb_tid_off >= 0 && !from->keep_tid && !from->word_tid &&
            claim_owner_words(w->tid, own_tid(from))) {
            from->word_tid = true;
            *reinterpret_cast<pid_t *>(tcb + tcb_tid_off) = own_tid(from);
        }
    }
    if (to && to->tls) {
        char *tcb = static_cast<char *>(to->tls);
        *reinterpret_cast<Worker **>(tcb + off) = w;
        if (to->word_tid && !claim_owner_words(own_tid(to), own_tid(to))) to->word_tid = false;
        if (tcb_tid_off >= 0 && !to->keep_tid && !to->word_tid) *reinterpret_cast<pid_t *>(tcb + tcb_tid_off) = w->tid;
    }
    tp_set(next);
}

// Switch from the running thread (or g0 when from is null) to `to`.
static inline void switch_to(Worker *w, GThread *from, GThread *to) {
    if (!to->started) {
        to->started = true;
        to->home = w;
        w->homed.fetch_add(1, std::memory_order_relaxed);
        register_thread(to, w);
    } else if (to->home != w) { // a thread with its own TCB, moved here
        to->home->homed.fetch_sub(1, std::memory_order_relaxed);
        to->home = w;
        w->homed.fetch_add(1, std::memory_order_relaxed);
    }
    if (w->blocked.load(std::memory_order_relaxed)) w->blocked.store(false, std::memory_order_relaxed);
    if (w->hogged.load(std::memory_order_relaxed)) w->hogged.store(false, std::memory_order_relaxed);
    if (w->stuck.load(std::memory_order_relaxed)) w->stuck.store(false, std::memory_order_relaxed);
    w->set_cur(to);
    w->preempt.store(false, std::memory_order_relaxed);
    w->switches.store(w->switches.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    void **save = from ? &from->sp : &w->g0_sp;
    if (to->tls) {
        while (to->oncpu.load(std::memory_order_acquire)) cpu_relax(); // still leaving its old worker
        to->oncpu.store(true, std::memory_order_relaxed);
    }
    if (from && from->tls) w->leaving = from;
    enter_tls(w, from, to);
    gs_switch(from ? &from->gs : &w->g0_gs, to->gs);
    san_switch_begin(w, from, to, from && from == w->dead);
    np_ctx_switch(save, to->sp, nullptr);
    // Back on this thread: on the same worker, unless it has a TCB of its
    // own and moved (tls_worker is then the new one's).
    w = cur_worker();
    san_switch_end(w, from);
    after_switch(w);
}

static inline void switch_to_g0(Worker *w, GThread *from) {
    w->set_cur(nullptr);
    if (from->tls) w->leaving = from;
    enter_tls(w, from, nullptr);
    gs_switch(&from->gs, w->g0_gs);
    san_switch_begin(w, from, (GThread *)nullptr, from == w->dead);
    np_ctx_switch(&from->sp, w->g0_sp, nullptr);
    w = cur_worker();
    san_switch_end(w, from);
    after_switch(w);
}

static inline void maybe_timers(Worker *w) {
    if (w->timers.next_when.load(std::memory_order_relaxed) == INT64_MAX) return;
    run_timers(w, now_ns());
}

// Pick the next local thread for a thread that yields or parks.
static GThread *next_local(Worker *w) {
    if ((++w->tick % 61) == 0) {
        maybe_timers(w);
        // A busy worker never reaches its idle path: let readiness in too.
        if (netpoll_has_waiters()) netpoll(w, 0);
        // Fairness: let the global queue in now and then.
        if (!is_dormant(w))
            if (GThread *g = pop_global(w)) return g;
    }
    return pop_placed(w);
}

void yield() {
    Worker *w = cur_worker();
    GThread *g = w ? w->cur : nullptr;
    if (!g) {
        sys_sched_yield();
        return;
    }
    check_stack_overflow(g); // even when nothing else runs and we stay
    g->why.store(WaitKind::runnable, std::memory_order_relaxed);
    if ((++w->tick % 61) != 0 && local_any(w) && w->q.empty()) {
        // The fast path: only local threads, no lock.  sysmon may have
        // taken them all since the look (spread_local): then g comes back
        // and stays, as switching to itself would wait for ever for it to
        // leave its CPU.
        GThread *next = local_rotate(w, g);
        if (next != g) switch_to(w, g, next);
        return;
    }
    // Timers, the inbox, the global queue, or nothing to yield to.
    w->tick--;
    GThread *next = next_local(w);
    if (!next) next = pop_global(w);
    if (!next || next == g) return;
    local_push(w, g);
    switch_to(w, g, next);
}

// Asked by sysmon: the timers that fell due while this thread ran go first
// (a sleeper waiting on them is often why), then the others get a turn.
void yield_preempted() {
    Worker *w = cur_worker();
    w->preempt.store(false, std::memory_order_relaxed);
    maybe_timers(w);
    // A time slice ended: the global queue goes first (Go puts the
    // preempted thread at its tail), or threads busy on this worker would
    // let it in only every 61st switch, and slices are 10 ms long.
    if (GThread *next = pop_global(w)) {
        GThread *g = w->cur;
        g->why.store(WaitKind::runnable, std::memory_order_relaxed);
        local_push(w, g);
        switch_to(w, g, next);
        return;
    }
    yield();
}

void park() {
    Worker *w = cur_worker();
    GThread *g = w->cur;
    check_stack_overflow(g);
    GThread *next = next_local(w);
    if (next == g) return; // readied before we got away
    if (next) switch_to(w, g, next);
    else switch_to_g0(w, g);
}

// The running thread stays on one worker from now on: the one whose OS
// thread is tid (moving there first), or its own (tid 0, or no worker has
// it).  The kernel keeps some state per OS thread, not per process: a
// ptrace tracer is the OS thread that attached, or that forked a child
// that asked to be traced, and its requests must come from there.
void pin_to(pid_t tid) {
    Worker *w = cur_worker();
    GThread *g = w ? w->cur : nullptr;
    if (!g) return;
    Worker *to = w;
    int n = rt->nworkers.load(std::memory_order_acquire);
    for (int i = 0; tid && g->tls && i < n; i++)
        if (__atomic_load_n(&rt->workers[i]->tid, __ATOMIC_RELAXED) == tid) to = rt->workers[i];
    g->pinned = true;
    if (to == w) return;
    // Readied onto its new home (ready() puts a started thread in its
    // home's inbox, even a dormant one's), then away from this worker: the
    // new one takes it once it has left (oncpu).
    w->homed.fetch_sub(1, std::memory_order_relaxed);
    g->home = to;
    to->homed.fetch_add(1, std::memory_order_relaxed);
    ready(g);
    park();
}

// ---- thread lifecycle -----------------------------------------------------

void thread_main(void *) {
    Worker *w = cur_worker();
    san_switch_end(w, w->cur);
    after_switch(w);
    GThread *g = w->cur;
    if (g->fn) g->fn(g->arg);
    else g->result = g->fn_ret(g->arg);
    // Exit: pick the next thread; this stack is finished after the switch.
    w = cur_worker();
    check_stack_overflow(g);
    w->homed.fetch_sub(1, std::memory_order_relaxed);
    w->dead = g;
    GThread *next = next_local(w);
    if (next) switch_to(w, g, next);
    else switch_to_g0(w, g);
    __builtin_unreachable();
}

void on_os_stack(void (*fn)(void *), void *arg) {
    Worker *w = cur_worker();
    GThread *g = w ? w->cur : nullptr;
    NP_STACK_HERE(here);
    // Only from the green stack itself: not when already on the OS stack
    // (a nested call), nor from a signal handler on an alternate stack.
    if (g && w->g0_sp && here >= g->stack.lo && here < g->stack.hi) {
        // Below the scheduler's saved frame, past the red zone: that stack
        // is idle while one of its green threads runs.
        char *top = static_cast<char *>(w->g0_sp) - 256;
#if HAVE_VALGRIND_H
        // memcheck marked it unaddressable when those frames returned.
        constexpr size_t kSpan = 64 * 1024;
        VALGRIND_MAKE_MEM_UNDEFINED(top - kSpan, kSpan);
#endif
        // And on the worker's own TCB: the engine's allocator keeps its
        // thread state in TLS, one per OS thread, never one per green thread.
        if (g->tls) tp_set(w->os_tp);
        san_call_on(w, g, top, fn, arg);
        if (g->tls) tp_set(g->tls);
        return;
    }
    if (g && g->tls) {
        tp_set(w->os_tp);
        fn(arg);
        tp_set(g->tls);
        return;
    }
    fn(arg);
}

namespace {
struct Adoption {
    GThread *g;
    void (*then)(GThread *, void *);
    void *arg;
    void *os_tp;
    void *fake; // ASan's fake stack of the context left (never resumed here)
};

[[noreturn]] void adopted_os_side(void *p) {
    Adoption a = *static_cast<Adoption *>(p); // that frame is g's: copied before g can run
#if NP_ASAN
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
    tp_set(a.os_tp);
    a.then(a.g, a.arg);
    abort();
}
} // namespace

// The caller's registers are saved in g as a switch away from a thread
// saves them; g has not started, so its first switch-in on a worker
// registers it and resumes it here, as a new thread's first run would.
int adopt(void *lo, size_t size, void *tp, void (*then)(GThread *, void *), void *arg, void *os_tp,
          void *os_lo, size_t os_size, GThread **out) {
    if (NP_TSAN) return -ENOTSUP; // the OS thread's new stack would need a fiber of its own
    if (cur_worker()) return -EINVAL; // a worker, or a green thread already
    if (int e = runtime_ensure()) return e;
    GThread *g = make<GThread>(); // kept for the process's life: it never ends as a thread
    if (!g) return -ENOMEM;
    g->stack.lo = static_cast<char *>(lo);
    g->stack.hi = g->stack.lo + size;
    g->id = new_thread_id();
    g->gs = gs_get();
    g->tls = tp;
    g->keep_tid = true;
    count_new_thread();
    *out = g;
    Adoption a{g, then, arg, os_tp, nullptr};
#if NP_ASAN
    __sanitizer_start_switch_fiber(&a.fake, os_lo, os_size);
#else
    (void)os_size;
#endif
    void *top = reinterpret_cast<void *>((uintptr_t(os_lo) + os_size) & ~uintptr_t(63));
    np_ctx_switch(&g->sp, np_ctx_make(top, adopted_os_side), &a);
    Worker *w = cur_worker();
    san_switch_end(w, g);
    after_switch(w);
    return 0;
}

// ---- waiters -----------------------------------------------------------

Waiter::Waiter() : g(current_g()) {}

bool Waiter::wait(int64_t deadline) {
    if (g) {
        park();
        return true;
    }
    while (futex.load(std::memory_order_acquire) == 0) {
        if (deadline >= 0 && deadline != INT64_MAX && now_ns() >= deadline) return false;
        // An interruptible wait ends when a signal's handler ran on this
        // thread.  The kernel restarts an untimed futex wait after an
        // SA_RESTART handler (the shim installs its own so), never a timed
        // one: so such a wait always has a deadline, an hour at most.
        int64_t d = deadline;
        if (intr && (d < 0 || d == INT64_MAX)) d = now_ns() + 3600 * int64_t(1000000000);
        if (futex_wait(&futex, 0, d) && intr) return false;
    }
    return true;
}

void Waiter::wake() {
    if (g) {
        ready(g);
        return;
    }
    futex.store(1, std::memory_order_release);
    futex_wake(&futex, 1);
}

// ---- the idle path ------------------------------------------------------

static GThread *steal(Worker *self) {
    int n = rt->nworkers;
    if (n < 2) return nullptr;
    int start = int(self->tick % unsigned(n));
    for (int k = 0; k < n; k++) {
        Worker *v = rt->workers[(start + k) % n];
        if (v == self) continue;
        size_t even = stealable(self, v);
        if (!even) continue;
        v->q.lock.lock();
        // Half, but a small batch: the walk holds the victim's lock, and each
        // node is a cache miss on another stack.
        size_t want = (v->q.nfresh.load(std::memory_order_relaxed) + 1) / 2;
        if (want > even) want = even;
        if (want > 32) want = 32;
        GThread *got = v->q.take_fresh(want, 64);
        v->q.lock.unlock();
        if (!got) continue;
        GThread *first = got;
        got = got->next;
        if (got) {
            self->q.lock.lock();
            while (got) {
                GThread *nx = got->next;
                self->q.push(got);
                got = nx;
            }
            self->q.lock.unlock();
        }
        return first;
    }
    return nullptr;
}

static bool fresh_elsewhere(Worker *self) {
    for (int i = 0; i < rt->nworkers; i++) {
        Worker *v = rt->workers[i];
        if (v != self && v->q.nfresh.load(std::memory_order_relaxed)) return true;
    }
    return false;
}

static GThread *pop_queues(Worker *w) {
    if (GThread *g = pop_placed(w)) return g;
    return is_dormant(w) ? nullptr : pop_global(w);
}

static int64_t poll_delay(Worker *w, int64_t now) {
    int64_t next = w->timers.next_when.load(std::memory_order_acquire);
    if (next == INT64_MAX) return -1;
    return next > now ? next - now : 0;
}

// Block until something is runnable on w (workers only, never embedded).
static GThread *find_runnable(Worker *w) {
    for (;;) {
        maybe_timers(w);
        if (GThread *g = pop_queues(w)) return g;
        // Go polls without blocking before it steals, to prefer its own
        // ready threads; with nothing to steal the blocking poll below
        // returns at once when something is ready, so the extra system
        // call is made only when there is something to steal.
        if (!is_dormant(w) && fresh_elsewhere(w)) {
            if (netpoll_has_waiters() && netpoll(w, 0) > 0) continue;
            if (GThread *g = steal(w)) return g;
        }

        // No spinning: readiness arrives through this worker's own poller,
        // so a spin would mostly burn the CPU the other worker needs.

        // Announce the sleep, then look once more (pairs with wake_worker),
        // and sleep in the poller: readiness and wake-ups both end it.
        int64_t now = now_ns();
        int64_t delay = poll_delay(w, now);
        w->sleep_until.store(delay < 0 ? INT64_MAX : add_sat(now, delay), std::memory_order_release);
        w->state.store(kPolling, std::memory_order_seq_cst);
        if (GThread *g = pop_queues(w)) {
            w->state.store(kRunning, std::memory_order_relaxed);
            return g;
        }
        netpoll(w, delay);
        w->state.store(kRunning, std::memory_order_relaxed);
        w->sleep_until.store(INT64_MAX, std::memory_order_relaxed);
    }
}

void *worker_main(void *arg) {
    Worker *w = static_cast<Worker *>(arg);
    tls_worker = w;
    w->os_tp = tp_get();
    // The same in every thread (static TLS); stored by each worker before
    // its first switch, so relaxed atomics are enough.
    long off = reinterpret_cast<char *>(&tls_worker) - static_cast<char *>(w->os_tp);
    __atomic_store_n(&tls_worker_off, off, __ATOMIC_RELAXED);
    // Dynamic TLS (after a dlopen) puts each thread's block apart: the
    // same offset in two threads means static TLS, the same in all.
    if (off == __atomic_load_n(&starter_off, __ATOMIC_RELAXED)) __atomic_store_n(&tls_worker_static, off, __ATOMIC_RELAXED);
    __atomic_store_n(&w->tid, sys_gettid(), __ATOMIC_RELAXED); // sysmon and np_dump read it
    sysmon_worker_started(w);
    w->port->bind_owner();
    stack_guard_thread_init();
    // Under the shim: the signals a legacy thread's own call raises
    // (SIGPIPE, faults) are taken here, in that thread's context.
    if (worker_sync_signals) raw_syscall4(SYS_rt_sigprocmask, SIG_UNBLOCK, long(&worker_sync_signals), 0, 8);
    w->set_up.store(1, std::memory_order_release);
    futex_wake(&w->set_up);
    for (;;) {
        GThread *g = find_runnable(w);
        switch_to(w, nullptr, g);
    }
    return nullptr;
}

// Embedded mode: run what is runnable on the host thread, then return.
int run_embedded() {
    Worker *w = rt->host;
    Worker *saved = cur_worker();
    if (saved && saved->cur) return -EDEADLK; // not from a green thread
    tls_worker = w;
    int ran = 0;
    for (;;) {
        maybe_timers(w);
        GThread *g = pop_queues(w);
        if (!g) break;
        switch_to(w, nullptr, g);
        ran++;
    }
    tls_worker = saved;
    return ran;
}

int64_t next_timer_delay() {
    int64_t now = now_ns();
    int64_t best = -1;
    auto consider = [&](Worker *w) {
        int64_t d = poll_delay(w, now);
        if (d >= 0 && (best < 0 || d < best)) best = d;
    };
    for (int i = 0; i < rt->nworkers; i++) consider(rt->workers[i]);
    if (rt->host) {
        consider(rt->host);
        if (has_own_work(rt->host) || !rt->global.empty()) best = 0;
    }
    return best;
}

} // namespace np
