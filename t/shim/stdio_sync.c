/* stdio_sync: the blocking calls and synchronisation primitives a legacy
 * threaded program relies on, each checked for its result, its errno and
 * (where it waits) its timing. Sections run one after another; each prints
 * one line, "ok <section>: <what was verified>" or "FAIL <section>".
 *
 * Under libnetpoll-preload.so every thread below is a green thread and every
 * wait parks it; the program must not be able to tell. Timing bounds are
 * generous above (machines are shared) and tight below (a wait must never
 * return early). */
#include "shim_test.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <sys/select.h>
#include <sys/time.h>

/* ------------------------------------------------------------ framework -- */

static char note_buf[1024];
static void note(const char *fmt, ...)
{
    size_t l = strlen(note_buf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(note_buf + l, sizeof note_buf - l, fmt, ap);
    va_end(ap);
}

static int sections_failed;
static void section(const char *name, void (*fn)(void))
{
    long before = atomic_load(&st_failures);
    note_buf[0] = 0;
    st_phase = name;
    fn();
    if (atomic_load(&st_failures) == before) {
        printf("ok %s: %s\n", name, note_buf);
    } else {
        printf("FAIL %s: %s\n", name, note_buf);
        sections_failed++;
    }
}

/* Check that a wait of `want_ms` took at least that long (less `early_ms`,
 * for clocks that tick differently) and at most `want_ms + 2000`. */
static void check_elapsed(const char *what, int64_t elapsed_ns, long want_ms, long early_ms)
{
    double ms = st_ms(elapsed_ns);
    CHECK(ms >= (double)(want_ms - early_ms) && ms <= (double)want_ms + 2000,
          "%s took %.1f ms, want %ld ms", what, ms, want_ms);
}

static void pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
        perror("socketpair");
        exit(2);
    }
}

/* A thread that writes one byte to fd after `ms` milliseconds. */
struct late_write {
    int fd, ms;
};
static void *late_writer(void *arg)
{
    struct late_write *lw = arg;
    usleep((useconds_t)lw->ms * 1000);
    if (write(lw->fd, "x", 1) != 1) CHECK(0, "late write: %s", strerror(errno));
    return NULL;
}

/* ------------------------------------------------- pthread_getattr_np -- */

/* Runs first: glibc reuses a cached stack of up to 4x the requested size for
 * a new thread, so the sizes here increase and no thread has exited yet. */
struct stack_req {
    size_t size;       /* 0: default attributes */
    size_t got;
    int local_inside;
};
static void *report_stack(void *arg)
{
    struct stack_req *r = arg;
    pthread_attr_t a;
    void *addr = NULL;
    int local = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstack(&a, &addr, &r->got);
        pthread_attr_destroy(&a);
    }
    r->local_inside = (char *)&local >= (char *)addr && (char *)&local < (char *)addr + r->got;
    return NULL;
}
static size_t default_stack_size(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_STACK, &rl) || rl.rlim_cur == RLIM_INFINITY) return 0;
    return (size_t)rl.rlim_cur;
}
static void test_getattr(void)
{
    struct stack_req reqs[] = {{256 << 10, 0, 0}, {1 << 20, 0, 0}, {(2 << 20) + (64 << 10), 0, 0},
                               {0, 0, 0}};
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        pthread_attr_t a;
        pthread_attr_init(&a);
        if (reqs[i].size) pthread_attr_setstacksize(&a, reqs[i].size);
        pthread_t t;
        CHECK(pthread_create(&t, &a, report_stack, &reqs[i]) == 0, "pthread_create");
        pthread_join(t, NULL);
        pthread_attr_destroy(&a);
        size_t want = reqs[i].size ? reqs[i].size : default_stack_size();
        if (want)
            CHECK(reqs[i].got == want, "stack of a thread asked for %zu bytes reports %zu",
                  reqs[i].size ? reqs[i].size : want, reqs[i].got);
        CHECK(reqs[i].local_inside, "a local of the thread is outside its reported stack");
        note("%s%zu KiB", i ? ", " : "stack sizes reported as requested: ", reqs[i].got >> 10);
    }
    note(" (last: default = RLIMIT_STACK); locals inside the reported stack");
}

/* ------------------------------------------------------------- stdio -- */

enum { STDIO_LINES = 1000, PINGS = 200 };

static void make_line(char *buf, size_t cap, int i)
{
    int pad = (i * 37) % 180;
    snprintf(buf, cap, "line %d %.*s end\n", i, pad,
             "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789"
             "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789"
             "abcdefghijklmnopqrstuvwxyz0123456789");
}

struct stdio_end {
    int fd;
    int pingpong;   /* then also PINGS request/answer lines after the stream */
    long lines;
};

static void *stdio_writer(void *arg)
{
    struct stdio_end *e = arg;
    FILE *w = fdopen(e->fd, e->pingpong ? "r+" : "w");
    if (!w) {
        CHECK(0, "fdopen for writing: %s", strerror(errno));
        return NULL;
    }
    char line[256];
    for (int i = 0; i < STDIO_LINES; i++) {
        make_line(line, sizeof line, i);
        if (fputs(line, w) < 0) CHECK(0, "fputs: %s", strerror(errno));
        if (i % 7 == 0) fflush(w);
        e->lines++;
    }
    fprintf(w, "end of stream\n");
    fflush(w);
    for (int i = 0; e->pingpong && i < PINGS; i++) {
        fprintf(w, "ping %d\n", i);
        fflush(w);
        char ans[64];
        CHECK(fgets(ans, sizeof ans, w) != NULL, "fgets of the answer %d", i);
        int got = -1;
        CHECK(sscanf(ans, "pong %d", &got) == 1 && got == i, "answer %d was %s", i, ans);
        fseek(w, 0, SEEK_CUR);   /* no-op on a socket, keeps r+ stdio rules */
    }
    fclose(w);
    return NULL;
}

static void *stdio_reader(void *arg)
{
    struct stdio_end *e = arg;
    FILE *r = fdopen(e->fd, e->pingpong ? "r+" : "r");
    if (!r) {
        CHECK(0, "fdopen for reading: %s", strerror(errno));
        return NULL;
    }
    char line[256], want[256];
    for (int i = 0; i < STDIO_LINES; i++) {
        if (!fgets(line, sizeof line, r)) {
            CHECK(0, "fgets: stream ended at line %d", i);
            break;
        }
        make_line(want, sizeof want, i);
        CHECK(strcmp(line, want) == 0, "line %d differs", i);
        e->lines++;
    }
    CHECK(fgets(line, sizeof line, r) && strcmp(line, "end of stream\n") == 0, "no end line");
    for (int i = 0; e->pingpong && i < PINGS; i++) {
        int got = -1;
        CHECK(fgets(line, sizeof line, r) && sscanf(line, "ping %d", &got) == 1 && got == i,
              "ping %d missing", i);
        fseek(r, 0, SEEK_CUR);
        fprintf(r, "pong %d\n", got);
        fflush(r);
    }
    CHECK(fgets(line, sizeof line, r) == NULL && feof(r), "no end of file after the stream");
    fclose(r);
    return NULL;
}

