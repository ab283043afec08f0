// Signals as a threaded program sees them.  Workers take no signals, so a
// signal reaches the process on its parked main OS thread, where our
// handler routes it to a legacy thread that does not block it; a
// pthread_kill names the thread itself.  That green thread runs the
// program's handler on its own stack, at its next interposed call or at
// once if it is parked in one, and the interrupted call then returns EINTR
// or restarts, as SA_RESTART says.
#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <setjmp.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "fd_table.hpp"
#include "quiet_lock.hpp"
#include "real.hpp"
#include "shim.hpp"
#include "tcb.hpp"

namespace shim {

namespace {

using SigactionFn = int (*)(int, const struct sigaction *, struct sigaction *);

SigactionFn real_sigaction() {
    on(); // real.* are set
    return real.sigaction;
}

// The program's own dispositions; the kernel has on_signal for each one
// that is a handler.  recorded: prog[sig] holds one (a SIG_DFL kept there
// reads as zeros, so it is told by this bit).
struct sigaction prog[65];
std::atomic<uint64_t> recorded{0};
QuietLock prog_lock; // a handler that lands in sigaction comes to on_signal

sigset_t lock() { return prog_lock.take(); }
void unlock(const sigset_t &held) { prog_lock.give(held); }

uint64_t bit(int sig) { return uint64_t(1) << (sig - 1); }

// The process itself, through glibc's kill (ours sends to ourselves first).
int kill_process(int sig) {
    on(); // real.* are set
    return real.kill(getpid(), sig);
}

// ---- Signals for a thread that computes ----------------------------------
// A running thread takes its signals at its next call into the library;
// one that computes (gzip, python's loop, ImageMagick) makes none for
// seconds.  Its worker is sent kPoke, whose handler runs the thread's
// handlers there, on its stack, as the kernel would: unless the thread is
// in libc, ld.so, libgcc_s or this library (their locks held, their state
// half-changed), and then again a little later (the catcher's rounds).
// SIGURG, as Go's preemption: its default action is nothing.
constexpr int kPoke = SIGURG;
bool pokes_on;

struct Range {
    uintptr_t lo, hi;
    bool libc;
};
Range no_go[16];
int n_no_go;

int collect_no_go(struct dl_phdr_info *info, size_t, void *self_addr) {
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    bool mine = false; // this library: the one holding collect_no_go
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) &p = info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + p.p_vaddr;
        if (p.p_type == PT_LOAD && uintptr_t(self_addr) >= lo && uintptr_t(self_addr) < lo + p.p_memsz) mine = true;
    }
    if (!mine && !strstr(name, "/libc.so") && !strstr(name, "/ld-linux") && !strstr(name, "/libgcc_s.so") &&
        !strstr(name, "libnetpoll.so"))
        return 0;
    for (int i = 0; i < info->dlpi_phnum && n_no_go < 16; i++) {
        const ElfW(Phdr) &p = info->dlpi_phdr[i];
        if (p.p_type != PT_LOAD || !(p.p_flags & PF_X)) continue;
        uintptr_t lo = info->dlpi_addr + p.p_vaddr;
        no_go[n_no_go++] = Range{lo, lo + p.p_memsz, !mine && strstr(name, "/libc.so") != nullptr};
    }
    return 0;
}

bool in_no_go(uintptr_t pc) {
    for (int i = 0; i < n_no_go; i++)
        if (pc >= no_go[i].lo && pc < no_go[i].hi) return true;
    return false;
}

// The poke ended a system call libc made for the program with EINTR, one
// the kernel does not restart (a socket's with a timeout; a call the
// library does not interpose, as recvmmsg was): the handler runs there,
// where the kernel would run it.  Else the call fails with EINTR and no
// handler, again at every poke, and the program never sees its signal.
bool eintr_in_libc(const void *uc) {
    auto *c = static_cast<const ucontext_t *>(uc);
#if defined(__x86_64__)
    uintptr_t pc = uintptr_t(c->uc_mcontext.gregs[REG_RIP]);
    bool at = c->uc_mcontext.gregs[REG_RAX] == -EINTR && reinterpret_cast<const uint8_t *>(pc)[-2] == 0x0f &&
              reinterpret_cast<const uint8_t *>(pc)[-1] == 0x05; // just past a syscall
#elif defined(__aarch64__)
    uintptr_t pc = uintptr_t(c->uc_mcontext.pc);
    bool at = int64_t(c->uc_mcontext.regs[0]) == -EINTR &&
              reinterpret_cast<const uint32_t *>(pc)[-1] == 0xd4000001; // just past svc #0
#else
    uintptr_t pc = 0;
    bool at = false;
#endif
    if (!at) return false;
    for (int i = 0; i < n_no_go; i++)
        if (pc >= no_go[i].lo && pc < no_go[i].hi) return no_go[i].libc;
    return false;
}

// The poke found the thread at a system call libc made for the program
// that the kernel restarts (SA_RESTART is kPoke's), one that waits: stdio's
// read of a terminal or pipe, an open of a FIFO.  The kernel would run the
// handler there and then restart the call, or end it with EINTR, so the
// handler runs there too.  A thread about to make the call is at the same
// place, so two pokes in a row must find it there, with the same call and
// arguments: the call was waiting, not one made in passing (in libc, or by
// this library holding its locks).  Futex waits are left out: libc's own
// locks, and this library's allocator's, wait there.
bool waits_restarted(long nr) {
    switch (nr) {
    case SYS_read: case SYS_write: case SYS_readv: case SYS_writev: case SYS_pread64: case SYS_pwrite64:
    case SYS_openat: case SYS_ioctl: case SYS_wait4: case SYS_waitid: case SYS_accept: case SYS_accept4:
    case SYS_connect: case SYS_recvfrom: case SYS_sendto: case SYS_recvmsg: case SYS_sendmsg:
    case SYS_recvmmsg: case SYS_sendmmsg: case SYS_flock: case SYS_fcntl: case SYS_mq_timedsend:
    case SYS_mq_timedreceive: case SYS_splice: case SYS_tee: case SYS_sendfile: case SYS_getrandom:
    case SYS_copy_file_range:
#ifdef SYS_open
    case SYS_open: case SYS_creat:
#endif
        return true;
    default:
        return false;
    }
}

bool restarted_in_libc(Thread *t, const void *uc) {
    auto *c = static_cast<const ucontext_t *>(uc);
#if defined(__x86_64__)
    uintptr_t pc = uintptr_t(c->uc_mcontext.gregs[REG_RIP]);
    long nr = long(c->uc_mcontext.gregs[REG_RAX]); // orig_ax, put back for the restart
    uint64_t args = uint64_t(c->uc_mcontext.gregs[REG_RDI]) * 0x9e3779b97f4a7c15u ^
                    uint64_t(c->uc_mcontext.gregs[REG_RSI]) ^ uint64_t(c->uc_mcontext.gregs[REG_RDX]) << 17;
    bool at = reinterpret_cast<const uint8_t *>(pc)[0] == 0x0f && reinterpret_cast<const uint8_t *>(pc)[1] == 0x05;
#elif defined(__aarch64__)
    uintptr_t pc = uintptr_t(c->uc_mcontext.pc);
    long nr = long(c->uc_mcontext.regs[8]);
    uint64_t args = c->uc_mcontext.regs[0] * 0x9e3779b97f4a7c15u ^ c->uc_mcontext.regs[1] ^
                    c->uc_mcontext.regs[2] << 17;
    bool at = reinterpret_cast<const uint32_t *>(pc)[0] == 0xd4000001; // svc #0
#else
    uintptr_t pc = 0;
    long nr = -1;
    uint64_t args = 0;
    bool at = false;
#endif
    bool libc = false;
    for (int i = 0; at && i < n_no_go; i++)
        if (pc >= no_go[i].lo && pc < no_go[i].hi) libc = no_go[i].libc;
    if (!libc || !waits_restarted(nr)) {
        t->restart_pc = 0;
        return false;
    }
    uint64_t key = args ^ uint64_t(nr) << 48;
    if (t->restart_pc == pc && t->restart_key == key) {
        t->restart_pc = 0;
        return true;
    }
    t->restart_pc = pc;
    t->restart_key = key;
    return false;
}

// A handler without SA_RESTART ran: the call ends with EINTR instead.
void end_with_eintr(void *uc) {
    auto *c = static_cast<ucontext_t *>(uc);
#if defined(__x86_64__)
    c->uc_mcontext.gregs[REG_RAX] = -EINTR;
    c->uc_mcontext.gregs[REG_RIP] += 2;
#elif defined(__aarch64__)
    c->uc_mcontext.regs[0] = uint64_t(-EINTR);
    c->uc_mcontext.pc += 4;
#else
    (void)c;
#endif
}

uintptr_t sp_of(const void *uc) {
#if defined(__x86_64__)
    return uintptr_t(static_cast<const ucontext_t *>(uc)->uc_mcontext.gregs[REG_RSP]);
#elif defined(__aarch64__)
    return uintptr_t(static_cast<const ucontext_t *>(uc)->uc_mcontext.sp);
#else
    (void)uc;
    return 0;
#endif
}

bool on_altstack(const Thread *t, uintptr_t sp);

// A poke sent while t's worker switches to it (or away) lands on a stack
// that is not t's: the scheduler's, or the thread's before, in code that
// may not be this library's (a sanitizer's fiber switch).  A handler runs
// only on t's own stack, or on the alternate stack t set for its handlers.
bool on_own_stack(const Thread *t, const void *uc) {
    uintptr_t sp = sp_of(uc);
    void *lo;
    size_t size;
    npshim_thread_stack(t->g, &lo, &size);
    return (sp > uintptr_t(lo) && sp <= uintptr_t(lo) + size) || on_altstack(t, sp);
}

uintptr_t pc_of(void *uc) {
#if defined(__x86_64__)
    return uintptr_t(static_cast<ucontext_t *>(uc)->uc_mcontext.gregs[REG_RIP]);
#elif defined(__aarch64__)
    return uintptr_t(static_cast<ucontext_t *>(uc)->uc_mcontext.pc);
#else
    (void)uc;
    return 0;
#endif
}

std::atomic<uint32_t> pokes_wanted{0};

