// What the shim's files share: whether it runs, the record of each legacy
// thread, the real libc functions, and the one per-call loop every
// interposed blocking call goes through.
#pragma once
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include <netpoll.h>
#include <netpoll_shim.h>

// glibc's end for a failed _FORTIFY_SOURCE check: its message, then abort.
extern "C" [[noreturn]] void __chk_fail(void);

namespace shim {

// ---- state -------------------------------------------------------------

// 1: threads are green and blocking calls park; 0: every interposed call
// passes straight through (glibc not as expected, NP_SHIM=0, setuid, ...).
extern int active;
void init_once();            // idempotent; decides `active`
inline bool on() {
    if (__builtin_expect(active < 0, 0)) init_once();
    return active > 0;
}

// The program installed a seccomp filter, or runs under one (process.cpp):
// from then on the shim makes no call of its own that the program would
// not make (see note_seccomp_filter).
extern std::atomic<bool> sandboxed;
void note_seccomp_filter(bool filter, const void *prog); // strict mode: false
void note_inherited_filter(); // at start-up: a filter the process came with

// Parks until fd has something to read, for a read libc makes itself
// (stdio): 0, or the negative errno the read would have failed with (io.cpp).
int wait_readable(int fd);
bool parks_here(int fd); // a green thread's blocking read of fd parks
// Parks until fd is ready for mode (NP_READ, NP_WRITE), as a blocking call
// on it waits: 0, or the negative errno that call would fail with
// (EAGAIN: the program made it non-blocking, or its SO_*TIMEO ran out).
int wait_ready(int fd, int mode);

// One per legacy thread: lives right above its TCB (tcb.cpp), or static for
// the program's main thread.
struct Thread {
    uint32_t magic;
    static constexpr uint32_t kMagic = 0x6e707468; // "npth"
    npshim_thread *g = nullptr;        // the green thread
    void *tcb = nullptr;               // its thread pointer
    void *block = nullptr;             // the memory holding TLS, TCB and this
    void *(*fn)(void *) = nullptr;
    void *arg = nullptr;
    void *result = nullptr;
    bool detached = false;
    bool is_main = false;
    // Who will release it: 0 nobody yet, 1 a joiner (from its first look,
    // so a pthread_detach meanwhile leaves it joinable, as glibc's joinid
    // does), 2 detached.
    std::atomic<int> claim{0};
    char name[16] = {};
    sigset_t sigmask;                  // its own, never the worker's
    stack_t altstack{nullptr, SS_DISABLE, 0}; // its sigaltstack, as told: never the worker's
    // Fault handlers running (on_fault), and the mask before the outermost:
    // a siglongjmp out of one puts that back (longjmp_out).
    int fault_depth = 0;
    sigset_t fault_before;
    // The same for the handlers it runs itself (run_handler): ed leaves its
    // SIGINT handler by siglongjmp, and SIGINT stayed blocked after.
    int handler_depth = 0;
    sigset_t handler_before;
    // Cancellation (deferred, at the interposed cancellation points).
    std::atomic<int> cancel_pending{0};
    int cancel_disabled = 0;
    int cancel_async = 0;
    // What it is parked on, so pthread_cancel and signals can wake it
    // (interrupt(); fd_park()).
    std::atomic<const uint32_t *> wait_word{nullptr};
    // Bumped by every interrupt(), before it wakes wait_word: the park
    // gives up if it changed since the thread last looked (a request that
    // came between that look and the park was lost: a cancelled thread
    // stayed in pthread_cond_wait).
    std::atomic<uint32_t> interrupts{0};
    std::atomic<np_fd *> wait_fd{nullptr};
    std::atomic<int> wait_mode{0};
    // glibc robust mutexes it holds (see robust_enter in sync.cpp).
    int robust_held = 0;
    std::atomic<int> poking{0};        // interrupters at work on wait_fd
    // In a call that waits in the kernel (kernel_call): its worker's tid,
    // which signals for it are forwarded to, and forwarders at work.
    std::atomic<pid_t> kwait_tid{0};
    // pthread_cancel's poke of that worker: 1 sent, 0 the call was ended
    // with EINTR, 2 it was not in the call yet (cancel_kernel_wait).
    std::atomic<int> cancel_kick{0};
    std::atomic<bool> kwait_cancel{false}; // that call is a cancellation point
    std::atomic<int> forwarding{0};
    std::atomic<uint64_t> forwarded{0};    // sent on with tgkill: siginfo has the sender
    // Signals sent to it (pthread_kill, or routed to it), run by the thread
    // itself at its next interposed call or wake-up (signals.cpp).
    std::atomic<uint64_t> sigpending{0};
    std::atomic<uint64_t> sigwaiting{0};   // the set it waits for in sigwait()
    // Who sent the pending ones (one slot per signal would cost 8 KiB a
    // thread: kept for the latest only, which is what handlers ask).
    siginfo_t siginfo;
    // While a poke runs its handlers: the kernel's context of where the
    // thread was, which they are shown.
    const void *poked_at = nullptr;
    // Handlers of the program run on it so far: a zero-timeout poll that a
    // poke ended with EINTR, and no handler ran, was not interrupted.
    uint32_t handlers_run = 0;
    // Where the last poke found it in a restarted call libc made, and the
    // call's number and arguments (restarted_in_libc).
    uintptr_t restart_pc = 0;
    uint64_t restart_key = 0;
    // The OS thread (worker) its last fork ran on, and whether it has
    // pinned itself to one for ptrace (process.cpp).
    pid_t fork_tid = 0;
    bool ptrace_pinned = false;
    Thread *prev = nullptr, *next = nullptr; // the live list (threads.cpp)
    uint32_t sleep_word = 0;           // sleeps park on this futex word
    std::atomic<uint32_t> ended{0};    // 1 once its body is done: joiners park on it
    size_t stack_size = 0, guard_size = 0;
    void *stack_lo = nullptr;
    // The CPU affinity it gave itself (pthread_setaffinity_np,
    // sched_setaffinity), kept here as its name is: set on its worker, it
    // bound every thread that worker runs, and the processes they start
    // (libzmq pins its I/O threads so, and a child's nproc said 1).
    bool has_affinity = false;
    cpu_set_t affinity;
};

// The calling legacy thread's record, or null on a plain OS thread (the
// engine's, or the program's main thread before/after its green life).
Thread *self();
inline bool green() { return on() && self() != nullptr; }
Thread *thread_of(pthread_t t);      // null if not one of ours
// main still plain, on its OS thread: its stack looked up now, before a
// seccomp filter may refuse what glibc reads it from (threads.cpp), and
// before a fork (a zygote's children set up their filters first).
void main_stack_now();
// On a plain thread, the frame where the outermost handler the kernel ran
// there begins (threads.cpp's adopt_main must not make main green inside
// one: its return would run on a worker).
extern __thread char *plain_handler_sp;
// On a plain thread, set when a handler without SA_RESTART ran there (the
// kernel restarts the shim's own waits: their callers look at this).
extern __thread bool plain_no_restart;
// The selector byte of syscall user dispatch (prctl
// PR_SET_SYSCALL_USER_DISPATCH) the thread turned on, null while off
// (process.cpp's prctl, sync.cpp's syscall): on_fault's own system calls
// are made with it set to ALLOW (signals.cpp).
extern __thread volatile char *dispatch_selector;
void note_syscall_dispatch(long r, unsigned long mode, unsigned long selector);
class PlainHandler {
  public:
    PlainHandler() : prev_(plain_handler_sp) {
        char *here = static_cast<char *>(__builtin_frame_address(0));
        if (!prev_ || here > prev_) plain_handler_sp = here; // else nested, or prev_ left by a longjmp
    }
    ~PlainHandler() { plain_handler_sp = prev_; }
    PlainHandler(const PlainHandler &) = delete;
    PlainHandler &operator=(const PlainHandler &) = delete;

