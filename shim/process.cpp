// Process creation from a legacy thread.  The kernel gives a child (and an
// exec'd image) the signal mask of the OS thread that made it: a worker's,
// which blocks every signal.  So these run with the legacy thread's own
// mask on its worker for the length of the call.  A forked child has one
// thread and no workers: it runs unshimmed (threads.cpp).
#include <cstdarg>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <dlfcn.h>
#include <linux/seccomp.h>
#include <linux/sched.h>
#include <sched.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fd_table.hpp"
#include "real.hpp"
#include "shim.hpp"

namespace shim {

namespace {

using SigmaskFn = int (*)(int, const sigset_t *, sigset_t *);

SigmaskFn real_sigmask() {
    on(); // real.* are set
    return real.pthread_sigmask;
}

template <class F> auto with_own_mask(F f) {
    Thread *t = on() ? self() : nullptr;
    if (!t) return f();
    sigset_t worker;
    real_sigmask()(SIG_SETMASK, &t->sigmask, &worker);
    auto r = f();
    int e = errno;
    real_sigmask()(SIG_SETMASK, &worker, nullptr);
    errno = e;
    return r;
}

// An exec or a spawn: the new image gets the ignored signals as ignored
// (ignore_routed), and the calling thread's mask.
// ...and the calling thread's CPU affinity, which is kept off its worker
// (Thread::affinity): put there for the call, which holds the worker.
template <class F> auto with_own_affinity(F f) {
    Thread *t = on() ? self() : nullptr;
    cpu_set_t worker;
    if (!t || !t->has_affinity || real.sched_getaffinity(0, sizeof worker, &worker) != 0 ||
        real.sched_setaffinity(0, sizeof t->affinity, &t->affinity) != 0)
        return f();
    auto r = f();
    int e = errno;
    real.sched_setaffinity(0, sizeof worker, &worker);
    errno = e;
    return r;
}

template <class F> auto for_new_image(F f) {
    uint64_t ign = on() ? ignore_routed() : 0;
    auto r = with_own_affinity([&] { return with_own_mask(f); });
    if (ign) {
        int e = errno;
        reroute(ign);
        errno = e;
    }
    return r;
}

template <class T> T next_fn(const char *name) { return reinterpret_cast<T>(dlsym(RTLD_NEXT, name)); }

// The child's side of every way to make a process that shares no memory
// with us: the forking thread's mask (the worker's blocks every signal),
// then no threads, workers or helpers of ours.
void child_side(const sigset_t *mask, const cpu_set_t *cpus = nullptr) {
    if (mask) real_sigmask()(SIG_SETMASK, mask, nullptr);
    if (cpus) real.sched_setaffinity(0, sizeof *cpus, cpus);
    owner_id_after_fork();
    threads_after_fork();
    helpers_after_fork();
}

// glibc's fork, wherever it is called from (fork, daemon, forkpty): its
// atfork lock is held from the prepare handler to the child's.
sigset_t atfork_mask;
bool atfork_masked;
cpu_set_t atfork_cpus; // the forking thread's own affinity, if it set one
bool atfork_pinned;

void atfork_prepare() {
    atfork_masked = false;
    atfork_pinned = false;
    if (!on()) return;
    fd_files_shared(); // the child shares our open files and their flags
    if (Thread *t = self()) {
        atfork_mask = t->sigmask;
        atfork_masked = true;
        atfork_cpus = t->affinity;
        atfork_pinned = t->has_affinity;
    }
}

void atfork_child() { child_side(atfork_masked ? &atfork_mask : nullptr, atfork_pinned ? &atfork_cpus : nullptr); }

// A child made without glibc's fork and its handlers (_Fork, clone, a raw
// clone system call): the same steps around the call.
class ForkLike {
  public:
    ForkLike() : t_(on() ? self() : nullptr) {
        if (on()) fd_files_shared();
        if (t_) {
            mine_ = t_->sigmask;
            real_sigmask()(SIG_SETMASK, &mine_, &worker_);
        }
    }
    void child() {
        if (on()) child_side(nullptr); // its mask is the thread's already
    }
    void parent() {
        if (!t_) return;
        int e = errno;
        real_sigmask()(SIG_SETMASK, &worker_, nullptr);
        errno = e;
    }

