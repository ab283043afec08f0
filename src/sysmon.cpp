// sysmon: a monitor thread, as Go's.  It polls a worker's poller when that
// worker has not for 10 ms (one busy running threads, or stuck in a call),
// and takes the never-run threads away from a worker that has not switched
// for 20 us while others could run them (it is stuck in a blocking call or
// a long computation).  It backs off to 10 ms ticks when there is nothing
// to do, so an idle process costs ~100 wake-ups a second (it backs off
// faster than Go's, after 5 idle rounds: wake-ups cost more on our side).
#include <cstdio>
#include <cstring>

#include "clock.hpp"
#include "libc_real.hpp"
#include "port.hpp"
#include "runtime.hpp"
#include "sys.hpp"

#include <linux/membarrier.h>
#include <sys/mman.h>

namespace np {

namespace {

constexpr int64_t kPollGap = 10'000'000;   // ns without a poll before sysmon polls
constexpr int64_t kStuck = 20'000;         // ns without a switch = stuck
// ...and this long: blocked (threads with TCBs of their own go elsewhere).
constexpr int64_t kBlocked = 1'000'000;
// ...and this long: its waiting threads go to whoever is free, even if that
// leaves the workers' shares uneven (see steal()).
constexpr int64_t kStuckLong = 10'000'000;
constexpr int64_t kTimeSlice = 10'000'000; // then ask the running thread to yield
// Threads a running worker readied for itself wait this long in its own
// queue, with another worker idle, before that one is let take them.
constexpr int64_t kLocalWait = 1'000'000;
constexpr int64_t kMinSleep = 20'000, kMaxSleep = 10'000'000;
constexpr int64_t kSettle = 100'000'000; // more free workers than procs this long: one rests
constexpr int64_t kSettleEvery = 10'000'000; // how often that is looked at
constexpr int64_t kScavengeEvery = 500'000'000; // idle stack pages go back

// The program installed a seccomp filter (npshim_sandboxed): from then on
// sysmon makes none of the calls the program itself would not make, which
// such a filter may refuse (Firefox's content sandbox traps procfs opens,
// membarrier and other threads' CPU clocks).  A trap on sysmon's thread,
// which blocks every signal, kills the process (the kernel's SIGSYS
// cannot be delivered there), and a refusal elsewhere costs a trip
// through the program's handler.  Without them it guesses as without
// procfs: a worker stuck that long may be computing, so its threads
// wait for the wall clock (ignored_slice) and its own queue stays.
std::atomic<bool> sandboxed{false};
// How many such calls sysmon has begun and not finished: once sandboxed
// is set, the filter goes in only when none is left (Dekker's way, both
// sides sequentially consistent).
std::atomic<int> risky{0};

// Whether sysmon may make such a call now; if so, done_risky() after it.
bool begin_risky() {
    risky.fetch_add(1, std::memory_order_seq_cst);
    if (!sandboxed.load(std::memory_order_seq_cst)) return true;
    risky.fetch_sub(1, std::memory_order_release);
    return false;
}
void done_risky() { risky.fetch_sub(1, std::memory_order_release); }

struct Seen {
    uint64_t switches = 0;
    int64_t since = 0;
    int64_t local_since = 0; // first seen with threads in its own queue (0: none)
    int64_t slice_cpu = -1; // the worker's CPU time when its slice ran out
};

// CPU time of the worker's OS thread (Linux's per-thread CPU clock id for
// a tid), -1 if unknown.  A worker that was only waiting for a CPU (the
// machine busy) has not computed past its slice, whatever the clock says.
int64_t worker_cpu_ns(const Worker *w) {
    pid_t tid = __atomic_load_n(&w->tid, __ATOMIC_RELAXED);
    if (tid <= 0) return -1;
    clockid_t clk = clockid_t((~unsigned(tid) << 3) | 6); // CPUCLOCK_SCHED, per thread
    struct timespec ts;
    if (!begin_risky()) return -1;
    long r = raw_syscall3(SYS_clock_gettime, clk, long(&ts), 0);
    done_risky();
    if (r != 0) return -1;
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// w let the slice it was asked to give up go by for another: it ran for
// most of that time rather than waited for a CPU.
bool ignored_slice(const Worker *w, Seen *s, int64_t stuck) {
    if (stuck <= 2 * kTimeSlice) return false;
    if (s->slice_cpu < 0) return true; // no clock: the wall clock decides
    int64_t cpu = worker_cpu_ns(w);
    return cpu < 0 || cpu - s->slice_cpu >= kTimeSlice / 2;
}

// w is stuck with never-run threads waiting: they are stealable from its
// inbox, so wake an idle worker to take them (it steals half at a time,
// within the even share while the stall is short).  Nothing is walked or
// moved here: the stuck worker may be spawning.
bool handoff(Worker *w, bool long_stall) {
    if (w->q.nfresh.load(std::memory_order_relaxed) == 0) return false;
    if (long_stall) w->stuck.store(true, std::memory_order_relaxed); // any thief may take them
    for (int i = 0; i < rt->nworkers; i++) {
        Worker *o = rt->workers[i];
        if (o == w || o->state.load(std::memory_order_relaxed) == kRunning ||
            o->dormant.load(std::memory_order_relaxed))
            continue;
        if (!stealable(o, w)) continue; // it would take none: do not wake it for nothing
        wake_worker(o);
        rt->handoffs.fetch_add(1, std::memory_order_relaxed);
        return true;
    }
    return false;
}

// w's /proc stat file, opened once.  Opened at each look, it took the
// program's lowest free number for a moment, and a daemon that closed its
// stdout and opened its log there met another number.  The worker opens it
// as it starts (sysmon_worker_started), so that it is one of the
// runtime's descriptors from the start, as its epoll set is; sysmon opens
// it again only if the program closed that number.  -1: none.
int open_stat(Worker *w) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", int(__atomic_load_n(&w->tid, __ATOMIC_RELAXED)));
    int fd = sys_open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    fd = sys_above_program(fd);
    int none = -1;
    if (w->stat_fd.compare_exchange_strong(none, fd)) return fd;
    sys_close(fd); // the other side's came first
    return none;
}

// Read from the start.  The contents name the thread, which tells a number
// the program closed and used again (its close_range of all) from ours:
// that one is left to it, and ours opened again.
ssize_t read_stat(Worker *w, char *buf, size_t n) {
    char head[24];
    size_t hl = size_t(snprintf(head, sizeof head, "%d (", int(__atomic_load_n(&w->tid, __ATOMIC_RELAXED))));
    for (int tries = 0; tries < 2; tries++) {
        int fd = w->stat_fd.load();
        if (fd < 0 && (fd = open_stat(w)) < 0) return -1;
        ssize_t got = sys_pread(fd, buf, n, 0);
        if (got > ssize_t(hl) && memcmp(buf, head, hl) == 0) return got;
        w->stat_fd.compare_exchange_strong(fd, -1);
    }
    return -1;
}

// Whether w's OS thread sleeps in the kernel (a blocking call), not
// computing: Go tells the two apart at each system call; here procfs says.
bool in_kernel_wait(Worker *w) {
    char buf[256];
    if (!begin_risky()) return false; // not known: maybe computing
    ssize_t n = read_stat(w, buf, sizeof buf - 1);
    done_risky();
    if (n <= 0) return false;
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); // the name may hold spaces
    return p && p[1] == ' ' && (p[2] == 'S' || p[2] == 'D');
}

// A full barrier on every running thread of the process (membarrier), so
// that a worker's mark on its own queue (LocalUse: a plain store, then a
// look at sysmon's claim) is seen by take_local, or sees its claim, while
// that worker computes instead of sleeping in the kernel.
bool fence_ready;

// Under a seccomp filter membarrier is not made (npshim_sandboxed); on x86
// the old way stands in, as .NET's FlushProcessWriteBuffers without it:
// taking the access away from a dirty page of ours makes the kernel
// interrupt every CPU running one of our threads to flush its TLB, and
// that interrupt is the barrier.  mprotect is what sandboxes allow (JITs
// need it).  Without either, a thread readied on a worker that then
// computes waits until that worker switches (a spin-wait for it, never).
void *fence_page; // sysmon's alone

bool fence_by_tlb_flush() {
#if defined(__x86_64__) || defined(__i386__)
    if (!fence_page) return false;
    if (raw_syscall3(SYS_mprotect, long(fence_page), 4096, PROT_READ | PROT_WRITE) != 0) return false;
    __atomic_fetch_add(static_cast<long *>(fence_page), 1, __ATOMIC_SEQ_CST); // dirty: no flush skipped
    return raw_syscall3(SYS_mprotect, long(fence_page), 4096, PROT_NONE) == 0;
#else
    return false;
#endif
}

bool fence_workers() {
    if (!begin_risky()) return fence_by_tlb_flush();
    bool ok = fence_ready && raw_syscall3(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
    done_risky();
    return ok || fence_by_tlb_flush();
}

// Whose own queue sysmon may take: asleep in a call, or computing past its
// time slice (hogged) once the barrier has made its marks visible.
bool asleep_or_fenced(Worker *w) {
    if (in_kernel_wait(w)) return true;
    return w->hogged.load(std::memory_order_relaxed) && fence_workers();
}

// take_local's test for a worker that runs: the barrier alone.
bool fenced(Worker *) { return fence_workers(); }

// Some worker other than w sleeps in its poller, free to run threads.
bool idle_other(const Worker *w) {
    for (int i = 0; i < rt->nworkers; i++) {
        const Worker *o = rt->workers[i];
        if (o != w && o->state.load(std::memory_order_relaxed) != kRunning &&
            !o->dormant.load(std::memory_order_relaxed))
            return true;
    }
    return false;
}

// Under the shim, the threads a running worker readied for itself wait in
// its own queue, which no other worker takes, until the thread it runs
// switches: a thread that readies another, then computes for a few
// milliseconds, over and over, keeps it waiting while another worker
// idles (D's collector resumes main by a signal, computes 3 ms, stops it
// again: main's restarted nanosleep never slept, and never ended).  After
// kLocalWait with a worker idle, they go where that one takes them, as
// the kernel runs a woken thread on an idle CPU.
bool spread_local(Worker *w, Seen *s, int64_t now) {
    if (!tls_release || w->state.load(std::memory_order_relaxed) != kRunning ||
        !w->local_n.load(std::memory_order_relaxed) || !idle_other(w)) {
        s->local_since = 0;
        return false;
    }
    if (!s->local_since) {
        s->local_since = now;
        return false;
    }
    if (now - s->local_since < kLocalWait) return false;
    s->local_since = 0;
    return take_local(w, fenced);
}

// Workers that run threads: not dormant, and not asleep in a call (the
// flag outlives the call on a worker that went to sleep after it; one
// computing holds its CPU, as a Go thread holds its P).  The newest of
// them beyond procs goes to *newest.
int free_workers(Worker **newest) {
    int n = rt->nworkers, procs = rt->cfg.procs, count = 0;
    for (int i = 0; i < n; i++) {
        Worker *w = rt->workers[i];
        if (w->dormant.load(std::memory_order_relaxed)) continue;
        if (w->blocked.load(std::memory_order_relaxed) && w->state.load(std::memory_order_relaxed) == kRunning &&
            (w->hogged.load(std::memory_order_relaxed) || in_kernel_wait(w)))
            continue;
        count++;
        if (newest && i >= procs) *newest = w;
    }
    return count;
}

// free_workers() as of this sysmon round (-1: not counted yet).  It reads
// the /proc stat file of every blocked worker: counted afresh for each
// blocked worker's rescue, a round cost O(n^2) reads, and a burst of 200
// threads asleep in the kernel (an OpenMP team at libgomp's barrier) took
// seconds to get its workers.  Counted once, and one up for each worker
// this round frees or adds; the next round counts again.
int round_free = -1;

// w is blocked: the threads waiting in its inbox that may run anywhere go
// to the global queue; if fewer than procs workers are left free to take
// them, a dormant one serves again or one more starts (Go hands the P of
// a thread in a system call to another M the same way).
bool rescue(Worker *w, bool long_stall, bool ignored_slice) {
    take_local(w, asleep_or_fenced); // its own queue first: into the inbox or global
    w->q.lock.lock();
    GThread *g = w->q.take_movable(SIZE_MAX);
    w->q.lock.unlock();
    bool moved = g != nullptr;
    while (g) {
        GThread *nx = g->next;
        push_global(g);
        g = nx;
    }
    // Only under the shim: there a blocked worker is a legacy call that may
    // last (waitpid, stdio); in the engine's own use it is a computation,
    // and more threads than procs would not make that go faster.
    if (!tls_release || (rt->global.empty() && !w->q.nfresh.load(std::memory_order_relaxed) &&
                         !w->local_n.load(std::memory_order_relaxed)))
        return moved;
    // Blocked 10 ms (a lock contended for a moment is not worth an OS
    // thread): in the kernel, or computing past the time slice it was
    // asked to give up (sysmon_main), which a legacy thread never does.
    if (!long_stall) return moved;
    // Computing: only once it has let its time slice's request (preempt,
    // at 10 ms) go by for another slice, so a loop of calls that never
    // park (an accept burst) yields at its next call instead.
    if (!in_kernel_wait(w)) {
        if (!ignored_slice) return moved;
        w->hogged.store(true, std::memory_order_relaxed);
    }
    // Asleep in a call: its never-run threads go where a busy worker takes
    // them too (at its next time slice), not only an idle thief.
    w->q.lock.lock();
    GThread *f = w->q.take_fresh(SIZE_MAX, SIZE_MAX);
    w->q.lock.unlock();
    for (GThread *nx; f; f = nx) {
        nx = f->next;
        push_global(f);
        moved = true;
    }
    if (round_free < 0) round_free = free_workers(nullptr);
    if (round_free >= rt->cfg.procs) return moved;
    for (int i = 0; i < rt->nworkers; i++) {
        Worker *o = rt->workers[i];
        if (o->dormant.load(std::memory_order_relaxed)) {
            o->dormant.store(false, std::memory_order_relaxed);
            wake_worker(o);
            round_free++;
            return true;
        }
    }
    if (add_worker()) {
        round_free++;
        return true;
    }
    return moved;
}

// Workers beyond procs were added while others were blocked; once more
// workers are free to run threads than procs (for a while: blocking calls
// come in bursts), the newest go dormant, one per round.  Their OS
// threads stay, asleep in their pollers, for the next burst: the
// descriptors registered there move with their threads as they wait
// elsewhere.
void settle_extras(int64_t now, int64_t *over_since) {
    Worker *newest = nullptr;
    if (free_workers(&newest) <= rt->cfg.procs || !newest) {
        *over_since = 0;
        return;
    }
    if (!*over_since) *over_since = now;
    if (now - *over_since < kSettle) return;
    newest->dormant.store(true, std::memory_order_relaxed);
    wake_worker(newest); // to push out what it holds that may run elsewhere
}

void *sysmon_main(void *arg) {
    Seen *seen = static_cast<Seen *>(arg);
    int64_t delay = kMinSleep;
    int idle_rounds = 0;
    int64_t last_scavenge = now_ns(), over_since = 0, last_settle = 0;
    for (;;) {
        struct timespec ts = {0, long(delay)};
        sys_clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr);
        int64_t now = now_ns();
        bool acted = false;
        bool waiters = netpoll_has_waiters();
        round_free = -1;
        for (int i = 0; i < rt->nworkers; i++) {
            Worker *w = rt->workers[i];
            // A worker that sleeps polls by itself; a busy one may not.
            if (waiters && w->state.load(std::memory_order_relaxed) == kRunning &&
                now - w->last_poll.load(std::memory_order_relaxed) > kPollGap && netpoll(w, 0) > 0)
                acted = true;
            if (spread_local(w, &seen[i], now)) acted = true;
            uint64_t sw = w->switches.load(std::memory_order_relaxed);
            if (w->state.load(std::memory_order_relaxed) != kRunning || sw != seen[i].switches ||
                !w->running()) {
                seen[i].switches = sw;
                seen[i].since = now;
                seen[i].slice_cpu = -1;
                continue;
            }
            if (now - seen[i].since > kStuck && handoff(w, now - seen[i].since > kStuckLong)) acted = true;
            if (now - seen[i].since > kBlocked) {
                w->blocked.store(true, std::memory_order_relaxed);
                if (rescue(w, now - seen[i].since > kStuckLong, ignored_slice(w, &seen[i], now - seen[i].since)))
                    acted = true;
                if (tls_release && w->timers.next_when.load(std::memory_order_relaxed) <= now) {
                    run_timers_of(w);
                    acted = true;
                }
            }
            // Threads wait for this worker in its queues, in its timers, or
            // in the global queue (where a blocked worker's threads go,
            // and no other worker may be free to take them).
            bool waiting = !w->q.empty() || w->local_n.load(std::memory_order_relaxed) ||
                           w->timers.next_when.load(std::memory_order_relaxed) <= now || !rt->global.empty();
            if (now - seen[i].since > kTimeSlice && waiting) {
                if (tls_release && seen[i].slice_cpu < 0) seen[i].slice_cpu = worker_cpu_ns(w); // ignored_slice's
                if (!w->preempt.exchange(true, std::memory_order_relaxed)) acted = true;
            }
        }
        if (rt->nworkers > rt->cfg.procs && now - last_settle >= kSettleEvery) {
            settle_extras(now, &over_since);
            last_settle = now;
        }
        if (now - last_scavenge > kScavengeEvery) {
            rt->stacks.scavenge();
            for (auto &p : rt->sized)
                if (StackPool *sp = p.load(std::memory_order_acquire)) sp->scavenge();
            last_scavenge = now;
        }
        // Go's back-off: 20 us while there is work, doubling to 10 ms.
        if (acted) {
            idle_rounds = 0;
            delay = kMinSleep;
        } else if (++idle_rounds > 4) {
            delay = delay * 2 > kMaxSleep ? kMaxSleep : delay * 2;
        }
    }
    return nullptr;
}

} // namespace