// t runs on a worker: poke that worker.  Not one in a kernel wait: its
// signals are sent on to it as they are (send_to), and a poke would only
// end its call with EINTR.
bool send_poke(Thread *t) {
    if (!pokes_on || !t->g || t->kwait_tid.load(std::memory_order_seq_cst)) return false;
    pid_t tid = npshim_thread_running_tid(t->g);
    return tid && real.syscall(SYS_tgkill, getpid(), tid, kPoke, 0, 0, 0) == 0;
}

// ...and have the catcher poke again, a round at a time, until t has
// taken what is pending for it.
// Preempted, or readied and not yet run: poked once it runs again, as the
// kernel runs a handler when such a thread next runs.  Left alone, a thread
// that computes without a call here would never take it (nor the queued
// ones behind it).
bool poke_later(Thread *t) {
    return t->g && !t->kwait_tid.load(std::memory_order_seq_cst) && npshim_thread_runnable(t->g);
}

void poke(Thread *t) {
    if ((send_poke(t) || poke_later(t)) && !pokes_wanted.exchange(1, std::memory_order_acq_rel)) catcher_wake();
}

bool is_handler(const struct sigaction &a) {
    return (a.sa_flags & SA_SIGINFO) ? a.sa_sigaction != nullptr
                                     : a.sa_handler != SIG_DFL && a.sa_handler != SIG_IGN;
}

// Default actions that do nothing.
bool ignored_by_default(int sig) {
    return sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT;
}

uint64_t mask_bits(const sigset_t &m) {
    uint64_t b = 0;
    for (int s = 1; s < 65; s++)
        if (sigismember(&m, s) == 1) b |= bit(s);
    return b;
}

// The default action of sig (end, dump core, stop) on this OS thread,
// before this returns, as the kernel takes it for the thread it is sent
// to: a thread that raised it goes no further (xz re-raises the signal that
// stopped it, then would exit 0).
void default_action_now(int sig) {
    // The signal of NP_DUMP_SIGNAL, left at SIG_DFL by the program, has the
    // runtime's dump for its action in the kernel: sent to the process, it
    // is dumped and the program goes on, as when it comes from outside.
    // Taken here as the default, a raise(3) or kill(getpid()) of it ended
    // the process instead.
    if (sig != SIGSTOP && sig == npshim_dump_signal()) {
        real.syscall(SYS_kill, getpid(), sig, 0, 0, 0, 0);
        return;
    }
    if (sig == SIGSTOP) { // no action to set, never blocked: the kernel's stop, for this thread first
        real.syscall(SYS_tgkill, getpid(), real.syscall(SYS_gettid, 0, 0, 0, 0, 0, 0), sig, 0, 0, 0);
        return;
    }
    struct sigaction dfl = {}, was;
    dfl.sa_handler = SIG_DFL;
    real_sigaction()(sig, &dfl, &was);
    sigset_t one, old;
    sigemptyset(&one);
    sigaddset(&one, sig);
    real.pthread_sigmask(SIG_UNBLOCK, &one, &old);
    real.syscall(SYS_tgkill, getpid(), real.syscall(SYS_gettid, 0, 0, 0, 0, 0, 0), sig, 0, 0, 0);
    real.pthread_sigmask(SIG_SETMASK, &old, nullptr);
    real_sigaction()(sig, &was, nullptr); // stopped, then continued: as it was
}

// Calls fn(arg) with the stack pointer at top (aligned down to 16), and
// back.  The frame is kept by %rbp, so unwinders (a backtrace, gccgo's
// panics, C++ exceptions) walk from the new stack to the caller's.
extern "C" void np_run_on_stack(void *top, void (*fn)(void *), void *arg);
#if defined(__x86_64__)
asm(R"(
    .text
    .globl np_run_on_stack
    .hidden np_run_on_stack
    .type np_run_on_stack, @function
np_run_on_stack:
    .cfi_startproc
    pushq %rbp
    .cfi_def_cfa_offset 16
    .cfi_offset %rbp, -16
    movq %rsp, %rbp
    .cfi_def_cfa_register %rbp
    andq $-16, %rdi
    movq %rdi, %rsp
    movq %rdx, %rdi
    call *%rsi
    movq %rbp, %rsp
    popq %rbp
    .cfi_def_cfa %rsp, 8
    ret
    .cfi_endproc
    .size np_run_on_stack, .-np_run_on_stack
)");
#else
extern "C" void np_run_on_stack(void *, void (*fn)(void *), void *arg) { fn(arg); } // the thread's own stack
#endif

void mask_narrowed(Thread *t, const sigset_t &before);

// Call the program's handler a for sig on a green thread whose mask was
// *mask before it.  An SA_SIGINFO handler's third argument is the kernel's
// context of a poke or a worker's signal (where the thread was: profilers
// read the pc, the JVM the registers), else this one; a copy either way,
// with the thread's mask as uc_sigmask, since the kernel's says the
// worker's, which a handler must not change.  What the handler leaves
// there is the mask after it, as sigreturn restores it.
void call_handler_here(const struct sigaction &a, int sig, siginfo_t *info, const void *kernel, sigset_t *mask) {
    if (Thread *t = green() ? self() : nullptr) t->handlers_run++;
    if (!(a.sa_flags & SA_SIGINFO)) return a.sa_handler(sig);
    ucontext_t uc;
    if (kernel) memcpy(&uc, kernel, sizeof uc);
    else getcontext(&uc);
    uc.uc_sigmask = *mask;
    a.sa_sigaction(sig, info, &uc);
    *mask = uc.uc_sigmask;
    sigdelset(mask, SIGKILL);
    sigdelset(mask, SIGSTOP);
}

bool on_altstack(const Thread *t, uintptr_t sp) {
    auto lo = reinterpret_cast<uintptr_t>(t->altstack.ss_sp);
    return !(t->altstack.ss_flags & SS_DISABLE) && sp >= lo && sp < lo + t->altstack.ss_size;
}

struct HandlerCall {
    const struct sigaction *a;
    int sig;
    siginfo_t *info;
    const void *kernel;
    sigset_t *mask;
};

void handler_call_thunk(void *p) {
    auto *c = static_cast<HandlerCall *>(p);
    call_handler_here(*c->a, c->sig, c->info, c->kernel, c->mask);
}

// An SA_ONSTACK handler runs on the thread's alternate stack (the one its
// sigaltstack recorded), as the kernel would run it, unless the thread is
// on it already: gccgo's runtime checks that its handler runs on the
// signal stack it set, and throws otherwise.
void call_handler(const struct sigaction &a, int sig, siginfo_t *info, const void *kernel, sigset_t *mask) {
    Thread *t = (a.sa_flags & SA_ONSTACK) && green() ? self() : nullptr;
    if (t && !(t->altstack.ss_flags & SS_DISABLE) && t->altstack.ss_size &&
        !on_altstack(t, reinterpret_cast<uintptr_t>(__builtin_frame_address(0)))) {
        HandlerCall c{&a, sig, info, kernel, mask};
        np_run_on_stack(static_cast<char *>(t->altstack.ss_sp) + t->altstack.ss_size, handler_call_thunk, &c);
        return;
    }
    call_handler_here(a, sig, info, kernel, mask);
}

// Run the program's handler for sig on the calling (green) thread.
int run_handler(Thread *t, int sig, siginfo_t *info) {
    sigset_t held = lock();
    struct sigaction a = prog[sig];
    if (a.sa_flags & SA_RESETHAND) {
        prog[sig].sa_handler = SIG_DFL;
        prog[sig].sa_flags &= ~SA_SIGINFO;
    }
    unlock(held);
    if (!is_handler(a)) {
        if (a.sa_handler == SIG_IGN || (a.sa_handler == SIG_DFL && ignored_by_default(sig))) return 1;
        default_action_now(sig); // terminate, core, stop: the kernel's
        return 1;
    }
    sigset_t saved = t->sigmask;
    sigorset(&t->sigmask, &t->sigmask, &a.sa_mask);
    if (!(a.sa_flags & SA_NODEFER)) sigaddset(&t->sigmask, sig);
    int e = errno; // a handler must leave errno as it found it; many do not
    const void *at = t->poked_at; // not shown to a handler nested in this one
    t->poked_at = nullptr;
    if (t->handler_depth++ == 0) t->handler_before = saved;
    call_handler(a, sig, info, at, &saved);
    t->handler_depth--;
    t->poked_at = at;
    errno = e;
    sigset_t during = t->sigmask;
    t->sigmask = saved;
    mask_narrowed(t, during);
    return (a.sa_flags & SA_RESTART) ? 1 : -EINTR;
}

// Real-time signals queue (POSIX): one sent while another of its number is
// pending for the same thread (or the process) waits here, with its
// siginfo, until that one is taken.  Standard signals merge, as they do,
// but for a POSIX timer's: the kernel queues each timer's signal apart,
// whatever its number, and counts an expiry that comes while the timer's
// signal is still pending as an overrun of that one.  The kernel handed
// each of them to this library, so each is queued or counted here too
// (20 timers on SIGALRM expiring together ran the handler 4 to 6 times).
struct Queued {
    Thread *t; // null: the process's
    int sig;
    siginfo_t info;
};
constexpr int kQueued = 256;
Queued rt_queue[kQueued];
int rt_queued;
QuietLock rt_lock; // taken on the OS thread that takes the process's signals too

bool realtime(int sig) { return sig >= 32; }

// An expiry of the timer whose signal p is: counted in p.
bool overrun(siginfo_t *p, const siginfo_t &info) {
    if (info.si_code != SI_TIMER || p->si_code != SI_TIMER || p->si_timerid != info.si_timerid) return false;
    p->si_overrun += info.si_overrun + 1;
    return true;
}

// Make sig pending in *bits, its siginfo in *slot.  False: queued behind
// one pending already, or counted in it (nobody to wake).
bool post(Thread *t, std::atomic<uint64_t> *bits, siginfo_t *slot, int sig, const siginfo_t &info) {
    QuietHold g(rt_lock);
    if (bits->load(std::memory_order_seq_cst) & bit(sig)) {
        if (overrun(slot, info)) return false;
        for (int i = 0; i < rt_queued; i++)
            if (rt_queue[i].t == t && rt_queue[i].sig == sig && overrun(&rt_queue[i].info, info)) return false;
        if (realtime(sig) || info.si_code == SI_TIMER) {
            if (rt_queued < kQueued) rt_queue[rt_queued++] = Queued{t, sig, info};
            return false;
        }
    }
    *slot = info;
    slot->si_signo = sig;
    bits->fetch_or(bit(sig), std::memory_order_seq_cst);
    return true;
}