  private:
    Thread *t_;
    sigset_t mine_, worker_;
};

struct CloneStart {
    int (*fn)(void *);
    void *arg;
    ForkLike *fork;
};

// Runs in the child, on its stack, over its copy of our memory.  When fn
// returns, glibc ends this thread only; the process ends when its last
// thread does, and our workers (started if fn made threads) never do.
int clone_start(void *p) {
    auto *s = static_cast<CloneStart *>(p);
    s->fork->child();
    int r = s->fn(s->arg);
    threads_wait_rest();
    _exit(r);
}

} // namespace

void fork_handlers_install() { pthread_atfork(atfork_prepare, nullptr, atfork_child); }

// syscall(SYS_clone or SYS_clone3) that makes a process continuing on this
// stack (no CLONE_VM, no new stack); -ENOSYS: not such a call.
long fork_like_syscall(long (*raw)(long, long, long, long, long, long, long), long nr, long a1, long a2, long a3,
                       long a4, long a5) {
    if (!on()) return -ENOSYS;
    if (nr == SYS_clone) {
        if ((a1 & CLONE_VM) || a2) return -ENOSYS;
    } else if (nr == SYS_clone3) {
        const auto *args = reinterpret_cast<const struct clone_args *>(a1);
        if (!args || size_t(a2) < CLONE_ARGS_SIZE_VER0 || (args->flags & CLONE_VM) || args->stack) return -ENOSYS;
    } else {
        return -ENOSYS;
    }
    ForkLike f;
    long r = raw(nr, a1, a2, a3, a4, a5, 0);
    if (r == 0) f.child();
    else f.parent();
    return r;
}

} // namespace shim

using namespace shim;

extern "C" {

pid_t fork(void) {
    // As the waits below, the function found at start-up: a handler may fork.
    bool shimmed = on();
    auto fn = real.fork;
    if (shimmed) fd_files_shared(); // the child shares our open files and their flags
    Thread *t = shimmed ? self() : nullptr;
    if (!t) {
        if (shimmed) main_stack_now();
        return fn();
    }
    sigset_t worker;
    real_sigmask()(SIG_SETMASK, &t->sigmask, &worker);
    pid_t pid = fn();
    int e = errno;
    if (pid != 0) real_sigmask()(SIG_SETMASK, &worker, nullptr); // the child keeps the thread's
    if (pid > 0) t->fork_tid = kernel_tid(); // the child's parent, should it ask to be traced
    errno = e;
    return pid;
}

// The kernel takes ptrace requests only from the tracer, an OS thread: the
// one that attached, or the parent of a child that asked to be traced
// (PTRACE_TRACEME), the OS thread that forked it.  A thread that traces
// stays on one worker from its first request (gdb's main thread migrated
// while it read symbols, and its next PTRACE_GETREGS failed with ESRCH):
// the one its last fork ran on, where a child it traces was made.
long ptrace(enum __ptrace_request req, ...) {
    static auto fn = next_fn<long (*)(enum __ptrace_request, pid_t, void *, void *)>("ptrace");
    va_list ap;
    va_start(ap, req);
    pid_t pid = va_arg(ap, pid_t);
    void *addr = va_arg(ap, void *);
    void *data = va_arg(ap, void *);
    va_end(ap);
    if (req != PTRACE_TRACEME && on())
        if (Thread *t = self(); t && !t->ptrace_pinned) {
            t->ptrace_pinned = true;
            npshim_thread_pin(t->fork_tid);
        }
    return fn(req, pid, addr, data);
}

pid_t vfork(void) { return fork(); } // the child would run on a green stack it shares

pid_t _Fork(void) {
    on(); // real.* are set (async-signal-safe: as the waits below)
    auto fn = real._Fork;
    ForkLike f;
    pid_t pid = fn();
    if (pid == 0) f.child();
    else f.parent();
    return pid;
}

int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...) {
    on(); // real.* are set
    auto real_clone = real.clone;
    va_list ap;
    va_start(ap, arg);
    pid_t *ptid = va_arg(ap, pid_t *);
    void *tls = va_arg(ap, void *);
    pid_t *ctid = va_arg(ap, pid_t *);
    va_end(ap);
    if (!on() || (flags & CLONE_VM)) return real_clone(fn, stack, flags, arg, ptid, tls, ctid);
    ForkLike f;
    CloneStart s{fn, arg, &f};
    int r = real_clone(clone_start, stack, flags, &s, ptid, tls, ctid);
    f.parent();
    return r;
}