static void stdio_over(int rfd, int wfd, int pingpong, const char *what)
{
    struct stdio_end w = {wfd, pingpong, 0}, r = {rfd, pingpong, 0};
    pthread_t tr = st_spawn(stdio_reader, &r), tw = st_spawn(stdio_writer, &w);
    pthread_join(tw, NULL);
    pthread_join(tr, NULL);
    CHECK(w.lines == STDIO_LINES && r.lines == STDIO_LINES, "%s: %ld lines written, %ld read",
          what, w.lines, r.lines);
}

static void test_stdio(void)
{
    int sv[2], pp[2];
    pair(sv);
    stdio_over(sv[0], sv[1], 1, "socketpair");
    if (pipe(pp)) {
        perror("pipe");
        exit(2);
    }
    stdio_over(pp[0], pp[1], 0, "pipe");
    note("fdopen+fgets/fputs/fprintf between two threads: %d lines (~%d KiB) each over a "
         "socketpair (plus %d line ping-pongs) and a pipe",
         STDIO_LINES, STDIO_LINES * 100 / 1024, PINGS);
}

/* ------------------------------------------------ poll, select, ppoll -- */

static void test_poll(void)
{
    int sv[4][2];
    for (int i = 0; i < 4; i++) pair(sv[i]);

    struct pollfd one = {.fd = sv[0][0], .events = POLLIN};
    int64_t t = st_mono_ns();
    int n = poll(&one, 1, 150);
    check_elapsed("poll of one idle fd, 150 ms", st_mono_ns() - t, 150, 1);
    CHECK(n == 0 && one.revents == 0, "poll of one idle fd returned %d", n);

    t = st_mono_ns();
    n = poll(NULL, 0, 100);
    check_elapsed("poll(NULL, 0, 100)", st_mono_ns() - t, 100, 1);
    CHECK(n == 0, "poll(NULL, 0, 100) returned %d", n);

    struct pollfd fds[4];
    for (int i = 0; i < 4; i++) fds[i] = (struct pollfd){.fd = sv[i][0], .events = POLLIN};
    t = st_mono_ns();
    n = poll(fds, 4, 120);
    check_elapsed("poll of four idle fds, 120 ms", st_mono_ns() - t, 120, 1);
    CHECK(n == 0, "poll of four idle fds returned %d", n);

    struct late_write lw = {sv[2][1], 100};
    pthread_t w = st_spawn(late_writer, &lw);
    t = st_mono_ns();
    n = poll(fds, 4, 5000);
    check_elapsed("poll woken by a write after 100 ms", st_mono_ns() - t, 100, 5);
    pthread_join(w, NULL);
    CHECK(n == 1 && fds[2].revents == POLLIN && !fds[0].revents && !fds[1].revents &&
              !fds[3].revents,
          "poll of four fds, one written: returned %d, revents %x %x %x %x", n, fds[0].revents,
          fds[1].revents, fds[2].revents, fds[3].revents);

    struct pollfd out = {.fd = sv[1][0], .events = POLLOUT};
    t = st_mono_ns();
    n = poll(&out, 1, 5000);
    CHECK(n == 1 && out.revents == POLLOUT && st_mono_ns() - t < 1000000000LL,
          "poll for POLLOUT on a writable socket returned %d (%x)", n, out.revents);

    close(sv[3][1]);   /* hang-up: readable at end of file */
    fds[3].revents = 0;
    n = poll(&fds[3], 1, 5000);
    CHECK(n == 1 && (fds[3].revents & (POLLIN | POLLHUP)), "poll after the peer closed: %d (%x)",
          n, fds[3].revents);

    /* select */
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(sv[0][0], &rs);
    struct timeval tv = {0, 150000};
    t = st_mono_ns();
    n = select(sv[0][0] + 1, &rs, NULL, NULL, &tv);
    check_elapsed("select on an idle fd, 150 ms", st_mono_ns() - t, 150, 1);
    CHECK(n == 0 && !FD_ISSET(sv[0][0], &rs), "select on an idle fd returned %d", n);

    lw = (struct late_write){sv[0][1], 100};
    w = st_spawn(late_writer, &lw);
    FD_ZERO(&rs);
    FD_SET(sv[0][0], &rs);
    FD_SET(sv[1][0], &rs);
    int maxfd = sv[0][0] > sv[1][0] ? sv[0][0] : sv[1][0];
    tv = (struct timeval){5, 0};
    t = st_mono_ns();
    n = select(maxfd + 1, &rs, NULL, NULL, &tv);
    check_elapsed("select woken by a write after 100 ms", st_mono_ns() - t, 100, 5);
    pthread_join(w, NULL);
    CHECK(n == 1 && FD_ISSET(sv[0][0], &rs) && !FD_ISSET(sv[1][0], &rs),
          "select of two fds, one written, returned %d", n);
    char c;
    CHECK(read(sv[0][0], &c, 1) == 1, "read after select");
    CHECK(read(sv[2][0], &c, 1) == 1, "read after poll");

    tv = (struct timeval){0, 100000};
    t = st_mono_ns();
    n = select(0, NULL, NULL, NULL, &tv);
    check_elapsed("select(0, NULL, NULL, NULL, 100 ms)", st_mono_ns() - t, 100, 1);
    CHECK(n == 0, "select as a sleep returned %d", n);

    /* ppoll */
    struct timespec ts = {0, 150000000};
    one = (struct pollfd){.fd = sv[0][0], .events = POLLIN};
    t = st_mono_ns();
    n = ppoll(&one, 1, &ts, NULL);
    check_elapsed("ppoll of one idle fd, 150 ms", st_mono_ns() - t, 150, 1);
    CHECK(n == 0, "ppoll of an idle fd returned %d", n);
    lw = (struct late_write){sv[1][1], 100};
    w = st_spawn(late_writer, &lw);
    sigset_t mask;
    sigemptyset(&mask);
    ts = (struct timespec){5, 0};
    one = (struct pollfd){.fd = sv[1][0], .events = POLLIN};
    t = st_mono_ns();
    n = ppoll(&one, 1, &ts, &mask);
    check_elapsed("ppoll woken by a write after 100 ms", st_mono_ns() - t, 100, 5);
    pthread_join(w, NULL);
    CHECK(n == 1 && one.revents == POLLIN, "ppoll with a sigmask returned %d (%x)", n,
          one.revents);

    for (int i = 0; i < 4; i++) {
        close(sv[i][0]);
        if (i != 3) close(sv[i][1]);
    }
    note("poll (1 and 4 fds, timeouts, wakeups, POLLOUT, hang-up), select (timeout, wakeup, "
         "as a sleep), ppoll (timeout, wakeup with a sigmask)");
}

/* ------------------------------------------------------------- sleeps -- */