  private:
    char *prev_;
};
// One of ours that has ended and been released (a detached thread, or
// one joined): glibc must not be given it, its TCB is not glibc's.
bool thread_gone(pthread_t t);
// Signals a signalfd reads: the thread that takes the process's signals
// leaves them pending in the kernel (threads.cpp).
void catcher_block(const sigset_t *set);
bool catcher_blocks(int sig); // a signalfd waits for sig: it stays pending in the kernel
// The OS main thread takes the calling OS thread's user and group ids
// (set*id called by main: see setxid_on_own_tcb); returns once it has.
void catcher_copy_ids();
void *main_tcb_of_process();
// A plain thread that ends (a clone child's first, its function done)
// while threads it started live: the process ends with the last of them.
void threads_wait_rest();
// The program's main TCB, when tp is the one its OS thread waits on.
void *park_tcb_main(void *tp);

// Cancellation points: exit now if a cancel is pending and enabled.
void test_cancel(Thread *t);

// ---- interruption (signals.cpp) -------------------------------------

// Wake t from whatever it is parked on; it looks at why at once.
void interrupt(Thread *t);
// npshim_io on fd (registered as pd), interruptible: *interrupted tells a
// wake-up by interrupt() (the result is then -ETIMEDOUT, or what the op
// got first).  While another thread waits on pd in this direction, on an
// epoll set of its own (park_private).  seq: npshim_io_seq(pd, mode) as
// read before the caller's own attempt, which then is not repeated before
// the wait unless another operation ran since (null: it is).  flags:
// NPSHIM_DRAINED, or 0.
ssize_t fd_park(Thread *t, int fd, np_fd *pd, int mode, int64_t deadline, npshim_op op, void *ctx,
                bool *interrupted, const uint32_t *seq, unsigned flags = 0);
// One npshim_io call with flags, interruptible as fd_park's; -EBADF at
// once if *closes has moved on from seen (closes null: not looked at).
ssize_t park_pd(Thread *t, np_fd *pd, int mode, int64_t deadline, unsigned flags, uint32_t seq, npshim_op op,
                void *ctx, bool *interrupted, const std::atomic<uint32_t> *closes = nullptr, uint32_t seen = 0);
// shared_wait.cpp: the wait of a second thread on fd's direction.
ssize_t park_private(Thread *t, int fd, np_fd *pd, int mode, int64_t deadline, npshim_op op, void *ctx,
                     bool *interrupted);
void private_waits_after_fork();
// Signals for t that its mask lets through.
bool sig_pending(Thread *t);
// The ignored signals the library catches, set back to SIG_IGN around an
// exec or a spawn (their bits), and caught again after (signals.cpp).
uint64_t ignore_routed();
void reroute(uint64_t sigs);
// A thread's mask blocks these: the process's copies wait for a thread
// that lets them through, whatever their action (see signals.cpp).
void route_blocked(const sigset_t *mask);
// A plain thread becomes t: its OS thread's sigaltstack is t's now.
void altstack_take(Thread *t);
// Run them (on t, now): 0 none ran, 1 all asked SA_RESTART, -EINTR otherwise.
int sig_deliver(Thread *t);
// A thread left the list: the process's pending signals wake another.
void sig_thread_gone(Thread *t);
// Workers take kPoke for the threads they run (its bit, for the workers'
// mask; 0 if it could not be set up).  poke_round: the catcher pokes the
// running threads that have signals waiting; true while some have.
uint64_t pokes_install();
bool poke_round();
void catcher_wake();
// fn for each live legacy thread (under the list's lock); true if any said so.
bool threads_each(bool (*fn)(Thread *));
// The mask a call waits with (ppoll, pselect, epoll_pwait): the thread's
// while it waits, so the signals it lets through (sent meanwhile, or
// pending already for the thread or the process) end the wait with EINTR
// and their handlers run under it; the thread's own comes back after, as
// the kernel does.  make waits for SIGCHLD so.  No mask: nothing changes.
class WaitMask {
  public:
    WaitMask(Thread *t, const sigset_t *m);
    ~WaitMask();
    WaitMask(const WaitMask &) = delete;
    WaitMask &operator=(const WaitMask &) = delete;

