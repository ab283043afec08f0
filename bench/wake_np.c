/*
 * wake_np.c - cost of one wake-up with many descriptors parked on one worker.
 *
 * Measures, on one worker (procs = 1) and the poller named by NP_POLLER
 * (default epoll; asked for through np_init, so a refused poller is an
 * error, never a silent fallback to epoll):
 *   open_ms   np_open of n reader sockets;
 *   park_ms   spawning n green threads, each parked in np_read on its own
 *             socket, until np_stats says all n wait on descriptors;
 *   wake_us   per wake-up: one datagram sent to one reader at a time (a
 *             scattered order), then the measuring green thread waits
 *             (np_cond_wait) until that reader has run; the worker is
 *             otherwise idle, so this is the poller's cost per event
 *             (plus two switches and a condition variable), best of 3.
 * The readers are AF_UNIX datagram sockets, each bound to an autobind
 * (abstract) address, and one unbound sender writes to them with sendto:
 * n + 1 descriptors, where socketpairs would take 2n (10,000 pairs do not
 * fit in a 20,000-descriptor limit).  The soft RLIMIT_NOFILE is raised to
 * the hard one; when n + 64 descriptors still do not fit, the run is
 * skipped with a message (exit 0).
 * Usage: wake_np [n [wake_ups]]   (defaults 1000 and 5000)
 * Output: one line
 *   "wake_np poller=P n=N open_ms=A park_ms=B wake_us=C wake_ups=W"
 * or "wake_np poller=P n=N skipped: ..." when the limit is too low.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <netpoll.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static long n = 1000, wake_ups = 5000;
static const char *poller = "epoll";

struct reader {
    np_fd *pd;
    struct sockaddr_un addr;
    socklen_t alen;
};
static struct reader *rd;
static int sender = -1;

static np_mutex mu = NP_MUTEX_INITIALIZER;
static np_cond cv = NP_COND_INITIALIZER;
static long last_run = -1; /* under mu: the reader that ran last */
static atomic_long ended;

static void reader_fn(void *arg) {
    long i = (long)(intptr_t)arg;
    char buf[16];
    while (np_read(rd[i].pd, buf, sizeof buf) > 0) {
        np_mutex_lock(&mu);
        last_run = i;
        np_cond_signal(&cv);
        np_mutex_unlock(&mu);
    }
    atomic_fetch_add(&ended, 1);
}

static uint64_t poll_waiters(void) {
    np_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    np_stats_get(&s);
    return s.poll_waiters;
}

static int run(void *arg) {
    (void)arg;
    int ok = 1;
    long opened = 0, spawned = 0;
    rd = calloc((size_t)n, sizeof *rd);
    if (!rd) return 1;
    sender = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sender < 0) {
        perror("wake_np: socket");
        return 1;
    }
    int64_t t0 = np_now();
    for (; opened < n; opened++) {
        struct reader *r = &rd[opened];
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        r->addr.sun_family = AF_UNIX;
        if (fd < 0 || bind(fd, (struct sockaddr *)&r->addr, sizeof(sa_family_t)) < 0) {
            fprintf(stderr, "wake_np: socket/bind #%ld: %s\n", opened, strerror(errno));
            if (fd >= 0) close(fd);
            ok = 0;
            break;
        }
        r->alen = sizeof r->addr;
        getsockname(fd, (struct sockaddr *)&r->addr, &r->alen);
        int rc = np_open(fd, &r->pd);
        if (rc < 0) {
            fprintf(stderr, "wake_np: np_open #%ld: %s\n", opened, strerror(-rc));
            close(fd);
            ok = 0;
            break;
        }
    }
    int64_t t1 = np_now();
    for (; ok && spawned < n; spawned++) {
        int rc = np_go(reader_fn, (void *)(intptr_t)spawned);
        if (rc < 0) {
            fprintf(stderr, "wake_np: np_go #%ld: %s\n", spawned, strerror(-rc));
            ok = 0;
        }
    }
    int64_t limit = np_now() + 120 * 1000000000LL;
    while (ok && poll_waiters() < (uint64_t)n && np_now() < limit) np_sleep(100000);
    int64_t t2 = np_now();
    if (ok && poll_waiters() < (uint64_t)n) {
        fprintf(stderr, "wake_np: only %llu of %ld parked\n", (unsigned long long)poll_waiters(), n);
        ok = 0;
    }
    double best = 0;
    for (int round = 0; ok && round < 3; round++) {
        uint64_t x = 88172645463325252ull + (uint64_t)round; /* xorshift: a scattered order */
        int64_t s0 = np_now();
        for (long k = 0; ok && k < wake_ups; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            long i = (long)(x % (uint64_t)n);
            np_mutex_lock(&mu);
            last_run = -1;
            if (sendto(sender, "x", 1, MSG_DONTWAIT, (struct sockaddr *)&rd[i].addr, rd[i].alen) != 1) {
                fprintf(stderr, "wake_np: sendto #%ld: %s\n", i, strerror(errno));
                ok = 0;
            }
            while (ok && last_run != i) {
                if (np_cond_timedwait(&cv, &mu, np_now() + 10 * 1000000000LL) == -ETIMEDOUT) {
                    fprintf(stderr, "wake_np: reader #%ld did not run within 10 s\n", i);
                    ok = 0;
                }
            }
            np_mutex_unlock(&mu);
        }
        double us = (double)(np_now() - s0) / 1e3 / (double)wake_ups;
        if (round == 0 || us < best) best = us;
    }
    if (ok)
        printf("wake_np poller=%s n=%ld open_ms=%.1f park_ms=%.1f wake_us=%.2f wake_ups=%ld\n", poller, n,
               (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6, best, wake_ups);
    fflush(stdout);
    /* Closing wakes every reader with -EBADF. */
    for (long i = 0; i < opened; i++) np_close(rd[i].pd);
    while (atomic_load(&ended) < spawned && np_now() < limit + 60 * 1000000000LL) np_sleep(1000000);
    if (atomic_load(&ended) < spawned) {
        fprintf(stderr, "wake_np: only %ld of %ld readers ended\n", atomic_load(&ended), spawned);
        ok = 0;
    }
    close(sender);
    free(rd);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc > 1 && atol(argv[1]) > 0) n = atol(argv[1]);
    if (argc > 2 && atol(argv[2]) > 0) wake_ups = atol(argv[2]);
    const char *e = getenv("NP_POLLER");
    if (e && *e) poller = e;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)n + 64 > rl.rlim_cur) {
        printf("wake_np poller=%s n=%ld skipped: needs %ld descriptors, the limit is %llu\n", poller, n,
               n + 64, (unsigned long long)rl.rlim_cur);
        return 0;
    }
    np_config c;
    memset(&c, 0, sizeof c);
    c.size = sizeof c;
    c.procs = 1; /* every descriptor and reader on one worker */
    c.poller = poller;
    int rc = np_init(&c);
    if (rc < 0) {
        fprintf(stderr, "wake_np: np_init(poller=%s): %s\n", poller, strerror(-rc));
        return 1;
    }
    rc = np_main(run, NULL);
    if (rc < 0) fprintf(stderr, "wake_np: np_main: %s\n", strerror(-rc));
    return rc == 0 ? 0 : 1;
}