static void test_sleep_one(void)
{
    int64_t t = st_mono_ns();
    CHECK(sleep(1) == 0, "sleep(1) returned early");
    check_elapsed("sleep(1)", st_mono_ns() - t, 1000, 0);

    t = st_mono_ns();
    CHECK(usleep(100000) == 0, "usleep: %s", strerror(errno));
    check_elapsed("usleep(100000)", st_mono_ns() - t, 100, 0);

    struct timespec rel = {0, 100000000}, rem = {9, 9};
    t = st_mono_ns();
    CHECK(nanosleep(&rel, &rem) == 0, "nanosleep: %s", strerror(errno));
    check_elapsed("nanosleep 100 ms", st_mono_ns() - t, 100, 0);

    t = st_mono_ns();
    int e = clock_nanosleep(CLOCK_MONOTONIC, 0, &rel, NULL);
    CHECK(e == 0, "clock_nanosleep relative: %s", strerror(e));
    check_elapsed("clock_nanosleep CLOCK_MONOTONIC relative 100 ms", st_mono_ns() - t, 100, 0);

    t = st_mono_ns();
    e = clock_nanosleep(CLOCK_REALTIME, 0, &rel, NULL);
    CHECK(e == 0, "clock_nanosleep realtime relative: %s", strerror(e));
    check_elapsed("clock_nanosleep CLOCK_REALTIME relative 100 ms", st_mono_ns() - t, 100, 1);

    t = st_mono_ns();
    struct timespec until = st_deadline(CLOCK_MONOTONIC, 120);
    e = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
    CHECK(e == 0, "clock_nanosleep MONOTONIC ABSTIME: %s", strerror(e));
    CHECK(st_mono_ns() >= (int64_t)until.tv_sec * 1000000000 + until.tv_nsec,
          "clock_nanosleep TIMER_ABSTIME on CLOCK_MONOTONIC woke before its deadline");
    check_elapsed("clock_nanosleep MONOTONIC ABSTIME +120 ms", st_mono_ns() - t, 120, 1);

    t = st_mono_ns();
    until = st_deadline(CLOCK_REALTIME, 120);
    e = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &until, NULL);
    CHECK(e == 0, "clock_nanosleep REALTIME ABSTIME: %s", strerror(e));
    CHECK(st_now_ns(CLOCK_REALTIME) >= (int64_t)until.tv_sec * 1000000000 + until.tv_nsec,
          "clock_nanosleep TIMER_ABSTIME on CLOCK_REALTIME woke before its deadline");
    check_elapsed("clock_nanosleep REALTIME ABSTIME +120 ms", st_mono_ns() - t, 120, 2);

    until = st_deadline(CLOCK_MONOTONIC, -50);   /* already past: returns at once */
    t = st_mono_ns();
    e = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
    CHECK(e == 0 && st_mono_ns() - t < 500000000, "clock_nanosleep to a past deadline: %d", e);

    struct timespec bad = {0, 1000000000};
    errno = 0;
    CHECK(nanosleep(&bad, NULL) == -1 && errno == EINVAL, "nanosleep tv_nsec=1e9: errno %d",
          errno);
    CHECK(clock_nanosleep(CLOCK_MONOTONIC, 0, &bad, NULL) == EINVAL,
          "clock_nanosleep tv_nsec=1e9 is not EINVAL");
}

static atomic_int sleepers_done;
static void *sleeper(void *arg)
{
    (void)arg;
    struct timespec rel = {0, 300000000};
    int64_t t = st_mono_ns();
    nanosleep(&rel, NULL);
    check_elapsed("nanosleep 300 ms among 20 sleeping threads", st_mono_ns() - t, 300, 0);
    atomic_fetch_add(&sleepers_done, 1);
    return NULL;
}

static void test_sleep(void)
{
    test_sleep_one();
    /* 20 threads sleep 300 ms at once: together, not one after another */
    pthread_t t[20];
    int64_t t0 = st_mono_ns();
    for (int i = 0; i < 20; i++) t[i] = st_spawn(sleeper, NULL);
    for (int i = 0; i < 20; i++) pthread_join(t[i], NULL);
    int64_t all = st_mono_ns() - t0;
    CHECK(atomic_load(&sleepers_done) == 20 && all < 2000000000LL,
          "20 concurrent 300 ms sleeps took %.0f ms", st_ms(all));
    note("sleep, usleep, nanosleep, clock_nanosleep (relative; TIMER_ABSTIME on MONOTONIC and "
         "REALTIME; past deadline; EINVAL) never early; 20 threads' 300 ms sleeps overlap "
         "(%.0f ms)",
         st_ms(all));
}

/* ----------------------------------------------------------- condvars -- */

static pthread_mutex_t cv_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_c = PTHREAD_COND_INITIALIZER;
static int cv_tokens, cv_gen;
static atomic_int cv_waiting, cv_woke;

static void *token_waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&cv_m);
    atomic_fetch_add(&cv_waiting, 1);
    while (cv_tokens == 0) pthread_cond_wait(&cv_c, &cv_m);
    cv_tokens--;
    atomic_fetch_add(&cv_woke, 1);
    pthread_mutex_unlock(&cv_m);
    return NULL;
}

static void *gen_waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&cv_m);
    int my = cv_gen;
    atomic_fetch_add(&cv_waiting, 1);
    while (cv_gen == my) pthread_cond_wait(&cv_c, &cv_m);
    atomic_fetch_add(&cv_woke, 1);
    pthread_mutex_unlock(&cv_m);
    return NULL;
}

/* waiting counts a thread before it waits; under the mutex, all counted
 * threads are inside pthread_cond_wait */
static int all_waiting(int n)
{
    if (!st_wait_for(&cv_waiting, n, 5000)) return 0;
    pthread_mutex_lock(&cv_m);
    pthread_mutex_unlock(&cv_m);
    return 1;
}

enum { QCAP = 16, QITEMS = 2000 };
static int q_buf[QCAP], q_head, q_len;
static long q_sum;
static pthread_cond_t q_nonempty = PTHREAD_COND_INITIALIZER, q_nonfull = PTHREAD_COND_INITIALIZER;

static void *producer(void *arg)
{
    int base = (int)(intptr_t)arg;
    for (int i = 0; i < QITEMS / 4; i++) {
        pthread_mutex_lock(&cv_m);
        while (q_len == QCAP) pthread_cond_wait(&q_nonfull, &cv_m);
        q_buf[(q_head + q_len++) % QCAP] = base + i;
        pthread_cond_signal(&q_nonempty);
        pthread_mutex_unlock(&cv_m);
    }
    return NULL;
}
static void *consumer(void *arg)
{
    (void)arg;
    for (int i = 0; i < QITEMS / 4; i++) {
        pthread_mutex_lock(&cv_m);
        while (q_len == 0) pthread_cond_wait(&q_nonempty, &cv_m);
        q_sum += q_buf[q_head];
        q_head = (q_head + 1) % QCAP;
        q_len--;
        pthread_cond_signal(&q_nonfull);
        pthread_mutex_unlock(&cv_m);
    }
    return NULL;
}

