/*
 * yield_np.c - green thread switch cost through the netpoll scheduler.
 *
 * Measures: ns per switch of an np_yield() ping-pong between two green
 * threads on one worker (procs forced to 1, like GOMAXPROCS=1 for the Go
 * peer bench/go/chanpingpong.go).  Each thread yields n times; every
 * yield hands the worker to the other thread, so 2n yields = 2n switches.
 * Best of several rounds.
 * Usage: yield_np [yields_per_thread_per_round]   (default 2000000)
 * Output: one line "np_yield <ns_per_switch>".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <netpoll.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n = 2000000;
static atomic_int started, finished;

static void partner(void *arg) {
    (void)arg;
    atomic_store(&started, 1);
    for (long i = 0; i < n; i++) np_yield();
    atomic_store(&finished, 1);
}

static int run(void *arg) {
    double *best = arg;
    const int rounds = 5;
    for (int r = 0; r < rounds; r++) {
        atomic_store(&started, 0);
        atomic_store(&finished, 0);
        int rc = np_go(partner, NULL);
        if (rc < 0) {
            fprintf(stderr, "yield_np: np_go: %s\n", strerror(-rc));
            return 1;
        }
        /* let the partner start; bounded */
        for (long i = 0; i < 1000000 && !atomic_load(&started); i++)
            np_yield();
        if (!atomic_load(&started)) {
            fprintf(stderr, "yield_np: partner never ran\n");
            return 1;
        }
        int64_t t0 = np_now();
        for (long i = 0; i < n; i++) np_yield();
        /* the partner has at most a few yields left */
        int64_t limit = np_now() + 10 * 1000000000LL;
        while (!atomic_load(&finished) && np_now() < limit) np_yield();
        int64_t t1 = np_now();
        if (!atomic_load(&finished)) {
            fprintf(stderr, "yield_np: partner did not finish\n");
            return 1;
        }
        double per = (double)(t1 - t0) / (2.0 * n);
        if (per < *best) *best = per;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && atol(argv[1]) > 0) n = atol(argv[1]);
    np_config cfg = {.size = sizeof cfg, .procs = 1};
    int rc = np_init(&cfg);
    if (rc < 0) {
        fprintf(stderr, "yield_np: np_init: %s\n", strerror(-rc));
        return 1;
    }
    double best = 1e30;
    if (np_main(run, &best) != 0) return 1;
    np_stats st = {.size = sizeof st};
    if (np_stats_get(&st) == 0 && st.workers != 1)
        fprintf(stderr, "yield_np: warning: %llu workers, expected 1\n",
                (unsigned long long)st.workers);
    printf("np_yield %.2f\n", best);
    return 0;
}
