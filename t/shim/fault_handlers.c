/* fault_handlers: handlers of faults (SIGSEGV and kin), which the kernel
 * runs where the fault happens, and thread stacks the program gives.  The
 * shapes of SBCL's threads: a write barrier on protected pages, a GC that
 * scans the stack it gave each thread, alternate stacks freed as their
 * threads end.
 *
 *   mask      a handler with sa_mask {SIGUSR1}, on a thread that blocks
 *             SIGUSR2: SIGUSR1 and the signal are blocked while it runs
 *             (pthread_sigmask), uc_sigmask is the thread's mask before
 *             it; an unblock inside does not outlive it, a change made in
 *             uc_sigmask does (as sigreturn restores it)
 *   altstack  a thread sets an alternate stack and frees it as it ends;
 *             other threads' faults, taken on an alternate stack, are
 *             handled; sigaltstack reports each thread its own
 *   longjmp   a handler with sa_mask {SIGUSR1} leaves by siglongjmp: the
 *             mask before the fault is back, and a SIGUSR1 then sent to
 *             the thread runs its handler
 *   setstack  threads made with pthread_attr_setstack run on the stack
 *             given, joinable and detached, and pthread_getattr_np reports
 *             it
 *   onstack   an SA_ONSTACK handler of a thread with an alternate stack
 *             runs on it, raised and sent by the process, and sigaltstack
 *             says so there (gccgo's runtime throws otherwise)
 *   escape    a fault handler that unblocks its signal and leaves by
 *             _longjmp (gccgo unwinds a panic out of it): the next faults
 *             of that thread, and of others, are handled too
 *   default   the action a program finds for SIGSEGV is SIG_DFL (Rust's
 *             std sets its overflow handler only over that)
 *   nested    a fault in a handler of that fault, left blocked, ends the
 *             process with it, as the kernel's default */
#include <setjmp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "shim_test.h"

static char *page; /* read-only until a handler opens it */

static void protect(void) { CHECK(mprotect(page, 4096, PROT_READ) == 0, "mprotect: %s", strerror(errno)); }

static void set_handler(int sig, void (*fn)(int, siginfo_t *, void *), int flags, int masked)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    if (masked) sigaddset(&sa.sa_mask, masked);
    CHECK(sigaction(sig, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
}

static int blocked(int sig)
{
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    return sigismember(&cur, sig);
}

/* ---------------------------------------------------------------- mask -- */

static atomic_int mask_bad;
static void mask_segv(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    if ((char *)si->si_addr != page) _exit(90);
    if (!blocked(SIGUSR1)) atomic_fetch_or(&mask_bad, 1);
    if (!blocked(sig)) atomic_fetch_or(&mask_bad, 2);
    if (!sigismember(&uc->uc_sigmask, SIGUSR2)) atomic_fetch_or(&mask_bad, 4);
    if (sigismember(&uc->uc_sigmask, SIGUSR1)) atomic_fetch_or(&mask_bad, 8);
    sigset_t u;
    sigemptyset(&u);
    sigaddset(&u, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &u, NULL); /* undone as the handler returns */
    sigaddset(&uc->uc_sigmask, SIGHUP);     /* kept */
    mprotect(page, 4096, PROT_READ | PROT_WRITE);
}

static void *mask_thread(void *arg)
{
    (void)arg;
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    pthread_sigmask(SIG_SETMASK, &m, NULL);
    st_sleep_ms(1); /* parked once: the thread may move */
    *(volatile char *)page = 1;
    int after = (blocked(SIGUSR2) ? 0 : 16) | (blocked(SIGHUP) ? 0 : 32) | (blocked(SIGUSR1) ? 64 : 0) |
                (blocked(SIGSEGV) ? 128 : 0);
    return (void *)(intptr_t)after;
}

static void test_mask(void)
{
    set_handler(SIGSEGV, mask_segv, 0, SIGUSR1);
    for (int round = 0; round < 10; round++) {
        protect();
        atomic_store(&mask_bad, 0);
        pthread_t t = st_spawn(mask_thread, NULL);
        void *r;
        pthread_join(t, &r);
        int bad = atomic_load(&mask_bad) | (int)(intptr_t)r;
        CHECK(bad == 0, "round %d: in the handler%s%s%s%s; after it%s%s%s%s", round,
              bad & 1 ? ", sa_mask's SIGUSR1 not blocked" : "", bad & 2 ? ", the signal not blocked" : "",
              bad & 4 ? ", uc_sigmask lacks the thread's SIGUSR2" : "",
              bad & 8 ? ", uc_sigmask has the handler's SIGUSR1" : "",
              bad & 16 ? ", the handler's unblock of SIGUSR2 kept" : "",
              bad & 32 ? ", SIGHUP added to uc_sigmask not blocked" : "",
              bad & 64 ? ", sa_mask's SIGUSR1 still blocked" : "", bad & 128 ? ", the signal still blocked" : "");
        if (bad) break;
    }
    signal(SIGSEGV, SIG_DFL);
}

/* ------------------------------------------------------------ altstack -- */

static atomic_int faults_handled;
static void alt_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    if ((char *)si->si_addr != page) _exit(91);
    mprotect(page, 4096, PROT_READ | PROT_WRITE);
    atomic_fetch_add(&faults_handled, 1);
}

