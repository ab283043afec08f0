/* signals: a threaded program's signals, thread by thread.
 *
 *   eintr       a handler without SA_RESTART ends a blocked read (pipe and
 *               socket), accept, poll, nanosleep and sem_wait with EINTR;
 *               with SA_RESTART the read, accept and sem_wait go on (poll
 *               and nanosleep end with EINTR all the same, as on Linux).
 *               Every handler runs on the thread it interrupts, on that
 *               thread's stack (or its sigaltstack)
 *   condwait    a signal to a thread in pthread_cond_wait runs its handler
 *               there, with the mutex released (as glibc runs it in the
 *               futex wait: iperf2's SIGINT handler takes the mutex main()
 *               waits with); the wait never fails
 *   small-stack a handler using 2 KiB of stack on a thread with a 16 KiB
 *               stack, interrupting a blocked read
 *   altstack    with SA_ONSTACK and a sigaltstack of the thread's, the
 *               handler runs on the thread's stack or on that one
 *   masks       pthread_sigmask is per thread: a process signal goes to the
 *               thread that does not block it; one sent to a thread that
 *               blocks it is pending there (sigpending) and its handler runs
 *               when the thread unblocks it, before pthread_sigmask returns
 *   raise       raise, pthread_kill(pthread_self()) and tgkill/tkill of the
 *               caller's gettid() (glibc's and syscall's) run the handler on
 *               the caller before they return; pthread_kill reaches its
 *               thread
 *   sigwait     every thread blocks the signals, one waits for them
 *               (sigwaitinfo, sigwait, sigtimedwait) while others work:
 *               kill from the process and from a child, sigqueue with its
 *               value, queued real-time signals counted; sigtimedwait's
 *               timeout (other threads run meanwhile)
 *   timers      alarm() and setitimer(ITIMER_REAL) interrupt the thread that
 *               takes SIGALRM; ITIMER_PROF ticks while a thread computes
 *               (and now and then sleeps: a running green thread takes
 *               its handlers at its next call, netpoll-preload(7))
 *   sigpipe     writing to a closed socket: EPIPE with SIG_IGN, the handler
 *               on the writer with one; by default the process dies of it
 *   defaults    SIGTERM, SIGINT and SIGQUIT, sent from outside or raised by
 *               a thread, kill the process with that signal; and after a
 *               handler was set and the old action put back while every
 *               signal was blocked (git's sigchain); and sent by the
 *               process to its own group, kill(0, sig), as smbd ends; and
 *               raised again by their handler after it put the default
 *               back (gzip's cleanup): the process ends as the handler
 *               returns, before the program's next step.  And SIGSTOP to
 *               itself (kill, raise): it stops before the call returns,
 *               and goes on at SIGCONT
 *   waits       handlers run while a thread waits in pthread_join (the
 *               process's signal, every other thread blocking it, and the
 *               handler posting the semaphore a dispatcher waits on: the
 *               JVM's shutdown), pthread_mutex_lock and a rwlock
 *   wait-masks  the mask given to pselect, ppoll and epoll_pwait is the
 *               thread's while it waits: a process signal every thread
 *               blocks, pending before the call or sent during it, runs its
 *               handler there and ends the wait with EINTR (SA_RESTART or
 *               not: make's wait for SIGCHLD); the thread's own mask is back
 *               after, and none of it with a mask that blocks the signal
 *   mask-race   haproxy's loop: block every signal, work, unblock, wait in
 *               epoll_wait; a timer's signal lands anywhere in that, 1000
 *               times, while 800 parked threads block it.  Each one's
 *               handler runs (its self-pipe ends the wait) within the 2 s
 *               the wait allows
 *   tomain      a signal sent from outside while main waits (sem_wait,
 *               read, nanosleep) and 4 threads make calls all the time runs
 *               its handler on main, whose wait ends with EINTR, as the
 *               kernel gives it to main (CPython's handlers run only there);
 *               so does one a thread that lets it through sends with
 *               kill(getpid()) (python's threading.Timer(0.1, os.kill))
 *   compute     a thread that computes, making no call at all, runs the
 *               handler of the process signal it alone lets through within
 *               seconds (gzip, xz and python's loop ignored Ctrl-C)
 *   bsd-masks   sigsetmask, sigblock, siggetmask, sighold, sigrelse and
 *               sigset change the thread's mask as sigprocmask does, and
 *               let a pending signal through (dash unblocks so)
 *   no-spurious 4 threads in nanosleep and poll loops under a 150 us timer's
 *               process signal: a call ends with EINTR only where a
 *               handler ran, never on a thread that was only woken
 *   context     an SA_SIGINFO handler gets a context: its uc_sigmask is
 *               the thread's mask before the handler, and what the handler
 *               writes there is the thread's mask after it (raise, and a
 *               thread parked in a read); a thread that computes is shown
 *               where it was, in the program's code (profilers sample so)
 *   libc-waits  main waits where libc calls the kernel out of the library's
 *               sight (fgets on a pipe, open of a FIFO): a signal runs its
 *               handler there at once, and the call goes on with SA_RESTART
 *               or ends with EINTR without it, as in the kernel (a Ctrl-C
 *               handler waited for the line)
 *
 * The processes that must die are this program again (/proc/self/exe)
 * with a mode argument. */
#define _DEFAULT_SOURCE 1
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <ucontext.h>

#include "shim_test.h"

extern char **environ;

/* ------------------------------------------------------------ helpers -- */

/* fn, or with SA_SIGINFO in flags info_fn, as sig's handler. */
static void set_action(int sig, void (*fn)(int), void (*info_fn)(int, siginfo_t *, void *), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (flags & SA_SIGINFO) sa.sa_sigaction = info_fn;
    else sa.sa_handler = fn;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0) {
        perror("sigaction");
        exit(2);
    }
}

static void set_handler(int sig, void (*fn)(int), int flags) { set_action(sig, fn, NULL, flags); }

/* The calling thread's stack, [lo, hi). */
static void my_stack(uintptr_t *lo, uintptr_t *hi)
{
    pthread_attr_t a;
    void *addr = NULL;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstack(&a, &addr, &size);
        pthread_attr_destroy(&a);
    }
    *lo = (uintptr_t)addr;
    *hi = (uintptr_t)addr + size;
}

/* ----------------------------------------------------- the handler -- */

static atomic_int h_count;
static __thread volatile int h_mine; /* handlers run on this thread */
static _Atomic uintptr_t h_self, h_sp;
static int h_stack_use; /* bytes of stack the handler touches */

static void on_sig(int sig)
{
    (void)sig;
    volatile char probe[4096];
    int use = h_stack_use > (int)sizeof probe ? (int)sizeof probe : h_stack_use;
    for (int i = 0; i < use; i += 64) probe[i] = (char)i;
    probe[0] = 1;
    int e = errno;
    close(-1); /* a handler that changes errno (and puts it back) */
    errno = e;
    atomic_store(&h_self, (uintptr_t)pthread_self());
    atomic_store(&h_sp, (uintptr_t)&probe[0]);
    h_mine++;
    atomic_fetch_add(&h_count, 1);
}

/* --------------------------------------------------------- eintr -- */

enum kind { K_PIPE, K_SOCK, K_ACCEPT, K_POLL, K_NANOSLEEP, K_SEM, K_N };
static const char *kind_name[] = {"read (pipe)", "read (socket)", "accept", "poll", "nanosleep", "sem_wait"};

struct target {
    enum kind kind;
    int fd;        /* what it waits on */
    sem_t sem;
    size_t stack;  /* 0: default */
    void *alt;     /* a sigaltstack of this size (64 KiB), or null */
    pthread_t self;
    uintptr_t lo, hi;
    atomic_int entered, done;
    long r;
    int err;
    int64_t ns;
};

static void *target_body(void *arg)
{
    struct target *t = arg;
    t->self = pthread_self();
    my_stack(&t->lo, &t->hi);
    stack_t alt_before;
    if (t->alt) {
        stack_t ss = {.ss_sp = t->alt, .ss_size = 65536, .ss_flags = 0};
        CHECK(sigaltstack(&ss, &alt_before) == 0, "sigaltstack: %s", strerror(errno));
        stack_t back;
        CHECK(sigaltstack(NULL, &back) == 0 && back.ss_sp == t->alt && !(back.ss_flags & SS_DISABLE),
              "sigaltstack reads back %p flags %d, want %p", back.ss_sp, back.ss_flags, t->alt);
    }
    atomic_store(&t->entered, 1);
    int64_t start = st_mono_ns();
    errno = 0;
    char c;
    switch (t->kind) {
    case K_PIPE:
    case K_SOCK: t->r = read(t->fd, &c, 1); break;
    case K_ACCEPT: t->r = accept(t->fd, NULL, NULL); break;
    case K_POLL: {
        struct pollfd p = {.fd = t->fd, .events = POLLIN};
        t->r = poll(&p, 1, -1);
        break;
    }
    case K_NANOSLEEP: {
        struct timespec ts = {3, 0};
        t->r = nanosleep(&ts, NULL);
        break;
    }
    case K_SEM: t->r = sem_wait(&t->sem); break;
    default: break;
    }
    t->err = errno;
    t->ns = st_mono_ns() - start;
    if (t->kind == K_ACCEPT && t->r >= 0) close((int)t->r);
    if (t->alt) sigaltstack(&alt_before, NULL); /* as it was */
    atomic_store(&t->done, 1);
    return NULL;
}

static void check_handler_place(struct target *t, const char *what)
{
    uintptr_t sp = atomic_load(&h_sp);
    int on_thread = sp >= t->lo && sp < t->hi;
    int on_alt = t->alt && sp >= (uintptr_t)t->alt && sp < (uintptr_t)t->alt + 65536;
    CHECK(atomic_load(&h_self) == (uintptr_t)t->self, "%s: the handler ran on another thread", what);
    CHECK(on_thread || on_alt, "%s: the handler's stack %#lx is neither the thread's [%#lx, %#lx) nor its sigaltstack",
          what, (unsigned long)sp, (unsigned long)t->lo, (unsigned long)t->hi);
}