// Take sig from *bits (false: not pending), its siginfo into *out; the
// next one queued becomes the pending one.
bool unpost(Thread *t, std::atomic<uint64_t> *bits, siginfo_t *slot, int sig, siginfo_t *out) {
    QuietHold g(rt_lock);
    if (!(bits->load(std::memory_order_seq_cst) & bit(sig))) return false;
    if (out) *out = *slot;
    for (int i = 0; i < rt_queued; i++)
        if (rt_queue[i].t == t && rt_queue[i].sig == sig) {
            *slot = rt_queue[i].info; // the bit stays: the next one is pending
            slot->si_signo = sig;
            memmove(&rt_queue[i], &rt_queue[i + 1], size_t(rt_queued - i - 1) * sizeof(Queued));
            rt_queued--;
            return true;
        }
    bits->fetch_and(~bit(sig), std::memory_order_seq_cst);
    return true;
}

void send_to(Thread *t, int sig, const siginfo_t *info) {
    // In a kernel wait with sig unblocked: its worker takes it, now.
    t->forwarding.fetch_add(1, std::memory_order_seq_cst);
    pid_t tid = t->kwait_tid.load(std::memory_order_seq_cst);
    if (tid && !sigismember(&t->sigmask, sig)) {
        // tgkill, not rt_tgsigqueueinfo: the kernel lets a thread queue a
        // kernel's si_code only to itself.  The sender's info rides along.
        t->siginfo = *info;
        t->siginfo.si_signo = sig;
        t->forwarded.fetch_or(bit(sig), std::memory_order_seq_cst);
        long r = real.syscall(SYS_tgkill, getpid(), tid, sig, 0, 0, 0);
        t->forwarding.fetch_sub(1, std::memory_order_seq_cst);
        if (r == 0) return;
        t->forwarded.fetch_and(~bit(sig), std::memory_order_seq_cst);
    } else {
        t->forwarding.fetch_sub(1, std::memory_order_seq_cst);
    }
    if (!post(t, &t->sigpending, &t->siginfo, sig, *info)) return; // queued: it is awake for the first
    if (!sigismember(&t->sigmask, sig) || (t->sigwaiting.load() & bit(sig))) {
        interrupt(t);
        poke(t);
    }
}

// Sent to the process: kept here, as the kernel keeps it, until the
// thread woken for it (proc_for) takes it at its next look, or one that
// waits for it in sigwait.  The kernel gives such a signal to the main
// thread when that one lets it through and sleeps, and programs count on
// it: CPython runs its handlers only on main, and a main parked in a lock
// wait is woken by the EINTR of its own wait, never by another thread's
// handler.  Were it anybody's, a thread that makes calls all the time
// would take it first, and main would sleep on.  If the one woken blocks
// it first, or ends, another is woken; none lets it through (null): the
// first that does takes it.
std::atomic<uint64_t> proc_pending{0};
siginfo_t proc_info[65];
std::atomic<Thread *> proc_for[65];

// The process's pending signals t may take: those woken for it, or for nobody.
uint64_t proc_takeable(Thread *t) {
    uint64_t p = proc_pending.load(std::memory_order_seq_cst);
    for (uint64_t q = p; q; q &= q - 1) {
        int sig = __builtin_ctzll(q) + 1;
        Thread *o = proc_for[sig].load(std::memory_order_seq_cst);
        if (o && o != t) p &= ~bit(sig);
    }
    return p;
}

// Wake a thread to take the process's sig.  One in a kernel wait cannot
// look, so the signal is sent on to its worker.  The fence pairs with the
// one after a thread's mask changes: either that thread sees sig pending,
// or this sees the mask that lets it through.
void wake_for(int sig) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    Thread *t = threads_pick(sig, &proc_for[sig]);
    if (!t) return;
    bool waits = t->sigwaiting.load(std::memory_order_seq_cst) & bit(sig);
    if (!waits && t->kwait_tid.load(std::memory_order_seq_cst)) {
        siginfo_t info;
        if (unpost(nullptr, &proc_pending, &proc_info[sig], sig, &info)) send_to(t, sig, &info);
        return;
    }
    interrupt(t);
    poke(t);
}

// A signal for the process: pending for it, a thread woken to take it.
void to_process(int sig, const siginfo_t *info) {
    // Named before it is pending: no other thread's next look takes it
    // meanwhile.  wake_for picks again, after the fence that pairs with a
    // mask change.  Not pending, it is a new one: the name an earlier one
    // left is no claim.
    if (!(proc_pending.load(std::memory_order_seq_cst) & bit(sig))) proc_for[sig].store(nullptr);
    threads_pick(sig, &proc_for[sig]);
    if (post(nullptr, &proc_pending, &proc_info[sig], sig, *info)) wake_for(sig);
}

// The process's pending signals that t's mask, changed from `before`, now
// blocks: another thread may take them.
void mask_narrowed(Thread *t, const sigset_t &before) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    uint64_t p = proc_pending.load(std::memory_order_seq_cst);
    if (!p) return;
    p &= mask_bits(t->sigmask) & ~mask_bits(before);
    for (; p; p &= p - 1) wake_for(__builtin_ctzll(p) + 1);
}

// timer_create(2) with SIGEV_THREAD_ID names the thread to signal by its
// kernel tid, which a program takes from gettid(2): a green thread's own
// id, which the kernel refuses (EINVAL; a per-thread CPU-time profiler's
// timer).  Such a timer is made for the OS main thread, which takes the
// process's signals, and its expirations (SI_TIMER, with the kernel's
// timer id) are sent on to the thread named, with the timer's siginfo, as
// pthread_kill(3) sends; once that thread has ended they are dropped, as
// the kernel drops them.
constexpr int kThreadTimers = 256;
std::atomic<int> timer_kid[kThreadTimers];     // the kernel's timer id + 1, 0 free
std::atomic<pid_t> timer_tid[kThreadTimers];   // the green thread's id
void timer_note(int kid, pid_t tid) {
    for (int i = 0; i < kThreadTimers; i++)
        if (timer_kid[i].load(std::memory_order_acquire) == kid + 1) timer_kid[i].store(0, std::memory_order_release);
    if (!tid) return;
    for (int i = 0; i < kThreadTimers; i++) {
        int z = 0;
        if (!timer_kid[i].compare_exchange_strong(z, -1, std::memory_order_acq_rel)) continue; // taken
        timer_tid[i].store(tid, std::memory_order_relaxed);
        timer_kid[i].store(kid + 1, std::memory_order_release);
        return;
    }
}
// The green thread a timer's expiration is for (0: none), by the kernel's id.
pid_t timer_target(int kid) {
    for (int i = 0; i < kThreadTimers; i++)
        if (timer_kid[i].load(std::memory_order_acquire) == kid + 1) return timer_tid[i].load(std::memory_order_relaxed);
    return 0;
}

// The kernel's handler for every signal the program handles or waits for.
// It runs on a thread that takes signals: the OS main thread, parked while
// main is a green thread, or a thread outside the runtime.
void on_signal(int sig, siginfo_t *info, void *uc) {
    int e = errno;
    // Routed from the OS main thread while main is green; a plain thread
    // of the program (a forked child's, one glibc made) takes it itself.
    bool route = on() && !green() && park_tcb_main(tcb_current());
    if (route && info && info->si_code == SI_TIMER) {
        if (pid_t id = timer_target(info->si_timerid)) {
            if (Thread *t = thread_of_id(id)) send_to(t, sig, info);
            errno = e;
            return;
        }
    }
    if (route && threads_pick(0)) {
        to_process(sig, info);
    } else {
        Thread *me = on() ? self() : nullptr;
        siginfo_t fwd;
        if (me && (me->forwarded.fetch_and(~bit(sig), std::memory_order_seq_cst) & bit(sig))) {
            fwd = me->siginfo; // sent on to this worker from a kernel wait
            info = &fwd;
        }
        // On a worker, for the green thread it runs (its own call raised
        // it, or the worker waits in the kernel, or forks, with the thread's
        // mask): the thread's mask holds, and blocks the signal meanwhile,
        // so that no poke runs the handler again inside itself.
        Thread *t = me && green() ? me : nullptr;
        if (t && sigismember(&t->sigmask, sig)) {
            post(t, &t->sigpending, &t->siginfo, sig, *info); // pending for the thread, as the kernel keeps it
            errno = e;
            return;
        }
        sigset_t held = lock();
        struct sigaction a = prog[sig];
        unlock(held);
        sigset_t saved;
        if (t && is_handler(a)) {
            saved = t->sigmask;
            sigorset(&t->sigmask, &t->sigmask, &a.sa_mask);
            if (!(a.sa_flags & SA_NODEFER)) sigaddset(&t->sigmask, sig);
        }
        PlainHandler mark; // (looked at on a plain thread only)
        if (!t && is_handler(a) && !(a.sa_flags & SA_RESTART)) plain_no_restart = true;
        if (t && is_handler(a)) call_handler(a, sig, info, uc, &saved);
        else if (a.sa_flags & SA_SIGINFO) a.sa_sigaction(sig, info, uc);
        else if (is_handler(a)) a.sa_handler(sig);
        else if (!(a.sa_handler == SIG_IGN || ignored_by_default(sig)))
            default_action_now(sig); // as if we were never here
        if (t && is_handler(a)) {
            sigset_t during = t->sigmask;
            t->sigmask = saved;
            mask_narrowed(t, during);
            if (sig_pending(t)) sig_deliver(t); // one it raised meanwhile, as sigreturn lets it in
        }
    }
    errno = e;
}