static void *own_altstack(void *arg)
{
    (void)arg;
    size_t sz = 64 * 1024;
    void *mem = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return (void *)1;
    stack_t ss = {.ss_sp = mem, .ss_size = sz, .ss_flags = 0}, got;
    if (sigaltstack(&ss, NULL) != 0) return (void *)2;
    if (sigaltstack(NULL, &got) != 0 || got.ss_sp != mem || got.ss_size != sz || (got.ss_flags & SS_DISABLE))
        return (void *)3;
    *(volatile char *)page = 1;
    protect();
    munmap(mem, sz); /* gone with its thread, never disabled (SBCL, Rust) */
    return NULL;
}

static void *no_altstack(void *arg)
{
    stack_t got;
    if (sigaltstack(NULL, &got) != 0 || !(got.ss_flags & SS_DISABLE)) return (void *)4;
    *(volatile char *)page = 2;
    protect();
    return arg;
}

static void test_altstack(void)
{
    set_handler(SIGSEGV, alt_segv, SA_ONSTACK | SA_NODEFER, 0);
    atomic_store(&faults_handled, 0);
    int want = 0;
    for (int round = 0; round < 8; round++) {
        protect();
        void *r;
        pthread_join(st_spawn(own_altstack, NULL), &r);
        CHECK(r == NULL, "round %d: a thread's own alternate stack: step %d failed", round, (int)(intptr_t)r);
        for (int i = 0; i < 3; i++) { /* one at a time: one fault each */
            pthread_join(st_spawn(no_altstack, NULL), &r);
            CHECK(r == NULL, "round %d: a thread that set none was told it has an alternate stack", round);
        }
        want += 4;
    }
    CHECK(atomic_load(&faults_handled) == want, "%d faults handled, want %d", atomic_load(&faults_handled), want);
    signal(SIGSEGV, SIG_DFL);
}

/* ------------------------------------------------------------- longjmp -- */

static __thread sigjmp_buf jump_back;
static atomic_int usr1_runs;
static void on_usr1(int sig) { (void)sig, atomic_fetch_add(&usr1_runs, 1); }
static void jump_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    if ((char *)si->si_addr != page) _exit(92);
    siglongjmp(jump_back, 1); /* leaves the page protected */
}

static void *jumper(void *arg)
{
    int how = (int)(intptr_t)arg; /* 0: recovered; then how it looks */
    if (sigsetjmp(jump_back, 1) == 0) {
        *(volatile char *)page = 1;
        return (void *)1; /* the write went through */
    }
    if (blocked(SIGUSR1)) return (void *)2;
    if (blocked(SIGSEGV)) return (void *)3;
    int before = atomic_load(&usr1_runs);
    pthread_kill(pthread_self(), SIGUSR1);
    for (int i = 0; i < 100 && atomic_load(&usr1_runs) == before; i++) st_sleep_ms(5);
    if (atomic_load(&usr1_runs) == before) return (void *)4;
    (void)how;
    return NULL;
}