/* One blocked call, one signal (more if one came before the call). */
static void one_case(enum kind k, int restart, size_t stack, void *alt, int stack_use, const char *label)
{
    char what[96];
    snprintf(what, sizeof what, "%s%s%s", kind_name[k], restart ? ", SA_RESTART" : "", label);
    st_phase = what;
    set_handler(SIGUSR1, on_sig, (restart ? SA_RESTART : 0) | (alt ? SA_ONSTACK : 0));
    h_stack_use = stack_use;
    struct target t;
    memset(&t, 0, sizeof t);
    t.kind = k;
    t.stack = stack;
    t.alt = alt;
    int p[2] = {-1, -1}, ls = -1;
    uint16_t port = 0;
    if (k == K_PIPE || k == K_POLL) {
        CHECK(pipe(p) == 0, "pipe");
        t.fd = p[0];
    } else if (k == K_SOCK) {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, p) == 0, "socketpair");
        t.fd = p[0];
    } else if (k == K_ACCEPT) {
        ls = st_listen(16, &port);
        t.fd = ls;
    } else if (k == K_SEM) {
        sem_init(&t.sem, 0, 0);
    }
    pthread_attr_t a;
    pthread_attr_init(&a);
    if (stack) pthread_attr_setstacksize(&a, stack);
    pthread_t th;
    CHECK(pthread_create(&th, &a, target_body, &t) == 0, "%s: pthread_create", what);
    pthread_attr_destroy(&a);
    st_wait_for(&t.entered, 1, 5000);
    st_sleep_ms(20);
    int expect_eintr = !restart || k == K_POLL || k == K_NANOSLEEP;
    int client = -1;
    if (expect_eintr) {
        for (int tries = 0; tries < 20 && !atomic_load(&t.done); tries++) {
            int before = atomic_load(&h_count);
            pthread_kill(th, SIGUSR1);
            CHECK(st_wait_for(&h_count, before + 1, 3000) || tries, "%s: the handler did not run", what);
            st_wait_for(&t.done, 1, 300);
        }
    } else {
        int before = atomic_load(&h_count);
        pthread_kill(th, SIGUSR1);
        CHECK(st_wait_for(&h_count, before + 1, 3000), "%s: the handler did not run", what);
        st_sleep_ms(200);
        CHECK(!atomic_load(&t.done), "%s: the call returned %ld (%s) on the signal, want it restarted", what, t.r,
              strerror(t.err));
    }
    /* what the call waits for, if it still waits */
    if (!atomic_load(&t.done)) {
        if (p[1] >= 0) (void)!write(p[1], "x", 1);
        if (k == K_ACCEPT) client = st_connect(port);
        if (k == K_SEM) sem_post(&t.sem);
    }
    pthread_join(th, NULL);
    if (expect_eintr)
        CHECK(t.r == -1 && t.err == EINTR, "%s: returned %ld errno %d (%s), want -1 EINTR", what, t.r, t.err,
              strerror(t.err));
    else
        CHECK(t.r >= 0, "%s: returned %ld errno %d (%s) after the restart", what, t.r, t.err, strerror(t.err));
    check_handler_place(&t, what);
    if (client >= 0) close(client);
    if (p[0] >= 0) close(p[0]);
    if (p[1] >= 0) close(p[1]);
    if (ls >= 0) close(ls);
    if (k == K_SEM) sem_destroy(&t.sem);
}

static void test_eintr(void)
{
    for (int restart = 0; restart < 2; restart++)
        for (int k = 0; k < K_N; k++) one_case((enum kind)k, restart, 0, NULL, 256, "");
}

static void test_small_stack(void)
{
    one_case(K_PIPE, 0, 16384, NULL, 2048, ", 16 KiB stack");
    one_case(K_SOCK, 1, 16384, NULL, 2048, ", 16 KiB stack");
}

/* ------------------------------------------------------- altstack -- */

static void test_altstack(void)
{
    static char alt[65536] __attribute__((aligned(64)));
    one_case(K_PIPE, 0, 0, alt, 256, ", on a sigaltstack");
    one_case(K_SOCK, 1, 0, alt, 256, ", on a sigaltstack");
}

/* ------------------------------------------------------- condwait -- */

static pthread_mutex_t cw_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cw_c = PTHREAD_COND_INITIALIZER;
static int cw_flag, cw_bad, cw_returns;
static atomic_int cw_waiting, cw_held;

/* The mutex is free while its waiter runs a handler: it can take it. */
static void on_sig_cw(int sig)
{
    if (pthread_mutex_trylock(&cw_m) == 0) pthread_mutex_unlock(&cw_m);
    else atomic_fetch_add(&cw_held, 1);
    on_sig(sig);
}

static void *cond_waiter(void *arg)
{
    struct target *t = arg;
    t->self = pthread_self();
    my_stack(&t->lo, &t->hi);
    pthread_mutex_lock(&cw_m);
    atomic_store(&cw_waiting, 1);
    while (!cw_flag) {
        int r = pthread_cond_wait(&cw_c, &cw_m);
        if (r != 0) cw_bad = r;
        cw_returns++;
    }
    pthread_mutex_unlock(&cw_m);
    return NULL;
}

static void test_condwait(void)
{
    st_phase = "condwait";
    set_handler(SIGUSR1, on_sig_cw, 0);
    h_stack_use = 256;
    struct target t;
    memset(&t, 0, sizeof t);
    pthread_t th = st_spawn(cond_waiter, &t);
    st_wait_for(&cw_waiting, 1, 5000);
    for (int i = 0; i < 3; i++) {
        pthread_mutex_lock(&cw_m); /* it is in the wait: the mutex is free */
        pthread_mutex_unlock(&cw_m);
        int before = atomic_load(&h_count);
        pthread_kill(th, SIGUSR1);
        CHECK(st_wait_for(&h_count, before + 1, 3000), "cond_wait: the handler did not run");
        check_handler_place(&t, "pthread_cond_wait");
    }
    pthread_mutex_lock(&cw_m);
    cw_flag = 1;
    pthread_cond_signal(&cw_c);
    pthread_mutex_unlock(&cw_m);
    pthread_join(th, NULL);
    CHECK(cw_bad == 0, "pthread_cond_wait returned %d on a signal", cw_bad);
    CHECK(atomic_load(&cw_held) == 0, "pthread_cond_wait: %d handlers ran with the mutex held", atomic_load(&cw_held));
}

/* ---------------------------------------------------------- masks -- */

static atomic_int m2_count;
static _Atomic uintptr_t m2_self;
static void on_usr2(int sig)
{
    (void)sig;
    atomic_store(&m2_self, (uintptr_t)pthread_self());
    atomic_fetch_add(&m2_count, 1);
}

struct masked {
    int unblock;       /* unblocks SIGUSR2 itself */
    int cmd[2];        /* main writes commands here */
    pthread_t self;
    int mask_ok, pending_seen, ran_before_return, ran_on_self;
    atomic_int ready;
};

static int blocks(int sig)
{
    sigset_t m;
    pthread_sigmask(SIG_BLOCK, NULL, &m);
    return sigismember(&m, sig);
}

static void *masked_body(void *arg)
{
    struct masked *m = arg;
    m->self = pthread_self();
    if (m->unblock) {
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGUSR2);
        pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    }
    m->mask_ok = blocks(SIGUSR2) == !m->unblock;
    atomic_store(&m->ready, 1);
    char c;
    while (read(m->cmd[0], &c, 1) == 1 || errno == EINTR) {
        if (c == 'q') break;
        if (c == 'c') m->mask_ok &= blocks(SIGUSR2) == !m->unblock; /* after a park, maybe elsewhere */
        if (c == 'u') {
            sigset_t p;
            sigemptyset(&p);
            sigpending(&p);
            m->pending_seen = sigismember(&p, SIGUSR2);
            int before = atomic_load(&m2_count);
            sigset_t s;
            sigemptyset(&s);
            sigaddset(&s, SIGUSR2);
            pthread_sigmask(SIG_UNBLOCK, &s, NULL);
            m->ran_before_return = atomic_load(&m2_count) == before + 1;
            m->ran_on_self = atomic_load(&m2_self) == (uintptr_t)pthread_self();
            pthread_sigmask(SIG_BLOCK, &s, NULL);
        }
    }
    return NULL;
}

static void test_masks(void)
{
    st_phase = "masks";
    set_handler(SIGUSR2, on_usr2, SA_RESTART);
    sigset_t s, old;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &s, &old);
    struct masked a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    b.unblock = 1;
    CHECK(pipe(a.cmd) == 0 && pipe(b.cmd) == 0, "pipe");
    pthread_t ta = st_spawn(masked_body, &a), tb = st_spawn(masked_body, &b);
    st_wait_for(&a.ready, 1, 5000);
    st_wait_for(&b.ready, 1, 5000);
    for (int i = 0; i < 5; i++) {
        int before = atomic_load(&m2_count);
        kill(getpid(), SIGUSR2);
        CHECK(st_wait_for(&m2_count, before + 1, 3000), "SIGUSR2 to the process: no handler ran");
        CHECK(atomic_load(&m2_self) == (uintptr_t)b.self,
              "SIGUSR2 to the process ran on a thread that blocks it, not the one that does not");
        (void)!write(a.cmd[1], "c", 1);
        (void)!write(b.cmd[1], "c", 1);
    }
    /* to the thread that blocks it: pending there until it unblocks */
    int before = atomic_load(&m2_count);
    pthread_kill(ta, SIGUSR2);
    st_sleep_ms(100);
    CHECK(atomic_load(&m2_count) == before, "a handler ran for a signal its thread blocks");
    (void)!write(a.cmd[1], "u", 1);
    (void)!write(a.cmd[1], "q", 1);
    (void)!write(b.cmd[1], "q", 1);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.mask_ok && b.mask_ok, "a thread's mask is not its own (blocking: %d, unblocked: %d)", a.mask_ok,
          b.mask_ok);
    CHECK(a.pending_seen, "sigpending in the thread does not show the SIGUSR2 sent to it");
    CHECK(a.ran_before_return, "unblocking a pending signal: its handler did not run before pthread_sigmask returned");
    CHECK(a.ran_on_self, "unblocking a pending signal: its handler ran on another thread");
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    for (int i = 0; i < 2; i++) {
        close(a.cmd[i]);
        close(b.cmd[i]);
    }
}

/* ---------------------------------------------------------- raise -- */

static void *raiser(void *arg)
{
    (void)arg;
    int ok = 1;
    for (int i = 0; i < 5; i++) {
        int before = h_mine;
        raise(SIGUSR1);
        ok &= h_mine == before + 1;
        before = h_mine;
        pthread_kill(pthread_self(), SIGUSR1);
        ok &= h_mine == before + 1;
        /* the thread's own kernel thread ID, as programs that predate
         * pthread_kill or emulate a guest's threads (qemu-user) send it */
        before = h_mine;
        syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR1);
        ok &= h_mine == before + 1;
        before = h_mine;
        tgkill(getpid(), gettid(), SIGUSR1);
        ok &= h_mine == before + 1;
        before = h_mine;
        syscall(SYS_tkill, gettid(), SIGUSR1);
        ok &= h_mine == before + 1;
        st_sleep_ms(1);
    }
    return (void *)(intptr_t)ok;
}

struct parked {
    int fd;
    pthread_t self;
    atomic_int ready;
};
static void *parked_body(void *arg)
{
    struct parked *p = arg;
    p->self = pthread_self();
    atomic_store(&p->ready, 1);
    char c;
    while (read(p->fd, &c, 1) < 0 && errno == EINTR) {}
    return NULL;
}