// The kernel's handler for a fault the program handles (SIGSEGV, SIGBUS,
// SIGFPE, SIGILL, SIGTRAP, SIGSYS): the kernel runs it where the fault
// happens, with the worker's mask in the context and the handler's sa_mask
// added to the worker's.  On a green thread, the thread's mask is the one
// that counts: during the handler it is the thread's with sa_mask (and the
// signal) added, pthread_sigmask there reports and changes that, the
// context's uc_sigmask is the thread's mask before the handler, and what the
// handler leaves there is the thread's mask after it, as sigreturn restores
// it (SBCL checks its blockable signals are blocked in its SIGTRAP handler,
// and sets uc_sigmask to the mask it wants after it).  The worker's own mask
// comes back as the kernel saved it.  Registers are the kernel's context, so
// a handler that steps over the fault (moves the pc) does.
//
// A SIGSYS of syscall user dispatch (si_code SYS_USER_DISPATCH) comes while
// the thread's selector says BLOCK: every system call made here would trap
// as the program's did, and run this handler again (SA_NODEFER) without
// end, before the program's handler could set ALLOW.  So ours are made with
// the selector at ALLOW, and BLOCK is put back just before the program's
// handler runs, which finds the selector as the kernel left it.
#ifndef SYS_USER_DISPATCH
#define SYS_USER_DISPATCH 2
#endif
volatile char *dispatch_pause(int sig, const siginfo_t *info) {
    volatile char *s = dispatch_selector;
    if (sig != SIGSYS || !info || info->si_code != SYS_USER_DISPATCH || !s || *s != SYSCALL_DISPATCH_FILTER_BLOCK)
        return nullptr;
    *s = SYSCALL_DISPATCH_FILTER_ALLOW;
    return s;
}
void dispatch_resume(volatile char *s) {
    if (s) *s = SYSCALL_DISPATCH_FILTER_BLOCK;
}

void on_fault(int sig, siginfo_t *info, void *ucv) {
    volatile char *paused = dispatch_pause(sig, info);
    sigset_t held = lock();
    struct sigaction a = prog[sig];
    if (a.sa_flags & SA_RESETHAND) { // the kernel has put the default back: so do we
        prog[sig] = {};
        prog[sig].sa_handler = SIG_DFL;
    }
    unlock(held);
    if (!is_handler(a)) {
        if (a.sa_handler == SIG_DFL) default_action_now(sig);
        return;
    }
    Thread *t = green() ? self() : nullptr;
    auto *uc = static_cast<ucontext_t *>(ucv);
    if (!t || !uc) { // not green: the mask the kernel would have set, on the OS thread
        sigset_t during;
        sigemptyset(&during);
        if (uc) memcpy(&during, &uc->uc_sigmask, 8); // the kernel's 8 bytes (below)
        else real.pthread_sigmask(SIG_SETMASK, nullptr, &during);
        sigorset(&during, &during, &a.sa_mask);
        if (!(a.sa_flags & SA_NODEFER)) sigaddset(&during, sig);
        real.pthread_sigmask(SIG_SETMASK, &during, nullptr); // sigreturn restores uc_sigmask
        PlainHandler mark;
        dispatch_resume(paused);
        if (a.sa_flags & SA_SIGINFO) a.sa_sigaction(sig, info, ucv);
        else a.sa_handler(sig);
        return;
    }
    // A fault the thread blocks (one in its own handler, which did not
    // unblock it): the kernel takes the default action.
    if (info && info->si_code > 0 && sigismember(&t->sigmask, sig) == 1) {
        default_action_now(sig);
        return;
    }
    // The kernel's frame holds a 64-bit mask where glibc's ucontext_t has
    // its 1024-bit sigset_t: the siginfo follows it there, so only the
    // kernel's 8 bytes are read and written.
    constexpr size_t kKernelMask = 8;
    uint64_t kernel;
    memcpy(&kernel, &uc->uc_sigmask, kKernelMask);
    sigset_t before = t->sigmask;
    sigorset(&t->sigmask, &t->sigmask, &a.sa_mask);
    if (!(a.sa_flags & SA_NODEFER)) sigaddset(&t->sigmask, sig);
    memcpy(&uc->uc_sigmask, &before, kKernelMask);
    if (t->fault_depth++ == 0) t->fault_before = before;
    dispatch_resume(paused);
    if (a.sa_flags & SA_SIGINFO) a.sa_sigaction(sig, info, ucv);
    else a.sa_handler(sig);
    t->fault_depth--;
    sigset_t during = t->sigmask;
    sigemptyset(&t->sigmask);
    memcpy(&t->sigmask, &uc->uc_sigmask, kKernelMask);
    sigdelset(&t->sigmask, SIGKILL);
    sigdelset(&t->sigmask, SIGSTOP);
    route_blocked(&t->sigmask);
    memcpy(&uc->uc_sigmask, &kernel, kKernelMask);
    mask_narrowed(t, during);
    // Let in what the mask after it unblocks: a poke, taken once the
    // kernel's frame returns (or by the catcher, where the fault was in
    // libc), as sigreturn would let it in.
    if (sig_pending(t)) poke(t);
}

bool is_fault(int sig) {
    return sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL || sig == SIGTRAP || sig == SIGSYS;
}

// The thread's cancellation point waits in the kernel (kernel_call): a
// poke that finds it in libc's system call (restarted: SA_RESTART is
// kPoke's) ends the call with EINTR, and kernel_call acts on the request.
// Else it had not got there yet: cancel_kernel_wait pokes again.
bool at_kernel_wait(const void *uc) {
    auto *c = static_cast<const ucontext_t *>(uc);
#if defined(__x86_64__)
    uintptr_t pc = uintptr_t(c->uc_mcontext.gregs[REG_RIP]);
    long nr = long(c->uc_mcontext.gregs[REG_RAX]);
    bool at = reinterpret_cast<const uint8_t *>(pc)[0] == 0x0f && reinterpret_cast<const uint8_t *>(pc)[1] == 0x05;
#elif defined(__aarch64__)
    uintptr_t pc = uintptr_t(c->uc_mcontext.pc);
    long nr = long(c->uc_mcontext.regs[8]);
    bool at = reinterpret_cast<const uint32_t *>(pc)[0] == 0xd4000001;
#else
    uintptr_t pc = 0;
    long nr = -1;
    bool at = false;
#endif
    for (int i = 0; at && i < n_no_go; i++)
        if (pc >= no_go[i].lo && pc < no_go[i].hi) return no_go[i].libc && waits_restarted(nr);
    return false;
}

// kPoke's handler: ours, sent to this worker for the thread it runs; or
// the program's SIGURG, which is the process's.
void on_poke(int sig, siginfo_t *info, void *uc) {
    int e = errno;
    bool ours = info && info->si_code == SI_TKILL && info->si_pid == getpid() && on();
    Thread *kt = ours && green() ? self() : nullptr;
    if (kt && kt->cancel_kick.load(std::memory_order_seq_cst) == 1 && kt->kwait_tid.load(std::memory_order_seq_cst)) {
        bool at = at_kernel_wait(uc);
        if (at) end_with_eintr(uc);
        kt->cancel_kick.store(at ? 0 : 2, std::memory_order_seq_cst);
    }
    if (!ours) {
        if (on() && green() && threads_pick(0)) to_process(sig, info); // landed on a worker
        else on_signal(sig, info, uc);
    } else if (Thread *t = green() ? self() : nullptr; t && sig_pending(t)) {
        bool restarted = false;
        if (on_own_stack(t, uc) &&
            (!in_no_go(pc_of(uc)) || eintr_in_libc(uc) || (restarted = restarted_in_libc(t, uc)))) {
            const void *outer = t->poked_at;
            t->poked_at = uc;
            int r = sig_deliver(t);
            t->poked_at = outer;
            if (restarted && r < 0) end_with_eintr(uc);
        }
    }
    errno = e;
}

// NP_DUMP_SIGNAL's handler is the engine's, installed with libc's own
// sigaction; the program's action for that signal replaces it, as it would
// without the shim.  Said once, so a dump that no longer comes is no mystery.
void dump_replaced(int sig) {
    char msg[160];
    const char *name = sigabbrev_np(sig);
    int n = snprintf(msg, sizeof msg,
                     "netpoll-preload: the program sets its own action for SIG%s: no dump on it "
                     "(NP_DUMP_SIGNAL)\n",
                     name ? name : "?");
    if (n > 0 && real.write) (void)real.write(2, msg, size_t(n));
}

// Make the kernel hand sig to on_signal even while the program leaves it
// at SIG_DFL (sigwait on a signal every thread blocks; route_blocked).
void catch_for_wait(int sig) {
    if (sig == kPoke && pokes_on) return; // on_poke takes it, and passes the program's on
    sigset_t held = lock();
    struct sigaction a = prog[sig];
    bool known = recorded.load(std::memory_order_relaxed) & bit(sig);
    unlock(held);
    if (!known) real_sigaction()(sig, nullptr, &a);
    // SIG_IGN is caught too: the kernel drops an ignored signal at once only
    // when the thread it is sent to does not block it, and the OS main thread
    // that takes the process's signals blocks none.  A program that blocks a
    // signal it inherited ignored (SIGINT of a job a shell started with &)
    // and sigwaits for it would wait for ever.  Taken by a thread that lets
    // it through, it is dropped then (run_handler), as the kernel drops it.
    // SIGCHLD ignored stays the kernel's: that also reaps the children.
    if (is_handler(a) || (a.sa_handler == SIG_IGN && sig == SIGCHLD)) return;
    struct sigaction k = {};
    k.sa_sigaction = on_signal;
    k.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&k.sa_mask);
    real_sigaction()(sig, &k, nullptr);
    held = lock();
    prog[sig] = a;
    recorded.fetch_or(bit(sig), std::memory_order_relaxed);
    unlock(held);
}

// Signals a program's thread blocks while their action is the default
// one are routed as well: the process's copy waits (proc_pending) until a
// thread unblocks it, then the default action runs, as the kernel would
// have kept it pending.  Without this the OS thread that takes the
// process's signals, which blocks none, would run it at once (SIGTERM
// would end a program that blocks it to sigwait for it later).
std::atomic<uint64_t> routed{0};

} // namespace

// An ignored signal the library catches (catch_for_wait, a routed
// SIG_IGN) would reach a new image as SIG_DFL, exec resetting what is
// caught: that image must find it ignored (SIGINT of a job a shell started
// with &, nohup's SIGHUP).  So it goes back to SIG_IGN for an exec or a
// spawn, and is caught again after (ignore_routed(), reroute()).
uint64_t ignore_routed() {
    uint64_t rec = recorded.load(std::memory_order_relaxed), ign = 0, done = 0;
    if (!rec) return 0;
    sigset_t held = lock();
    for (int sig = 1; sig < 65; sig++)
        if ((rec & bit(sig)) && !is_handler(prog[sig]) && prog[sig].sa_handler == SIG_IGN) ign |= bit(sig);
    unlock(held);
    for (int sig = 1; sig < 65 && ign; sig++) {
        struct sigaction k;
        if (!(ign & bit(sig)) || real_sigaction()(sig, nullptr, &k) != 0 || !(k.sa_flags & SA_SIGINFO) ||
            k.sa_sigaction != on_signal)
            continue;
        struct sigaction ig = {};
        ig.sa_handler = SIG_IGN;
        if (real_sigaction()(sig, &ig, nullptr) == 0) done |= bit(sig);
    }
    return done;
}

