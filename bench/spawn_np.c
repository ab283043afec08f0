/*
 * spawn_np.c - green thread spawn+exit cost.
 *
 * Measures: ns per thread to np_go() n green threads running an empty
 * function (it only bumps an atomic counter) and wait until all of them
 * have run, yielding while waiting; default runtime configuration (the
 * Go peer bench/go/spawn.go uses default GOMAXPROCS).  Best of several
 * rounds.
 * Usage: spawn_np [n]   (default 1000000)
 * Output: one line "np_spawn <ns_per_thread>".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <netpoll.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n = 1000000;
static atomic_long done;

static void empty(void *arg) {
    (void)arg;
    atomic_fetch_add_explicit(&done, 1, memory_order_relaxed);
}

static int run(void *arg) {
    double *best = arg;
    const int rounds = 3;
    for (int r = 0; r < rounds; r++) {
        atomic_store(&done, 0);
        int64_t t0 = np_now();
        int64_t limit = t0 + 120 * 1000000000LL;
        for (long i = 0; i < n; i++) {
            int rc;
            while ((rc = np_go(empty, NULL)) == -EAGAIN && np_now() < limit)
                np_yield(); /* out of resources for now: let threads end */
            if (rc < 0) {
                fprintf(stderr, "spawn_np: np_go #%ld: %s\n", i, strerror(-rc));
                return 1;
            }
        }
        while (atomic_load(&done) < n && np_now() < limit) np_yield();
        int64_t t1 = np_now();
        if (atomic_load(&done) < n) {
            fprintf(stderr, "spawn_np: only %ld of %ld threads ran\n",
                    atomic_load(&done), n);
            return 1;
        }
        double per = (double)(t1 - t0) / (double)n;
        if (per < *best) *best = per;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && atol(argv[1]) > 0) n = atol(argv[1]);
    double best = 1e30;
    int rc = np_main(run, &best);
    if (rc != 0) {
        if (rc < 0) fprintf(stderr, "spawn_np: np_main: %s\n", strerror(-rc));
        return 1;
    }
    printf("np_spawn %.2f\n", best);
    return 0;
}