static void test_raise(void)
{
    st_phase = "raise";
    set_handler(SIGUSR1, on_sig, SA_RESTART);
    h_stack_use = 256;
    pthread_t r[3];
    for (int i = 0; i < 3; i++) r[i] = st_spawn(raiser, NULL);
    for (int i = 0; i < 3; i++) {
        void *ok;
        pthread_join(r[i], &ok);
        CHECK(ok, "raise/pthread_kill(self)/tgkill(gettid()): the handler did not run on the caller before it returned");
    }
    /* pthread_kill reaches the thread named, among several parked */
    enum { N = 6 };
    struct parked p[N];
    int fds[N][2];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        memset(&p[i], 0, sizeof p[i]);
        CHECK(pipe(fds[i]) == 0, "pipe");
        p[i].fd = fds[i][0];
        t[i] = st_spawn(parked_body, &p[i]);
    }
    for (int i = 0; i < N; i++) st_wait_for(&p[i].ready, 1, 5000);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < N; i++) {
            int before = atomic_load(&h_count);
            pthread_kill(t[i], SIGUSR1);
            CHECK(st_wait_for(&h_count, before + 1, 3000), "pthread_kill of thread %d: no handler ran", i);
            CHECK(atomic_load(&h_self) == (uintptr_t)p[i].self, "pthread_kill of thread %d ran on another", i);
        }
    for (int i = 0; i < N; i++) (void)!write(fds[i][1], "q", 1);
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        close(fds[i][0]);
        close(fds[i][1]);
    }
}

/* -------------------------------------------------------- sigwait -- */

#define SIG_RT (SIGRTMIN + 3)
static atomic_int sw_hup, sw_rt, sw_from_child, sw_stop, sw_rt_value_bad, sw_other;
static atomic_int sw_waiting;

static void *sig_waiter(void *arg)
{
    sigset_t *set = arg;
    for (;;) {
        siginfo_t si;
        atomic_store(&sw_waiting, 1);
        int sig = sigwaitinfo(set, &si);
        if (sig < 0) {
            CHECK(errno == EINTR, "sigwaitinfo: %s", strerror(errno));
            continue;
        }
        CHECK(si.si_signo == sig, "sigwaitinfo: si_signo %d for %d", si.si_signo, sig);
        if (sig == SIGHUP) {
            /* the sender first: main reads it once it sees the count */
            if (si.si_pid != getpid()) atomic_fetch_add(&sw_from_child, 1);
            atomic_fetch_add(&sw_hup, 1);
        } else if (sig == SIG_RT) {
            if (si.si_code != SI_QUEUE || si.si_value.sival_int != 1000 + atomic_load(&sw_rt))
                atomic_fetch_add(&sw_rt_value_bad, 1);
            atomic_fetch_add(&sw_rt, 1);
        } else if (sig == SIGTERM) {
            break;
        } else {
            atomic_fetch_add(&sw_other, 1);
        }
    }
    /* sigwait, then sigtimedwait */
    int sig = 0;
    CHECK(sigwait(set, &sig) == 0 && sig == SIGHUP, "sigwait: %d", sig);
    atomic_store(&sw_stop, 1);
    return NULL;
}

static atomic_int ticks;
static void *ticker(void *arg)
{
    (void)arg;
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    char c = 0;
    while (!atomic_load(&sw_stop)) {
        if (write(p[1], &c, 1) != 1 || read(p[0], &c, 1) != 1) break;
        atomic_fetch_add(&ticks, 1);
        if ((atomic_load(&ticks) & 255) == 0) st_sleep_ms(1);
    }
    close(p[0]);
    close(p[1]);
    return NULL;
}

static atomic_int tw_in, tw_helper_done;
static void *timed_waiter(void *arg)
{
    sigset_t *set = arg;
    struct timespec ts = {0, 150 * 1000000};
    int64_t start = st_mono_ns();
    errno = 0;
    int r = sigtimedwait(set, NULL, &ts);
    int e = errno;
    int64_t ns = st_mono_ns() - start;
    CHECK(r == -1 && e == EAGAIN, "sigtimedwait with nothing sent: %d (%s), want -1 EAGAIN", r, strerror(e));
    CHECK(ns >= 140 * 1000000LL && ns < 10000 * 1000000LL, "sigtimedwait 150 ms took %.0f ms", st_ms(ns));
    /* while it waits, another thread works, then ends the wait */
    ts.tv_sec = 10;
    ts.tv_nsec = 0;
    atomic_store(&tw_in, 1);
    siginfo_t si;
    r = sigtimedwait(set, &si, &ts);
    CHECK(r == SIGHUP, "sigtimedwait: %d (%s), want SIGHUP", r, r < 0 ? strerror(errno) : "-");
    CHECK(atomic_load(&tw_helper_done), "sigtimedwait returned before the thread that sent the signal had worked");
    return NULL;
}
/* Pipe round trips while the waiter is in sigtimedwait, then the signal. */
static void *timed_helper(void *arg)
{
    (void)arg;
    st_wait_for(&tw_in, 1, 10000);
    st_sleep_ms(20);
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    char c = 0;
    for (int i = 0; i < 100; i++)
        if (write(p[1], &c, 1) != 1 || read(p[0], &c, 1) != 1) break;
    close(p[0]);
    close(p[1]);
    atomic_store(&tw_helper_done, 1);
    kill(getpid(), SIGHUP);
    return NULL;
}

static void test_sigwait(void)
{
    st_phase = "sigwait";
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIG_RT);
    sigset_t old;
    pthread_sigmask(SIG_BLOCK, &set, &old); /* every thread from here on blocks them */
    atomic_store(&sw_stop, 0);
    pthread_t tk[2];
    for (int i = 0; i < 2; i++) tk[i] = st_spawn(ticker, NULL);
    pthread_t tw = st_spawn(timed_waiter, &set), th = st_spawn(timed_helper, NULL);
    pthread_join(tw, NULL);
    pthread_join(th, NULL);
    pthread_t w = st_spawn(sig_waiter, &set);
    st_wait_for(&sw_waiting, 1, 5000);
    for (int i = 0; i < 10; i++) {
        kill(getpid(), SIGHUP);
        CHECK(st_wait_for(&sw_hup, i + 1, 3000), "SIGHUP %d from the process not taken by sigwaitinfo", i);
    }
    for (int i = 0; i < 3; i++) {
        pid_t pid = fork();
        if (pid == 0) _exit(kill(getppid(), SIGHUP) == 0 ? 0 : 1);
        CHECK(st_wait_status(pid) == 0, "the child's kill");
        CHECK(st_wait_for(&sw_hup, 11 + i, 3000), "SIGHUP %d from a child not taken by sigwaitinfo", i);
    }
    CHECK(atomic_load(&sw_from_child) == 3, "si_pid named the child %d times of 3", atomic_load(&sw_from_child));
    /* real-time signals queue: five sent at once, five taken, in order */
    for (int i = 0; i < 5; i++) {
        union sigval v = {.sival_int = 1000 + i};
        CHECK(sigqueue(getpid(), SIG_RT, v) == 0, "sigqueue: %s", strerror(errno));
    }
    CHECK(st_wait_for(&sw_rt, 5, 3000), "real-time signals: %d of 5 queued taken", atomic_load(&sw_rt));
    CHECK(atomic_load(&sw_rt_value_bad) == 0, "real-time signals: %d with a wrong si_code or value",
          atomic_load(&sw_rt_value_bad));
    kill(getpid(), SIGTERM); /* ends the sigwaitinfo loop; then sigwait */
    st_sleep_ms(50);
    kill(getpid(), SIGHUP);
    pthread_join(w, NULL);
    for (int i = 0; i < 2; i++) pthread_join(tk[i], NULL);
    CHECK(atomic_load(&sw_other) == 0, "sigwaitinfo returned a signal not in its set");
    /* nothing left pending, then the mask as it was */
    signal(SIGHUP, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIG_RT, SIG_IGN);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIG_RT, SIG_DFL);
}

/* --------------------------------------------------------- timers -- */

static atomic_int alrm_count, prof_count;
static _Atomic uintptr_t alrm_self;
static void on_alrm(int sig)
{
    (void)sig;
    atomic_store(&alrm_self, (uintptr_t)pthread_self());
    atomic_fetch_add(&alrm_count, 1);
}
static void on_prof(int sig)
{
    (void)sig;
    atomic_fetch_add(&prof_count, 1);
}

struct alarm_reader {
    int fd;
    pthread_t self;
    atomic_int eintr, ready, quit;
    int other;
};
static void *alarm_body(void *arg)
{
    struct alarm_reader *a = arg;
    a->self = pthread_self();
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGALRM);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    atomic_store(&a->ready, 1);
    char c;
    for (;;) {
        ssize_t n = read(a->fd, &c, 1);
        if (n < 0 && errno == EINTR) atomic_fetch_add(&a->eintr, 1);
        else if (n == 1 && c == 'q') break;
        else a->other++;
    }
    return NULL;
}

static void *spin_cpu(void *arg)
{
    (void)arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGPROF);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    int64_t end = st_mono_ns() + 10000 * 1000000LL;
    volatile unsigned long x = 0;
    /* a green thread runs its pending handlers at its next call: a short
     * sleep now and then (netpoll-preload(7), SIGNALS) */
    while (atomic_load(&prof_count) < 3 && st_mono_ns() < end) {
        int64_t slice = st_mono_ns() + 2000000;
        while (st_mono_ns() < slice)
            for (int i = 0; i < 1000; i++) x += (unsigned long)i;
        usleep(50);
    }
    return NULL;
}

static void test_timers(void)
{
    st_phase = "timers";
    alarm(0);
    set_handler(SIGALRM, on_alrm, 0);
    sigset_t s, old;
    sigemptyset(&s);
    sigaddset(&s, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &s, &old); /* main and the others block it; the reader does not */
    struct alarm_reader a;
    memset(&a, 0, sizeof a);
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    a.fd = p[0];
    pthread_t t = st_spawn(alarm_body, &a);
    st_wait_for(&a.ready, 1, 5000);
    /* (again if it came before the reader was in its read) */
    for (int tries = 0; tries < 3 && !atomic_load(&a.eintr); tries++) {
        int before = atomic_load(&alrm_count);
        int64_t start = st_mono_ns();
        alarm(1);
        CHECK(st_wait_for(&alrm_count, before + 1, 10000), "alarm(1): no SIGALRM");
        int64_t ns = st_mono_ns() - start;
        CHECK(ns >= 900 * 1000000LL, "alarm(1) fired after %.0f ms", st_ms(ns));
        CHECK(atomic_load(&alrm_self) == (uintptr_t)a.self, "SIGALRM ran on a thread that blocks it");
        st_wait_for(&a.eintr, 1, 1000);
    }
    CHECK(atomic_load(&a.eintr) >= 1, "alarm(1): the reader's read did not end with EINTR");
    struct itimerval it = {{0, 20000}, {0, 20000}};
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0, "setitimer");
    int base = atomic_load(&a.eintr);
    CHECK(st_wait_for(&a.eintr, base + 5, 10000), "setitimer 20 ms: %d interruptions", atomic_load(&a.eintr) - base);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    CHECK(atomic_load(&alrm_self) == (uintptr_t)a.self, "SIGALRM ran on a thread that blocks it");
    (void)!write(p[1], "q", 1);
    pthread_join(t, NULL);
    CHECK(a.other == 0, "the reader's read returned something else %d times", a.other);
    close(p[0]);
    close(p[1]);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    st_watchdog(60);

    /* main blocks SIGPROF: it goes to the thread that computes */
    set_handler(SIGPROF, on_prof, SA_RESTART);
    sigemptyset(&s);
    sigaddset(&s, SIGPROF);
    pthread_sigmask(SIG_BLOCK, &s, &old);
    struct itimerval prof = {{0, 10000}, {0, 10000}};
    CHECK(setitimer(ITIMER_PROF, &prof, NULL) == 0, "setitimer ITIMER_PROF");
    pthread_t c = st_spawn(spin_cpu, NULL);
    pthread_join(c, NULL);
    setitimer(ITIMER_PROF, &off, NULL);
    CHECK(atomic_load(&prof_count) >= 3, "ITIMER_PROF: %d ticks while a thread computed", atomic_load(&prof_count));
    signal(SIGPROF, SIG_IGN);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* -------------------------------------------------------- sigpipe -- */

