/* A program that sandboxes itself once it runs threads, as Firefox's
 * content processes do: a seccomp filter (TSYNC: every thread) traps, by
 * SIGSYS, the calls the program itself never makes (opens, preadv2 and
 * pwritev2, membarrier, other threads' CPU clocks, readlink, getsockopt
 * but SO_TYPE), and its handler fakes ENOSYS.  A trap on a thread that
 * blocks SIGSYS (the library's own, as its monitor thread) kills the
 * process; elsewhere it is a call the library made that the program did
 * not.  After the filter, the program uses pipes, sockets (with a receive
 * timeout), an eventfd, sleeps, new threads and threads that compute for
 * a while (the library's monitor then looks at its workers): all must
 * work, and no call may have trapped.  x86-64 only (elsewhere: skipped). */
#include "shim_test.h"
#include <stddef.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#if defined(__x86_64__)
static atomic_int traps, last_nr;

static void on_sigsys(int sig, siginfo_t *info, void *ucv)
{
    (void)sig;
    ucontext_t *uc = ucv;
    atomic_fetch_add(&traps, 1);
    atomic_store(&last_nr, info->si_syscall);
    uc->uc_mcontext.gregs[REG_RAX] = -ENOSYS; /* as Firefox's handler */
}

#define LD(field) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, field))
#define TRAP_IF(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP)

static int install_filter(void)
{
    struct sock_filter f[] = {
        LD(arch),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        LD(nr),
        TRAP_IF(__NR_open),
        TRAP_IF(__NR_openat),
        TRAP_IF(__NR_preadv2),
        TRAP_IF(__NR_pwritev2),
        TRAP_IF(__NR_membarrier),
        TRAP_IF(__NR_readlink),
        TRAP_IF(__NR_readlinkat),
        TRAP_IF(__NR_io_uring_setup),
        TRAP_IF(__NR_io_uring_enter),
        /* clock_gettime: a negative clock ID (a CPU clock of a given
         * thread or process) traps */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clock_gettime, 0, 4),
        LD(args[0]),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x80000000u, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        /* getsockopt: SO_TYPE only */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getsockopt, 0, 4),
        LD(args[2]),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SO_TYPE, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    /* through libc's syscall(), as Firefox's and Chromium's sandboxes do */
    return (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *spin(void *arg)
{
    int64_t until = now_ms() + (intptr_t)arg;
    volatile unsigned long x = 0;
    while (now_ms() < until) x++;
    return NULL;
}

static atomic_int ticks;
static void *sleeper(void *arg)
{
    (void)arg;
    for (int i = 0; i < 50; i++) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        atomic_fetch_add(&ticks, 1);
    }
    return NULL;
}

static int pipefd[2];
static void *pipe_writer(void *arg)
{
    (void)arg;
    char buf[4096];
    memset(buf, 'p', sizeof buf);
    for (int i = 0; i < 64; i++)
        if (write(pipefd[1], buf, sizeof buf) != (ssize_t)sizeof buf) return (void *)1;
    close(pipefd[1]);
    return NULL;
}

static int sv[2];
static void *echo(void *arg)
{
    (void)arg;
    char c;
    while (read(sv[1], &c, 1) == 1)
        if (write(sv[1], &c, 1) != 1) break;
    return NULL;
}

static int efd;
static void *poster(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 30000000};
    nanosleep(&ts, NULL);
    uint64_t one = 1;
    return write(efd, &one, sizeof one) == sizeof one ? NULL : (void *)1;
}

/* A thread readied (a condvar signal) and then waited for without a
 * call, in a spin (Firefox's socket process at its exit): the library
 * must move it off the spinning thread's OS thread with no membarrier. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go;
static atomic_int done;
static void *readied(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    while (!go) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    atomic_store(&done, 1);
    return NULL;
}

/* Threads made before the filter: the library's workers and monitor run. */
static void *warm(void *arg)
{
    return arg;
}