static void test_longjmp(void)
{
    signal(SIGUSR1, on_usr1);
    set_handler(SIGSEGV, jump_segv, 0, SIGUSR1);
    protect();
    for (int round = 0; round < 10; round++) {
        void *r;
        pthread_join(st_spawn(jumper, NULL), &r);
        static const char *why[] = {"", "the write to a read-only page went through",
                                    "SIGUSR1, the handler's sa_mask, still blocked",
                                    "SIGSEGV still blocked", "a SIGUSR1 sent to the thread never ran its handler"};
        int w = (int)(intptr_t)r;
        CHECK(w == 0, "round %d, after siglongjmp out of the handler: %s", round, why[w < 5 ? w : 0]);
        if (w) break;
    }
    signal(SIGSEGV, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
}

/* ------------------------------------------------------------ setstack -- */

static char *given_lo, *given_hi;
static atomic_int detached_ok, detached_done;

static int on_given(void)
{
    char here;
    return &here >= given_lo && &here < given_hi;
}

static void *given_thread(void *arg)
{
    int ok = on_given();
    st_sleep_ms(2); /* parked: resumes on the same stack */
    ok = ok && on_given();
    pthread_attr_t a;
    void *lo = NULL;
    size_t sz = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstack(&a, &lo, &sz);
        pthread_attr_destroy(&a);
    }
    int reported = (char *)lo >= given_lo && (char *)lo + sz <= given_hi && sz >= (size_t)(given_hi - given_lo) / 2;
    if (arg) {
        atomic_store(&detached_ok, ok && reported);
        atomic_store(&detached_done, 1);
    }
    return (void *)(intptr_t)(ok ? (reported ? 0 : 2) : 1);
}

static void test_setstack(void)
{
    size_t sz = 1 << 20;
    for (int detach = 0; detach < 2; detach++) {
        given_lo = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(given_lo != MAP_FAILED, "mmap: %s", strerror(errno));
        if (given_lo == MAP_FAILED) return;
        given_hi = given_lo + sz;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstack(&a, given_lo, sz);
        if (detach) pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        atomic_store(&detached_done, 0);
        pthread_t t;
        int e = pthread_create(&t, &a, given_thread, (void *)(intptr_t)detach);
        pthread_attr_destroy(&a);
        CHECK(e == 0, "pthread_create on a given stack: %s", strerror(e));
        if (e) return;
        if (!detach) {
            void *r;
            pthread_join(t, &r);
            CHECK(r == NULL, "joinable: %s", r == (void *)1 ? "did not run on the stack given"
                                                            : "pthread_getattr_np did not report the stack given");
        } else {
            for (int i = 0; i < 400 && !atomic_load(&detached_done); i++) st_sleep_ms(5);
            CHECK(atomic_load(&detached_done) && atomic_load(&detached_ok),
                  "detached: did not run on the stack given, or did not say so");
            continue; /* kept: nothing tells when its end is past the stack */
        }
        munmap(given_lo, sz);
    }
}

/* ------------------------------------------------------------- onstack -- */

enum { kAlt = 64 * 1024 };
static char *onstack_alt;
static atomic_int onstack_self = -1, onstack_proc = -1;
static void onstack_handler(int sig)
{
    char here;
    int on = &here >= onstack_alt && &here < onstack_alt + kAlt;
    stack_t st;
    int says = sigaltstack(NULL, &st) == 0 && (st.ss_flags & SS_ONSTACK);
    if (sig == SIGUSR1) atomic_store(&onstack_self, on && says);
    else atomic_store(&onstack_proc, on && says);
}

static void *onstack_thread(void *arg)
{
    (void)arg;
    stack_t ss = {.ss_sp = onstack_alt, .ss_size = kAlt, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) return (void *)1;
    pthread_kill(pthread_self(), SIGUSR1);
    sigset_t u;
    sigemptyset(&u);
    sigaddset(&u, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &u, NULL); /* the one to take the process's SIGUSR2 */
    for (int i = 0; i < 2000 && atomic_load(&onstack_proc) < 0; i++) st_sleep_ms(1);
    stack_t off = {.ss_flags = SS_DISABLE};
    sigaltstack(&off, NULL);
    return NULL;
}