static atomic_int pipe_count;
static _Atomic uintptr_t pipe_self;
static void on_pipe(int sig)
{
    (void)sig;
    atomic_store(&pipe_self, (uintptr_t)pthread_self());
    atomic_fetch_add(&pipe_count, 1);
}

/* Write to a socket whose peer closed: the first result that is not a
 * success (unix: at once; TCP: after the peer's reset). */
static long write_closed(int tcp, int *err)
{
    int sv[2] = {-1, -1};
    if (tcp) {
        uint16_t port;
        int ls = st_listen(4, &port);
        sv[0] = st_connect(port);
        sv[1] = accept(ls, NULL, NULL);
        close(ls);
    } else if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        return -2;
    }
    close(sv[1]);
    long r = 0;
    for (int i = 0; i < 100; i++) {
        errno = 0;
        r = write(sv[0], "data", 4);
        if (r < 0) break;
        st_sleep_ms(5);
    }
    *err = errno;
    close(sv[0]);
    return r;
}

static void *pipe_writer(void *arg)
{
    (void)arg;
    int ok = 1;
    for (int tcp = 0; tcp < 2; tcp++) {
        int before = atomic_load(&pipe_count), err;
        long r = write_closed(tcp, &err);
        ok &= r == -1 && err == EPIPE;
        ok &= atomic_load(&pipe_count) == before + 1 && atomic_load(&pipe_self) == (uintptr_t)pthread_self();
    }
    return (void *)(intptr_t)ok;
}

static void *pipe_writer_dies(void *arg)
{
    int err;
    write_closed((int)(intptr_t)arg, &err);
    return NULL;
}

static int mode_sigpipe(const char *how)
{
    alarm(20);
    signal(SIGPIPE, SIG_DFL);
    pthread_t t = st_spawn(pipe_writer_dies, (void *)(intptr_t)(how && strcmp(how, "tcp") == 0));
    pthread_join(t, NULL);
    return 0; /* wrong: SIGPIPE should have killed the process */
}

/* The environment without the variables that would make a signal dump
 * the threads rather than act. */
static char **env_no_dump(void)
{
    static char *env[512];
    int n = 0;
    for (char **e = environ; *e && n < 510; e++)
        if (strncmp(*e, "NP_DUMP_SIGNAL=", 15) != 0 && strncmp(*e, "NPDEBUG=", 8) != 0) env[n++] = *e;
    env[n] = NULL;
    return env;
}

static pid_t self_spawn(char *const argv[])
{
    pid_t pid;
    return posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, env_no_dump()) == 0 ? pid : -1;
}

static void test_sigpipe(void)
{
    st_phase = "sigpipe";
    signal(SIGPIPE, SIG_IGN);
    int err;
    for (int tcp = 0; tcp < 2; tcp++) {
        long r = write_closed(tcp, &err);
        CHECK(r == -1 && err == EPIPE, "write to a closed %s socket with SIGPIPE ignored: %ld (%s), want EPIPE",
              tcp ? "TCP" : "unix", r, strerror(err));
    }
    set_handler(SIGPIPE, on_pipe, SA_RESTART);
    for (int i = 0; i < 2; i++) {
        pthread_t t = st_spawn(pipe_writer, NULL);
        void *ok;
        pthread_join(t, &ok);
        CHECK(ok, "SIGPIPE with a handler: not EPIPE, or the handler did not run once on the writer");
    }
    signal(SIGPIPE, SIG_IGN);
    for (int tcp = 0; tcp < 2; tcp++) {
        char *argv[] = {"signals", "sigpipe", tcp ? "tcp" : "unix", NULL};
        pid_t pid = self_spawn(argv);
        CHECK(pid > 0, "posix_spawn");
        int st = st_wait_status(pid);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE,
              "a thread writing to a closed %s socket, SIGPIPE default: the process ended with %s, want signal %d",
              tcp ? "TCP" : "unix", st_status_str(st), SIGPIPE);
    }
}

/* ------------------------------------------------------- defaults -- */

static int die_ready_fd = -1;
static void *die_parked(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char c;
    while (read(fd, &c, 1) < 0 && errno == EINTR) {}
    return NULL;
}
static void *die_raiser(void *arg)
{
    int sig = (int)(intptr_t)arg;
    st_sleep_ms(20);
    raise(sig);
    st_sleep_ms(3000);
    return NULL;
}
struct die_kill {
    pthread_t target;
    int sig;
};
static void *die_killer(void *arg)
{
    struct die_kill *k = arg;
    st_sleep_ms(20);
    pthread_kill(k->target, k->sig);
    st_sleep_ms(3000);
    return NULL;
}

/* "die SIG HOW": threads parked in reads; HOW: "wait,FD" (writes 'r' to
 * FD, then waits for SIG from outside), "raise" (a thread raises it),
 * "pthread_kill" (a thread sends it to another). */
static int mode_die(const char *sigs, const char *how)
{
    alarm(20);
    struct rlimit core = {0, 0};
    setrlimit(RLIMIT_CORE, &core);
    int sig = atoi(sigs);
    int p[2];
    if (pipe(p)) return 60;
    pthread_t t[3];
    for (int i = 0; i < 3; i++) t[i] = st_spawn(die_parked, (void *)(intptr_t)p[0]);
    if (strncmp(how, "wait,", 5) == 0) {
        die_ready_fd = atoi(how + 5);
        st_sleep_ms(20);
        (void)!write(die_ready_fd, "r", 1);
        pthread_join(t[0], NULL); /* main parks until the signal ends it all */
    } else if (strcmp(how, "raise") == 0) {
        pthread_t r = st_spawn(die_raiser, (void *)(intptr_t)sig);
        pthread_join(r, NULL);
    } else {
        struct die_kill k = {t[1], sig};
        pthread_t r = st_spawn(die_killer, &k);
        pthread_join(r, NULL);
    }
    return 61; /* the signal should have ended the process */
}

/* "kill0 SIG": smbd's end.  In a process group of its own, the program
 * sends SIG to its group with kill(0, SIG): with a handler, it has run when
 * kill returns; with the default action, kill does not return. */
static atomic_int k0_count;
static void on_k0(int sig) { (void)sig; atomic_fetch_add(&k0_count, 1); }

static int mode_kill0(const char *sigs)
{
    alarm(20);
    int sig = atoi(sigs);
    if (setpgid(0, 0) != 0) return 66;
    struct sigaction a = {.sa_handler = on_k0};
    sigemptyset(&a.sa_mask);
    sigaction(SIGUSR1, &a, NULL);
    if (kill(0, SIGUSR1) != 0) return 67;
    if (atomic_load(&k0_count) != 1) return 68; /* not run before kill returned */
    signal(sig, SIG_DFL);
    kill(0, sig);
    return 69; /* the default action should have ended the process */
}

/* "reraise SIG": gzip's and xz's shape.  The handler cleans up (closes the
 * output), puts the default back and raises the signal again, which its
 * own mask blocks until it returns: the process ends as it returns, before
 * the program takes another step (gzip wrote to the closed file and exited
 * 1).  The signal lands on a thread that computes, then on one in a call. */
static volatile int rr_fd = -1;
static volatile sig_atomic_t rr_after;
static void on_reraise(int sig)
{
    int fd = rr_fd;
    rr_fd = -1;
    close(fd);
    signal(sig, SIG_DFL);
    raise(sig);
    rr_after = 1; /* still here: the signal waits for the handler's end */
}