static void test_condvar(void)
{
    /* a bounded queue: 4 producers, 4 consumers, 2000 items */
    pthread_t pc[8];
    for (int i = 0; i < 4; i++) pc[i] = st_spawn(producer, (void *)(intptr_t)(i * 100000));
    for (int i = 4; i < 8; i++) pc[i] = st_spawn(consumer, NULL);
    for (int i = 0; i < 8; i++) pthread_join(pc[i], NULL);
    long want = 0;
    for (int p = 0; p < 4; p++)
        for (int i = 0; i < QITEMS / 4; i++) want += p * 100000 + i;
    CHECK(q_sum == want && q_len == 0, "queue: sum %ld, want %ld", q_sum, want);

    /* timedwait expiring, on CLOCK_REALTIME (the default) */
    pthread_mutex_lock(&cv_m);
    int64_t t = st_mono_ns();
    struct timespec dl = st_deadline(CLOCK_REALTIME, 150);
    int e = pthread_cond_timedwait(&cv_c, &cv_m, &dl);
    while (e == 0) e = pthread_cond_timedwait(&cv_c, &cv_m, &dl);   /* spurious wakeups */
    check_elapsed("pthread_cond_timedwait (CLOCK_REALTIME) 150 ms", st_mono_ns() - t, 150, 2);
    CHECK(e == ETIMEDOUT, "pthread_cond_timedwait returned %d, want ETIMEDOUT", e);
    pthread_mutex_unlock(&cv_m);

    /* timedwait on a condvar whose clock is CLOCK_MONOTONIC */
    pthread_condattr_t ca;
    pthread_cond_t mc;
    clockid_t clk = -1;
    pthread_condattr_init(&ca);
    CHECK(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0, "setclock");
    pthread_condattr_getclock(&ca, &clk);
    CHECK(clk == CLOCK_MONOTONIC, "condattr clock reads back %d", (int)clk);
    pthread_cond_init(&mc, &ca);
    pthread_mutex_lock(&cv_m);
    t = st_mono_ns();
    dl = st_deadline(CLOCK_MONOTONIC, 150);
    e = pthread_cond_timedwait(&mc, &cv_m, &dl);
    while (e == 0) e = pthread_cond_timedwait(&mc, &cv_m, &dl);
    check_elapsed("pthread_cond_timedwait (CLOCK_MONOTONIC) 150 ms", st_mono_ns() - t, 150, 0);
    CHECK(e == ETIMEDOUT, "monotonic pthread_cond_timedwait returned %d", e);
    CHECK(st_mono_ns() >= (int64_t)dl.tv_sec * 1000000000 + dl.tv_nsec,
          "monotonic timedwait returned before its deadline");
    pthread_mutex_unlock(&cv_m);
    pthread_cond_destroy(&mc);
    pthread_condattr_destroy(&ca);

    /* signal: 50 waiters, 50 signals, each with one token */
    pthread_t w[50];
    atomic_store(&cv_waiting, 0);
    atomic_store(&cv_woke, 0);
    for (int i = 0; i < 50; i++) w[i] = st_spawn(token_waiter, NULL);
    CHECK(all_waiting(50), "only %d of 50 waiters waiting", atomic_load(&cv_waiting));
    for (int i = 0; i < 50; i++) {
        pthread_mutex_lock(&cv_m);
        cv_tokens++;
        pthread_cond_signal(&cv_c);
        pthread_mutex_unlock(&cv_m);
    }
    CHECK(st_wait_for(&cv_woke, 50, 5000), "pthread_cond_signal x50: %d of 50 waiters woke",
          atomic_load(&cv_woke));
    for (int i = 0; i < 50; i++) pthread_join(w[i], NULL);

    /* broadcast: 50 waiters, one broadcast */
    atomic_store(&cv_waiting, 0);
    atomic_store(&cv_woke, 0);
    for (int i = 0; i < 50; i++) w[i] = st_spawn(gen_waiter, NULL);
    CHECK(all_waiting(50), "only %d of 50 waiters waiting", atomic_load(&cv_waiting));
    pthread_mutex_lock(&cv_m);
    cv_gen++;
    pthread_cond_broadcast(&cv_c);
    pthread_mutex_unlock(&cv_m);
    CHECK(st_wait_for(&cv_woke, 50, 5000), "pthread_cond_broadcast: %d of 50 waiters woke",
          atomic_load(&cv_woke));
    for (int i = 0; i < 50; i++) pthread_join(w[i], NULL);
    note("bounded queue (4+4 threads, %d items), timedwait ETIMEDOUT on CLOCK_REALTIME and on a "
         "CLOCK_MONOTONIC condattr, signal x50 and broadcast to 50 waiters",
         QITEMS);
}

/* --------------------------------------------------------- semaphores -- */

static sem_t sem_a, sem_b;
static void *sem_poster(void *arg)
{
    usleep((useconds_t)(intptr_t)arg * 1000);
    sem_post(&sem_a);
    return NULL;
}
static void *sem_ponger(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        sem_wait(&sem_a);
        sem_post(&sem_b);
    }
    return NULL;
}

static void test_semaphore(void)
{
    sem_init(&sem_a, 0, 0);
    sem_init(&sem_b, 0, 0);
    pthread_t t = st_spawn(sem_poster, (void *)(intptr_t)100);
    int64_t t0 = st_mono_ns();
    CHECK(sem_wait(&sem_a) == 0, "sem_wait: %s", strerror(errno));
    check_elapsed("sem_wait posted after 100 ms", st_mono_ns() - t0, 100, 5);
    pthread_join(t, NULL);

    t0 = st_mono_ns();
    struct timespec dl = st_deadline(CLOCK_REALTIME, 150);
    errno = 0;
    int r = sem_timedwait(&sem_a, &dl);
    check_elapsed("sem_timedwait 150 ms", st_mono_ns() - t0, 150, 2);
    CHECK(r == -1 && errno == ETIMEDOUT, "sem_timedwait: %d errno %d, want -1 ETIMEDOUT", r,
          errno);

    errno = 0;
    r = sem_trywait(&sem_a);
    CHECK(r == -1 && errno == EAGAIN, "sem_trywait on 0: %d errno %d, want -1 EAGAIN", r, errno);

    sem_post(&sem_a);
    int v = -1;
    sem_getvalue(&sem_a, &v);
    CHECK(v == 1 && sem_trywait(&sem_a) == 0, "sem_trywait on 1 (value %d)", v);

    t = st_spawn(sem_ponger, NULL);
    int ok = 1;
    for (int i = 0; i < 1000; i++) {
        sem_post(&sem_a);
        if (sem_wait(&sem_b)) ok = 0;
    }
    pthread_join(t, NULL);
    CHECK(ok, "sem ping-pong");
    sem_destroy(&sem_a);
    sem_destroy(&sem_b);
    note("sem_wait woken by a post, sem_timedwait ETIMEDOUT, sem_trywait EAGAIN and success, "
         "1000 ping-pongs between two threads");
}

/* ------------------------------------------------------------ rwlocks -- */

static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static long rw_a, rw_b;
static atomic_int rw_bad, rw_held, rw_release;

