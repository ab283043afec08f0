/*
 * tls_switch.c - ping-pong between two pthreads, plain C11 and pthreads
 * (no netpoll header, nothing of netpoll linked).
 *
 * Measures: ns per round trip of a hand-off between two threads, three
 * ways, N round trips each (after 10,000 untimed ones):
 *   cond   a mutex and two condition variables (turn flag)
 *   pipe   a byte each way over two pipes, blocking read/write
 *   yield  a turn flag (C11 atomic), each side sched_yield()s until it is
 *          its turn
 * Run plain, a round trip is two wake-ups of OS threads (futex, pipe) or,
 * on two CPUs, a cache line moving back and forth.  Under
 * `nprun -p 1` both threads are green threads on one worker: a round trip
 * is two green-thread switches, each of which also switches the thread
 * pointer to the other thread's TCB (wrfsbase); with yield, that and the
 * scheduler's yield are all there is (compare np_yield, bench/yield_np.c,
 * which switches no TCB).
 * A mode stops early after TLS_MAX_SECONDS (default 20) and reports over
 * the round trips done.
 * Usage: tls_switch [N=1000000] [MODES=cond,pipe,yield]
 * Output: one line
 *   tls_switch round_trips=N cond_rt_ns=X pipe_rt_ns=Y yield_rt_ns=Z
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 10000

static long n_rt = 1000000;
static double max_seconds = 20;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- cond ------------------------------------------------------------- */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_a = PTHREAD_COND_INITIALIZER, cv_b = PTHREAD_COND_INITIALIZER;
static int turn; /* 0: A's turn, 1: B's */
static int stop;

static void *cond_b(void *arg) {
    (void)arg;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (turn != 1) pthread_cond_wait(&cv_b, &mu);
        if (stop) break;
        turn = 0;
        pthread_cond_signal(&cv_a);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void cond_rt(void) {
    pthread_mutex_lock(&mu);
    turn = 1;
    pthread_cond_signal(&cv_b);
    while (turn != 0) pthread_cond_wait(&cv_a, &mu);
    pthread_mutex_unlock(&mu);
}

static void cond_end(void) {
    pthread_mutex_lock(&mu);
    stop = 1;
    turn = 1;
    pthread_cond_signal(&cv_b);
    pthread_mutex_unlock(&mu);
}

/* ---- pipe ------------------------------------------------------------- */
static int p_ab[2], p_ba[2];

static int xfer(int rfd, int wfd, char out, char *in) {
    ssize_t k;
    if (wfd >= 0) {
        while ((k = write(wfd, &out, 1)) < 0 && errno == EINTR) {}
        if (k != 1) return -1;
    }
    if (rfd >= 0) {
        while ((k = read(rfd, in, 1)) < 0 && errno == EINTR) {}
        if (k != 1) return -1;
    }
    return 0;
}

static void *pipe_b(void *arg) {
    (void)arg;
    char c;
    for (;;) {
        if (xfer(p_ab[0], -1, 0, &c) < 0) {
            fprintf(stderr, "tls_switch: pipe read failed\n");
            exit(1);
        }
        if (c == 'q') break;
        if (xfer(-1, p_ba[1], 'y', NULL) < 0) {
            fprintf(stderr, "tls_switch: pipe write failed\n");
            exit(1);
        }
    }
    return NULL;
}

static void pipe_rt(void) {
    char c = 0;
    if (xfer(p_ba[0], p_ab[1], 'x', &c) < 0 || c != 'y') {
        fprintf(stderr, "tls_switch: pipe round trip failed\n");
        exit(1);
    }
}

static void pipe_end(void) {
    xfer(-1, p_ab[1], 'q', NULL);
}

/* ---- yield ------------------------------------------------------------ */
static atomic_int yturn, ystop;

static void *yield_b(void *arg) {
    (void)arg;
    for (;;) {
        while (atomic_load_explicit(&yturn, memory_order_acquire) != 1) {
            if (atomic_load_explicit(&ystop, memory_order_acquire)) return NULL;
            sched_yield();
        }
        atomic_store_explicit(&yturn, 0, memory_order_release);
    }
}

static void yield_rt(void) {
    atomic_store_explicit(&yturn, 1, memory_order_release);
    while (atomic_load_explicit(&yturn, memory_order_acquire) != 0) sched_yield();
}

static void yield_end(void) {
    atomic_store_explicit(&ystop, 1, memory_order_release);
}

/* ---- driver ----------------------------------------------------------- */
/* ns per round trip, or -1 */
static double run(const char *name, void *(*b)(void *), void (*rt)(void), void (*end)(void)) {
    pthread_t t;
    int rc = pthread_create(&t, NULL, b, NULL);
    if (rc != 0) {
        fprintf(stderr, "tls_switch: pthread_create: %s\n", strerror(rc));
        return -1;
    }
    for (long i = 0; i < WARMUP; i++) rt();
    double t0 = now_s(), t1 = t0;
    long done = 0;
    while (done < n_rt) {
        rt();
        done++;
        if ((done & 1023) == 0 && (t1 = now_s()) - t0 > max_seconds) break;
    }
    t1 = now_s();
    end();
    pthread_join(t, NULL);
    if (done < n_rt)
        fprintf(stderr, "tls_switch: %s stopped after %.0f s, %ld round trips\n", name, t1 - t0, done);
    return (t1 - t0) * 1e9 / (double)done;
}

int main(int argc, char **argv) {
    if (argc > 1) n_rt = atol(argv[1]);
    const char *modes = argc > 2 ? argv[2] : "cond,pipe,yield";
    const char *e = getenv("TLS_MAX_SECONDS");
    if (e && atof(e) > 0) max_seconds = atof(e);
    if (n_rt <= 0) {
        fprintf(stderr, "usage: tls_switch [N] [cond,pipe,yield]\n");
        return 2;
    }
    if (pipe(p_ab) < 0 || pipe(p_ba) < 0) {
        perror("tls_switch: pipe");
        return 1;
    }
    double c = -2, p = -2, y = -2;
    if (strstr(modes, "cond")) c = run("cond", cond_b, cond_rt, cond_end);
    if (strstr(modes, "pipe")) p = run("pipe", pipe_b, pipe_rt, pipe_end);
    if (strstr(modes, "yield")) y = run("yield", yield_b, yield_rt, yield_end);
    printf("tls_switch round_trips=%ld", n_rt);
    if (c > -2) printf(" cond_rt_ns=%.1f", c);
    if (p > -2) printf(" pipe_rt_ns=%.1f", p);
    if (y > -2) printf(" yield_rt_ns=%.1f", y);
    printf("\n");
    return (c == -1 || p == -1 || y == -1) ? 1 : 0;
}