  private:
    Thread *t_;
    sigset_t saved_;
    bool set_;
};
// A call that waits in the kernel with no readiness to park on (waitpid,
// flock, system) runs on its worker with the thread's own mask, and the
// signals sent to the thread meanwhile are forwarded to that worker, so a
// handler interrupts it as it would a plain thread.  begin() is false when
// a signal came first (the call is not made: run sig_deliver).  handoff:
// the worker's other threads go elsewhere first (the call is expected to
// wait, not merely able to).
struct KernelWait {
    Thread *t;
    sigset_t worker;
};
bool kernel_wait_begin(Thread *t, KernelWait *k, bool handoff = true, bool cancel = false);
void kernel_wait_end(KernelWait *k);   // handlers of late signals run here
// A cancellation point waiting so (waitpid, F_SETLKW): pthread_cancel
// pokes its worker, whose handler ends the call with EINTR (signals.cpp).
void cancel_kernel_wait(Thread *t);
// f() as such a call; fail is its result for EINTR (restart: never EINTR,
// as system() and pclose(), which wait again by themselves).  cancel: a
// cancellation point, acted on before the call and when it ends with EINTR.
template <class F, class R> R kernel_call(F f, R fail, bool restart, bool handoff = true, bool cancel = false) {
    Thread *t = green() ? self() : nullptr;
    if (!t) return f();
    for (;;) {
        if (cancel) test_cancel(t);
        KernelWait k;
        if (kernel_wait_begin(t, &k, handoff, cancel)) {
            R r = f();
            int e = errno;
            kernel_wait_end(&k);
            if (cancel && r == fail && e == EINTR) test_cancel(t);
            errno = e;
            return r;
        }
        if (sig_deliver(t) < 0 && !restart) {
            errno = EINTR;
            return fail;
        }
    }
}
// The live legacy threads, for signals sent to the process.
void threads_add(Thread *t);
void threads_remove(Thread *t);
// One that does not block sig, or null; with owner, stored there under the
// list's lock, so a thread that ends after the pick sees it named.
Thread *threads_pick(int sig, std::atomic<Thread *> *owner = nullptr);
void setxid_fix();                  // once glibc installed its SIGSETXID handler
void signals_after_fork();          // a forked child: no signal pending for threads gone
// A child that shares no memory with us: it goes on as a plain thread.
void threads_after_fork();
void helpers_after_fork();
// glibc's fork (fork, daemon, forkpty): the child side of the above, with
// the forking thread's own mask (process.cpp).
void fork_handlers_install();
long fork_like_syscall(long (*raw)(long, long, long, long, long, long, long), long nr, long a1, long a2, long a3,
                       long a4, long a5);

// ---- results -----------------------------------------------------------

// Turn a negative errno into libc's -1 + errno.
inline long ret(long r) {
    if (r < 0) {
        errno = int(-r);
        return -1;
    }
    return r;
}

// errno as the caller left it, for a call that succeeds after attempts
// that failed (EAGAIN before a park, EEXIST from a helper call, ...).
struct Errno {
    int saved = errno;
    long pass(long r) const {
        if (r >= 0) errno = saved;
        return r;
    }
};

// ---- time --------------------------------------------------------------

// An absolute time on `clock` as an np_now() deadline (0: none).
// Seconds and nanoseconds as nanoseconds, saturated at INT64_MAX (and
// INT64_MIN): a far timeout (skalibs' infinite deadline, tv_sec 2^62)
// must not wrap to the past.
inline int64_t ns_sat(int64_t sec, int64_t nsec) {
    if (sec > (INT64_MAX - 999999999) / 1000000000) return INT64_MAX;
    if (sec < (INT64_MIN + 999999999) / 1000000000) return INT64_MIN;
    return sec * 1000000000 + nsec;
}
int64_t deadline_from_abs(clockid_t clock, const struct timespec *abs);
int64_t deadline_from_rel(const struct timespec *rel);
int64_t deadline_from_ms(int ms);   // <0: none

// Park the caller until the deadline (0: none) or until woken through
// t->sleep_word (cancellation).  -ETIMEDOUT when it passed.
int sleep_until(Thread *t, int64_t deadline);

// ---- futex words (sync.cpp) -------------------------------------------

// A futex wait that pthread_cancel can interrupt: 0, -EAGAIN, -ETIMEDOUT.
int futex_wait(const uint32_t *addr, uint32_t val, int64_t deadline, bool cancel_point);
// Park while *addr is 0, as a join of g (np_dump says so); a cancellation
// point's wait.
int join_wait(const npshim_thread *g, const uint32_t *addr);
inline int futex_wake(const uint32_t *addr, int n) { return npshim_futex_wake(addr, n); }
// Thread-unique owner ids for mutexes (the tid on plain OS threads).
int owner_id();
// The robust mutexes a green thread ends holding: EOWNERDEAD for the next locker.
void robust_owner_died(Thread *t);
void owner_id_after_fork(); // in a forked child, before any lock
// A green thread's own ID (not main's): its owner id and gettid().  Above
// the kernel's PID_MAX_LIMIT, so no task has it.
inline int green_id(const Thread *t) { return 0x40000000 | int(npshim_thread_id(t->g) & 0x3fffffff); }
// The live green thread, not main, whose ID is id (threads.cpp), or null.
Thread *thread_of_id(pid_t id);
// The library's own gettid(), tgkill(), close_range() and close(), for
// its own calls (syscall() passes SYS_gettid, SYS_tgkill, SYS_close_range
// and SYS_close to them).  Called by name they would go through the PLT,
// and a program may define those names itself, as glibc lacked the first
// three before 2.30 and 2.34: netdata's gettid() is syscall(SYS_gettid),
// which would then call the program's gettid() again, without end.
// Aliases (threads.cpp, signals.cpp, io.cpp), hidden like the rest of the
// namespace.
pid_t own_gettid();
int own_tgkill(pid_t tgid, pid_t tid, int sig);
int own_close_range(unsigned first, unsigned last, int flags);
int own_close(int fd);
// The calling OS thread's kernel ID: gettid() is interposed (threads.cpp),
// and the library's own uses (signals forwarded to a worker) need the
// worker's.
inline pid_t kernel_tid() {
    long r;
#if defined(__x86_64__)
    __asm__ volatile("syscall" : "=a"(r) : "a"(long(SYS_gettid)) : "rcx", "r11", "memory");
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = SYS_gettid;
    register long x0 __asm__("x0");
    __asm__ volatile("svc #0" : "=r"(x0) : "r"(x8) : "memory");
    r = x0;
#else
    r = ::syscall(SYS_gettid);
#endif
    return pid_t(r);
}

} // namespace shim