void reroute(uint64_t sigs) {
    for (int sig = 1; sig < 65 && sigs; sig++) {
        if (!(sigs & bit(sig))) continue;
        struct sigaction k = {};
        k.sa_sigaction = on_signal;
        k.sa_flags = SA_SIGINFO | SA_RESTART;
        sigemptyset(&k.sa_mask);
        real_sigaction()(sig, &k, nullptr);
    }
}

void route_blocked(const sigset_t *mask) {
    uint64_t want = mask_bits(*mask) & ~routed.load(std::memory_order_relaxed);
    if (!want) return;
    for (int sig = 1; sig < 65; sig++) {
        if (!(want & bit(sig))) continue;
        routed.fetch_or(bit(sig), std::memory_order_relaxed);
        if (sig == SIGKILL || sig == SIGSTOP || sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE ||
            sig == SIGILL || sig == SIGTRAP || sig == SIGSYS || sig == 32 || sig == 33 || ignored_by_default(sig))
            continue; // not blockable, a thread's own fault, glibc's own, or dropped anyway
        catch_for_wait(sig);
    }
}

namespace {

// Take one signal of `want` pending for t or for the process: its number.
int take(Thread *t, uint64_t want, siginfo_t *info) {
    for (;;) {
        uint64_t p = t->sigpending.load() & want;
        if (p) {
            int sig = __builtin_ctzll(p) + 1;
            if (unpost(t, &t->sigpending, &t->siginfo, sig, info)) {
                if (info) info->si_signo = sig;
                return sig;
            }
            continue;
        }
        p = proc_pending.load() & want;
        if (!p) return 0;
        int sig = __builtin_ctzll(p) + 1;
        if (unpost(nullptr, &proc_pending, &proc_info[sig], sig, info)) return sig;
    }
}

// sigwait and friends: park until a signal of set is sent (0: deadline).
int wait_for(const sigset_t *set, siginfo_t *info, int64_t deadline) {
    Thread *t = self();
    uint64_t want = mask_bits(*set) & ~(bit(SIGKILL) | bit(SIGSTOP));
    for (int s = 1; s < 65; s++)
        if (want & bit(s)) catch_for_wait(s);
    t->sigwaiting.store(want, std::memory_order_seq_cst);
    int sig;
    while (!(sig = take(t, want, info))) {
        if (sig_pending(t)) { // an unblocked signal's handler interrupts the wait
            t->sigwaiting.store(0);
            if (sig_deliver(t) != 0) return -EINTR;
            t->sigwaiting.store(want, std::memory_order_seq_cst); // another thread took it
            continue;
        }
        if (futex_wait(&t->sleep_word, 0, deadline, true) == -ETIMEDOUT) {
            sig = take(t, want, info);
            break;
        }
        test_cancel(t);
    }
    t->sigwaiting.store(0);
    return sig ? sig : -EAGAIN;
}

// glibc's SIGSETXID handler (setuid and friends signal every thread on
// its lists, and wait until each has marked its own TCB done) must run with
// the worker's own TCB, not the green thread's it interrupted.
constexpr int kSigSetxid = 33;

struct KernelSigaction {
    void (*handler)(int, siginfo_t *, void *);
    unsigned long flags;
    void (*restorer)();
    uint64_t mask;
};

void (*glibc_setxid)(int, siginfo_t *, void *);

void setxid_on_own_tcb(int sig, siginfo_t *si, void *uc) {
    void *cur = tcb_current();
    // The OS main thread, parked while main is green, stands for main's TCB
    // (glibc lists that one with its tid); a worker for its own.
    void *own = park_tcb_main(cur);
    if (!own) own = npshim_os_tp();
    if (cur != own) npshim_tp_set(own);
    glibc_setxid(sig, si, uc);
    if (cur != own) npshim_tp_set(cur);
    // main itself called set*id: glibc skips the caller's TCB, main's, so
    // the OS main thread, which it stands for, would keep the old ids (a
    // root thread in a server that dropped root).  It copies this worker's.
    if (cur != own && cur == main_tcb_of_process() && !tcb_setxid_marked(cur)) catcher_copy_ids();
}

} // namespace

void setxid_fix() {
    KernelSigaction k = {};
    if (real.syscall(SYS_rt_sigaction, kSigSetxid, 0, long(&k), 8, 0, 0) != 0 || !k.handler) return;
    if (k.handler == setxid_on_own_tcb) return;
    glibc_setxid = k.handler;
    k.handler = setxid_on_own_tcb;
    real.syscall(SYS_rt_sigaction, kSigSetxid, long(&k), 0, 8, 0, 0); // glibc's sigaction refuses 33
}

// Written only where they differ: a page the child writes is copied.
void signals_after_fork() {
    if (proc_pending.load()) proc_pending.store(0);
    for (auto &o : proc_for)
        if (o.load()) o.store(nullptr);
    prog_lock.after_fork();
    if (rt_queued) rt_queued = 0; // the threads they were for are gone
    rt_lock.after_fork();
}

bool sig_pending(Thread *t) {
    uint64_t p = t->sigpending.load(std::memory_order_seq_cst) | proc_takeable(t);
    return p && (p & ~mask_bits(t->sigmask));
}

int sig_deliver(Thread *t) {
    int r = 0;
    for (;;) {
        // The thread's own first, then the process's, as the kernel takes them.
        uint64_t mask = mask_bits(t->sigmask);
        uint64_t own = t->sigpending.load(std::memory_order_seq_cst) & ~mask;
        uint64_t proc = own ? 0 : proc_takeable(t) & ~mask;
        if (!own && !proc) return r;
        int sig = __builtin_ctzll(own | proc) + 1;
        siginfo_t info;
        if (own ? !unpost(t, &t->sigpending, &t->siginfo, sig, &info)
                : !unpost(nullptr, &proc_pending, &proc_info[sig], sig, &info))
            continue;
        info.si_signo = sig;
        int h = run_handler(t, sig, &info);
        if (h < 0 || r == 0) r = h;
        else if (r > 0) r = h;
    }
}

uint64_t pokes_install() {
    if (!real.syscall) real.syscall = reinterpret_cast<decltype(real.syscall)>(dlsym(RTLD_NEXT, "syscall"));
    dl_iterate_phdr(collect_no_go, reinterpret_cast<void *>(&collect_no_go));
    struct sigaction prev;
    if (real_sigaction()(kPoke, nullptr, &prev) != 0) return 0;
    struct sigaction k = {};
    k.sa_sigaction = on_poke;
    k.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&k.sa_mask);
    if (real_sigaction()(kPoke, &k, nullptr) != 0) return 0;
    sigset_t held = lock();
    prog[kPoke] = prev;
    recorded.fetch_or(bit(kPoke), std::memory_order_relaxed);
    unlock(held);
    pokes_on = true;
    return bit(kPoke);
}

bool poke_round() {
    if (!pokes_wanted.load(std::memory_order_acquire)) return false;
    pokes_wanted.store(0, std::memory_order_release);
    // The list's lock, taken with every signal blocked: on_signal takes it
    // on this thread.
    sigset_t all, old;
    sigfillset(&all);
    real.pthread_sigmask(SIG_BLOCK, &all, &old);
    bool more = threads_each([](Thread *t) { return sig_pending(t) && (send_poke(t) || poke_later(t)); });
    real.pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (more) pokes_wanted.store(1, std::memory_order_release);
    return pokes_wanted.load(std::memory_order_acquire);
}

// Only a signal t was woken for needs another thread: one woken for
// another thread stays with it, and one nobody lets through (every thread
// blocks it, as stress-ng's loadavg threads block SIGALRM) finds nobody
// now either.  Looking over every thread for each, as each ends, took time
// growing as the square of the threads.  t is off the list already: a pick
// made before it left, under the list's lock, is seen here.
void sig_thread_gone(Thread *t) {
    for (uint64_t p = proc_pending.load(std::memory_order_seq_cst); p; p &= p - 1) {
        int sig = __builtin_ctzll(p) + 1;
        if (proc_for[sig].load(std::memory_order_seq_cst) == t) wake_for(sig);
    }
}

WaitMask::WaitMask(Thread *t, const sigset_t *m) : t_(t), set_(m != nullptr) {
    if (!set_) return;
    saved_ = t->sigmask;
    t->sigmask = *m;
    sigdelset(&t->sigmask, SIGKILL);
    sigdelset(&t->sigmask, SIGSTOP);
    mask_narrowed(t, saved_);
}

WaitMask::~WaitMask() {
    if (!set_) return;
    sigset_t during = t_->sigmask;
    t_->sigmask = saved_;
    mask_narrowed(t_, during);
}

bool kernel_wait_begin(Thread *t, KernelWait *k, bool handoff, bool cancel) {
    k->t = t;
    if (handoff) npshim_kernel_wait();
    real.pthread_sigmask(SIG_SETMASK, &t->sigmask, &k->worker);
    t->kwait_cancel.store(cancel, std::memory_order_seq_cst);
    t->kwait_tid.store(kernel_tid(), std::memory_order_seq_cst);
    // A cancel that came before kwait_tid was seen found nothing to poke.
    bool cancelled = cancel && t->cancel_pending.load(std::memory_order_seq_cst) && !t->cancel_disabled;
    if (!sig_pending(t) && !cancelled) return true;
    kernel_wait_end(k); // one came before: no call, its handler runs first
    return false;
}

// Signals forwarded to this worker that came after the call returned are
// pending on it, blocked: they go back to the thread, whose handlers run
// now (the call's result stands, as for a signal just after it).
void kernel_wait_end(KernelWait *k) {
    Thread *t = k->t;
    t->kwait_tid.store(0, std::memory_order_seq_cst);
    while (t->forwarding.load(std::memory_order_seq_cst)) cpu_relax();
    real.pthread_sigmask(SIG_SETMASK, &k->worker, nullptr);
    // Only what was forwarded: a signal pending for the whole process
    // stays there (a signalfd may be waiting for it).  The kernel dequeues
    // the thread's own instance first.
    for (uint64_t late = t->forwarded.load(std::memory_order_seq_cst); late; late &= late - 1) {
        int sig = __builtin_ctzll(late) + 1;
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        siginfo_t info;
        struct timespec zero = {0, 0};
        if (real.syscall(SYS_rt_sigtimedwait, long(&one), long(&info), long(&zero), 8, 0, 0) != sig) continue;
        if (t->forwarded.fetch_and(~bit(sig), std::memory_order_seq_cst) & bit(sig)) info = t->siginfo;
        send_to(t, sig, &info);
    }
}

