/* demo: 100,000 green threads on a few OS threads.  Pairs of them echo
 * messages over socketpairs (as many pairs as the fd limit allows), the rest
 * sleep and wake on timers; time, memory and runtime statistics printed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <netpoll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

enum { THREADS = 100000, ROUNDS = 20, MSG = 64 };

static atomic_long echoes, ticks;
static atomic_int finished;

static void server(void *a) {
    np_fd *pd = a;
    char buf[MSG];
    ssize_t n;
    while ((n = np_read(pd, buf, sizeof buf)) > 0) np_write(pd, buf, (size_t)n);
    np_close(pd);
    atomic_fetch_add(&finished, 1);
}

static void client(void *a) {
    np_fd *pd = a;
    char out[MSG], in[MSG];
    memset(out, 'x', sizeof out);
    for (int i = 0; i < ROUNDS; i++) {
        if (np_write(pd, out, sizeof out) != MSG) break;
        size_t got = 0;
        while (got < MSG) {
            ssize_t r = np_read(pd, in + got, MSG - got);
            if (r <= 0) goto out;
            got += (size_t)r;
        }
        atomic_fetch_add(&echoes, 1);
    }
out:
    np_close(pd);
    atomic_fetch_add(&finished, 1);
}

static void ticker(void *a) {
    long seed = (long)(intptr_t)a;
    for (int i = 0; i < ROUNDS / 4; i++) {
        seed = seed * 1103515245 + 12345;
        np_sleep(1000000 + (seed >> 8) % 20000000); /* 1..21 ms */
        atomic_fetch_add(&ticks, 1);
    }
    atomic_fetch_add(&finished, 1);
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) v = atol(line + 6);
    if (f) fclose(f);
    return v;
}

static int demo(void *arg) {
    (void)arg;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    long pairs = ((long)rl.rlim_cur - 64) / 2;
    if (pairs > THREADS / 4) pairs = THREADS / 4;
    long rss0 = rss_kib();
    int64_t t0 = np_now();
    long spawned = 0;
    for (long i = 0; i < pairs; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) break;
        np_fd *a, *b;
        np_open(sv[0], &a);
        np_open(sv[1], &b);
        np_go(server, a);
        np_go(client, b);
        spawned += 2;
    }
    long echo_threads = spawned;
    for (; spawned < THREADS; spawned++) np_go(ticker, (void *)(intptr_t)spawned);
    int64_t t1 = np_now();
    np_sleep(2000000);
    np_stats s = {.size = sizeof s};
    np_stats_get(&s);
    long rss_peak = rss_kib();
    while (atomic_load(&finished) < spawned) np_sleep(5000000);
    int64_t t2 = np_now();
    printf("netpoll demo: %ld green threads on %llu worker OS threads\n", spawned,
           (unsigned long long)s.workers);
    printf("  %ld threads echo %d x %d-byte messages over %ld socketpairs\n", echo_threads, ROUNDS,
           MSG, echo_threads / 2);
    printf("  %ld threads sleep %d times on timers (1-21 ms)\n", spawned - echo_threads, ROUNDS / 4);
    printf("  spawn all:  %.1f ms (%.0f ns per thread)\n", (t1 - t0) / 1e6, (double)(t1 - t0) / spawned);
    printf("  run to end: %.1f ms; %ld echoes, %ld timer wake-ups\n", (t2 - t0) / 1e6,
           atomic_load(&echoes), atomic_load(&ticks));
    printf("  memory:     %.1f MiB RSS with all threads live (%.2f KiB per thread)\n",
           (rss_peak - rss0) / 1024.0, (double)(rss_peak - rss0) / spawned);
    printf("  runtime:    %llu context switches, %llu polls, %llu parked at the 2 ms mark\n",
           (unsigned long long)s.switches, (unsigned long long)s.polls, (unsigned long long)s.parked);
    return atomic_load(&echoes) == echo_threads / 2 * ROUNDS ? 0 : 1;
}

int main(void) {
    int r = np_main(demo, NULL);
    if (r) fprintf(stderr, "demo: some echoes were lost\n");
    return r;
}