static int mode_reraise(const char *sigs, const char *how)
{
    alarm(20);
    int sig = atoi(sigs);
    struct sigaction a = {.sa_handler = on_reraise};
    sigemptyset(&a.sa_mask);
    sigaction(sig, &a, NULL);
    int p[2];
    if (pipe(p) != 0) return 71;
    rr_fd = p[1];
    int ready = atoi(how);
    if (write(ready, "r", 1) != 1) return 72;
    volatile uint64_t x = 1;
    for (unsigned n = 0;; n++) {
        if (rr_fd < 0) { /* a step after the handler: told at once, before a late death */
            (void)!write(ready, rr_after ? "A" : "B", 1);
            return rr_after ? 73 : 74;
        }
        if (n & 1) {
            for (int i = 0; i < 100000 && rr_fd >= 0; i++) x = x * 6364136223846793005ULL + 1;
        } else {
            struct timespec ts = {0, 100 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

/* "stopself HOW FD": stops itself with kill(getpid(), SIGSTOP), raise, or
 * to its own process group (kill(0), killpg), then writes a byte to FD.
 * traffic_crashlog waits so for its server's crash: nothing may run
 * before a SIGCONT (it wrote a crash log at every start). */
static int mode_stopself(const char *how, const char *fds)
{
    alarm(20);
    int fd = atoi(fds);
    if (strcmp(how, "group") == 0 || strcmp(how, "killpg") == 0) {
        if (setpgid(0, 0) != 0) return 68; /* a group of its own: not the test's */
        int gate[2];
        if (pipe(gate) != 0) return 69;
        st_spawn(die_parked, (void *)(intptr_t)gate[0]); /* another thread to stop */
        if (how[0] == 'g') kill(0, SIGSTOP);
        else killpg(getpgrp(), SIGSTOP);
    } else if (strcmp(how, "raise") == 0) {
        raise(SIGSTOP);
    } else {
        kill(getpid(), SIGSTOP);
    }
    return write(fd, "R", 1) == 1 ? 0 : 67;
}

/* "restore SIG": git's shape.  With every signal blocked, a handler is set
 * and the old action kept; that one is SIG_DFL (not the library's), and put
 * back it is the default again: raised, the signal ends the process. */
static void on_restore(int sig) { (void)sig; }

static int mode_restore(const char *sigs)
{
    alarm(20);
    int sig = atoi(sigs);
    sigset_t all, old_mask;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old_mask);
    struct sigaction a = {.sa_handler = on_restore}, old;
    sigemptyset(&a.sa_mask);
    if (sigaction(sig, &a, &old) != 0) return 62;
    if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) return 63; /* told a handler it never set */
    if (sigaction(sig, &old, NULL) != 0) return 64;
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    raise(sig);
    st_sleep_ms(2000);
    return 65; /* the signal should have ended the process */
}

/* "inherited READY_FD": started with SIGUSR1 and SIGTERM blocked (as a
 * program that re-executes itself with its signals blocked); the parent
 * sends both while they are: nothing happens; SIGUSR1 unblocked runs its
 * handler, SIGTERM unblocked ends the process. */
static volatile sig_atomic_t inherited_got;
static void inherited_usr1(int sig)
{
    (void)sig;
    inherited_got = 1;
}

static int mode_inherited(const char *ready)
{
    alarm(20);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = inherited_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    int gate[2];
    if (pipe(gate)) return 69;
    st_spawn(die_parked, (void *)(intptr_t)gate[0]); /* a thread of its own too */
    (void)!write(atoi(ready), "r", 1);
    st_sleep_ms(300); /* both arrive meanwhile, blocked */
    if (inherited_got) return 70;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigprocmask(SIG_UNBLOCK, &s, NULL);
    for (int i = 0; i < 100 && !inherited_got; i++) st_sleep_ms(10);
    if (!inherited_got) return 71;
    sigemptyset(&s);
    sigaddset(&s, SIGTERM);
    sigprocmask(SIG_UNBLOCK, &s, NULL);
    st_sleep_ms(1000);
    return 72; /* SIGTERM should have ended it */
}

/* A forked child with a thread of its own, its main thread waiting in
 * poll: a signal sent to the child runs the handler there and ends the
 * poll with EINTR, as without the library. */
static pthread_t forked_main;
static volatile sig_atomic_t forked_on_main;
static void forked_usr1(int sig)
{
    (void)sig;
    if (pthread_equal(pthread_self(), forked_main)) forked_on_main = 1;
}

/* This program again as "signals MODE FD" (FD: a pipe it writes a byte to
 * once ready), with at's attributes; its pid once it is ready, else -1. */
static pid_t spawn_ready(const char *mode, const posix_spawnattr_t *at)
{
    int rp[2];
    if (pipe(rp) != 0) return -1;
    char fd[16];
    snprintf(fd, sizeof fd, "%d", rp[1]);
    char *argv[] = {"signals", (char *)mode, fd, NULL};
    pid_t pid;
    int e = posix_spawn(&pid, "/proc/self/exe", NULL, at, argv, env_no_dump());
    CHECK(e == 0, "posix_spawn %s: %s", mode, strerror(e));
    char c;
    if (e == 0 && read(rp[0], &c, 1) != 1) {
        CHECK(0, "%s: the child did not get ready", mode);
        kill(pid, SIGKILL);
        st_wait_status(pid);
        e = -1;
    }
    close(rp[0]);
    close(rp[1]);
    return e == 0 ? pid : -1;
}

static void test_inherited(void)
{
    st_phase = "inherited";
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGUSR1);
    sigaddset(&blocked, SIGTERM);
    posix_spawnattr_setsigmask(&at, &blocked);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
    pid_t pid = spawn_ready("inherited", &at);
    posix_spawnattr_destroy(&at);
    if (pid > 0) {
        kill(pid, SIGUSR1);
        kill(pid, SIGTERM);
        int st = st_wait_status_within(pid, 5000);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM,
              "signals blocked at exec: the child ended %s (70: one ran while blocked, 71: SIGUSR1 "
              "lost, 72: SIGTERM lost, 9: still there after 5 s)",
              st_status_str(st));
    }
    int rp[2];

    /* The forked child. */
    CHECK(pipe(rp) == 0, "pipe");
    pid = fork();
    if (pid == 0) {
        alarm(20);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = forked_usr1; /* no SA_RESTART */
        sigaction(SIGUSR1, &sa, NULL);
        int gate[2];
        if (pipe(gate)) _exit(80);
        forked_main = pthread_self();
        st_spawn(die_parked, (void *)(intptr_t)gate[0]);
        (void)!write(rp[1], "r", 1);
        long t0 = st_mono_ms();
        int r = poll(NULL, 0, 5000);
        if (r != -1 || errno != EINTR || st_mono_ms() - t0 >= 3000) _exit(81);
        _exit(forked_on_main ? 0 : 82); /* the handler ran on the thread it interrupted */
    }
    if (pid > 0) {
        char c;
        CHECK(read(rp[0], &c, 1) == 1, "the forked child did not get ready");
        st_sleep_ms(50);
        kill(pid, SIGUSR1);
        int st = st_wait_status(pid);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "forked child: SIGUSR1 did not run on the main thread it interrupted: %s (81: poll not ended, 82: "
              "the handler ran elsewhere)",
              st_status_str(st));
    }
    close(rp[0]);
    close(rp[1]);
}

/* "busy": a thread that computes for ever on the only worker (nprun -p 1);
 * main waits to join it.  SIGTERM, left at its default, ends the process
 * at once: no thread of the program runs for it, the kernel acts. */
static atomic_int busy_stop;
static void *busy_body(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&busy_stop, memory_order_relaxed)) {}
    return NULL;
}

static int mode_busy(const char *ready)
{
    alarm(20);
    pthread_t t = st_spawn(busy_body, NULL);
    (void)!write(atoi(ready), "r", 1);
    pthread_join(t, NULL);
    return 90;
}

static void test_busy_term(void)
{
    st_phase = "busy-term";
    pid_t pid = spawn_ready("busy", NULL);
    if (pid > 0) {
        st_sleep_ms(100);
        long t0 = st_mono_ms();
        kill(pid, SIGTERM);
        int st = st_wait_status_within(pid, 3000);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM && st_mono_ms() - t0 < 3000,
              "a busy process: SIGTERM at its default ended it with %s after %ld ms", st_status_str(st),
              st_mono_ms() - t0);
    }
}

/* This program again with argv: it must die of sig, sent as `how` says. */
static void dies_of(char *argv[], int sig, const char *how)
{
    pid_t pid = self_spawn(argv);
    CHECK(pid > 0, "posix_spawn");
    if (pid <= 0) return;
    int st = st_wait_status(pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == sig, "signal %d %s: %s", sig, how, st_status_str(st));
}

static void test_defaults(void)
{
    st_phase = "defaults";
    int sigs[] = {SIGTERM, SIGINT, SIGQUIT};
    for (int i = 0; i < 3; i++) {
        char sig[8], how[32];
        snprintf(sig, sizeof sig, "%d", sigs[i]);
        int p[2];
        CHECK(pipe(p) == 0, "pipe");
        snprintf(how, sizeof how, "wait,%d", p[1]);
        char *argv[] = {"signals", "die", sig, how, NULL};
        pid_t pid = self_spawn(argv);
        CHECK(pid > 0, "posix_spawn");
        close(p[1]);
        char c = 0;
        CHECK(st_read_full(p[0], &c, 1) == 1 && c == 'r', "the child did not get ready");
        close(p[0]);
        kill(pid, sigs[i]);
        int st = st_wait_status(pid);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == sigs[i], "signal %d sent to a process of parked threads: %s",
              sigs[i], st_status_str(st));
        const char *hows[] = {"raise", "pthread_kill"};
        for (int h = 0; h < 2; h++) {
            char *argv2[] = {"signals", "die", sig, (char *)hows[h], NULL};
            dies_of(argv2, sigs[i], "by a thread's raise or pthread_kill");
        }
        char *argv3[] = {"signals", "kill0", sig, NULL};
        dies_of(argv3, sigs[i], "by kill(0) from a process alone in its group (68: a handler had not run when kill "
                                "returned, 69: kill returned)");
        char *argv4[] = {"signals", "restore", sig, NULL};
        dies_of(argv4, sigs[i], "raised after its old action, kept while all were blocked, was put back (63: the "
                                "old action was not SIG_DFL)");
        const char *stops[] = {"kill", "raise", "group", "killpg"};
        for (int round = 0; i == 0 && round < 16; round++) {
            CHECK(pipe(p) == 0, "pipe");
            char fd[16];
            snprintf(fd, sizeof fd, "%d", p[1]);
            char *argv6[] = {"signals", "stopself", (char *)stops[round % 4], fd, NULL};
            pid = self_spawn(argv6);
            close(p[1]);
            int st6 = 0;
            while (waitpid(pid, &st6, WUNTRACED) < 0 && errno == EINTR) {}
            st_sleep_ms(20);
            fcntl(p[0], F_SETFL, O_NONBLOCK);
            char b;
            ssize_t early = read(p[0], &b, 1);
            CHECK(WIFSTOPPED(st6) && early != 1, "stopped itself by %s: %s%s", stops[round % 4],
                  WIFSTOPPED(st6) ? "stopped" : st_status_str(st6),
                  early == 1 ? ", but ran on past the stop first" : "");
            if (WIFSTOPPED(st6)) kill(pid, SIGCONT);
            fcntl(p[0], F_SETFL, 0);
            CHECK(early == 1 || read(p[0], &b, 1) == 1, "stopped itself by %s: nothing after SIGCONT",
                  stops[round % 4]);
            st6 = st_wait_status(pid);
            CHECK(WIFEXITED(st6) && WEXITSTATUS(st6) == 0, "stopped itself by %s: %s", stops[round % 4],
                  st_status_str(st6));
            close(p[0]);
        }
        for (int round = 0; round < 10; round++) {
            CHECK(pipe(p) == 0, "pipe");
            char fd[16];
            snprintf(fd, sizeof fd, "%d", p[1]);
            char *argv5[] = {"signals", "reraise", sig, fd, NULL};
            pid = self_spawn(argv5);
            close(p[1]);
            CHECK(st_read_full(p[0], &c, 1) == 1 && c == 'r', "reraise: the child did not get ready");
            st_sleep_ms(1 + round % 4);
            kill(pid, sigs[i]);
            st = st_wait_status(pid);
            char after = 0;
            ssize_t n = read(p[0], &after, 1);
            close(p[0]);
            CHECK(WIFSIGNALED(st) && WTERMSIG(st) == sigs[i] && n == 0, "signal %d raised again by its handler with "
                  "the default put back: %s%s", sigs[i], st_status_str(st),
                  n > 0 ? ", and the program took a step after the handler" : "");
        }
    }
}

/* ------------------------------------------------------------- main -- */

/* ---------------------------------------------------------------- waits -- */
/* A thread waiting in a call that never fails with EINTR -- a join, a
 * mutex, a rwlock -- still runs its handlers while it waits, as one
 * blocked in the kernel does.  The JVM's shape first: the process gets
 * SIGTERM while main joins, every other thread blocks the signal, and the
 * handler posts the semaphore a dispatcher thread waits on. */
static sem_t wt_sem;
static atomic_int wt_count;
static _Atomic uintptr_t wt_self;
static void on_wait_sig(int sig)
{
    (void)sig;
    atomic_store(&wt_self, (uintptr_t)pthread_self());
    atomic_fetch_add(&wt_count, 1);
    sem_post(&wt_sem); /* async-signal-safe */
}

static void block_usr1(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
}

static void *wt_dispatcher(void *arg)
{
    (void)arg;
    block_usr1();
    struct timespec until = st_deadline(CLOCK_REALTIME, 5000);
    int r;
    while ((r = sem_timedwait(&wt_sem, &until)) != 0 && errno == EINTR) {}
    return (void *)(intptr_t)(r == 0);
}

static void *wt_killer(void *arg)
{
    (void)arg;
    block_usr1();
    st_sleep_ms(50);
    kill(getpid(), SIGUSR1);
    return NULL;
}

static pthread_mutex_t wt_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t wt_rw = PTHREAD_RWLOCK_INITIALIZER;
static atomic_int wt_in;
static void *wt_locker(void *arg)
{
    int rw = arg != NULL;
    atomic_store(&wt_in, 1);
    if (rw) {
        pthread_rwlock_rdlock(&wt_rw);
        pthread_rwlock_unlock(&wt_rw);
    } else {
        pthread_mutex_lock(&wt_m);
        pthread_mutex_unlock(&wt_m);
    }
    return NULL;
}