// Poke until the handler has ended the call (or the thread has left it):
// one that lands before the thread enters the system call cannot stop it.
// The handler answers when the worker next runs, which on a busy machine
// may take a while: wait for the answer, yielding.  A thread that blocks
// kPoke is not reached so (glibc's SIGCANCEL cannot be blocked).
void cancel_kernel_wait(Thread *t) {
    if (!pokes_on || sigismember(&t->sigmask, kPoke)) return;
    for (int round = 0; round < 1000; round++) {
        pid_t tid = t->kwait_tid.load(std::memory_order_seq_cst);
        if (!tid || !t->kwait_cancel.load(std::memory_order_seq_cst)) return; // flock, system: not one
        t->cancel_kick.store(1, std::memory_order_seq_cst);
        if (real.syscall(SYS_tgkill, getpid(), tid, kPoke, 0, 0, 0) != 0) return;
        int k = 1;
        for (int i = 0; i < 100000 && (k = t->cancel_kick.load(std::memory_order_seq_cst)) == 1; i++) {
            if (i < 100) cpu_relax();
            else real.syscall(SYS_sched_yield, 0, 0, 0, 0, 0, 0);
        }
        if (k == 1) t->cancel_kick.store(0, std::memory_order_seq_cst);
        if (k != 2) return; // ended, or the poke found another thread there (it left the wait)
        real.syscall(SYS_sched_yield, 0, 0, 0, 0, 0, 0);
    }
}

void interrupt(Thread *t) {
    // Only t's wait: the word is often shared (a condition variable that a
    // thousand threads wait on), and waking them all for one thread's signal
    // or cancellation had every one of them run and wait again, as the
    // kernel never does.
    t->interrupts.fetch_add(1, std::memory_order_seq_cst);
    if (const uint32_t *w = t->wait_word.load(std::memory_order_seq_cst)) {
        if (t->g) npshim_futex_wake_thread(w, t->g);
        else futex_wake(w, INT_MAX);
    }
    t->poking.fetch_add(1, std::memory_order_seq_cst);
    if (np_fd *pd = t->wait_fd.exchange(nullptr, std::memory_order_seq_cst))
        np_set_deadline(pd, 1, t->wait_mode.load(std::memory_order_relaxed)); // an expired deadline
    t->poking.fetch_sub(1, std::memory_order_seq_cst);
}

ssize_t park_pd(Thread *t, np_fd *pd, int mode, int64_t deadline, unsigned flags, uint32_t seq, npshim_op op,
                void *ctx, bool *interrupted, const std::atomic<uint32_t> *closes, uint32_t seen) {
    t->wait_mode.store(mode, std::memory_order_relaxed);
    t->wait_fd.store(pd, std::memory_order_seq_cst);
    bool early = sig_pending(t) || (t->cancel_pending.load(std::memory_order_seq_cst) && !t->cancel_disabled);
    bool closed = !early && closes && closes->load(std::memory_order_seq_cst) != seen;
    ssize_t r = early ? -ETIMEDOUT : closed ? -EBADF : npshim_io(pd, mode, deadline, flags, seq, op, ctx);
    *interrupted = early;
    if (t->wait_fd.exchange(nullptr, std::memory_order_seq_cst) != pd) {
        // An interrupter took it and expires the deadline: once it is done,
        // the descriptor gets its plain state back.
        while (t->poking.load(std::memory_order_seq_cst)) cpu_relax();
        np_set_deadline(pd, 0, mode);
        *interrupted = true;
    }
    return r;
}

ssize_t fd_park(Thread *t, int fd, np_fd *pd, int mode, int64_t deadline, npshim_op op, void *ctx,
                bool *interrupted, const uint32_t *seq, unsigned flags) {
    flags |= NPSHIM_TRYLOCK | (seq ? NPSHIM_WAIT_FIRST : 0);
    ssize_t r = park_pd(t, pd, mode, deadline, flags, seq ? *seq : 0, op, ctx, interrupted);
    if (r == -EBUSY) r = park_private(t, fd, pd, mode, deadline, op, ctx, interrupted);
    if (r == -EBADF) fd_close_wait(fd); // returns once the number is closed
    return r;
}

} // namespace shim

using namespace shim;

extern "C" {

int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (!on() || sig < 1 || sig > 64 || sig == SIGKILL || sig == SIGSTOP) return real_sigaction()(sig, act, old);
    // What is pending for the caller came under the action it has now: the
    // kernel would have delivered it already, at the return of the last
    // system call.  One still waiting for this thread (it computed inside
    // libc, where no poke runs a handler) is delivered so before the action
    // changes: CPython, its itimer stopped, put SIGALRM's default back at
    // exit and died of a SIGALRM pending since.
    if (act && green()) {
        Thread *t = self();
        // Sent to the process and not yet taken by the OS main thread (on
        // a loaded machine it runs late): taken here, as it would take it,
        // unless a signalfd waits for it there.
        sigset_t held = lock();
        bool handled = is_handler(prog[sig]);
        unlock(held);
        if (handled && !catcher_blocks(sig)) {
            sigset_t one;
            sigemptyset(&one);
            sigaddset(&one, sig);
            siginfo_t info;
            struct timespec zero = {0, 0};
            if (real.syscall(SYS_rt_sigtimedwait, long(&one), long(&info), long(&zero), 8, 0, 0) == sig)
                to_process(sig, &info);
        }
        if (t && sig_pending(t)) sig_deliver(t);
    }
    sigset_t held = lock();
    struct sigaction prev = prog[sig];
    bool known = recorded.load(std::memory_order_relaxed) & bit(sig);
    unlock(held);
    if (!known && real_sigaction()(sig, nullptr, &prev) != 0) return -1;
    // A handler the program did not set is the runtime's dump (nprun
    // --dump-on) or its guard-page report (SIGSEGV): the program is told
    // what it would see without them, the default (Rust's std installs its
    // stack overflow handler only over SIG_DFL), or it keeps that handler
    // as one it inherited.
    if (!known && is_handler(prev) && (sig == npshim_dump_signal() || npshim_is_guard_handler(&prev))) {
        prev = {};
        prev.sa_handler = SIG_DFL;
    }
    if (act && sig == npshim_dump_signal()) dump_replaced(sig);
    if (act) {
        struct sigaction k = *act;
        // A handler, or the default action of a signal some thread blocks
        // (route_blocked): the kernel hands it to on_signal.
        // SIG_IGN as well (catch_for_wait), but for ignored SIGCHLD, which
        // also tells the kernel to reap the children.
        bool dfl_routed = !is_handler(*act) && !ignored_by_default(sig) &&
                          (act->sa_handler == SIG_DFL || act->sa_handler == SIG_IGN) &&
                          (routed.load(std::memory_order_relaxed) & bit(sig));
        if (is_fault(sig)) { // run where they happen, through on_fault
            if (is_handler(*act)) {
                k.sa_sigaction = on_fault;
                // SA_RESETHAND stays the kernel's.  SA_NODEFER: the worker's
                // mask stays as it is while the handler runs, so a handler
                // that leaves without sigreturn (gccgo's unwinds a panic out
                // of it, after unblocking the signal in the thread's mask)
                // leaves no fault blocked on the worker for the next one.
                k.sa_flags = act->sa_flags | SA_SIGINFO | SA_NODEFER;
                sigemptyset(&k.sa_mask); // the thread's mask takes sa_mask (on_fault)
            }
        } else if (is_handler(*act) || dfl_routed) {
            k.sa_sigaction = on_signal;
            k.sa_flags = (act->sa_flags | SA_SIGINFO) & ~SA_RESETHAND;
        }
        if (sig == kPoke && pokes_on) { // on_poke stays, and passes the program's on
            k.sa_sigaction = on_poke;
            k.sa_flags = SA_SIGINFO | SA_RESTART;
            sigemptyset(&k.sa_mask);
        }
        if (real_sigaction()(sig, &k, nullptr) != 0) return -1;
        sigset_t held = lock();
        prog[sig] = *act;
        recorded.fetch_or(bit(sig), std::memory_order_relaxed);
        unlock(held);
    }
    if (old) *old = prev;
    return 0;
}

sighandler_t signal(int sig, sighandler_t h) {
    struct sigaction a = {}, old = {};
    a.sa_handler = h;
    a.sa_flags = SA_RESTART; // glibc's signal() is BSD's
    sigemptyset(&a.sa_mask);
    if (sigaction(sig, &a, &old) != 0) return SIG_ERR;
    return (old.sa_flags & SA_SIGINFO) ? reinterpret_cast<sighandler_t>(reinterpret_cast<void *>(old.sa_sigaction))
                                     : old.sa_handler;
}

// pthread_kill's (SI_TKILL) and pthread_sigqueue's (SI_QUEUE, with its
// value): the siginfo the thread gets is built here.
static int signal_thread(Thread *t, int sig, int code, const union sigval value) {
    if (sig < 0 || sig > 64) return EINVAL;
    if (sig == 0) return 0;
    siginfo_t info = {};
    info.si_signo = sig;
    info.si_code = code;
    info.si_pid = getpid();
    info.si_uid = getuid();
    info.si_value = value;
    sigset_t held = lock();
    struct sigaction a = prog[sig];
    unlock(held);
    bool handled = is_handler(a) && sig != SIGKILL && sig != SIGSTOP;
    if (!handled) {
        if (a.sa_handler == SIG_IGN || (a.sa_handler == SIG_DFL && ignored_by_default(sig))) {
            // Dropped, unless the thread blocks it: the kernel then keeps it
            // pending for the thread, for a sigwait (run_handler drops it if
            // the thread lets it through later).
            if (sigismember(&t->sigmask, sig)) send_to(t, sig, &info);
            return 0;
        }
        // SIGSTOP too: sent to the process, the kernel gives it to the OS
        // main thread (the catcher), and this worker would go on running
        // the program until that thread is scheduled and stops the group
        // (traffic_crashlog's kill(getpid(), SIGSTOP) then ran on).
        if (t == self() && sig != SIGKILL) {
            if (!sigismember(&t->sigmask, sig)) {
                default_action_now(sig); // raise(): before it returns
                return 0;
            }
            // Blocked: a handler raising its own signal again after putting
            // the default back (gzip's, xz's).  Pending for this thread, the
            // action is taken as the handler returns, before the program's
            // next step, as the kernel's sigreturn would.
            send_to(t, sig, &info);
            return 0;
        }
        // The default action is the process's.  Queued, with its value
        // (a sigwaitinfo's or signalfd's si_value).
        int r = info.si_code == SI_QUEUE ? sigqueue(getpid(), sig, info.si_value) : kill_process(sig);
        return r == 0 ? 0 : errno;
    }
    send_to(t, sig, &info);
    if (t == self()) sig_deliver(t); // raise(): before it returns
    return 0;
}