int system(const char *cmd) {
    on(); // real.* are set
    auto fn = real.system;
    if (on()) fd_files_shared();
    return kernel_call([&] { return fn(cmd); }, -1, true);
}

int pclose(FILE *f) {
    on(); // real.* are set
    auto fn = real.pclose;
    // libc closes the pipe itself: its number goes from the table first,
    // or the next file given that number is taken for this one.
    if (on() && f && fileno(f) >= 0) fd_forget(fileno(f));
    return kernel_call([&] { return fn(f); }, -1, true);
}

pid_t wait(int *status) { return waitpid(-1, status, 0); }

// The waits take the real functions found at start-up (real.def), not a
// lazy static: a SIGCHLD handler reaps with them, and one that lands while
// the thread it interrupts is inside a first call's dlsym would enter the
// static's guard again (recursive_init_error, abort). tdb's robust-mutex
// probe, run by smbd at start, does just that.
pid_t waitpid(pid_t pid, int *status, int options) {
    on(); // real.* are set
    auto fn = real.waitpid;
    if (options & WNOHANG) return fn(pid, status, options);
    return kernel_call([&] { return fn(pid, status, options); }, pid_t(-1), false, true, true);
}

int waitid(idtype_t type, id_t id, siginfo_t *info, int options) {
    on();
    auto fn = real.waitid;
    if (options & WNOHANG) return fn(type, id, info, options);
    return kernel_call([&] { return fn(type, id, info, options); }, -1, false, true, true);
}

pid_t wait3(int *status, int options, struct rusage *ru) { return wait4(-1, status, options, ru); }

pid_t wait4(pid_t pid, int *status, int options, struct rusage *ru) {
    on();
    auto fn = real.wait4;
    if (options & WNOHANG) return fn(pid, status, options, ru);
    return kernel_call([&] { return fn(pid, status, options, ru); }, pid_t(-1), false, true, true);
}

FILE *popen(const char *cmd, const char *mode) {
    on(); // real.* are set
    auto fn = real.popen;
    if (on()) fd_files_shared();
    return for_new_image([&] { return fn(cmd, mode); });
}

int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                const posix_spawnattr_t *attr, char *const argv[], char *const envp[]) {
    on(); // real.* are set
    auto fn = real.posix_spawn;
    if (on()) fd_files_shared();
    return for_new_image([&] { return fn(pid, path, fa, attr, argv, envp); });
}

int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                 const posix_spawnattr_t *attr, char *const argv[], char *const envp[]) {
    on(); // real.* are set
    auto fn = real.posix_spawnp;
    if (on()) fd_files_shared();
    return for_new_image([&] { return fn(pid, file, fa, attr, argv, envp); });
}

int execve(const char *path, char *const argv[], char *const envp[]) {
    on(); // real.* are set (async-signal-safe: as the waits below)
    auto fn = real.execve;
    return for_new_image([&] { return fn(path, argv, envp); });
}

int execv(const char *path, char *const argv[]) { return execve(path, argv, environ); }

int execvpe(const char *file, char *const argv[], char *const envp[]) {
    on(); // real.* are set
    auto fn = real.execvpe;
    return for_new_image([&] { return fn(file, argv, envp); });
}

