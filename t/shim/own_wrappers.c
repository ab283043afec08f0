/* own_wrappers: a program that defines gettid(), tgkill(), close_range()
 * and close() itself, as syscall(2) wrappers (glibc lacked the first three
 * before 2.30 and 2.34; netdata defines gettid() so).  The executable's definitions come first
 * for every library, the shim's calls by name too: the shim's syscall()
 * must not hand SYS_gettid, SYS_tgkill or SYS_close_range back to these
 * by name, or each calls the other until the stack runs out.  Each case
 * runs in a thread of a forked child, so a crash names its case.
 *
 *   gettid       gettid() in a thread and in main after it: the same as
 *                syscall(SYS_gettid), and the two differ
 *   tgkill       tgkill(getpid(), gettid(), SIGUSR1) in a thread: its
 *                handler runs on that thread before the call returns
 *   close_range  close_range() of two pipes: all four closed, a lower
 *                descriptor left open
 *   close        close() of a pipe another thread reads: the reader is
 *                woken (EBADF, or the end of the file), the pipe closed */
#include <fcntl.h>
#include <sys/syscall.h>

#include "shim_test.h"

pid_t gettid(void) { return (pid_t)syscall(SYS_gettid); }
int tgkill(pid_t tgid, pid_t tid, int sig) { return (int)syscall(SYS_tgkill, tgid, tid, sig); }
int close_range(unsigned first, unsigned last, int flags)
{
    return (int)syscall(SYS_close_range, first, last, flags);
}
int close(int fd) { return (int)syscall(SYS_close, fd); }

static _Atomic(pthread_t) handled_on;
static void on_usr1(int s)
{
    (void)s;
    atomic_store(&handled_on, pthread_self());
}

static void *ids(void *arg)
{
    (void)arg;
    pid_t a = gettid(), b = (pid_t)syscall(SYS_gettid);
    CHECK(a > 0 && a == b, "thread: gettid() %d, syscall(SYS_gettid) %d", a, b);
    return (void *)(intptr_t)a;
}

static void case_gettid(void)
{
    pthread_t th;
    void *r = NULL;
    CHECK(pthread_create(&th, NULL, ids, NULL) == 0, "pthread_create");
    CHECK(pthread_join(th, &r) == 0, "pthread_join");
    pid_t m = gettid();
    CHECK(m == (pid_t)syscall(SYS_gettid), "main: gettid() %d, syscall(SYS_gettid)", m);
    CHECK(m != (pid_t)(intptr_t)r, "main and the thread have one ID, %d", m);
}

static void case_tgkill(void)
{
    struct sigaction sa = {.sa_handler = on_usr1};
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    CHECK(tgkill(getpid(), gettid(), SIGUSR1) == 0, "tgkill of its own ID: %s", strerror(errno));
    CHECK(pthread_equal(atomic_load(&handled_on), pthread_self()), "the handler did not run on the caller before tgkill returned");
}

static void case_close_range(void)
{
    int keep[2], p[2], q[2];
    CHECK(pipe(keep) == 0 && pipe(p) == 0 && pipe(q) == 0, "pipe");
    int lo = p[0] < q[0] ? p[0] : q[0], hi = p[1] > q[1] ? p[1] : q[1];
    CHECK(keep[1] < lo, "descriptors out of order");
    CHECK(close_range((unsigned)lo, (unsigned)hi, 0) == 0, "close_range: %s", strerror(errno));
    CHECK(fcntl(p[0], F_GETFD) < 0 && fcntl(q[1], F_GETFD) < 0, "close_range left a pipe open");
    CHECK(fcntl(keep[1], F_GETFD) >= 0, "close_range closed a lower descriptor");
    CHECK(write(keep[1], "x", 1) == 1, "write to the kept pipe: %s", strerror(errno));
}

static void *reader(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char c;
    return (void *)(intptr_t)read(fd, &c, 1);
}

static void case_close(void)
{
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    pthread_t th;
    CHECK(pthread_create(&th, NULL, reader, (void *)(intptr_t)p[0]) == 0, "pthread_create");
    usleep(100 * 1000); /* parked in its read */
    CHECK(close(p[0]) == 0 && close(p[1]) == 0, "close: %s", strerror(errno));
    void *r;
    pthread_join(th, &r); /* the watchdog ends a reader never woken */
    CHECK((intptr_t)r <= 0, "the reader read %ld", (long)(intptr_t)r);
    CHECK(fcntl(p[0], F_GETFD) < 0 && errno == EBADF, "close left the pipe open");
}

static void *run_case(void *fn)
{
    ((void (*)(void))fn)();
    return NULL;
}

/* In a thread of a forked child: the child's status says whether it crashed. */
static void in_child(void (*fn)(void))
{
    fflush(NULL);
    pid_t c = fork();
    if (c == 0) {
        pthread_t th;
        if (pthread_create(&th, NULL, run_case, (void *)fn) != 0) _exit(4);
        pthread_join(th, NULL);
        fflush(NULL);
        _exit(atomic_load(&st_failures) ? 1 : 0);
    }
    int st = 0;
    CHECK(c > 0 && waitpid(c, &st, 0) == c, "fork/waitpid: %s", strerror(errno));
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %s %d", WIFSIGNALED(st) ? "killed by signal" : "exited",
          WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

static void t_gettid(void) { st_phase = "gettid"; in_child(case_gettid); }
static void t_tgkill(void) { st_phase = "tgkill"; in_child(case_tgkill); }
static void t_close_range(void) { st_phase = "close_range"; in_child(case_close_range); }
static void t_close(void) { st_phase = "close"; in_child(case_close); }

int main(void)
{
    st_watchdog(60);
    static const struct st_test tests[] = {
        {"gettid", t_gettid},
        {"tgkill", t_tgkill},
        {"close_range", t_close_range},
        {"close", t_close},
    };
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    long f = atomic_load(&st_failures);
    printf("own_wrappers: %ld checks, %ld failures\n", atomic_load(&st_checks), f);
    return f ? 1 : 0;
}
