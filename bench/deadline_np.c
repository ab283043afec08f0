/*
 * deadline_np.c - cost of per-operation deadlines on a descriptor.
 *
 * Measures: ns per round trip of a 64-byte ping-pong between two green
 * threads over an AF_UNIX stream socketpair (both ends np_open'd), run
 * three ways in one process:
 *   none     no deadlines;
 *   set      np_set_deadline(pd, np_now() + 1 s, NP_READ | NP_WRITE)
 *            before every read and every write, on both sides (Go's
 *            SetDeadline before each call);
 *   split    np_set_deadline(pd, np_now() + 1 s, NP_READ) before every
 *            read and (..., NP_WRITE) before every write (Go's
 *            SetReadDeadline / SetWriteDeadline before each call).
 * A round trip is four operations, so four deadline calls in "set" and
 * "split"; overhead_ns = (set - none) / 4 is the cost of one call,
 * np_now() included.  procs is forced to 1 (like yield_np) so both
 * threads share one worker: the figures are CPU cost, not cross-core
 * latency.  Best of 3 rounds each; within a round the three ways take
 * turns in 10 blocks of n/10 round trips (each block on a fresh
 * socketpair), so a burst of load on the machine hits all three alike.
 * Usage: deadline_np [round_trips_per_round]   (default 200000)
 * Output: one line
 *   "deadline_np none_ns=A set_per_op_ns=B split_ns=C overhead_ns=D".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <netpoll.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MSG 64
#define ROUNDS 3
#define BLOCKS 10 /* turns per way per round */
#define TIMEOUT_NS 1000000000LL /* the deadline: 1 s from each op */

enum { MODE_NONE, MODE_SET, MODE_SPLIT, NMODES };
static const int calls_per_rt = 4; /* deadline calls per round trip */

static long n = 200000;

struct side {
    np_fd *pd;
    int mode;
    long count;
};

/* Set the deadline before an operation in direction dir; 0 or -errno. */
static inline int before(const struct side *s, int dir) {
    switch (s->mode) {
    case MODE_SET:
        return np_set_deadline(s->pd, np_now() + TIMEOUT_NS, NP_READ | NP_WRITE);
    case MODE_SPLIT:
        return np_set_deadline(s->pd, np_now() + TIMEOUT_NS, dir);
    default:
        return 0;
    }
}

static int read_full(const struct side *s, char *buf) {
    int rc = before(s, NP_READ);
    if (rc < 0) return rc;
    size_t got = 0;
    while (got < MSG) {
        ssize_t r = np_read(s->pd, buf + got, MSG - got);
        if (r <= 0) return r == 0 ? -EPIPE : (int)r;
        got += (size_t)r;
    }
    return 0;
}

static int write_full(const struct side *s, const char *buf) {
    int rc = before(s, NP_WRITE);
    if (rc < 0) return rc;
    ssize_t w = np_write(s->pd, buf, MSG);
    if (w != MSG) return w < 0 ? (int)w : -EIO;
    return 0;
}

/* The echoing side: read a message, send it back, count times. */
static void *partner(void *arg) {
    struct side *s = arg;
    char buf[MSG];
    for (long i = 0; i < s->count; i++) {
        int rc = read_full(s, buf);
        if (rc == 0) rc = write_full(s, buf);
        if (rc < 0) {
            shutdown(np_fileno(s->pd), SHUT_RDWR); /* the other side sees EOF */
            return (void *)(intptr_t)rc;
        }
    }
    return NULL;
}

/* count round trips in mode on a new socketpair; ns taken, or -1. */
static int64_t round_trip(int mode, long count) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        perror("deadline_np: socketpair");
        return -1;
    }
    struct side a = {.mode = mode, .count = count}, b = {.mode = mode, .count = count};
    int rc = np_open(sv[0], &a.pd);
    if (rc < 0) {
        fprintf(stderr, "deadline_np: np_open: %s\n", strerror(-rc));
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    rc = np_open(sv[1], &b.pd);
    if (rc < 0) {
        fprintf(stderr, "deadline_np: np_open: %s\n", strerror(-rc));
        np_close(a.pd);
        close(sv[1]);
        return -1;
    }
    np_thread *t;
    rc = np_spawn(&t, partner, &b);
    if (rc < 0) {
        fprintf(stderr, "deadline_np: np_spawn: %s\n", strerror(-rc));
        np_close(a.pd);
        np_close(b.pd);
        return -1;
    }
    char buf[MSG];
    memset(buf, 'x', sizeof buf);
    int err = 0;
    int64_t t0 = np_now();
    for (long i = 0; i < count && !err; i++) {
        err = write_full(&a, buf);
        if (!err) err = read_full(&a, buf);
    }
    int64_t t1 = np_now();
    if (err) {
        fprintf(stderr, "deadline_np: mode %d: %s\n", mode, strerror(-err));
        np_close(a.pd); /* wakes the partner with -EBADF/EOF */
        a.pd = NULL;
    }
    void *res = NULL;
    np_join(t, &res);
    if (res) {
        fprintf(stderr, "deadline_np: partner, mode %d: %s\n", mode,
                strerror(-(int)(intptr_t)res));
        err = err ? err : -EIO;
    }
    if (a.pd) np_close(a.pd);
    np_close(b.pd);
    if (err) return -1;
    return t1 - t0;
}

static int run(void *arg) {
    double *best = arg;
    for (int m = 0; m < NMODES; m++) best[m] = 1e30;
    long per_block = n / BLOCKS > 0 ? n / BLOCKS : 1;
    /* warm up: stacks, timer heap, descriptors */
    for (int m = 0; m < NMODES; m++)
        if (round_trip(m, per_block / 2 + 1) < 0) return 1;
    for (int r = 0; r < ROUNDS; r++) {
        int64_t total[NMODES] = {0};
        for (int b = 0; b < BLOCKS; b++) {
            for (int m = 0; m < NMODES; m++) { /* the ways take turns */
                int64_t ns = round_trip(m, per_block);
                if (ns < 0) return 1;
                total[m] += ns;
            }
        }
        for (int m = 0; m < NMODES; m++) {
            double per = (double)total[m] / ((double)per_block * BLOCKS);
            if (per < best[m]) best[m] = per;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && atol(argv[1]) > 0) n = atol(argv[1]);
    np_config cfg = {.size = sizeof cfg, .procs = 1};
    int rc = np_init(&cfg);
    if (rc < 0) {
        fprintf(stderr, "deadline_np: np_init: %s\n", strerror(-rc));
        return 1;
    }
    double best[NMODES];
    if (np_main(run, best) != 0) return 1;
    np_stats st = {.size = sizeof st};
    if (np_stats_get(&st) == 0 && st.workers != 1)
        fprintf(stderr, "deadline_np: warning: %llu workers, expected 1\n",
                (unsigned long long)st.workers);
    printf("deadline_np none_ns=%.1f set_per_op_ns=%.1f split_ns=%.1f overhead_ns=%.1f\n",
           best[MODE_NONE], best[MODE_SET], best[MODE_SPLIT],
           (best[MODE_SET] - best[MODE_NONE]) / calls_per_rt);
    return 0;
}