static void *rw_holder(void *arg)
{
    (void)arg;
    pthread_rwlock_rdlock(&rw);
    atomic_store(&rw_held, 1);
    st_wait_for(&rw_release, 1, 5000);
    pthread_rwlock_unlock(&rw);
    return NULL;
}
static void *rw_worker(void *arg)
{
    int writer = (int)(intptr_t)arg;
    for (int i = 0; i < 3000; i++) {
        if (writer) {
            pthread_rwlock_wrlock(&rw);
            rw_a++;
            if (i % 64 == 0) sched_yield();
            rw_b++;
        } else {
            pthread_rwlock_rdlock(&rw);
            if (rw_a != rw_b) atomic_fetch_add(&rw_bad, 1);
        }
        pthread_rwlock_unlock(&rw);
    }
    return NULL;
}

static void test_rwlock(void)
{
    pthread_t h = st_spawn(rw_holder, NULL);
    st_wait_for(&rw_held, 1, 5000);
    CHECK(pthread_rwlock_tryrdlock(&rw) == 0, "a second reader could not share the lock");
    pthread_rwlock_unlock(&rw);
    CHECK(pthread_rwlock_trywrlock(&rw) == EBUSY, "trywrlock while read-held is not EBUSY");
    int64_t t = st_mono_ns();
    struct timespec dl = st_deadline(CLOCK_REALTIME, 100);
    CHECK(pthread_rwlock_timedwrlock(&rw, &dl) == ETIMEDOUT, "timedwrlock is not ETIMEDOUT");
    check_elapsed("pthread_rwlock_timedwrlock 100 ms", st_mono_ns() - t, 100, 2);
    atomic_store(&rw_release, 1);
    pthread_join(h, NULL);

    pthread_t t8[8];
    for (int i = 0; i < 8; i++) t8[i] = st_spawn(rw_worker, (void *)(intptr_t)(i % 2));
    for (int i = 0; i < 8; i++) pthread_join(t8[i], NULL);
    CHECK(rw_a == 4 * 3000 && rw_b == rw_a && atomic_load(&rw_bad) == 0,
          "rwlock: a=%ld b=%ld, %d torn reads", rw_a, rw_b, atomic_load(&rw_bad));
    note("readers share, trywrlock EBUSY, timedwrlock ETIMEDOUT, 4 writers + 4 readers x 3000 "
         "without a torn read");
}

/* ----------------------------------------------------------- barriers -- */

enum { BAR_THREADS = 8, BAR_ROUNDS = 200 };
static pthread_barrier_t bar;
static int bar_slot[BAR_THREADS];
static atomic_int bar_serial[BAR_ROUNDS], bar_bad;

static void *bar_worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    for (int r = 0; r < BAR_ROUNDS; r++) {
        bar_slot[me] = r;
        int e = pthread_barrier_wait(&bar);
        if (e == PTHREAD_BARRIER_SERIAL_THREAD) atomic_fetch_add(&bar_serial[r], 1);
        else if (e) atomic_fetch_add(&bar_bad, 1);
        for (int i = 0; i < BAR_THREADS; i++)
            if (bar_slot[i] != r) atomic_fetch_add(&bar_bad, 1);
        pthread_barrier_wait(&bar);
    }
    return NULL;
}

static void test_barrier(void)
{
    pthread_barrier_init(&bar, NULL, BAR_THREADS);
    pthread_t t[BAR_THREADS];
    for (int i = 0; i < BAR_THREADS; i++) t[i] = st_spawn(bar_worker, (void *)(intptr_t)i);
    for (int i = 0; i < BAR_THREADS; i++) pthread_join(t[i], NULL);
    int serial_ok = 1;
    for (int r = 0; r < BAR_ROUNDS; r++) serial_ok &= atomic_load(&bar_serial[r]) == 1;
    CHECK(serial_ok && atomic_load(&bar_bad) == 0, "barrier: %d bad observations",
          atomic_load(&bar_bad));
    pthread_barrier_destroy(&bar);
    note("%d threads x %d rounds: every round one PTHREAD_BARRIER_SERIAL_THREAD, every thread "
         "sees every write",
         BAR_THREADS, BAR_ROUNDS);
}

/* ------------------------------------------------------- pthread_once -- */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static atomic_int once_runs, once_done, once_bad;
static pthread_barrier_t once_start;

static void once_init(void)
{
    atomic_fetch_add(&once_runs, 1);
    usleep(50000);   /* others must wait for it, not skip it */
    atomic_store(&once_done, 1);
}
static void *once_caller(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&once_start);
    pthread_once(&once, once_init);
    if (!atomic_load(&once_done)) atomic_fetch_add(&once_bad, 1);
    return NULL;
}

static void test_once(void)
{
    pthread_barrier_init(&once_start, NULL, 20);
    pthread_t t[20];
    for (int i = 0; i < 20; i++) t[i] = st_spawn(once_caller, NULL);
    for (int i = 0; i < 20; i++) pthread_join(t[i], NULL);
    CHECK(atomic_load(&once_runs) == 1 && atomic_load(&once_bad) == 0,
          "pthread_once: init ran %d times, %d callers returned before it finished",
          atomic_load(&once_runs), atomic_load(&once_bad));
    pthread_barrier_destroy(&once_start);
    note("20 threads at once: the (sleeping) init ran once and every caller waited for it");
}

/* --------------------------------------------------------------- keys -- */

enum { KEY_THREADS = 16 };
static pthread_key_t key;
static int key_vals[KEY_THREADS];
static atomic_int key_destroyed[KEY_THREADS], key_bad;

static void key_dtor(void *v)
{
    int *p = v;
    if (p < key_vals || p >= key_vals + KEY_THREADS) atomic_fetch_add(&key_bad, 1);
    else atomic_fetch_add(&key_destroyed[p - key_vals], 1);
}
static void *key_user(void *arg)
{
    int me = (int)(intptr_t)arg;
    if (pthread_getspecific(key) != NULL) atomic_fetch_add(&key_bad, 1);
    pthread_setspecific(key, &key_vals[me]);
    for (int i = 0; i < 5; i++) {
        usleep(2000);
        if (pthread_getspecific(key) != &key_vals[me]) atomic_fetch_add(&key_bad, 1);
    }
    if (me % 4 == 3) pthread_exit(NULL);   /* destructors run on pthread_exit too */
    return NULL;
}

static void test_keys(void)
{
    CHECK(pthread_key_create(&key, key_dtor) == 0, "pthread_key_create");
    pthread_t t[KEY_THREADS];
    for (int i = 0; i < KEY_THREADS; i++) t[i] = st_spawn(key_user, (void *)(intptr_t)i);
    for (int i = 0; i < KEY_THREADS; i++) pthread_join(t[i], NULL);
    int ok = 1;
    for (int i = 0; i < KEY_THREADS; i++) ok &= atomic_load(&key_destroyed[i]) == 1;
    CHECK(ok && atomic_load(&key_bad) == 0,
          "key destructors: each of %d values must be destroyed once (%d bad)", KEY_THREADS,
          atomic_load(&key_bad));
    CHECK(pthread_getspecific(key) == NULL, "main sees another thread's key value");
    pthread_key_delete(key);
    note("%d threads: own value across sleeps, destructor ran once per thread with its value "
         "(return and pthread_exit)",
         KEY_THREADS);
}