static void test_onstack(void)
{
    onstack_alt = malloc(kAlt);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = onstack_handler;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigset_t b, old;
    sigemptyset(&b);
    sigaddset(&b, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &b, &old);
    pthread_t t = st_spawn(onstack_thread, NULL);
    st_sleep_ms(50);
    kill(getpid(), SIGUSR2);
    void *r;
    pthread_join(t, &r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    CHECK(r == NULL, "sigaltstack failed");
    CHECK(atomic_load(&onstack_self) == 1, "a raised signal's SA_ONSTACK handler: %s",
          atomic_load(&onstack_self) < 0 ? "never ran" : "not on the thread's alternate stack, or not told so");
    CHECK(atomic_load(&onstack_proc) == 1, "the process's signal's SA_ONSTACK handler: %s",
          atomic_load(&onstack_proc) < 0 ? "never ran" : "not on the thread's alternate stack, or not told so");
    signal(SIGUSR1, SIG_DFL);
    signal(SIGUSR2, SIG_DFL);
    free(onstack_alt);
}

/* -------------------------------------------------------------- escape -- */

static __thread jmp_buf escape_env;
static void escape_segv(int sig)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    sigprocmask(SIG_UNBLOCK, &s, NULL); /* as libgo's handler does */
    _longjmp(escape_env, 1);            /* no mask restored: out, only */
}

static void *escaper(void *arg)
{
    volatile int n = 0;
    for (int i = 0; i < 3; i++) {
        if (_setjmp(escape_env) == 0) *(volatile char *)page = 1;
        else n++;
        st_sleep_ms(1); /* parked: the thread may move */
    }
    (void)arg;
    return (void *)(intptr_t)n;
}

static void test_escape(void)
{
    protect();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = escape_segv;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    for (int round = 0; round < 3; round++) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++) t[i] = st_spawn(escaper, NULL);
        for (int i = 0; i < 4; i++) {
            void *r;
            pthread_join(t[i], &r);
            CHECK((intptr_t)r == 3, "round %d: %ld of 3 faults handled", round, (long)(intptr_t)r);
        }
    }
    signal(SIGSEGV, SIG_DFL);
}

/* ------------------------------------------------------------- default -- */

static void test_default(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        /* a fresh program: exec'ed, not forked, so the start-up is its own */
        execl("/proc/self/exe", "fault_handlers", "query", (char *)NULL);
        _exit(127);
    }
    int st = st_wait_status(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the SIGSEGV action found at start: %s",
          WIFEXITED(st) && WEXITSTATUS(st) == 1 ? "a handler, not SIG_DFL" : st_status_str(st));
}

static int mode_query(void)
{
    struct sigaction a;
    if (sigaction(SIGSEGV, NULL, &a) != 0) return 2;
    return (a.sa_flags & SA_SIGINFO) || a.sa_handler != SIG_DFL;
}

/* -------------------------------------------------------------- nested -- */

static void nested_segv(int sig)
{
    (void)sig;
    *(volatile char *)page = 2; /* again, while it is blocked */
}

static void *nested_thread(void *arg)
{
    *(volatile char *)page = 1;
    return arg;
}

static int mode_nested(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = nested_segv;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    pthread_join(st_spawn(nested_thread, NULL), NULL);
    return 3; /* not reached */
}

static void test_nested(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none); /* no core file left behind */
        execl("/proc/self/exe", "fault_handlers", "nested", (char *)NULL);
        _exit(127);
    }
    int st = st_wait_status(pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "a fault in its own handler: %s, want killed by SIGSEGV",
          st_status_str(st));
}

int main(int argc, char **argv)
{
    page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return 2;
    if (argc > 1 && strcmp(argv[1], "query") == 0) return mode_query();
    if (argc > 1 && strcmp(argv[1], "nested") == 0) return mode_nested();
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    static const struct st_test tests[] = {{"mask", test_mask},         {"altstack", test_altstack},
                                           {"longjmp", test_longjmp},   {"setstack", test_setstack},
                                           {"onstack", test_onstack},   {"escape", test_escape},
                                           {"default", test_default},   {"nested", test_nested}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("fault_handlers");
}
