// Reports a green thread that ran into its guard page, instead of a bare
// SIGSEGV: each worker has an alternate signal stack (the faulting stack is
// unusable), and the handler only claims faults inside our guard pages.
// Installed only where the program has no SIGSEGV handler of its own.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <sys/mman.h>
#include <unistd.h>

#include "libc_real.hpp"
#include "runtime.hpp"
#include "sys.hpp"

namespace np {

static struct sigaction previous;

static void on_segv(int sig, siginfo_t *si, void *ctx) {
    Worker *w = cur_worker();
    StackPool *pool = rt && w && w->cur ? w->cur->stack.pool : nullptr;
    if (pool && pool->in_guard(si->si_addr)) {
        char msg[160];
        int n = snprintf(msg, sizeof msg,
                         "netpoll: green thread %llu overflowed its %zu-byte stack\n",
                         (unsigned long long)w->cur->id, pool->stack_size());
        ssize_t r = sys_write(2, msg, size_t(n));
        (void)r;
    }
    // Fall through to what was there before (by default: die with SIGSEGV).
    real_sigaction(SIGSEGV, &previous, nullptr);
    if (previous.sa_flags & SA_SIGINFO) {
        if (previous.sa_sigaction) previous.sa_sigaction(sig, si, ctx);
    }
}

void stack_guard_install() {
    struct sigaction cur;
    if (real_sigaction(SIGSEGV, nullptr, &cur) != 0) return;
    if (!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler != SIG_DFL) return;
    if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction) return;
    previous = cur;
    struct sigaction sa = {};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    real_sigaction(SIGSEGV, &sa, nullptr);
}

bool stack_guard_is_handler(const void *fn) { return fn == reinterpret_cast<const void *>(on_segv); }

void stack_guard_thread_init() {
    constexpr size_t kAlt = 64 * 1024;
    void *m = mmap(nullptr, kAlt, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return;
    stack_t ss = {};
    ss.ss_sp = m;
    ss.ss_size = kAlt;
    sys_sigaltstack(&ss, nullptr); // the worker's own: a preloaded shim keeps a green thread's apart
}

} // namespace np