/* ------------------------------------------------------------ mutexes -- */

static pthread_mutex_t rec_m, err_m;
static pthread_mutex_t held_m = PTHREAD_MUTEX_INITIALIZER;
static atomic_int held_flag, held_release;

static void *try_rec(void *arg)
{
    (void)arg;
    int e = pthread_mutex_trylock(&rec_m);
    if (e == 0) pthread_mutex_unlock(&rec_m);
    return (void *)(intptr_t)e;
}
static void *unlock_err(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)pthread_mutex_unlock(&err_m);
}
static void *holder(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&held_m);
    atomic_store(&held_flag, 1);
    st_wait_for(&held_release, 1, 5000);
    pthread_mutex_unlock(&held_m);
    return NULL;
}
static intptr_t run_join(void *(*fn)(void *))
{
    void *r;
    pthread_join(st_spawn(fn, NULL), &r);
    return (intptr_t)r;
}

static void test_mutex(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&rec_m, &a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&err_m, &a);
    pthread_mutexattr_destroy(&a);

    for (int i = 0; i < 3; i++) CHECK(pthread_mutex_lock(&rec_m) == 0, "recursive lock %d", i);
    CHECK(run_join(try_rec) == EBUSY, "recursive mutex held thrice: trylock elsewhere not EBUSY");
    for (int i = 0; i < 3; i++) pthread_mutex_unlock(&rec_m);
    CHECK(run_join(try_rec) == 0, "recursive mutex released: trylock elsewhere failed");

    CHECK(pthread_mutex_lock(&err_m) == 0, "errorcheck lock");
    CHECK(pthread_mutex_lock(&err_m) == EDEADLK, "errorcheck relock is not EDEADLK");
    CHECK(run_join(unlock_err) == EPERM, "errorcheck unlock from another thread is not EPERM");
    CHECK(pthread_mutex_unlock(&err_m) == 0, "errorcheck unlock by the owner");
    CHECK(pthread_mutex_unlock(&err_m) == EPERM, "errorcheck unlock when unlocked is not EPERM");

    pthread_t h = st_spawn(holder, NULL);
    st_wait_for(&held_flag, 1, 5000);
    CHECK(pthread_mutex_trylock(&held_m) == EBUSY, "trylock of a held mutex");
    int64_t t = st_mono_ns();
    struct timespec dl = st_deadline(CLOCK_REALTIME, 150);
    int e = pthread_mutex_timedlock(&held_m, &dl);
    check_elapsed("pthread_mutex_timedlock 150 ms", st_mono_ns() - t, 150, 2);
    CHECK(e == ETIMEDOUT, "pthread_mutex_timedlock returned %d, want ETIMEDOUT", e);
    t = st_mono_ns();
    dl = st_deadline(CLOCK_MONOTONIC, 100);
    e = pthread_mutex_clocklock(&held_m, CLOCK_MONOTONIC, &dl);
    check_elapsed("pthread_mutex_clocklock MONOTONIC 100 ms", st_mono_ns() - t, 100, 0);
    CHECK(e == ETIMEDOUT, "pthread_mutex_clocklock returned %d, want ETIMEDOUT", e);
    atomic_store(&held_release, 1);
    dl = st_deadline(CLOCK_REALTIME, 5000);
    CHECK(pthread_mutex_timedlock(&held_m, &dl) == 0, "timedlock after release");
    pthread_mutex_unlock(&held_m);
    pthread_join(h, NULL);
    pthread_mutex_destroy(&rec_m);
    pthread_mutex_destroy(&err_m);
    note("recursive (3 deep, EBUSY elsewhere), errorcheck (EDEADLK, EPERM from another thread "
         "and when unlocked), timedlock and clocklock ETIMEDOUT, then acquired");
}

/* ------------------------------------------- O_NONBLOCK, SO_RCVTIMEO -- */