static void test_waits(void)
{
    st_phase = "waits";
    set_handler(SIGUSR1, on_wait_sig, SA_RESTART);
    CHECK(sem_init(&wt_sem, 0, 0) == 0, "sem_init");

    /* The JVM's shape: the handler runs on main, in its join. */
    atomic_store(&wt_count, 0);
    pthread_t d = st_spawn(wt_dispatcher, NULL), k = st_spawn(wt_killer, NULL);
    void *got = NULL;
    int64_t t0 = st_mono_ns();
    CHECK(pthread_join(d, &got) == 0, "join the dispatcher");
    CHECK(got == (void *)1, "the dispatcher was not posted (the handler did not run while main joined)");
    CHECK(atomic_load(&wt_count) == 1, "handler ran %d times, want 1", atomic_load(&wt_count));
    CHECK(atomic_load(&wt_self) == (uintptr_t)pthread_self(), "the handler ran on another thread than main");
    CHECK(st_mono_ns() - t0 < 4000000000LL, "the join took %.0f ms", st_ms(st_mono_ns() - t0));
    pthread_join(k, NULL);

    /* A thread waiting for a mutex, then for a read lock: its handler
     * runs while the lock is still held. */
    for (int rw = 0; rw < 2; rw++) {
        atomic_store(&wt_count, 0);
        atomic_store(&wt_in, 0);
        if (rw) pthread_rwlock_wrlock(&wt_rw);
        else pthread_mutex_lock(&wt_m);
        pthread_t w = st_spawn(wt_locker, rw ? (void *)1 : NULL);
        while (!atomic_load(&wt_in)) st_sleep_ms(1);
        st_sleep_ms(30); /* parked on the lock by now */
        pthread_kill(w, SIGUSR1);
        int ran = 0;
        for (int i = 0; i < 2000 && !(ran = atomic_load(&wt_count)); i++) st_sleep_ms(1);
        CHECK(ran == 1, "%s: the handler did not run while the thread waited (ran %d)",
              rw ? "rwlock" : "mutex", ran);
        CHECK(atomic_load(&wt_self) == (uintptr_t)w, "%s: the handler ran on another thread",
              rw ? "rwlock" : "mutex");
        if (rw) pthread_rwlock_unlock(&wt_rw);
        else pthread_mutex_unlock(&wt_m);
        pthread_join(w, NULL);
        while (sem_trywait(&wt_sem) == 0) {}
    }
    sem_destroy(&wt_sem);
    set_handler(SIGUSR1, SIG_DFL, 0);
}

/* ------------------------------------------------------- wait masks -- */

static atomic_int winch_count;
static void on_winch(int sig)
{
    (void)sig;
    atomic_fetch_add(&winch_count, 1);
}

static void *winch_later(void *arg)
{
    (void)arg;
    st_sleep_ms(100);
    kill(getpid(), SIGWINCH);
    return NULL;
}

enum { kPselect, kPpoll, kEpollPwait };
static const char *const wait_name[] = {"pselect", "ppoll", "epoll_pwait"};

/* One wait on an empty pipe for up to 3 s with mask m: its result, errno
 * in *err. */
static int masked_wait(int how, int fd, const sigset_t *m, int *err)
{
    int r;
    if (how == kPselect) {
        fd_set rs;
        FD_ZERO(&rs);
        FD_SET(fd, &rs);
        struct timespec ts = {3, 0};
        r = pselect(fd + 1, &rs, NULL, NULL, &ts, m);
    } else if (how == kPpoll) {
        struct pollfd p = {fd, POLLIN, 0};
        struct timespec ts = {3, 0};
        r = ppoll(&p, 1, &ts, m);
    } else {
        int ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd}, out;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        r = epoll_pwait(ep, &out, 1, 3000, m);
        *err = errno;
        close(ep);
        return r;
    }
    *err = errno;
    return r;
}

static void test_wait_masks(void)
{
    st_phase = "wait masks";
    set_handler(SIGWINCH, on_winch, SA_RESTART);
    sigset_t w, old, none;
    sigemptyset(&w);
    sigaddset(&w, SIGWINCH);
    sigemptyset(&none);
    pthread_sigmask(SIG_BLOCK, &w, &old);
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    for (int how = kPselect; how <= kEpollPwait; how++)
        for (int during = 0; during < 2; during++) {
            const char *when = during ? "sent during the wait" : "pending before it";
            int before = atomic_load(&winch_count), err = 0;
            pthread_t h = 0;
            if (during) h = st_spawn(winch_later, NULL);
            else kill(getpid(), SIGWINCH);
            int64_t t0 = st_mono_ns();
            int r = masked_wait(how, p[0], &none, &err);
            int64_t took = st_mono_ns() - t0;
            if (h) pthread_join(h, NULL);
            CHECK(r == -1 && err == EINTR, "%s, SIGWINCH %s: %d (%s), want EINTR", wait_name[how], when, r,
                  strerror(err));
            CHECK(atomic_load(&winch_count) == before + 1, "%s, SIGWINCH %s: %d handler runs, want 1", wait_name[how],
                  when, atomic_load(&winch_count) - before);
            CHECK(took < 2000000000LL, "%s, SIGWINCH %s: the wait took %.0f ms", wait_name[how], when, st_ms(took));
            CHECK(blocks(SIGWINCH), "%s: the thread's own mask is not back after the wait", wait_name[how]);
        }
    /* The mask given blocks it: the wait times out (short), the signal
     * stays pending until the thread takes it. */
    int before = atomic_load(&winch_count), err = 0;
    kill(getpid(), SIGWINCH);
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    struct timespec ts = {0, 100 * 1000 * 1000};
    int r = pselect(p[0] + 1, &rs, NULL, NULL, &ts, &w);
    err = errno;
    CHECK(r == 0 && atomic_load(&winch_count) == before, "pselect with a mask that blocks SIGWINCH: %d (%s), %d runs",
          r, r < 0 ? strerror(err) : "-", atomic_load(&winch_count) - before);
    pthread_sigmask(SIG_SETMASK, &old, NULL); /* taken now */
    CHECK(atomic_load(&winch_count) == before + 1, "SIGWINCH left pending: %d runs once unblocked, want 1",
          atomic_load(&winch_count) - before);
    close(p[0]);
    close(p[1]);
    set_handler(SIGWINCH, SIG_DFL, 0);
}

/* ------------------------------------------------------------ mask-race -- */

static atomic_int mr_count, mr_stop, mr_parked;
static int mr_pipe[2];
static pthread_mutex_t mr_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mr_c = PTHREAD_COND_INITIALIZER;

static void on_mr(int sig)
{
    (void)sig;
    atomic_fetch_add(&mr_count, 1);
    int e = errno;
    (void)!write(mr_pipe[1], "s", 1);
    errno = e;
}

static void mr_spin_us(unsigned us)
{
    int64_t end = st_mono_ns() + (int64_t)us * 1000;
    while (st_mono_ns() < end) {}
}

/* Blocks SIGUSR2 and parks: a long list for the router to look through. */
static void *mr_parked_body(void *arg)
{
    (void)arg;
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &m, NULL);
    pthread_mutex_lock(&mr_m);
    atomic_fetch_add(&mr_parked, 1);
    while (!atomic_load(&mr_stop)) pthread_cond_wait(&mr_c, &mr_m);
    pthread_mutex_unlock(&mr_m);
    return NULL;
}

/* The loop, on a thread made after the parked ones: the router reads its
 * mask first, then looks through all of theirs.  A one-shot timer sends
 * the process's signal at a random point of the block or of the wait. */
static void *mr_looper(void *arg)
{
    (void)arg;
    sigset_t usr2, all, old;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigfillset(&all);
    pthread_sigmask(SIG_UNBLOCK, &usr2, &old);
    pthread_sigmask(SIG_SETMASK, NULL, &old);
    struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2};
    timer_t tm;
    CHECK(timer_create(CLOCK_MONOTONIC, &sev, &tm) == 0, "timer_create: %s", strerror(errno));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, mr_pipe[0], &ev) == 0, "epoll_ctl");
    unsigned seed = 3;
    int missed = 0, round = 0;
    for (; round < 3000 && missed < 3; round++) {
        int before = atomic_load(&mr_count);
        struct itimerspec its = {.it_value = {0, (long)(20 + rand_r(&seed) % 150) * 1000}};
        CHECK(timer_settime(tm, 0, &its, NULL) == 0, "timer_settime");
        int64_t end = st_mono_ns() + 2000000000LL;
        while (atomic_load(&mr_count) == before && st_mono_ns() < end) {
            pthread_sigmask(SIG_SETMASK, &all, NULL);
            mr_spin_us(rand_r(&seed) % 120);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            if (atomic_load(&mr_count) != before) break;
            int left = (int)((end - st_mono_ns()) / 1000000);
            if (left <= 0) break;
            (void)epoll_wait(ep, &ev, 1, left);
        }
        char drain[64];
        while (read(mr_pipe[0], drain, sizeof drain) > 0) {}
        if (atomic_load(&mr_count) == before) missed++;
    }
    CHECK(missed == 0, "%d of %d timer signals ran no handler within 2 s (lost while a thread changed its mask)",
          missed, round);
    timer_delete(tm);
    close(ep);
    return NULL;
}

static void test_mask_race(void)
{
    st_phase = "mask race";
    enum { kParked = 800 };
    CHECK(pipe2(mr_pipe, O_CLOEXEC | O_NONBLOCK) == 0, "pipe2");
    set_handler(SIGUSR2, on_mr, SA_RESTART);
    sigset_t usr2, old;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, &old); /* main never takes it */
    pthread_t parked[kParked];
    for (int i = 0; i < kParked; i++) parked[i] = st_spawn(mr_parked_body, NULL);
    for (int i = 0; i < 5000 && atomic_load(&mr_parked) < kParked; i++) st_sleep_ms(1);
    pthread_join(st_spawn(mr_looper, NULL), NULL);

    atomic_store(&mr_stop, 1);
    pthread_mutex_lock(&mr_m);
    pthread_cond_broadcast(&mr_c);
    pthread_mutex_unlock(&mr_m);
    for (int i = 0; i < kParked; i++) pthread_join(parked[i], NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    set_handler(SIGUSR2, SIG_DFL, 0);
    close(mr_pipe[0]);
    close(mr_pipe[1]);
}

/* -------------------------------------------------------------- compute -- */

static volatile sig_atomic_t cp_flag;
static _Atomic uintptr_t cp_self;
static void on_cp(int sig)
{
    (void)sig;
    cp_flag = 1;
    atomic_store(&cp_self, (uintptr_t)pthread_self());
}

/* Computes, with no call at all between its looks at the clock (every few
 * ms), until the handler sets the flag; how many ms that took, -1: never. */