int execvp(const char *file, char *const argv[]) { return execvpe(file, argv, environ); }

// The list forms, gathered into an argv (as glibc's own do).
static int exec_list(const char *path, const char *arg, va_list ap, bool with_env, bool search) {
    size_t n = 1;
    va_list c;
    va_copy(c, ap);
    while (va_arg(c, const char *)) n++;
    va_end(c);
    const char **argv = static_cast<const char **>(alloca((n + 1) * sizeof(char *)));
    argv[0] = arg;
    for (size_t i = 1; i <= n; i++) argv[i] = va_arg(ap, const char *);
    char *const *envp = with_env ? va_arg(ap, char *const *) : environ;
    char *const *av = const_cast<char *const *>(argv);
    return search ? execvpe(path, av, envp) : execve(path, av, envp);
}

int execl(const char *path, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    int r = exec_list(path, arg, ap, false, false);
    va_end(ap);
    return r;
}

int execlp(const char *file, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    int r = exec_list(file, arg, ap, false, true);
    va_end(ap);
    return r;
}

int execle(const char *path, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    int r = exec_list(path, arg, ap, true, false);
    va_end(ap);
    return r;
}

} // extern "C"

// ---- seccomp filters ----------------------------------------------------

namespace shim {

// A seccomp filter allows the calls the program makes and refuses others,
// often by SIGSYS (Firefox's content processes: its handler fakes ENOSYS,
// or crashes on purpose).  On a thread that blocks every signal (sysmon,
// a worker between threads) the kernel cannot deliver that SIGSYS, and
// kills the process instead.  So before the filter goes in, the engine
// stops its optional calls (npshim_sandboxed) and the shim its probes:
// RWF_NOWAIT reads and writes of pipes (readiness instead), getsockopt for
// a socket's protocol and timeouts (the ones set through setsockopt here
// are kept), /proc/self/fd links.  Set before the call: a filter that then
// fails to go in leaves us guessing a little more, harmless.  A call
// without a program (prog null) installs nothing: it is how Firefox and
// Chromium ask whether the kernel has seccomp (EFAULT says yes), in
// processes that stay unfiltered.
void note_seccomp_filter(bool filter, const void *prog) {
    if (filter && !prog) return;
    main_stack_now();
    if (sandboxed.exchange(true, std::memory_order_seq_cst)) return;
    if (on()) npshim_sandboxed();
}

// systemd's SystemCallFilter=, a container's profile, a sandboxed parent's
// exec: the filter came with the process.  PR_GET_SECCOMP is what such
// filters allow (it is how libseccomp and systemd look).
void note_inherited_filter() {
    if (real.prctl(PR_GET_SECCOMP, 0, 0, 0, 0) == SECCOMP_MODE_FILTER) note_seccomp_filter(false, nullptr);
}

// Syscall user dispatch turned on or off by this thread (a successful
// call, r == 0): its selector is what on_fault must set to ALLOW for its
// own system calls (stress-ng's prctl stressor, emulators).
void note_syscall_dispatch(long r, unsigned long mode, unsigned long selector) {
    if (r != 0) return;
    dispatch_selector = mode == PR_SYS_DISPATCH_ON ? reinterpret_cast<volatile char *>(selector) : nullptr;
}

} // namespace shim

extern "C" int prctl(int op, ...) {
    on(); // real.* are set
    auto fn = real.prctl;
    va_list ap;
    va_start(ap, op);
    unsigned long a2 = va_arg(ap, unsigned long), a3 = va_arg(ap, unsigned long);
    unsigned long a4 = va_arg(ap, unsigned long), a5 = va_arg(ap, unsigned long);
    va_end(ap);
    if (op == PR_SET_SECCOMP) note_seccomp_filter(a2 == SECCOMP_MODE_FILTER, reinterpret_cast<const void *>(a3));
    int r = fn(op, a2, a3, a4, a5);
    if (op == PR_SET_SYSCALL_USER_DISPATCH) note_syscall_dispatch(r, a2, a5);
    return r;
}