static void test_nonblock(void)
{
    int sv[2];
    pair(sv);
    int fl = fcntl(sv[0], F_GETFL);
    CHECK(fl >= 0 && !(fl & O_NONBLOCK), "a fresh socket shows O_NONBLOCK (%x)", fl);
    CHECK(fcntl(sv[0], F_SETFL, fl | O_NONBLOCK) == 0, "F_SETFL O_NONBLOCK");
    char c;
    int64_t t = st_mono_ns();
    errno = 0;
    ssize_t n = read(sv[0], &c, 1);
    CHECK(n == -1 && errno == EAGAIN && st_mono_ns() - t < 500000000LL,
          "read on an empty O_NONBLOCK socket: %zd errno %d after %.1f ms", n, errno,
          st_ms(st_mono_ns() - t));
    errno = 0;
    n = recv(sv[0], &c, 1, 0);
    CHECK(n == -1 && errno == EWOULDBLOCK, "recv on O_NONBLOCK: %zd errno %d", n, errno);
    int d = dup(sv[0]);
    fl = fcntl(d, F_GETFL);
    CHECK(fl >= 0 && (fl & O_NONBLOCK), "O_NONBLOCK is not visible through a dup (%x)", fl);
    CHECK(fcntl(d, F_SETFL, fl & ~O_NONBLOCK) == 0, "clearing O_NONBLOCK through the dup");
    fl = fcntl(sv[0], F_GETFL);
    CHECK(fl >= 0 && !(fl & O_NONBLOCK), "O_NONBLOCK cleared on the dup still shows (%x)", fl);
    /* blocking again: the read waits for a write 100 ms later */
    struct late_write lw = {sv[1], 100};
    pthread_t w = st_spawn(late_writer, &lw);
    t = st_mono_ns();
    n = read(sv[0], &c, 1);
    check_elapsed("blocking read after O_NONBLOCK was cleared", st_mono_ns() - t, 100, 5);
    CHECK(n == 1, "read after clearing O_NONBLOCK returned %zd", n);
    pthread_join(w, NULL);
    /* MSG_DONTWAIT on a blocking socket */
    errno = 0;
    t = st_mono_ns();
    n = recv(d, &c, 1, MSG_DONTWAIT);
    CHECK(n == -1 && errno == EAGAIN && st_mono_ns() - t < 500000000LL,
          "recv MSG_DONTWAIT: %zd errno %d", n, errno);
    close(d);
    /* SOCK_NONBLOCK at creation */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    fl = fcntl(s, F_GETFL);
    CHECK(fl >= 0 && (fl & O_NONBLOCK), "socket(SOCK_NONBLOCK) does not show O_NONBLOCK");
    int s2 = socket(AF_INET, SOCK_STREAM, 0);
    fl = fcntl(s2, F_GETFL);
    CHECK(fl >= 0 && !(fl & O_NONBLOCK), "a blocking TCP socket shows O_NONBLOCK (%x)", fl);
    close(s);
    close(s2);
    int pp[2];
    if (pipe(pp) == 0) {
        fl = fcntl(pp[0], F_GETFL);
        CHECK(fl >= 0 && !(fl & O_NONBLOCK), "a fresh pipe shows O_NONBLOCK (%x)", fl);
        close(pp[0]);
        close(pp[1]);
    }

    /* SO_RCVTIMEO 200 ms: EAGAIN after ~200 ms */
    struct timeval tv = {0, 200000};
    CHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
    struct timeval back = {0, 0};
    socklen_t bl = sizeof back;
    getsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &back, &bl);
    CHECK(back.tv_sec == 0 && back.tv_usec >= 196000 && back.tv_usec <= 204000,
          "SO_RCVTIMEO reads back as %ld.%06ld", (long)back.tv_sec, (long)back.tv_usec);
    t = st_mono_ns();
    errno = 0;
    n = read(sv[0], &c, 1);
    int64_t rcv = st_mono_ns() - t;
    check_elapsed("read with SO_RCVTIMEO 200 ms", rcv, 200, 5);
    CHECK(n == -1 && errno == EAGAIN, "read with SO_RCVTIMEO: %zd errno %d, want -1 EAGAIN", n,
          errno);
    t = st_mono_ns();
    errno = 0;
    n = recv(sv[0], &c, 1, 0);
    check_elapsed("recv with SO_RCVTIMEO 200 ms", st_mono_ns() - t, 200, 5);
    CHECK(n == -1 && errno == EAGAIN, "recv with SO_RCVTIMEO: %zd errno %d", n, errno);

    /* SO_SNDTIMEO 200 ms: a write to a full socket gives up after ~200 ms */
    CHECK(setsockopt(sv[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0, "SO_SNDTIMEO");
    static char big[65536];
    int64_t last = 0;
    int writes = 0;
    errno = 0;
    for (; writes < 1000; writes++) {
        t = st_mono_ns();
        n = write(sv[1], big, sizeof big);
        last = st_mono_ns() - t;
        if (n < 0) break;
    }
    CHECK(n == -1 && errno == EAGAIN, "write to a full socket with SO_SNDTIMEO: %zd errno %d", n,
          errno);
    check_elapsed("write with SO_SNDTIMEO 200 ms", last, 200, 5);
    close(sv[0]);
    close(sv[1]);
    note("fresh sockets and pipes show no O_NONBLOCK; set: read/recv -1 EAGAIN at once; visible "
         "and clearable through a dup; MSG_DONTWAIT; SOCK_NONBLOCK; SO_RCVTIMEO 200 ms "
         "read/recv -1 EAGAIN after %.0f ms; SO_SNDTIMEO write EAGAIN after %.0f ms",
         st_ms(rcv), st_ms(last));
}

/* ------------------------------------------- close while blocked in read -- */

static atomic_int cl_entered, cl_done;
static ssize_t cl_result;
static int cl_errno;
static void *blocked_reader(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char c;
    atomic_store(&cl_entered, 1);
    errno = 0;
    cl_result = read(fd, &c, 1);
    cl_errno = errno;
    atomic_store(&cl_done, 1);
    return NULL;
}

static void test_close_wakes(void)
{
    int sv[2];
    pair(sv);
    pthread_t r = st_spawn(blocked_reader, (void *)(intptr_t)sv[0]);
    st_wait_for(&cl_entered, 1, 5000);
    usleep(200000);   /* let it block in read */
    int64_t t = st_mono_ns();
    CHECK(close(sv[0]) == 0, "close: %s", strerror(errno));
    /* Linux itself does not wake a reader when another thread closes its fd;
     * after 1 s the peer's close ends the read (0) so a plain run finishes. */
    int by_close = st_wait_for(&cl_done, 1, 1000);
    if (!by_close) close(sv[1]);
    int done = st_wait_for(&cl_done, 1, 4000);
    double ms = st_ms(st_mono_ns() - t);
    CHECK(done, "a reader blocked on a closed fd did not return within 5 s");
    if (!done) {
        pthread_detach(r);
        note("reader still blocked after 5 s");
        return;
    }
    pthread_join(r, NULL);
    if (by_close) close(sv[1]);
    CHECK(cl_result == 0 || (cl_result == -1 && cl_errno == EBADF),
          "read on a closed fd returned %zd errno %d, want 0 or -1 EBADF", cl_result, cl_errno);
    note("the blocked reader returned %zd%s after %.0f ms, %s", cl_result,
         cl_result < 0 ? " (EBADF)" : "", ms,
         by_close ? "woken by the close" : "woken by the peer's close (plain Linux semantics)");
}

/* --------------------------------------------- cancellation, detach -- */

static atomic_int cancel_cleaned, cancel_entered;
static pthread_mutex_t cancel_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cancel_c = PTHREAD_COND_INITIALIZER;

static void cleaned(void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }
static void unlock_cleaned(void *arg)
{
    pthread_mutex_unlock(&cancel_m);
    cleaned(arg);
}
static void *cancel_in_read(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char c;
    pthread_cleanup_push(cleaned, &cancel_cleaned);
    atomic_store(&cancel_entered, 1);
    for (;;) (void)!read(fd, &c, 1);
    pthread_cleanup_pop(0);
    return NULL;
}
static void *cancel_in_condwait(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&cancel_m);
    pthread_cleanup_push(unlock_cleaned, &cancel_cleaned);
    atomic_store(&cancel_entered, 1);
    for (;;) pthread_cond_wait(&cancel_c, &cancel_m);
    pthread_cleanup_pop(0);
    return NULL;
}
static void *cancel_in_sleep(void *arg)
{
    (void)arg;
    pthread_cleanup_push(cleaned, &cancel_cleaned);
    atomic_store(&cancel_entered, 1);
    for (;;) sleep(10);
    pthread_cleanup_pop(0);
    return NULL;
}

static void cancel_one(void *(*fn)(void *), void *arg, const char *where)
{
    atomic_store(&cancel_cleaned, 0);
    atomic_store(&cancel_entered, 0);
    pthread_t t = st_spawn(fn, arg);
    st_wait_for(&cancel_entered, 1, 5000);
    usleep(100000);
    int64_t t0 = st_mono_ns();
    CHECK(pthread_cancel(t) == 0, "pthread_cancel");
    int ok = st_wait_for(&cancel_cleaned, 1, 5000);
    CHECK(ok, "a thread blocked in %s was not cancelled within 5 s", where);
    if (!ok) {
        pthread_detach(t);
        return;
    }
    void *ret = NULL;
    pthread_join(t, &ret);
    CHECK(ret == PTHREAD_CANCELED, "a thread cancelled in %s returned %p", where, ret);
    note("%s (%.0f ms)", where, st_ms(st_mono_ns() - t0));
}

static void test_cancel(void)
{
    int sv[2];
    pair(sv);
    note("cancelled with cleanup handlers run, joined as PTHREAD_CANCELED, while blocked in: ");
    cancel_one(cancel_in_read, (void *)(intptr_t)sv[0], "read");
    note(", ");
    cancel_one(cancel_in_condwait, NULL, "pthread_cond_wait");
    CHECK(pthread_mutex_trylock(&cancel_m) == 0, "the mutex is still held after the cancel");
    pthread_mutex_unlock(&cancel_m);
    note(", ");
    cancel_one(cancel_in_sleep, NULL, "sleep");
    close(sv[0]);
    close(sv[1]);
}