static void *cp_spinner(void *arg)
{
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
    atomic_store((atomic_int *)arg, 1);
    int64_t t0 = st_mono_ns(), end = t0 + 5000000000LL;
    volatile uint64_t x = 1;
    while (!cp_flag) {
        for (int i = 0; i < 2000000 && !cp_flag; i++) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        if (st_mono_ns() > end) return (void *)(intptr_t)-1;
    }
    return (void *)(intptr_t)((st_mono_ns() - t0) / 1000000);
}

static void test_compute(void)
{
    st_phase = "compute";
    set_handler(SIGUSR2, on_cp, SA_RESTART);
    sigset_t usr2, old;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, &old); /* only the spinner takes it */
    for (int round = 0; round < 3; round++) {
        cp_flag = 0;
        atomic_int up = 0;
        pthread_t th = st_spawn(cp_spinner, &up);
        while (!atomic_load(&up)) st_sleep_ms(1);
        st_sleep_ms(50);
        pid_t kid = fork();
        if (kid == 0) {
            kill(getppid(), SIGUSR2); /* the process's, from outside */
            _exit(0);
        }
        st_wait_status(kid);
        void *ms;
        pthread_join(th, &ms);
        CHECK((intptr_t)ms >= 0, "round %d: a thread computing never ran its SIGUSR2 handler (5 s)", round);
        CHECK(atomic_load(&cp_self) == (uintptr_t)th, "round %d: the handler ran on another thread", round);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    set_handler(SIGUSR2, SIG_DFL, 0);
}

/* ------------------------------------------------------------ bsd-masks -- */

static atomic_int bm_count;
static void on_bm(int sig) { (void)sig; atomic_fetch_add(&bm_count, 1); }

static int blocked_now(int sig)
{
    sigset_t cur;
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    return sigismember(&cur, sig) == 1;
}

static void test_bsd_masks(void)
{
    st_phase = "bsd masks";
    set_handler(SIGUSR1, on_bm, 0);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    /* dash: every signal blocked with sigprocmask, unblocked with sigsetmask */
    raise(SIGUSR1);
    CHECK(atomic_load(&bm_count) == 0, "SIGUSR1 ran while blocked");
    int prev = sigsetmask(0);
    CHECK(atomic_load(&bm_count) == 1, "sigsetmask(0) did not let the pending SIGUSR1 through: %d runs",
          atomic_load(&bm_count));
    CHECK(prev & (1 << (SIGUSR1 - 1)), "sigsetmask's old mask %#x lacks SIGUSR1", (unsigned)prev);
    CHECK(!blocked_now(SIGUSR1) && !blocked_now(SIGTERM), "sigsetmask(0) left signals blocked");
    int was = sigblock(1 << (SIGUSR1 - 1));
    CHECK(was == 0 && blocked_now(SIGUSR1), "sigblock: old %#x, SIGUSR1 %sblocked", (unsigned)was,
          blocked_now(SIGUSR1) ? "" : "not ");
    CHECK(siggetmask() == (1 << (SIGUSR1 - 1)), "siggetmask: %#x", (unsigned)siggetmask());
    raise(SIGUSR1);
    CHECK(atomic_load(&bm_count) == 1, "SIGUSR1 ran while sigblock blocked it");
    CHECK(sigrelse(SIGUSR1) == 0 && atomic_load(&bm_count) == 2, "sigrelse did not let it through: %d runs",
          atomic_load(&bm_count));
    CHECK(sighold(SIGUSR1) == 0 && blocked_now(SIGUSR1), "sighold did not block it");
    CHECK(sigset(SIGUSR1, on_bm) == SIG_HOLD && !blocked_now(SIGUSR1), "sigset of a held signal: not SIG_HOLD, or "
          "still blocked");
    raise(SIGUSR1);
    CHECK(atomic_load(&bm_count) == 3, "after sigset, SIGUSR1 ran %d times in all, want 3", atomic_load(&bm_count));
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    set_handler(SIGUSR1, SIG_DFL, 0);
}

/* ------------------------------------------------------------ no-spurious -- */

enum { kSpThreads = 4 };
static atomic_int sp_ran[kSpThreads], sp_stop;
static __thread int sp_index = -1;

static void on_sp(int sig)
{
    (void)sig;
    if (sp_index >= 0) atomic_fetch_add(&sp_ran[sp_index], 1);
}

static void *sp_body(void *arg)
{
    sp_index = (int)(intptr_t)arg;
    long eintr = 0;
    struct pollfd none = {.fd = -1};
    for (unsigned n = 0; !atomic_load(&sp_stop); n++) {
        int r;
        if (n & 1) {
            struct timespec ts = {0, 300 * 1000};
            r = nanosleep(&ts, NULL);
        } else {
            r = poll(&none, 1, 1);
        }
        if (r < 0 && errno == EINTR) eintr++;
    }
    return (void *)eintr;
}

static void test_no_spurious(void)
{
    st_phase = "no spurious EINTR";
    set_handler(SIGUSR2, on_sp, 0);
    pthread_t th[kSpThreads];
    for (int i = 0; i < kSpThreads; i++) th[i] = st_spawn(sp_body, (void *)(intptr_t)i);
    struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2};
    timer_t tm;
    CHECK(timer_create(CLOCK_MONOTONIC, &sev, &tm) == 0, "timer_create: %s", strerror(errno));
    struct itimerspec its = {.it_interval = {0, 150 * 1000}, .it_value = {0, 150 * 1000}};
    timer_settime(tm, 0, &its, NULL);
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, NULL); /* main does not take them */
    st_sleep_ms(1500);
    struct itimerspec off = {{0, 0}, {0, 0}};
    timer_settime(tm, 0, &off, NULL);
    timer_delete(tm);
    atomic_store(&sp_stop, 1);
    long total_ran = 0;
    for (int i = 0; i < kSpThreads; i++) {
        void *e;
        pthread_join(th[i], &e);
        int ran = atomic_load(&sp_ran[i]);
        total_ran += ran;
        CHECK((long)(intptr_t)e <= ran, "thread %d: %ld calls ended with EINTR, but %d handlers ran on it", i,
              (long)(intptr_t)e, ran);
    }
    CHECK(total_ran > 100, "only %ld handlers ran in 1.5 s of a 150 us timer", total_ran);
    pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
    set_handler(SIGUSR2, SIG_DFL, 0);
}

/* -------------------------------------------------------------- context -- */

static atomic_int cx_count, cx_bad;
static _Atomic uintptr_t cx_pc;

static uintptr_t pc_of(const ucontext_t *uc)
{
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#else
    (void)uc;
    return 0;
#endif
}

/* SIGUSR1's: checks the context, and blocks SIGTERM after it returns. */
static void on_cx(int sig, siginfo_t *info, void *ctx)
{
    (void)info;
    ucontext_t *uc = ctx;
    atomic_fetch_add(&cx_count, 1);
    if (!uc) {
        atomic_store(&cx_bad, 1);
        return;
    }
    if (sigismember(&uc->uc_sigmask, sig) || !sigismember(&uc->uc_sigmask, SIGUSR2)) atomic_store(&cx_bad, 2);
    sigaddset(&uc->uc_sigmask, SIGTERM);
}

/* SIGUSR2's on the spinner: where it was. */
static void on_cx_pc(int sig, siginfo_t *info, void *ctx)
{
    (void)sig;
    (void)info;
    atomic_store(&cx_pc, ctx ? pc_of(ctx) : 1);
    cp_flag = 1;
}

static void set_info_handler(int sig, void (*fn)(int, siginfo_t *, void *))
{
    set_action(sig, NULL, fn, SA_SIGINFO);
}

static int cx_pipe[2];
static atomic_int cx_parked;
static void *cx_reader(void *arg)
{
    (void)arg;
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    pthread_sigmask(SIG_SETMASK, &m, NULL);
    atomic_store(&cx_parked, 1);
    char c;
    ssize_t r;
    do r = read(cx_pipe[0], &c, 1);
    while (r < 0 && errno == EINTR);
    return (void *)(intptr_t)blocked_now(SIGTERM);
}

/* ------------------------------------------------------------- tomain -- */
/* A signal sent to the process from outside while main waits (sem_wait,
 * a pipe read, nanosleep) and other threads keep making calls: the kernel
 * gives it to main, which lets it through and sleeps, and main's wait
 * ends with EINTR.  CPython runs its handlers only on main, woken so: a
 * busy thread taking the signal instead left python servers deaf to
 * SIGTERM (a gRPC server under load never stopped). */
static atomic_int tm_stop, tm_runs, tm_on_main;
static pthread_t tm_main;
static void on_tomain(int sig)
{
    (void)sig;
    atomic_fetch_add(&tm_runs, 1);
    if (pthread_equal(pthread_self(), tm_main)) atomic_fetch_add(&tm_on_main, 1);
}

static void *tm_echo(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char b[64];
    ssize_t n;
    while ((n = recv(fd, b, sizeof b, 0)) > 0) send(fd, b, (size_t)n, 0);
    return NULL;
}

static void *tm_busy(void *arg)
{
    (void)arg;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return NULL;
    pthread_t e = st_spawn(tm_echo, (void *)(intptr_t)sv[1]);
    char b[32] = {0};
    while (!atomic_load(&tm_stop)) {
        send(sv[0], b, sizeof b, 0);
        recv(sv[0], b, sizeof b, 0);
    }
    close(sv[0]);
    pthread_join(e, NULL);
    close(sv[1]);
    return NULL;
}

/* Sends SIGUSR2 to its own process every 50 ms until the gate closes;
 * it does not block SIGUSR2, so it could take the signal itself. */
static void *tm_killer(void *arg)
{
    struct pollfd pf = {.fd = (int)(intptr_t)arg, .events = POLLIN};
    for (int i = 0; i < 200 && poll(&pf, 1, 50) == 0; i++) kill(getpid(), SIGUSR2);
    return NULL;
}

static void test_tomain(void)
{
    st_phase = "tomain";
    tm_main = pthread_self();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_tomain; /* no SA_RESTART: main's wait ends with EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
    atomic_store(&tm_stop, 0);
    pthread_t busy[4];
    for (int i = 0; i < 4; i++) busy[i] = st_spawn(tm_busy, NULL);
    static const char *ways[] = {"sem_wait", "read", "nanosleep"};
    for (int round = 0; round < 18; round++) {
        int way = round % 3;
        int from_thread = round >= 12; /* else from a child process */
        atomic_store(&tm_runs, 0);
        atomic_store(&tm_on_main, 0);
        /* Sent again every 50 ms until main's wait is over: one sent
         * before main is in it (a slow fork) would only run the handler. */
        int gate[2];
        CHECK(pipe(gate) == 0, "pipe");
        pid_t me = getpid(), kid = 0;
        pthread_t killer;
        if (from_thread) killer = st_spawn(tm_killer, (void *)(intptr_t)gate[0]);
        else kid = fork();
        if (!from_thread && kid == 0) {
            close(gate[1]);
            struct pollfd pf = {.fd = gate[0], .events = POLLIN};
            for (int i = 0; i < 200 && poll(&pf, 1, 50) == 0; i++) kill(me, SIGUSR2);
            _exit(0);
        }
        if (!from_thread) close(gate[0]);
        int r = 0, e = 0;
        alarm(10); /* a wait nothing ends: SIGALRM's default ends the test */
        if (way == 0) {
            sem_t s;
            sem_init(&s, 0, 0);
            r = sem_wait(&s);
            e = errno;
            sem_destroy(&s);
        } else if (way == 1) {
            int p[2];
            CHECK(pipe(p) == 0, "pipe");
            char c;
            r = (int)read(p[0], &c, 1);
            e = errno;
            close(p[0]);
            close(p[1]);
        } else {
            struct timespec d = {20, 0};
            r = nanosleep(&d, NULL);
            e = errno;
        }
        alarm(0);
        close(gate[1]);
        if (from_thread) {
            pthread_join(killer, NULL);
            close(gate[0]);
        } else {
            st_wait_status(kid);
        }
        int runs = atomic_load(&tm_runs);
        CHECK(r == -1 && e == EINTR && runs >= 1 && atomic_load(&tm_on_main) == runs,
              "round %d, main in %s while 4 threads make calls, sent by %s: the wait gave %d (%s), the handler "
              "ran %d times, %d on main; want EINTR, and every run on main",
              round, ways[way], from_thread ? "a thread of its own with kill(getpid())" : "a child", r,
              r == -1 ? strerror(e) : "no error", runs, atomic_load(&tm_on_main));
    }
    atomic_store(&tm_stop, 1);
    for (int i = 0; i < 4; i++) pthread_join(busy[i], NULL);
    signal(SIGUSR2, SIG_DFL);
}