int pthread_kill(pthread_t th, int sig) {
    Thread *t = on() ? thread_of(th) : nullptr;
    if (!t) return on() && thread_gone(th) ? ESRCH : real.pthread_kill(th, sig);
    return signal_thread(t, sig, SI_TKILL, sigval{});
}

// glibc's queues the signal to the TCB's tid, a worker's, which blocks
// every signal: it was never delivered (a sigwaitinfo for it waited for
// ever).  As pthread_kill, with the value and SI_QUEUE.
int pthread_sigqueue(pthread_t th, int sig, const union sigval value) {
    Thread *t = on() ? thread_of(th) : nullptr;
    if (!t) {
        if (on() && thread_gone(th)) return ESRCH;
        static auto fn = reinterpret_cast<int (*)(pthread_t, int, const union sigval)>(
            dlsym(RTLD_NEXT, "pthread_sigqueue"));
        return fn(th, sig, value);
    }
    return signal_thread(t, sig, SI_QUEUE, value);
}

int signalfd(int fd, const sigset_t *mask, int flags) {
    on(); // real.* are set
    int r = real.signalfd(fd, mask, flags);
    if (r >= 0 && on() && mask) catcher_block(mask);
    return r;
}

// SIGSTOP sent to our own group: the kernel wakes one thread to take it
// (the OS main thread, parked), and the caller's worker would run on until
// that one stops the group.  Whoever takes it stops every thread, the
// caller too at its next return from a system call; so the caller waits,
// yielding, for the signal to leave the process's pending set (a SIGCONT
// meanwhile drops it: no stop then, as with the kernel's).  Without /proc,
// as before.
static void group_stop_taken() {
    long fd = real.syscall(SYS_openat, AT_FDCWD, long("/proc/self/status"), O_RDONLY | O_CLOEXEC, 0, 0, 0);
    if (fd < 0) return;
    for (int i = 0; i < 100000; i++) { // read afresh from the start each time
        char buf[4096];
        long n = real.syscall(SYS_pread64, fd, long(buf), sizeof buf - 1, 0, 0, 0);
        if (n <= 0) break;
        buf[n] = 0;
        const char *p = strstr(buf, "\nShdPnd:");
        if (!p || !(strtoull(p + 9, nullptr, 16) & bit(SIGSTOP))) break;
        real.syscall(SYS_sched_yield, 0, 0, 0, 0, 0, 0);
    }
    real.syscall(SYS_close, fd, 0, 0, 0, 0, 0);
}

int kill(pid_t pid, int sig) {
    Thread *t = on() ? self() : nullptr;
    auto fn = real.kill;
    if (!t || sig <= 0 || sig > 64 || sigismember(&t->sigmask, sig)) return fn(pid, sig);
    if (pid == getpid()) {
        // The kernel gives a signal sent to the process to main when main
        // lets it through, else to some thread that does; the caller gets
        // it before kill returns only when it is that one (POSIX).  As a
        // raise from any thread, a Timer thread's os.kill(os.getpid(),
        // SIGINT) ran CPython's handler there, which only flags main, and
        // main, parked in a read, waited for ever for its EINTR.  A default
        // action or an ignored signal is the process's anyway: raise takes
        // it before kill returns, as the kernel would.
        sigset_t held = lock();
        struct sigaction a = prog[sig];
        unlock(held);
        if (t->is_main || !is_handler(a) || sig == SIGKILL || sig == SIGSTOP) return raise(sig);
        siginfo_t info = {};
        info.si_signo = sig;
        info.si_code = SI_USER;
        info.si_pid = getpid();
        info.si_uid = getuid();
        to_process(sig, &info);
        if (sig_pending(t)) sig_deliver(t); // picked itself: before kill returns
        return 0;
    }
    if (sig == SIGSTOP && (pid == 0 || pid == -getpgrp())) {
        int r = fn(pid, sig);
        if (r == 0) group_stop_taken();
        return r;
    }
    // Our own process group (smbd ends itself with kill(0, SIGTERM)): the
    // others get it from the kernel, this process as raise gives it, before
    // kill returns; the kernel drops our copy, ignored for the moment.
    // SIGCHLD ignored would reap our children: that one goes as it is.
    if ((pid != 0 && pid != -getpgrp()) || sig == SIGCHLD || sig == SIGKILL || sig == SIGSTOP) return fn(pid, sig);
    struct sigaction ign = {}, was;
    ign.sa_handler = SIG_IGN;
    if (real_sigaction()(sig, &ign, &was) != 0) return fn(pid, sig);
    int r = fn(pid, sig);
    int e = errno;
    real_sigaction()(sig, &was, nullptr);
    if (r != 0) {
        errno = e;
        return r;
    }
    return raise(sig);
}

// glibc's killpg calls its kill directly: our group's share would be
// missed.
int killpg(pid_t pgrp, int sig) {
    if (pgrp < 0) {
        errno = EINVAL;
        return -1;
    }
    return kill(-pgrp, sig);
}

int raise(int sig) {
    Thread *t = on() ? self() : nullptr;
    if (!t) {
        return real.raise(sig);
    }
    int e = pthread_kill(reinterpret_cast<pthread_t>(t->tcb), sig);
    if (e) {
        errno = e;
        return -1;
    }
    return 0;
}

// tgkill(2) of the caller's own ID, the one gettid(2) gave it, is a
// raise(3), as it is without the library; of another thread's, a
// pthread_kill(3) of that thread: the kernel knows no task by a green
// thread's ID, and main's (the process ID) names the OS main thread, not
// the worker that runs main.
// syscall(2) brings SYS_tgkill and SYS_tkill here.  Any other ID goes to
// the kernel as it is.
int tgkill(pid_t tgid, pid_t tid, int sig) {
    if (on() && tgid == getpid() && sig >= 0 && sig < 65) {
        if (self() && tid == own_gettid()) return raise(sig);
        if (Thread *to = thread_of_id(tid)) {
            int e = pthread_kill(reinterpret_cast<pthread_t>(to->tcb), sig);
            if (e) errno = e;
            return e ? -1 : 0;
        }
    }
    if (!real.syscall) real.syscall = reinterpret_cast<decltype(real.syscall)>(dlsym(RTLD_NEXT, "syscall"));
    return int(real.syscall(SYS_tgkill, tgid, tid, sig, 0, 0, 0));
}

int timer_create(clockid_t clk, struct sigevent *sev, timer_t *id) {
    static auto fn = reinterpret_cast<decltype(&timer_create)>(dlsym(RTLD_NEXT, "timer_create"));
    struct sigevent mine;
    pid_t target = 0;
    if (on() && sev && sev->sigev_notify == SIGEV_THREAD_ID && sev->_sigev_un._tid != getpid() &&
        thread_of_id(sev->_sigev_un._tid)) {
        target = sev->_sigev_un._tid;
        mine = *sev;
        mine._sigev_un._tid = getpid(); // the OS main thread: on_signal sends it on
        sev = &mine;
    }
    int r = fn(clk, sev, id);
    if (r == 0 && target) timer_note(int(reinterpret_cast<intptr_t>(*id)), target);
    return r;
}

int timer_delete(timer_t id) {
    static auto fn = reinterpret_cast<decltype(&timer_delete)>(dlsym(RTLD_NEXT, "timer_delete"));
    int r = fn(id);
    if (r == 0) timer_note(int(reinterpret_cast<intptr_t>(id)), 0);
    return r;
}

int pthread_sigmask(int how, const sigset_t *set, sigset_t *old) {
    Thread *t = on() ? self() : nullptr;
    if (!t) return real.pthread_sigmask(how, set, old);
    sigset_t prev = t->sigmask;
    if (set) {
        if (how == SIG_BLOCK) sigorset(&t->sigmask, &t->sigmask, set);
        else if (how == SIG_UNBLOCK) {
            for (int s = 1; s < 65; s++)
                if (sigismember(set, s) == 1) sigdelset(&t->sigmask, s);
        } else if (how == SIG_SETMASK) t->sigmask = *set;
        else return EINVAL;
        sigdelset(&t->sigmask, SIGKILL);
        sigdelset(&t->sigmask, SIGSTOP);
        if (how != SIG_UNBLOCK) route_blocked(&t->sigmask);
        mask_narrowed(t, prev);
    }
    if (old) *old = prev;
    if (sig_pending(t)) sig_deliver(t); // unblocked: delivered before it returns
    return 0;
}

// The thread's own pending signals (sent to it, or to the process while
// every thread blocks them), with what the kernel holds for the process.
int sigpending(sigset_t *set) {
    Thread *t = on() ? self() : nullptr;
    auto fn = real.sigpending;
    if (!t) return fn(set);
    if (fn(set) != 0) return -1;
    uint64_t mine = t->sigpending.load(std::memory_order_acquire) | proc_pending.load(std::memory_order_acquire);
    for (int s = 1; s < 65; s++)
        if (mine & bit(s)) sigaddset(set, s);
    return 0;
}

int sigsuspend(const sigset_t *mask) {
    Thread *t = on() ? self() : nullptr;
    if (!t) {
        return real.sigsuspend(mask);
    }
    sigset_t saved = t->sigmask;
    t->sigmask = *mask;
    mask_narrowed(t, saved);
    while (!sig_pending(t)) {
        futex_wait(&t->sleep_word, 0, 0, true);
        test_cancel(t);
    }
    sig_deliver(t);
    t->sigmask = saved;
    mask_narrowed(t, *mask);
    errno = EINTR;
    return -1;
}

int pause(void) {
    Thread *t = on() ? self() : nullptr;
    if (!t) {
        return real.pause();
    }
    sigset_t m = t->sigmask;
    return sigsuspend(&m);
}