static atomic_int detached_done;
static void *detached(void *arg)
{
    int i = (int)(intptr_t)arg;
    if (i % 2) pthread_detach(pthread_self());
    usleep((useconds_t)(i % 5) * 1000);
    atomic_fetch_add(&detached_done, 1);
    if (i % 3 == 0) pthread_exit(NULL);
    return NULL;
}

static void test_detach(void)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < 100; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, i % 2 ? NULL : &a, detached, (void *)(intptr_t)i) == 0,
              "create");
    }
    pthread_attr_destroy(&a);
    CHECK(st_wait_for(&detached_done, 100, 5000), "%d of 100 detached threads finished",
          atomic_load(&detached_done));
    usleep(50000);
    note("100 detached threads (attr and pthread_detach(self); return and pthread_exit) ran "
         "and exited");
}

/* ------------------------------------------------------------- names -- */

static atomic_int name_go;
static char name_seen[32];
static void *named(void *arg)
{
    (void)arg;
    char got[16] = "";
    CHECK(pthread_setname_np(pthread_self(), "np-self-7") == 0, "setname self");
    CHECK(pthread_getname_np(pthread_self(), got, sizeof got) == 0 &&
              strcmp(got, "np-self-7") == 0,
          "own name reads back as '%s'", got);
    atomic_store(&name_go, 1);
    st_wait_for(&name_go, 2, 5000);   /* main renames this thread meanwhile */
    pthread_getname_np(pthread_self(), name_seen, sizeof name_seen);
    return NULL;
}

static void test_names(void)
{
    pthread_t t = st_spawn(named, NULL);
    st_wait_for(&name_go, 1, 5000);
    char got[16] = "";
    CHECK(pthread_getname_np(t, got, sizeof got) == 0 && strcmp(got, "np-self-7") == 0,
          "another thread's name reads as '%s'", got);
    CHECK(pthread_setname_np(t, "np-renamed") == 0, "setname of another thread");
    CHECK(pthread_getname_np(t, got, sizeof got) == 0 && strcmp(got, "np-renamed") == 0,
          "renamed thread reads as '%s'", got);
    CHECK(pthread_setname_np(t, "sixteen-chars-xx") == ERANGE, "a 16-char name is not ERANGE");
    atomic_store(&name_go, 2);
    pthread_join(t, NULL);
    CHECK(strcmp(name_seen, "np-renamed") == 0, "the thread sees its new name as '%s'",
          name_seen);
    note("set/get own name, another thread's name, rename seen by the thread, ERANGE");
}

/* ------------------------------------------ pthread_exit and cleanup -- */

static atomic_int cu_order[4], cu_count;
static void cu_record(void *arg)
{
    int i = atomic_fetch_add(&cu_count, 1);
    if (i < 4) atomic_store(&cu_order[i], (int)(intptr_t)arg);
}
__attribute__((noinline)) static void exit_deep(int depth)
{
    if (depth < 0) return;
    if (depth == 0) pthread_exit((void *)(intptr_t)0x1234);
    exit_deep(depth - 1);
    __asm__ volatile("");
}
static void *exits_nested(void *arg)
{
    (void)arg;
    pthread_cleanup_push(cu_record, (void *)1);
    pthread_cleanup_push(cu_record, (void *)2);
    exit_deep(5);
    pthread_cleanup_pop(0);
    pthread_cleanup_pop(0);
    return NULL;
}
static void *pops_run(void *arg)
{
    (void)arg;
    pthread_cleanup_push(cu_record, (void *)3);
    usleep(1000);
    pthread_cleanup_pop(1);
    return (void *)(intptr_t)7;
}

static void test_exit_cleanup(void)
{
    void *ret = NULL;
    pthread_join(st_spawn(exits_nested, NULL), &ret);
    CHECK(ret == (void *)(intptr_t)0x1234, "pthread_exit value %p", ret);
    CHECK(atomic_load(&cu_count) == 2 && cu_order[0] == 2 && cu_order[1] == 1,
          "cleanup handlers on pthread_exit: %d ran, order %d %d", atomic_load(&cu_count),
          cu_order[0], cu_order[1]);
    pthread_join(st_spawn(pops_run, NULL), &ret);
    CHECK(ret == (void *)(intptr_t)7 && atomic_load(&cu_count) == 3 && cu_order[2] == 3,
          "pthread_cleanup_pop(1)");
    note("pthread_exit 6 calls deep: 2 cleanup handlers ran once each in LIFO order, join got "
         "the value; pthread_cleanup_pop(1) runs its handler");
}

/* ------------------------------------------------------ deep stacks -- */

__attribute__((noinline)) static size_t recurse(const char *base, size_t target)
{
    volatile char buf[1024];
    buf[0] = 1;
    buf[sizeof buf - 1] = 1;
    size_t used = (size_t)(base - (const char *)__builtin_frame_address(0));
    size_t r = used >= target ? used : recurse(base, target);
    return r + buf[0] - buf[sizeof buf - 1];   /* uses the frame after the call */
}
struct deep {
    size_t target, reached;
};
static void *go_deep(void *arg)
{
    struct deep *d = arg;
    d->reached = recurse(__builtin_frame_address(0), d->target);
    return NULL;
}

static void test_deep_stacks(void)
{
    struct deep small = {200 << 10, 0};
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 << 10);
    pthread_t t;
    CHECK(pthread_create(&t, &a, go_deep, &small) == 0, "create with a 256 KiB stack");
    pthread_join(t, NULL);
    pthread_attr_destroy(&a);
    CHECK(small.reached >= small.target, "256 KiB stack: reached %zu", small.reached);

    size_t limit = default_stack_size();
    struct deep big = {4 << 20, 0};
    if (limit && limit < (6u << 20)) big.target = limit / 2;
    pthread_join(st_spawn(go_deep, &big), NULL);
    CHECK(big.reached >= big.target, "default stack: reached %zu", big.reached);
    note("256 KiB-stack thread recursed %zu KiB deep; default-stack thread recursed %zu KiB deep",
         small.reached >> 10, big.reached >> 10);
}

/* -------------------------------------------------------------- main -- */

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    signal(SIGPIPE, SIG_IGN);
    section("pthread_getattr_np", test_getattr);
    section("stdio", test_stdio);
    section("poll/select/ppoll", test_poll);
    section("sleep", test_sleep);
    section("condvar", test_condvar);
    section("semaphore", test_semaphore);
    section("rwlock", test_rwlock);
    section("barrier", test_barrier);
    section("pthread_once", test_once);
    section("pthread keys", test_keys);
    section("mutex", test_mutex);
    section("O_NONBLOCK/SO_RCVTIMEO", test_nonblock);
    section("close while blocked in read", test_close_wakes);
    section("pthread_cancel", test_cancel);
    section("pthread_detach", test_detach);
    section("thread names", test_names);
    section("pthread_exit+cleanup", test_exit_cleanup);
    section("deep stacks", test_deep_stacks);
    printf("stdio_sync: %d sections failed\n", sections_failed);
    return st_finish("stdio_sync");
}