static void test_context(void)
{
    st_phase = "context";
    set_info_handler(SIGUSR1, on_cx);
    sigset_t m, old;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    pthread_sigmask(SIG_SETMASK, &m, &old);
    raise(SIGUSR1);
    CHECK(atomic_load(&cx_count) == 1, "raise: the handler ran %d times", atomic_load(&cx_count));
    CHECK(atomic_load(&cx_bad) == 0, "raise: %s", atomic_load(&cx_bad) == 1 ? "no context (NULL)"
                                                   : "uc_sigmask is not the mask before the handler");
    CHECK(blocked_now(SIGTERM), "raise: SIGTERM added to uc_sigmask is not blocked after the handler");
    CHECK(blocked_now(SIGUSR2) && !blocked_now(SIGUSR1), "raise: the mask after the handler lost SIGUSR2 "
          "or kept SIGUSR1");
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    /* a thread parked in a read, signalled by another */
    atomic_store(&cx_bad, 0);
    CHECK(pipe(cx_pipe) == 0, "pipe: %s", strerror(errno));
    pthread_t th = st_spawn(cx_reader, NULL);
    while (!atomic_load(&cx_parked)) st_sleep_ms(1);
    st_sleep_ms(50);
    pthread_kill(th, SIGUSR1);
    for (int i = 0; i < 2000 && atomic_load(&cx_count) < 2; i++) st_sleep_ms(1);
    CHECK(write(cx_pipe[1], "x", 1) == 1, "write: %s", strerror(errno));
    void *term;
    pthread_join(th, &term);
    CHECK(atomic_load(&cx_count) == 2, "parked: the handler ran %d times in all, want 2", atomic_load(&cx_count));
    CHECK(atomic_load(&cx_bad) == 0, "parked: %s", atomic_load(&cx_bad) == 1 ? "no context (NULL)"
                                                     : "uc_sigmask is not the thread's mask");
    CHECK((intptr_t)term == 1, "parked: SIGTERM added to uc_sigmask is not blocked after the handler");
    close(cx_pipe[0]);
    close(cx_pipe[1]);
    set_handler(SIGUSR1, SIG_DFL, 0);

#if defined(__x86_64__) || defined(__aarch64__)
    /* a thread computing: the handler is shown the program's own code */
    set_info_handler(SIGUSR2, on_cx_pc);
    pthread_sigmask(SIG_BLOCK, &m, &old); /* only the spinner takes it */
    cp_flag = 0;
    atomic_int up = 0;
    th = st_spawn(cp_spinner, &up);
    while (!atomic_load(&up)) st_sleep_ms(1);
    st_sleep_ms(50);
    pid_t kid = fork();
    if (kid == 0) {
        kill(getppid(), SIGUSR2);
        _exit(0);
    }
    st_wait_status(kid);
    void *ms;
    pthread_join(th, &ms);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    set_handler(SIGUSR2, SIG_DFL, 0);
    CHECK((intptr_t)ms >= 0, "compute: the handler never ran (5 s)");
    uintptr_t pc = atomic_load(&cx_pc);
    Dl_info here, there;
    CHECK(pc > 1, "compute: %s", pc ? "no context (NULL)" : "no pc");
    /* The program's code, or what it called there (a sanitizer's
     * interceptor of clock_gettime, which the loop calls): not the
     * library's own frames. */
    if (pc > 1 && dladdr((void *)(uintptr_t)test_context, &here) && dladdr((void *)pc, &there))
        CHECK(here.dli_fbase == there.dli_fbase || !there.dli_fname || !strstr(there.dli_fname, "libnetpoll"),
              "compute: the context's pc %#lx is in %s, the library's", (unsigned long)pc,
              there.dli_fname ? there.dli_fname : "?");
#endif
}

/* ---------------------------------------------------------- libc-waits -- */

/* main waits in a call libc makes inside itself, out of the library's
 * sight: stdio's read of a pipe (fgets), an open of a FIFO with no writer.
 * The kernel runs a handler there at once, then restarts the call or ends
 * it with EINTR; a program's Ctrl-C handler must not wait for the line. */
static atomic_int lw_runs, lw_on_main, lw_in_call, lw_done;
static pthread_t lw_main;
static const char *lw_fifo;
static int lw_pipe[2];

static void on_lw(int sig)
{
    (void)sig;
    atomic_fetch_add(&lw_runs, 1);
    if (pthread_equal(pthread_self(), lw_main)) atomic_fetch_add(&lw_on_main, 1);
}

/* Signals main in its call, waits (3 s at most) for the handler, then
 * ends the call if it is still on: the line, or a writer for the FIFO.
 * Returns whether the handler ran before that. */
static void *lw_helper(void *arg)
{
    int fifo = (int)(intptr_t)arg;
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &m, NULL); /* main alone takes it */
    while (!atomic_load(&lw_in_call)) st_sleep_ms(1);
    st_sleep_ms(50);
    kill(getpid(), SIGUSR2);
    for (int i = 0; i < 3000 && !atomic_load(&lw_runs); i++) st_sleep_ms(1);
    intptr_t before = atomic_load(&lw_runs) > 0;
    if (!fifo) {
        if (write(lw_pipe[1], "line\n", 5) != 5) return (void *)(intptr_t)-1;
        return (void *)before;
    }
    for (int i = 0; i < 5000 && !atomic_load(&lw_done); i++) {
        int fd = open(lw_fifo, O_WRONLY | O_NONBLOCK); /* ENXIO until main opens */
        if (fd >= 0) {
            close(fd);
            break;
        }
        st_sleep_ms(1);
    }
    return (void *)before;
}

static void test_libc_waits(void)
{
    st_phase = "libc-waits";
    lw_main = pthread_self();
    char path[64];
    snprintf(path, sizeof path, "/tmp/np-signals-fifo-%d", (int)getpid());
    lw_fifo = path;
    for (int fifo = 0; fifo < 2; fifo++)
        for (int restart = 0; restart < 2; restart++) {
            const char *what = fifo ? "open of a FIFO" : "fgets on a pipe";
            atomic_store(&lw_runs, 0);
            atomic_store(&lw_on_main, 0);
            atomic_store(&lw_in_call, 0);
            atomic_store(&lw_done, 0);
            set_handler(SIGUSR2, on_lw, restart ? SA_RESTART : 0);
            FILE *in = NULL;
            if (fifo) {
                unlink(path);
                CHECK(mkfifo(path, 0600) == 0, "mkfifo: %s", strerror(errno));
            } else {
                CHECK(pipe(lw_pipe) == 0, "pipe: %s", strerror(errno));
                in = fdopen(lw_pipe[0], "r");
            }
            pthread_t h = st_spawn(lw_helper, (void *)(intptr_t)fifo);
            atomic_store(&lw_in_call, 1);
            int ok, e;
            char line[16];
            if (fifo) {
                int fd = open(path, O_RDONLY);
                e = errno;
                ok = fd >= 0;
                if (ok) close(fd);
            } else {
                ok = fgets(line, sizeof line, in) != NULL;
                e = errno;
            }
            atomic_store(&lw_done, 1);
            void *before;
            pthread_join(h, &before);
            CHECK((intptr_t)before == 1, "%s, %s: the handler had not run 3 s after the signal, while main "
                  "waited (it ran %d times in all)", what, restart ? "SA_RESTART" : "no SA_RESTART",
                  atomic_load(&lw_runs));
            CHECK(atomic_load(&lw_runs) == 1 && atomic_load(&lw_on_main) == 1,
                  "%s: the handler ran %d times, %d on main; want once, on main", what,
                  atomic_load(&lw_runs), atomic_load(&lw_on_main));
            if (restart)
                CHECK(ok, "%s, SA_RESTART: the call failed (%s); want it restarted", what, strerror(e));
            else
                CHECK(!ok && e == EINTR, "%s, no SA_RESTART: the call gave %s; want EINTR", what,
                      ok ? "success" : strerror(e));
            if (fifo) {
                unlink(path);
            } else {
                fclose(in);
                close(lw_pipe[1]);
            }
        }
    set_handler(SIGUSR2, SIG_DFL, 0);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "sigpipe") == 0) return mode_sigpipe(argc > 2 ? argv[2] : NULL);
    if (argc > 3 && strcmp(argv[1], "die") == 0) return mode_die(argv[2], argv[3]);
    if (argc > 2 && strcmp(argv[1], "inherited") == 0) return mode_inherited(argv[2]);
    if (argc > 2 && strcmp(argv[1], "restore") == 0) return mode_restore(argv[2]);
    if (argc > 2 && strcmp(argv[1], "kill0") == 0) return mode_kill0(argv[2]);
    if (argc > 3 && strcmp(argv[1], "reraise") == 0) return mode_reraise(argv[2], argv[3]);
    if (argc > 3 && strcmp(argv[1], "stopself") == 0) return mode_stopself(argv[2], argv[3]);
    if (argc > 2 && strcmp(argv[1], "busy") == 0) return mode_busy(argv[2]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    signal(SIGPIPE, SIG_IGN);
    static const struct st_test tests[] = {
        {"eintr", test_eintr},     {"condwait", test_condwait}, {"small-stack", test_small_stack},
        {"altstack", test_altstack}, {"masks", test_masks},     {"raise", test_raise},
        {"sigwait", test_sigwait}, {"timers", test_timers},     {"sigpipe", test_sigpipe},
        {"defaults", test_defaults}, {"waits", test_waits},     {"wait-masks", test_wait_masks},
        {"inherited", test_inherited}, {"busy-term", test_busy_term}, {"mask-race", test_mask_race},
        {"no-spurious", test_no_spurious}, {"bsd-masks", test_bsd_masks},
        {"compute", test_compute}, {"context", test_context}, {"tomain", test_tomain},
        {"libc-waits", test_libc_waits},
    };
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("signals");
}
