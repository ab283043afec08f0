/* uring_close: np_close must release the file even when the io_uring
 * port's submissions are refused and its ring is full (make check-faults,
 * NP_POLLER=io_uring NP_FAULT_KINDS=uring NP_FAULT_RATE=0.995).  A poll left
 * in the ring holds its file: the fd number is gone, but the peer never
 * sees the end of file.
 *
 * Opens N socket pairs, registers one end of each (np_open) and parks on
 * it briefly so its poll is armed, closes them all with np_close, then
 * checks that every peer reads end of file within a bound.
 *
 *   uring_close [-n PAIRS] [-t SECONDS]       exit 0: every peer saw EOF */
#include <errno.h>
#include <netpoll.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int pairs = 2000, secs = 20;

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int run(void *arg) {
    (void)arg;
    int *peer = calloc((size_t)pairs, sizeof *peer);
    np_fd **pd = calloc((size_t)pairs, sizeof *pd);
    if (!peer || !pd) return 2;
    int opened = 0;
    for (int i = 0; i < pairs; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
            fprintf(stderr, "uring_close: socketpair: %s\n", strerror(errno));
            return 2;
        }
        peer[i] = sv[1];
        int e = np_open(sv[0], &pd[i]);
        if (e) { /* refused too: not ours to test, close it plainly */
            close(sv[0]);
            pd[i] = NULL;
            continue;
        }
        opened++;
        /* Park until a deadline 1 ms on: the poll is in the ring now. */
        np_set_deadline(pd[i], np_now() + 1000000, NP_READ);
        int w = np_wait_read(pd[i]);
        if (w != -ETIMEDOUT && w != 0) fprintf(stderr, "uring_close: wait %d: %d\n", i, w);
    }
    for (int i = 0; i < pairs; i++)
        if (pd[i]) np_close(pd[i]);
    /* Every peer must see the end of file; poll them all, bounded. */
    int64_t until = mono_ns() + (int64_t)secs * 1000000000;
    int left = pairs;
    char *eof = calloc((size_t)pairs, 1);
    struct pollfd *p = calloc((size_t)pairs, sizeof *p);
    int *idx = calloc((size_t)pairs, sizeof *idx);
    if (!eof || !p || !idx) return 2;
    while (left && mono_ns() < until) {
        int n = 0;
        for (int i = 0; i < pairs; i++)
            if (!eof[i]) {
                idx[n] = i;
                p[n++] = (struct pollfd){peer[i], POLLIN, 0};
            }
        np_sleep(10000000); /* let the workers reap meanwhile */
        if (poll(p, (nfds_t)n, 0) < 0) break;
        for (int k = 0; k < n; k++) {
            if (!p[k].revents) continue;
            char c;
            if (read(p[k].fd, &c, 1) == 0) {
                eof[idx[k]] = 1;
                left--;
            }
        }
    }
    for (int i = 0; i < pairs; i++) close(peer[i]);
    printf("uring_close: %d pairs (%d registered), %d peers without end of file after %d s\n", pairs, opened, left,
           left ? secs : 0);
    free(eof);
    free(idx);
    free(p);
    free(peer);
    free(pd);
    return left ? 1 : 0;
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-n")) pairs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-t")) secs = atoi(argv[i + 1]);
    }
    if (pairs < 1 || pairs > 8000 || secs < 1) {
        fprintf(stderr, "usage: uring_close [-n PAIRS (1-8000)] [-t SECONDS]\n");
        return 2;
    }
    alarm((unsigned)secs * 3 + 30); /* a watchdog: never hang */
    return np_main(run, NULL);
}
