/* shim_test.h: the few things every t/shim program shares.
 *
 * The programs in t/shim/ are deliberately ordinary: plain C11 (or C++20) and
 * pthreads, no netpoll header. They judge libnetpoll-preload.so by passing
 * unchanged with and without it. Each check prints nothing when it passes and
 * one line when it fails; each program ends with "<name>: N checks, M failed"
 * and exits 0 only when M is 0. A watchdog ends any program that hangs. */
#ifndef SHIM_TEST_H
#define SHIM_TEST_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

static atomic_long st_checks, st_failures;
static const char *volatile st_phase = "start";   /* what the watchdog names if it fires */

/* Record one check; print it only when it fails (at most 50 failure lines). */
static inline void st_check(int ok, const char *file, int line, const char *fmt, ...)
{
    atomic_fetch_add(&st_checks, 1);
    if (ok) return;
    if (atomic_fetch_add(&st_failures, 1) >= 50) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "FAILED %s:%d: %s\n", file, line, msg);
}
#define CHECK(cond, ...) st_check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

static inline void st_watchdog_fired(int sig)
{
    (void)sig;
    char msg[256];
    int n = snprintf(msg, sizeof msg, "watchdog: still running after the time limit, phase: %s\n",
                     st_phase);
    if (n > 0) (void)!write(2, msg, (size_t)n);
    _exit(3);
}

/* Arm a watchdog: the process exits 3 after `seconds` whatever it is doing. */
static inline void st_watchdog(unsigned seconds)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = st_watchdog_fired;
    sigaction(SIGALRM, &sa, NULL);
    alarm(seconds);
}

static inline int64_t st_now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
static inline int64_t st_mono_ns(void) { return st_now_ns(CLOCK_MONOTONIC); }
static inline double st_ms(int64_t ns) { return (double)ns / 1e6; }
static inline long st_mono_ms(void) { return (long)(st_mono_ns() / 1000000); }

/* A start line: threads wait at it (st_gate_wait) until the starter has
 * seen n of them there and lets them all go at once (st_gate_open), so
 * their calls overlap.  Reset it before starting the next group. */
struct st_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int go, ready;
};
#define ST_GATE_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0}
static inline void st_gate_reset(struct st_gate *g) { g->go = g->ready = 0; }
static inline void st_gate_wait(struct st_gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->ready++;
    pthread_cond_broadcast(&g->cv);
    while (!g->go) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}
static inline void st_gate_open(struct st_gate *g, int n)
{
    pthread_mutex_lock(&g->mu);
    while (g->ready < n) pthread_cond_wait(&g->cv, &g->mu);
    g->go = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* A program's cases, run in order: "ok NAME (T ms)" or "FAIL NAME (T ms)"
 * a line each. */
struct st_test {
    const char *name;
    void (*fn)(void);
};
static inline void st_run_tests(const struct st_test *t, size_t n)
{
    const char *only = getenv("ST_ONLY"); /* one case by name, when chasing it */
    for (size_t i = 0; i < n; i++) {
        if (only && *only && strcmp(only, t[i].name) != 0) continue;
        long before = atomic_load(&st_failures);
        int64_t t0 = st_mono_ns();
        t[i].fn();
        printf("%s %s (%.0f ms)\n", atomic_load(&st_failures) == before ? "ok" : "FAIL", t[i].name,
               st_ms(st_mono_ns() - t0));
    }
}

/* An absolute timespec `ms` from now on clock `clk`. */
static inline struct timespec st_deadline(clockid_t clk, long ms)
{
    int64_t t = st_now_ns(clk) + (int64_t)ms * 1000000;
    struct timespec ts = {.tv_sec = t / 1000000000, .tv_nsec = t % 1000000000};
    return ts;
}

/* The "Threads:" line of /proc/self/status: how many OS threads (tasks)
 * the process has right now; -1 if it cannot be read. */
static inline int st_os_threads(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    fclose(f);
    return n;
}

#include "os_tid.h"

static inline void *st_nothing(void *arg) { return arg; }

/* Makes and joins one thread.  The shim starts its workers beyond the
 * first (and its monitor) with a program's second thread: OS thread
 * counts taken after this see them all. */
static inline void st_threads_up(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, st_nothing, NULL) == 0) pthread_join(t, NULL);
}

/* Whether the preload shim runs this program: preloaded, and not asked to
 * step aside (NP_SHIM=0 passes every call straight to glibc). */
static inline int st_under_shim(void)
{
    const char *pre = getenv("LD_PRELOAD"), *off = getenv("NP_SHIM");
    return pre && strstr(pre, "libnetpoll-preload") && !(off && strcmp(off, "0") == 0);
}

/* Bring up lo, which a new network namespace has down: 0, or -1 and errno.
 * (The caller includes <net/if.h> and <sys/ioctl.h>.) */
#ifdef IFF_UP
static inline int st_lo_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int ok = s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr)) == 0;
    int e = errno;
    if (s >= 0) close(s);
    errno = e;
    return ok ? 0 : -1;
}
#endif

