/* Syscall user dispatch (prctl PR_SET_SYSCALL_USER_DISPATCH, Linux 5.11), as
 * stress-ng's prctl stressor and emulators use it: while the selector byte
 * says BLOCK, every system call the thread makes outside the allowed
 * region raises SIGSYS (si_code SYS_USER_DISPATCH) instead of running, and
 * the handler emulates it, sets the selector to ALLOW and returns.  The
 * shim's own system calls before the program's handler (its locks' signal
 * masks) would trap too: each trap ran the shim's handler again, without
 * end, and the process spun in the kernel.  Here a trapped getppid() must
 * reach the handler once, with its own number, and return what the handler
 * wrote; in main() before any thread, in a thread, and in main() after.
 * x86-64 only, and skipped where the kernel lacks the prctl. */
#include "shim_test.h"
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>

#if defined(__x86_64__) && defined(PR_SET_SYSCALL_USER_DISPATCH)
#ifndef SYS_USER_DISPATCH
#define SYS_USER_DISPATCH 2
#endif

static volatile char selector = SYSCALL_DISPATCH_FILTER_ALLOW;
static atomic_int traps, depth, nested;
static volatile long trapped_nr, trapped_code;

static void on_sigsys(int sig, siginfo_t *info, void *ucv)
{
    (void)sig;
    /* no system call may come before this: it would trap, in here */
    selector = SYSCALL_DISPATCH_FILTER_ALLOW;
    if (atomic_fetch_add(&depth, 1) > 0) atomic_fetch_add(&nested, 1);
    atomic_fetch_add(&traps, 1);
    trapped_nr = info->si_syscall;
    trapped_code = info->si_code;
    ((ucontext_t *)ucv)->uc_mcontext.gregs[REG_RAX] = 4242; /* the emulated result */
    atomic_fetch_sub(&depth, 1);
}

static int supported = 1;

/* One trapped call: 1 when it ran as it should, 0 when it was checked and
 * failed; dispatch stays off afterwards. */
static void one_trap(const char *where)
{
    atomic_store(&traps, 0);
    atomic_store(&nested, 0);
    trapped_nr = trapped_code = -1;
    if (prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, 0, 0, &selector) != 0) {
        CHECK(errno == EINVAL, "%s: prctl(PR_SET_SYSCALL_USER_DISPATCH): %s", where, strerror(errno));
        supported = 0;
        return;
    }
    selector = SYSCALL_DISPATCH_FILTER_BLOCK;
    long r = syscall(SYS_getppid); /* traps: the handler's 4242 */
    selector = SYSCALL_DISPATCH_FILTER_ALLOW;
    int off = prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF, 0, 0, 0);
    CHECK(off == 0, "%s: dispatch off: %s", where, strerror(errno));
    CHECK(atomic_load(&traps) == 1, "%s: %d traps, want 1", where, atomic_load(&traps));
    CHECK(atomic_load(&nested) == 0, "%s: %d traps inside the handler", where, atomic_load(&nested));
    CHECK(trapped_nr == SYS_getppid, "%s: trapped call %ld, want getppid (%d)", where, trapped_nr,
          (int)SYS_getppid);
    CHECK(trapped_code == SYS_USER_DISPATCH, "%s: si_code %ld, want SYS_USER_DISPATCH", where, trapped_code);
    CHECK(r == 4242, "%s: getppid() under dispatch returned %ld, want the handler's 4242", where, r);
    CHECK(getppid() != 4242, "%s: getppid() after dispatch is off", where);
}

static void *in_thread(void *arg)
{
    one_trap(arg);
    return NULL;
}

static void test_dispatch(void)
{
    struct sigaction sa = {0};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGSYS, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
    st_phase = "main before any thread";
    one_trap(st_phase);
    if (!supported) return;
    st_phase = "a thread";
    pthread_t t;
    CHECK(pthread_create(&t, NULL, in_thread, (void *)st_phase) == 0, "pthread_create");
    pthread_join(t, NULL);
    st_phase = "main after a thread";
    one_trap(st_phase);
}

int main(void)
{
    st_watchdog(30);
    const struct st_test tests[] = {{"dispatch", test_dispatch}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    if (!supported) printf("SKIP no PR_SET_SYSCALL_USER_DISPATCH in this kernel\n");
    return st_finish("syscall_dispatch");
}
#else
int main(void)
{
    printf("SKIP x86-64 with PR_SET_SYSCALL_USER_DISPATCH only\n");
    return st_finish("syscall_dispatch");
}
#endif