static void test_sandbox(void)
{
    pthread_t t[4];
    CHECK(pthread_create(&t[0], NULL, warm, NULL) == 0, "pthread_create");
    pthread_join(t[0], NULL);
    /* pipes before the filter too: classified while the library could look */
    CHECK(pipe(pipefd) == 0, "pipe: %s", strerror(errno));
    struct sigaction sa = {0};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSYS, &sa, NULL);
    if (install_filter() != 0) {
        printf("seccomp filter not installed (%s): skipped\n", strerror(errno));
        return;
    }

    st_phase = "compute";
    atomic_store(&ticks, 0);
    CHECK(pthread_create(&t[0], NULL, sleeper, NULL) == 0, "pthread_create");
    for (int i = 1; i < 4; i++) CHECK(pthread_create(&t[i], NULL, spin, (void *)(intptr_t)150) == 0, "pthread_create");
    spin((void *)(intptr_t)150);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK(atomic_load(&ticks) == 50, "sleeper: %d of 50 ticks", atomic_load(&ticks));

    st_phase = "spin-wait";
    int spun = 0;
    for (int i = 0; i < 5; i++) {
        atomic_store(&done, 0);
        go = 0;
        CHECK(pthread_create(&t[0], NULL, readied, NULL) == 0, "pthread_create");
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&mu);
        go = 1;
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&mu);
        int64_t t0 = now_ms();
        while (!atomic_load(&done) && now_ms() - t0 < 5000) continue;
        if (atomic_load(&done)) spun++;
        pthread_join(t[0], NULL);
    }
    CHECK(spun == 5, "spin-wait for a readied thread: %d of 5 rounds saw it run within 5 s", spun);

    st_phase = "pipe";
    CHECK(pthread_create(&t[0], NULL, pipe_writer, NULL) == 0, "pthread_create");
    size_t got = 0;
    char buf[8192];
    for (ssize_t n; (n = read(pipefd[0], buf, sizeof buf)) > 0;) got += (size_t)n;
    void *r;
    pthread_join(t[0], &r);
    CHECK(r == NULL && got == 64 * 4096, "pipe: %zu bytes read, writer %p", got, r);
    close(pipefd[0]);
    /* one made after the filter */
    CHECK(pipe(pipefd) == 0, "pipe: %s", strerror(errno));
    CHECK(pthread_create(&t[0], NULL, pipe_writer, NULL) == 0, "pthread_create");
    got = 0;
    for (ssize_t n; (n = read(pipefd[0], buf, sizeof buf)) > 0;) got += (size_t)n;
    pthread_join(t[0], &r);
    CHECK(r == NULL && got == 64 * 4096, "second pipe: %zu bytes read, writer %p", got, r);
    close(pipefd[0]);

    st_phase = "socket";
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    CHECK(pthread_create(&t[0], NULL, echo, NULL) == 0, "pthread_create");
    int ok = 0;
    for (int i = 0; i < 200; i++) {
        char c = (char)i, d = 0;
        if (write(sv[0], &c, 1) == 1 && read(sv[0], &d, 1) == 1 && d == c) ok++;
    }
    CHECK(ok == 200, "socket echo: %d of 200", ok);
    struct timeval tv = {0, 50000};
    CHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO: %s", strerror(errno));
    int64_t t0 = now_ms();
    char c;
    errno = 0;
    ssize_t n = read(sv[0], &c, 1);
    int64_t waited = now_ms() - t0;
    CHECK(n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK) && waited >= 40 && waited < 2000,
          "read past SO_RCVTIMEO: %zd (%s) after %lld ms", n, strerror(errno), (long long)waited);
    shutdown(sv[0], SHUT_WR);
    pthread_join(t[0], NULL);
    close(sv[0]);
    close(sv[1]);

    st_phase = "eventfd";
    efd = eventfd(0, EFD_CLOEXEC);
    CHECK(efd >= 0, "eventfd: %s", strerror(errno));
    CHECK(pthread_create(&t[0], NULL, poster, NULL) == 0, "pthread_create");
    uint64_t v = 0;
    CHECK(read(efd, &v, sizeof v) == sizeof v && v == 1, "eventfd read: %llu", (unsigned long long)v);
    pthread_join(t[0], &r);
    CHECK(r == NULL, "eventfd write");
    close(efd);

    CHECK(atomic_load(&traps) == 0, "%d calls trapped (the last: system call %d)", atomic_load(&traps),
          atomic_load(&last_nr));
}
#endif

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
#if defined(__x86_64__)
    static const struct st_test tests[] = {{"sandbox", test_sandbox}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
#else
    printf("seccomp_sandbox: skipped, x86-64 only\n");
#endif
    return st_finish("seccomp_sandbox");
}