/* Raise the soft open-file limit to the hard limit (a plain run of N
 * connections needs 2N descriptors). */
static inline void st_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* The program's verdict line and exit status. */
static inline int st_finish(const char *name)
{
    long c = atomic_load(&st_checks), f = atomic_load(&st_failures);
    printf("%s: %ld checks, %ld failed\n", name, c, f);
    fflush(stdout);
    return f ? 1 : 0;
}

/* xorshift64*: a per-thread generator, so runs are reproducible per seed. */
static inline uint64_t st_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* FNV-1a, 64 bit, continued from `h`. */
static inline uint64_t st_fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}
#define ST_FNV_INIT 0xcbf29ce484222325ULL

/* A TCP listener on 127.0.0.1 with a kernel-chosen port; returns the fd and
 * stores the port, or exits the program. */
static inline int st_listen(int backlog, uint16_t *port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int one = 1;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, backlog) ||
        getsockname(s, (struct sockaddr *)&a, &len)) {
        perror("listen on 127.0.0.1");
        exit(2);
    }
    *port = ntohs(a.sin_port);
    return s;
}

/* A blocking TCP connection to 127.0.0.1:port; -1 with errno on failure. */
static inline int st_connect(uint16_t port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return -1;
    for (int tries = 0;; tries++) {
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) break;
        /* a full accept queue can refuse a burst of connects: retry a few times */
        if ((errno != EAGAIN && errno != ECONNREFUSED && errno != EINTR) || tries == 50) {
            int e = errno;
            close(s);
            errno = e;
            return -1;
        }
        close(s);
        usleep(20000);
        if ((s = socket(AF_INET, SOCK_STREAM, 0)) < 0) return -1;
    }
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s;
}

/* write(2) until all n bytes are out: 0, or -1 with errno. */
static inline int st_write_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* read(2) until n bytes are in: n, fewer at end of file, or -1 with errno. */
static inline ssize_t st_read_full(int fd, void *p, size_t n)
{
    char *b = p;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* A thread, or the program ends (exit 2): the tests have no use for fewer. */
static inline pthread_t st_spawn(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    int e = pthread_create(&t, NULL, fn, arg);
    if (e) {
        fprintf(stderr, "pthread_create: %s\n", strerror(e));
        exit(2);
    }
    return t;
}

/* nanosleep for ms milliseconds, all of them even across signals. */
static inline void st_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Poll (1 ms naps) until *v >= want or ms milliseconds pass; whether it got there. */
static inline int st_wait_for(atomic_int *v, int want, int ms)
{
    int64_t end = st_mono_ns() + (int64_t)ms * 1000000;
    while (atomic_load(v) < want && st_mono_ns() < end) st_sleep_ms(1);
    return atomic_load(v) >= want;
}

/* waitpid for pid across EINTR: its status, or -1. */
static inline int st_wait_status(pid_t pid)
{
    int st = -1;
    pid_t r;
    while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {}
    return r == pid ? st : -1;
}

/* rounds fresh processes, each this program run again with the argument
 * "round" (so each has its first calls again): 0 once every one exits 0,
 * else 1, with the round and its status said. */
static inline int st_exec_rounds(const char *argv0, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        pid_t p = fork();
        if (p == 0) {
            execl("/proc/self/exe", argv0, "round", (char *)NULL);
            _exit(127);
        }
        int st = st_wait_status(p);
        if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            printf("round %d: status %#x\n", i, st);
            return 1;
        }
    }
    return 0;
}

/* The child's wait status, or, if it has not ended within ms, its status
 * after SIGKILL (a failure then leaves no process behind). */
static inline int st_wait_status_within(pid_t pid, long ms)
{
    long end = st_mono_ms() + ms;
    int st = -1;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return st;
        if (r < 0 && errno != EINTR) return -1;
        if (st_mono_ms() >= end) break;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    return st_wait_status(pid);
}

/* A wait status as text, for messages. */
static inline const char *st_status_str(int st)
{
    static __thread char b[64];
    if (WIFEXITED(st)) snprintf(b, sizeof b, "exit %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) snprintf(b, sizeof b, "signal %d", WTERMSIG(st));
    else snprintf(b, sizeof b, "status %#x", st);
    return b;
}

/* One read(2) of a byte, timed: st_timed_read(&r) in a thread of its own
 * or inline; n, errno and the time it took land in r, then done. */
struct st_timed {
    int fd;
    ssize_t n;
    int err;
    int64_t ns;
    atomic_int done;
};
static inline void *st_timed_read(void *arg)
{
    struct st_timed *r = arg;
    char c;
    int64_t t = st_mono_ns();
    errno = 0;
    r->n = read(r->fd, &c, 1);
    r->err = errno;
    r->ns = st_mono_ns() - t;
    atomic_store(&r->done, 1);
    return NULL;
}

#endif
