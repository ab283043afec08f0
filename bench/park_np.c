/*
 * park_np.c - memory held by parked green threads.
 *
 * Measures: VmRSS after n green threads are all parked in np_cond_wait on
 * one shared condition variable, in MiB, and KiB per thread over the RSS
 * before spawning; then wakes them all (np_cond_broadcast) and waits for
 * them to end.  Run with a small NP_STACK_SIZE (e.g. 16384).  The Go peer
 * is bench/go/park.go.
 * Usage: park_np [n]   (default 1000000)
 * Environment: PARK_STACK=bytes spawns with np_go_stack at that size
 * (packed small stacks, e.g. 2048) instead of the default stacks.
 * Output: one line "np_park threads=N rss_mib=X kib_per_thread=Y".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <netpoll.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n = 1000000;
static np_mutex mu = NP_MUTEX_INITIALIZER;
static np_cond cv = NP_COND_INITIALIZER;
static long parked;    /* under mu */
static int release;    /* under mu */
static atomic_long ended;

static void sleeper(void *arg) {
    (void)arg;
    np_mutex_lock(&mu);
    parked++;
    while (!release) np_cond_wait(&cv, &mu);
    parked--;
    np_mutex_unlock(&mu);
    atomic_fetch_add(&ended, 1);
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            v = atol(line + 6);
            break;
        }
    fclose(f);
    return v;
}

static long get_parked(void) {
    np_mutex_lock(&mu);
    long p = parked;
    np_mutex_unlock(&mu);
    return p;
}

static int run(void *arg) {
    (void)arg;
    long before = rss_kib();
    int64_t limit = np_now() + 120 * 1000000000LL;
    int spawn_failed = 0;
    const char *e = getenv("PARK_STACK");
    size_t small = e ? (size_t)atol(e) : 0; /* np_go_stack size, 0: the default stacks */
    for (long i = 0; i < n; i++) {
        int rc = small ? np_go_stack(sleeper, NULL, small) : np_go(sleeper, NULL);
        if (rc < 0) {
            fprintf(stderr, "park_np: np_go #%ld: %s\n", i, strerror(-rc));
            n = i; /* wake and reap what we have, then fail */
            spawn_failed = 1;
            break;
        }
    }
    long p;
    while ((p = get_parked()) < n && np_now() < limit) np_sleep(1000000);
    int ok = p == n && !spawn_failed;
    if (p != n)
        fprintf(stderr, "park_np: only %ld of %ld parked\n", p, n);
    else if (ok) {
        long after = rss_kib();
        printf("np_park threads=%ld rss_mib=%.1f kib_per_thread=%.2f\n", n,
               after / 1024.0, (double)(after - before) / (double)n);
        fflush(stdout);
    }
    np_mutex_lock(&mu);
    release = 1;
    np_cond_broadcast(&cv);
    np_mutex_unlock(&mu);
    while (atomic_load(&ended) < n && np_now() < limit + 60 * 1000000000LL)
        np_sleep(1000000);
    if (atomic_load(&ended) < n) {
        fprintf(stderr, "park_np: only %ld of %ld ended\n",
                atomic_load(&ended), n);
        ok = 0;
    }
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc > 1 && atol(argv[1]) > 0) n = atol(argv[1]);
    int rc = np_main(run, NULL);
    if (rc < 0) fprintf(stderr, "park_np: np_main: %s\n", strerror(-rc));
    return rc == 0 ? 0 : 1;
}
