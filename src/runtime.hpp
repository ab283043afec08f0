// The scheduler's shared state: workers (an OS thread each, or the host
// thread in embedded mode) each with its own poller, the global queue, and
// the operations the rest of the engine parks and wakes through.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <pthread.h>

#include "clock.hpp"
#include "config.hpp"
#include "green_thread.hpp"
#include "run_queue.hpp"
#include "stack_pool.hpp"
#include "thread_pointer.hpp"
#include "timer_heap.hpp"
#include "waiter.hpp"

namespace np {

class Port;

enum : int { kRunning = 0, kPolling = 1 }; // kPolling: asleep in its poller

struct Wakeup;

// Live threads that started on one worker: see ThreadLink.
struct ThreadList {
    SpinLock lock;
    ThreadLink head;                  // circular; empty when head.next == &head
    ThreadList() { head.prev = head.next = &head; }
};

struct Worker {
    int id = 0;
    pthread_t thread{};
    pid_t tid = 0;
    std::atomic<int> stat_fd{-1}; // its /proc stat file, kept open for sysmon (in_kernel_wait)
    // 1 once its first steps are done (worker_main): whoever starts it waits
    // for that, so the descriptors it opens are in place before the program
    // runs on, and never take for a moment a number the program's next
    // pipe() or open() would have had.
    std::atomic<uint32_t> set_up{0};
    void *os_tp = nullptr;            // the OS thread's own thread pointer
    void *g0_sp = nullptr;            // the scheduler context (OS stack)
    uintptr_t g0_gs = 0;              // and its gs base while a green thread runs
    GThread *cur = nullptr;           // running green thread, null in g0
    // cur is written only by the worker itself; other threads (sysmon,
    // stats) read it through running().
    GThread *running() const { return __atomic_load_n(&cur, __ATOMIC_RELAXED); }
    void set_cur(GThread *g) { __atomic_store_n(&cur, g, __ATOMIC_RELAXED); }
    GThread *dead = nullptr;          // exited; finished after the switch away
    GThread *leaving = nullptr;       // a movable thread switched away from (oncpu)
    RunQueue q;                       // inbox: remote wake-ups, new threads (stealable)
    // Started threads readied by this worker itself: only it touches this
    // queue, so a yield or a local wake-up takes no lock.
    GThread *local_head = nullptr, *local_tail = nullptr;
    std::atomic<size_t> local_n{0};   // read by sysmon and stats
    // ...except sysmon, from a worker blocked in a call the engine cannot
    // see (take_local): the owner marks each use, sysmon claims the queue.
    int local_busy = 0, local_claim = 0;
    TimerHeap timers;
    StackCache stacks;                // worker-private stack cache
    // This worker's poller: it sleeps in it when idle, and the descriptors
    // its threads wait on are registered with it (see poll_desc.cpp).
    Port *port = nullptr;
    std::atomic<int64_t> last_poll{0};
    std::atomic<int> state{kRunning};
    std::atomic<int64_t> sleep_until{INT64_MAX};
    uint32_t tick = 0;
    // Threads started here and not finished (they never move, so this is
    // the worker's share of the work), and whether sysmon saw the worker
    // stuck with threads waiting to start: read by thieves (steal()).
    std::atomic<int> homed{0};
    std::atomic<bool> stuck{false};
    // Set by sysmon when the running thread has not switched for 1 ms (in
    // a call the engine cannot see, or computing): threads with a TCB of
    // their own are then readied elsewhere (ready()).
    std::atomic<bool> blocked{false};
    // Under the shim, set by sysmon when the running thread has computed
    // 10 ms past that without a switch while others wait (a legacy thread
    // never heeds preempt): the worker then counts as blocked, so one more
    // runs the others, as the kernel time-slices OS threads.
    std::atomic<bool> hogged{false};
    // Set by sysmon on a worker beyond procs (one it added for blocked
    // calls) once the calls are over: it starts and takes no threads, and
    // its sleeping ones wake elsewhere, so a burst of blocking calls does
    // not leave more workers running threads than procs.  Cleared when
    // sysmon needs a worker again (before it would add one).
    std::atomic<bool> dormant{false};
    // Read by sysmon to see whether the worker is making progress.
    std::atomic<uint64_t> switches{0};
    // Set by sysmon when one thread has run for 10 ms while others wait:
    // honoured at the next ABI call (there is no asynchronous preemption).
    std::atomic<bool> preempt{false};
    bool embedded = false;
    ThreadList threads;               // started here (np_dump's registry)
    [[no_unique_address]] SanWorker san; // sanitizer.hpp (empty without one)
};

struct Runtime {
    Config cfg;
    Worker **workers = nullptr;
    // OS worker threads (0 in embedded mode): procs, plus those sysmon adds
    // while workers are blocked in calls it cannot see (up to kMaxExtra).
    // Each one added holds a thread the program made that is asleep in the
    // kernel, which would be an OS thread without the library anyway; a
    // lower cap deadlocks a program with more such threads than the cap
    // whose wake-up comes from a thread still waiting for a worker (an
    // OpenMP team of 70 at libgomp's barrier, whose futex(2) is inline).
    // So the cap only stops a runaway, as Go's 10000 Ms do.
    std::atomic<int> nworkers{0};
    int max_workers = 0;
    static constexpr int kMaxExtra = 4096;
    Worker *host = nullptr;           // embedded mode's worker
    RunQueue global;
    std::atomic<uint32_t> open_rr{0}; // spreads opens from plain OS threads
    // np_poll_fd/np_poll from outside with workers: an epoll set over the
    // workers' pollers, made on first use.
    std::atomic<int> outer_fd{-1};
    Wakeup *outer_wake = nullptr;
    std::atomic<int64_t> netpoll_waiters{0};
    StackPool stacks;
    // Pools for other stack sizes (np_go_stack), created on first use.
    static constexpr int kMaxSizedPools = 16;
    std::atomic<StackPool *> sized[kMaxSizedPools] = {};
    std::atomic<size_t> sized_size[kMaxSizedPools] = {};
    pthread_t sysmon{};
    bool sysmon_running = false;
    // Started with one worker (npshim_start_lazily): the others and sysmon
    // wait for a second thread (start_rest).
    std::atomic<bool> rest_pending{false};
    // Statistics.
    std::atomic<uint64_t> live{0}, spawned{0}, polls{0}, handoffs{0}, descriptors{0}, moves{0};
};

extern Runtime *rt;
// Not initial-exec: that would oblige glibc to find static TLS for the
// library's whole TLS block (the private jemalloc's 2.6 KiB with it) when
// it is dlopen'ed, which fails.  Built with TLS descriptors (configure's
// TLS_CFLAGS), an access costs a call returning a constant offset when
// the block is in static TLS (a program linked with the library, or the
// preload shim's), and glibc's dynamic TLS after a dlopen.
extern thread_local Worker *tls_worker;

// Green threads with a TCB of their own (the shim): where tls_worker sits
// relative to any thread pointer (static TLS has one layout in every TCB),
// and where the TCB keeps the kernel tid (-1: not written).
extern long tls_worker_off;
// That offset once the workers found it the same as the thread that
// started them (the block is in static TLS), else 0: the scheduler's reads
// then take one load from the thread pointer instead of the descriptor's
// call.  Writes keep using tls_worker: the same slot.
extern long tls_worker_static;
inline Worker *cur_worker() {
    long off = __atomic_load_n(&tls_worker_static, __ATOMIC_RELAXED);
    if (__builtin_expect(off != 0, 1)) return *reinterpret_cast<Worker **>(static_cast<char *>(tp_get()) + off);
    return tls_worker;
}
extern long tcb_tid_off;
extern int *tid_owner_words[4];        // npshim_tid_owner_words: owner fields
extern int tid_owner_nwords;
pid_t own_tid(const GThread *g);       // a thread's id of its own, above any pid
bool claim_owner_words(pid_t from, pid_t to); // owner fields at from: to; any?
extern uint64_t worker_sync_signals;   // a kernel sigset: unblocked on workers
extern void (*tls_release)(void *tp);  // the shim frees a finished thread's TCB

// Later runtimes (a forked child's too) start one worker; start_rest the rest.
void runtime_start_lazily();
int runtime_start(const np_config *cfg);  // idempotent; -EBUSY on a conflicting cfg
// rt is published with release once the runtime is built (runtime_start).
inline int runtime_ensure() { return __atomic_load_n(&rt, __ATOMIC_ACQUIRE) ? 0 : runtime_start(nullptr); }

// Names the OS thread running the caller: its own thread pointer, whatever
// TCB a shim green thread has entered.
inline const void *os_thread_self() {
    Worker *w = cur_worker();
    if (w && w->cur && w->cur->tls) return w->os_tp;
    void *tp;
#if defined(__x86_64__)
    __asm__ volatile("mov %%fs:0, %0" : "=r"(tp));
#else
    __asm__ volatile("mrs %0, tpidr_el0" : "=r"(tp));
#endif
    return tp;
}

inline GThread *current_g() {
    Worker *w = cur_worker();
    return w ? w->cur : nullptr;
}

// The calling green thread is about to wait for why (on obj, in direction
// mode, until deadline): for np_dump.  Called before the Waiter is
// published, so the waker's ready() (kRunnable) always lands after it.
inline void note_wait(WaitKind why, const void *obj = nullptr, int mode = 0, int64_t deadline = 0) {
    GThread *g = current_g();
    if (!g) return;
    g->wait_obj = obj;
    g->wait_mode = uint8_t(mode);
    g->wait_deadline = deadline;
    g->wait_since = coarse_now_ns();
    g->why.store(why, std::memory_order_relaxed);
}

// np_dump (dump.cpp): every thread's state and stack, and each worker's.
int dump_to(int fd, FILE *out);
// NP_DUMP_SIGNAL: catch that signal and dump on standard error.
void dump_signal_install(int sig);
int dump_signal_current();        // the signal, while the handler is still ours
void dump_after_fork();

// stack_size 0: the runtime's default stack.
int spawn(void (*fn)(void *), void *(*fn_ret)(void *), void *arg, bool joinable, GThread **out,
          size_t stack_size = 0);
// The same, not yet runnable: ready(g) starts it.
// given: run on that stack (the program's, pthread_attr_setstack), which
// the runtime neither guards nor frees.
int create(void (*fn)(void *), void *(*fn_ret)(void *), void *arg, bool joinable, GThread **out,
           size_t stack_size = 0, const Stack *given = nullptr);
// The calling OS thread's own execution as a green thread on [lo, lo+size),
// the stack it runs on (npshim_thread_adopt); the OS thread goes on with
// then(g, arg) on [os_lo, os_lo+os_size), which readies g.
int adopt(void *lo, size_t size, void *tp, void (*then)(GThread *, void *), void *arg, void *os_tp,
          void *os_lo, size_t os_size, GThread **out);
int join(GThread *g, void **result);
void detach(GThread *g);          // release it when it finishes
// green_thread.cpp, for the scheduler: a new thread's id; one more thread
// (the second ever starts the rest of the workers); into w's registry as
// it first runs there; the release of w->dead after the switch away.
uint64_t new_thread_id();
void count_new_thread();
void register_thread(GThread *g, Worker *w);
void finish_dead(Worker *w);
void thread_main(void *); // every green thread's first frame (scheduler.cpp)

// Park the current green thread; it runs again after ready(g).  The caller
// has published a Waiter for it already (under whatever lock guards that).
void park();
void pin_to(pid_t tid); // scheduler.cpp
void ready(GThread *g);
void push_global(GThread *g);  // runnable on any worker
void local_handoff();          // before a call that blocks the worker unseen
// sysmon: hand on the threads w readied for itself while w sleeps in the
// kernel (asleep says so); false if it could not.
bool take_local(Worker *w, bool (*asleep)(Worker *));
void wake_worker(Worker *w);   // it has new work: wake it however it waits
// How many of victim's never-run threads thief may take (scheduler.cpp).
size_t stealable(const Worker *thief, const Worker *victim);
void yield();

// A safe point: give way if sysmon asked this worker to.
void yield_preempted();
inline void preempt_point() {
    Worker *w = cur_worker();
    if (w && w->cur && __builtin_expect(w->preempt.load(std::memory_order_relaxed), 0)) yield_preempted();
}

// Timers on the current worker's heap (or the first worker's from an OS
// thread).  add/modify wake the owner if the timer is now its earliest.
void timer_add(Timer *t, int64_t when);
bool timer_del(Timer *t);            // false if it had already fired/was not queued
void timer_modify(Timer *t, int64_t when);

// The pollers (netpoll.cpp).  netpoll polls w's port and readies the
// woken; returns their count.
int netpoll(Worker *w, int64_t delay_ns);
void netpoll_port(Port *p);              // reap p without blocking (its worker's)
bool netpoll_has_waiters();
// The port a descriptor opened now registers with: the caller's worker's,
// or (from a plain OS thread) the workers' in turn.
Port *open_port();
int ports_create(Runtime *r, const Config &c); // every worker's (and the host's)
void ports_destroy(Runtime *r);

// Run fn on a helper thread while the calling green thread parks, so a
// call that blocks (regular-file I/O) never stalls its worker.
long blocking_call(long (*fn)(void *), void *arg);

// Embedded mode: run what is runnable on the host thread; the delay until
// the next timer of any worker (-1 none).
int run_embedded();
int64_t next_timer_delay();

void sysmon_start();
// Before the runtime's first OS thread (see sysmon.cpp).
void sysmon_register_fence();
// A worker's own first step: its /proc stat file for sysmon, opened now.
void sysmon_worker_started(Worker *w);
// npshim_sandboxed: sysmon's optional calls stop (returns once none is under way).
void sysmon_sandboxed();
// Another worker: for the threads a blocked one cannot run (sysmon), or
// one of procs that start-up left for later (start_rest).
bool add_worker();
// The workers beyond the first and sysmon, if start-up left them for later.
void start_rest();
// A worker's OS thread (scheduler.cpp), started by runtime.cpp.
void *worker_main(void *w);
extern long starter_off;        // tls_worker's offset in the thread that started them
void sized_pools_after_fork();  // the lock of the stack pools of other sizes
// In a forked child (the shim's): forget the parent's runtime.
void runtime_after_fork();
void pd_cache_after_fork();
void blocking_after_fork();
void outer_after_fork();
// Fire w's due timers from another thread (sysmon, for a blocked worker:
// its threads' sleeps and deadlines still end on time).
void run_timers_of(Worker *w);
void run_timers(Worker *w, int64_t now); // w's timers due by now, on w
void check_stack_overflow(GThread *g);
void stack_guard_install();
void stack_guard_thread_init();
bool stack_guard_is_handler(const void *fn);

} // namespace np