int sigwait(const sigset_t *set, int *sig) {
    if (!on() || !self()) {
        return real.sigwait(set, sig);
    }
    int r;
    while ((r = wait_for(set, nullptr, 0)) == -EINTR) {} // sigwait is not interrupted
    *sig = r;
    return 0;
}

int sigwaitinfo(const sigset_t *set, siginfo_t *info) {
    if (!on() || !self()) {
        return real.sigwaitinfo(set, info);
    }
    siginfo_t i;
    int r = wait_for(set, &i, 0);
    if (r < 0) return int(ret(r));
    if (info) *info = i;
    return r;
}

int sigtimedwait(const sigset_t *set, siginfo_t *info, const struct timespec *ts) {
    if (!on() || !self()) {
        return real.sigtimedwait(set, info, ts);
    }
    siginfo_t i;
    int r = wait_for(set, &i, ts ? deadline_from_rel(ts) : 0);
    if (r < 0) return int(ret(r));
    if (info) *info = i;
    return r;
}

// The BSD and System V forms, which glibc builds on its own sigprocmask
// and sigaction, out of our reach (dash unblocks with sigsetmask).
static sigset_t from_bsd(int mask) {
    sigset_t s;
    sigemptyset(&s);
    for (int sig = 1; sig <= 32; sig++)
        if (mask & int(1u << (sig - 1))) sigaddset(&s, sig);
    return s;
}

static int to_bsd(const sigset_t &s) {
    unsigned m = 0;
    for (int sig = 1; sig <= 32; sig++)
        if (sigismember(&s, sig) == 1) m |= 1u << (sig - 1);
    return int(m);
}

int sigblock(int mask) {
    sigset_t s = from_bsd(mask), old;
    if (sigprocmask(SIG_BLOCK, &s, &old) != 0) return -1;
    return to_bsd(old);
}

int sigsetmask(int mask) {
    sigset_t s = from_bsd(mask), old;
    if (sigprocmask(SIG_SETMASK, &s, &old) != 0) return -1;
    return to_bsd(old);
}

int siggetmask(void) {
    sigset_t old;
    if (sigprocmask(SIG_SETMASK, nullptr, &old) != 0) return -1;
    return to_bsd(old);
}

static int one_sig(int how, int sig) {
    sigset_t s;
    sigemptyset(&s);
    if (sigaddset(&s, sig) != 0) return -1;
    return sigprocmask(how, &s, nullptr);
}

int sighold(int sig) { return one_sig(SIG_BLOCK, sig); }
int sigrelse(int sig) { return one_sig(SIG_UNBLOCK, sig); }

int sigignore(int sig) {
    struct sigaction a = {};
    a.sa_handler = SIG_IGN;
    return sigaction(sig, &a, nullptr);
}

// sig_or_mask is a signal to let through (is_sig), else a BSD mask.
int __sigpause(int sig_or_mask, int is_sig) {
    sigset_t m;
    if (is_sig) {
        if (sigprocmask(SIG_SETMASK, nullptr, &m) != 0) return -1;
        if (sigdelset(&m, sig_or_mask) != 0) return -1;
    } else {
        m = from_bsd(sig_or_mask);
    }
    return sigsuspend(&m);
}

// <signal.h> names POSIX's sigpause __xpg_sigpause; the BSD one, with a
// mask, is the symbol sigpause.
int __xpg_sigpause(int sig) { return __sigpause(sig, 1); }
int bsd_sigpause(int mask) __asm__("sigpause");
int bsd_sigpause(int mask) { return __sigpause(mask, 0); }

sighandler_t sigset(int sig, sighandler_t disp) {
    sigset_t s, old;
    sigemptyset(&s);
    if (sigaddset(&s, sig) != 0) return SIG_ERR;
    struct sigaction prev = {};
    if (disp == SIG_HOLD) {
        if (sigaction(sig, nullptr, &prev) != 0 || sigprocmask(SIG_BLOCK, &s, &old) != 0) return SIG_ERR;
    } else {
        struct sigaction a = {};
        a.sa_handler = disp;
        sigemptyset(&a.sa_mask);
        if (sigaction(sig, &a, &prev) != 0 || sigprocmask(SIG_UNBLOCK, &s, &old) != 0) return SIG_ERR;
    }
    if (sigismember(&old, sig) == 1) return SIG_HOLD;
    return (prev.sa_flags & SA_SIGINFO) ? reinterpret_cast<sighandler_t>(reinterpret_cast<void *>(prev.sa_sigaction))
                                        : prev.sa_handler;
}

sighandler_t sysv_signal(int sig, sighandler_t h) {
    struct sigaction a = {}, old = {};
    a.sa_handler = h;
    a.sa_flags = SA_RESETHAND | SA_NODEFER; // System V's: once, not blocked meanwhile
    sigemptyset(&a.sa_mask);
    if (sigaction(sig, &a, &old) != 0) return SIG_ERR;
    return (old.sa_flags & SA_SIGINFO) ? reinterpret_cast<sighandler_t>(reinterpret_cast<void *>(old.sa_sigaction))
                                     : old.sa_handler;
}

sighandler_t bsd_signal(int sig, sighandler_t h) { return signal(sig, h); }

int sigprocmask(int how, const sigset_t *set, sigset_t *old) {
    Thread *t = on() ? self() : nullptr;
    int e = t ? pthread_sigmask(how, set, old) : real.pthread_sigmask(how, set, old);
    if (e) {
        errno = e;
        return -1;
    }
    return 0;
}

} // extern "C"

// sigaltstack on a green thread is the thread's, as the kernel keeps it per
// thread: recorded and reported, never set on the worker, which runs many
// threads and keeps its own (stack_guard_thread_init), where the kernel
// runs SA_ONSTACK fault handlers.  Setting the worker's would leave it the
// stack of a thread that ends and frees it (SBCL, Rust, libsigsegv), and
// the next fault handled there would find it unmapped and kill the process.
static int os_sigaltstack(const stack_t *ss, stack_t *old) {
    on(); // real.* are set
    return real.sigaltstack(ss, old);
}

// A plain thread turning green (main, threads.cpp): the alternate stack it
// set is the thread's from now on, and its OS thread's no more.
void shim::altstack_take(Thread *t) {
    stack_t had, off{nullptr, SS_DISABLE, 0};
    if (os_sigaltstack(nullptr, &had) != 0 || (had.ss_flags & SS_DISABLE)) return;
    t->altstack = stack_t{had.ss_sp, had.ss_flags & ~SS_ONSTACK, had.ss_size};
    os_sigaltstack(&off, nullptr);
}

extern "C" int sigaltstack(const stack_t *ss, stack_t *old) {
    auto fn = os_sigaltstack;
    Thread *t = green() ? self() : nullptr;
    if (!t) return fn(ss, old);
    if (ss) {
        if (ss->ss_flags & ~(SS_DISABLE | (1 << 31))) { // SS_AUTODISARM
            errno = EINVAL;
            return -1;
        }
        if (!(ss->ss_flags & SS_DISABLE) && ss->ss_size < size_t(MINSIGSTKSZ)) {
            errno = ENOMEM;
            return -1;
        }
    }
    stack_t prev = t->altstack;
    if (on_altstack(t, reinterpret_cast<uintptr_t>(__builtin_frame_address(0)))) {
        prev.ss_flags |= SS_ONSTACK; // as the kernel reports it, and refuses a change there
        if (ss) {
            errno = EPERM;
            return -1;
        }
    }
    if (ss) {
        t->altstack = *ss;
        if (ss->ss_flags & SS_DISABLE) t->altstack = stack_t{nullptr, SS_DISABLE, 0};
    }
    if (old) *old = prev;
    return 0;
}

// A handler that leaves by siglongjmp (emacs's and gawk's on stack
// overflow, ed's on SIGINT) has glibc restore the mask sigsetjmp saved with its own
// rt_sigprocmask, which sets the worker's: the thread's own mask, with the
// handler's sa_mask added, would stay so.  The mask before the fault is
// the thread's again, as the kernel's would be.  glibc's longjmp,
// _longjmp and siglongjmp are one function; __longjmp_chk is the
// fortified one.
namespace {
using JumpFn = void (*)(struct __jmp_buf_tag *, int);
[[noreturn]] void longjmp_out(JumpFn fn, struct __jmp_buf_tag *env, int val) {
    Thread *t = on() && green() ? self() : nullptr;
    if (t && (t->fault_depth || t->handler_depth)) {
        // Out of a handler run_handler ran (the thread's own mask then has
        // the signal and sa_mask added, which its return would take back).
        sigset_t before = t->fault_depth ? t->fault_before : t->handler_before;
        bool poked = t->handler_depth != 0;
        t->fault_depth = 0;
        t->handler_depth = 0;
        if (env->__mask_was_saved) pthread_sigmask(SIG_SETMASK, &before, nullptr);
        // A handler a poke ran: the kernel blocked kPoke on this worker for
        // on_poke's frame, which the jump leaves without sigreturn (ed's
        // longjmp saves no mask), so no poke would reach it any more: a
        // second Ctrl-C at ed's prompt waited for the next line.
        if (poked && pokes_on) {
            sigset_t poke;
            sigemptyset(&poke);
            sigaddset(&poke, kPoke);
            real.pthread_sigmask(SIG_UNBLOCK, &poke, nullptr);
        }
    }
    fn(env, val);
    __builtin_unreachable();
}
} // namespace

extern "C" {
// on() first: real.* are set (a jump may come before the shim's constructor).
void longjmp(struct __jmp_buf_tag env[1], int val) { longjmp_out((on(), real.longjmp), env, val); }
void _longjmp(struct __jmp_buf_tag env[1], int val) { longjmp_out((on(), real._longjmp), env, val); }
void siglongjmp(struct __jmp_buf_tag env[1], int val) { longjmp_out((on(), real.siglongjmp), env, val); }
[[noreturn]] void __longjmp_chk(struct __jmp_buf_tag env[1], int val);
void __longjmp_chk(struct __jmp_buf_tag env[1], int val) { longjmp_out((on(), real.__longjmp_chk), env, val); }
} // extern "C"

// See shim.hpp: the library's own calls come here, not to the program's.
namespace shim {
int own_tgkill(pid_t tgid, pid_t tid, int sig) __attribute__((alias("tgkill")));
} // namespace shim