void sysmon_sandboxed() {
    ports_sandboxed();
    sandboxed.store(true, std::memory_order_seq_cst);
    while (risky.load(std::memory_order_seq_cst)) sys_sched_yield();
}

void sysmon_worker_started(Worker *w) {
    if (!begin_risky()) return;
    if (w->stat_fd.load() < 0) open_stat(w);
    done_risky();
}

// Once per process (and per forked child's runtime): its later barriers
// are then cheap interrupts of the CPUs running its threads.  Made before
// the runtime starts its first OS thread: the kernel makes a process that
// has more than one wait for an RCU grace period first (some 10 ms here),
// which every forked child that started threads paid in its first
// pthread_create (stress-ng's exit-group stressor: 16 ms a child, against
// 2 ms without the library); a single-threaded process's is immediate.
void sysmon_register_fence() {
    fence_ready = false;
    if (!begin_risky()) return;
    fence_ready = raw_syscall3(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    done_risky();
}

void sysmon_start() {
    void *pg = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    fence_page = pg == MAP_FAILED ? nullptr : pg;
    // Allocated here, not in the thread: the engine's allocations all
    // happen at well-defined points (np_stats counts them).
    Seen *seen = static_cast<Seen *>(mem_zalloc(sizeof(Seen) * size_t(rt->max_workers)));
    int e = seen ? start_os_thread(sysmon_main, seen, &rt->sysmon) : ENOMEM;
    if (e) say("netpoll: cannot start sysmon: %s\n", strerror(e));
    else rt->sysmon_running = true;
}

} // namespace np
