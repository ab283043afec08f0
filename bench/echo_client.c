/*
 * echo_client.c - closed-loop TCP echo load generator.
 *
 * Measures: request rate and round-trip latency of an echo server.  Opens
 * CONNS connections, spread over client threads each with its own epoll
 * (edge-triggered, nonblocking sockets).  Every connection sends MSGSIZE
 * bytes, waits until all MSGSIZE bytes came back, records the round trip
 * in a log-linear histogram (~1.5% resolution) and sends again.  Before
 * the timed window each connection completes one untimed round trip, so
 * the server has accepted and set up every connection.
 *
 * Usage: echo_client HOST PORT CONNS SECONDS [MSGSIZE=512]
 * Environment:
 *   ECHO_THREADS=2        client threads
 *   ECHO_SERVER_PID=pid   also report the server's CPU time per request
 *                         (utime+stime delta over the timed window, from
 *                         /proc/pid/stat) and its VmRSS before connecting
 *                         and with all connections open and idle
 *   ECHO_IDLE_MS=500      idle time before the RSS sample (with the pid)
 *   ECHO_RATE=R           fixed load instead of closed loop: R requests/s
 *                         in all, each connection sending on its own
 *                         schedule (period CONNS/R, staggered).  A round
 *                         trip is timed from when its request was due, so
 *                         a server that falls behind shows it in the
 *                         latency (no coordinated omission)
 * Output: one line
 *   conns=N rps=X p50_us=Y p99_us=Z p90_us=P p999_us=Q
 * then, with ECHO_SERVER_PID,
 *   srv_cpu_us_per_req=C srv_rss0_kib=A srv_rss_idle_kib=B
 * then the round trips per connection in the window (least, 1st
 * percentile, median, most; connections with none; Jain's fairness index)
 *   conn_min=A conn_p1=B conn_p50=C conn_max=D conn_zero=E fairness=F
 * Exit status 2 when not every connection could be set up.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SUB_BITS 6 /* 64 sub-buckets per power of two */
#define NBUCKETS (64 << SUB_BITS)
#define CONNECT_BATCH 256   /* connects in flight per thread */
#define SETUP_LIMIT_NS (60 * 1000000000LL)

enum { ST_CONNECTING, ST_SENDING, ST_RECEIVING, ST_WAITING, ST_IDLE, ST_DEAD };

struct conn {
    int fd, state;
    size_t off; /* bytes sent (sending) or received (receiving) */
    int64_t t_sent; /* closed loop: sent; fixed load: due */
    int retries;
    uint32_t done; /* its round trips in the timed window */
};

struct worker {
    pthread_t tid;
    int ep, nconns;
    struct conn *conns;
    uint64_t hist[NBUCKETS];
    uint64_t done; /* round trips completed in the timed window */
    int failed;
    int first;          /* index of the first connection over all threads */
    struct conn **heap; /* fixed load: waiting connections by due time */
    int nheap;
};

static struct sockaddr_in addr;
static size_t msgsize = 512;
static char *txbuf;
static int nthreads = 2;
static int64_t window_start, window_end;
static pthread_barrier_t barrier;
static atomic_int setup_failed;
static int64_t period_ns; /* fixed load: per connection; 0 = closed loop */
static int total_conns;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Min-heap of waiting connections, keyed by the due time. */
static void heap_push(struct worker *w, struct conn *c) {
    int i = w->nheap++;
    while (i > 0) {
        int up = (i - 1) / 2;
        if (w->heap[up]->t_sent <= c->t_sent) break;
        w->heap[i] = w->heap[up];
        i = up;
    }
    w->heap[i] = c;
}

static struct conn *heap_pop(struct worker *w) {
    struct conn *top = w->heap[0], *last = w->heap[--w->nheap];
    int i = 0, n = w->nheap;
    for (;;) {
        int k = 2 * i + 1;
        if (k >= n) break;
        if (k + 1 < n && w->heap[k + 1]->t_sent < w->heap[k]->t_sent) k++;
        if (last->t_sent <= w->heap[k]->t_sent) break;
        w->heap[i] = w->heap[k];
        i = k;
    }
    if (n > 0) w->heap[i] = last;
    return top;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static unsigned bucket_of(uint64_t v) {
    if (v < (1u << SUB_BITS)) return (unsigned)v;
    unsigned msb = 63 - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - SUB_BITS;
    unsigned b = ((shift + 1) << SUB_BITS) + (unsigned)((v >> shift) - (1u << SUB_BITS));
    return b < NBUCKETS ? b : NBUCKETS - 1;
}

static uint64_t bucket_mid(unsigned b) {
    if (b < (1u << SUB_BITS)) return b;
    unsigned shift = (b >> SUB_BITS) - 1;
    uint64_t lo = ((uint64_t)(1u << SUB_BITS) + (b & ((1u << SUB_BITS) - 1))) << shift;
    return lo + ((1ull << shift) >> 1);
}

static int start_connect(struct worker *w, struct conn *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->state = ST_CONNECTING;
    c->off = 0;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        c->fd = -1;
        return -e;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) return -errno;
    return 0;
}

static void kill_conn(struct conn *c) {
    if (c->fd >= 0) {
        struct linger lg = {1, 0}; /* RST: no TIME_WAIT pile-up across runs */
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(c->fd);
    }
    c->fd = -1;
    c->state = ST_DEAD;
}

/* Push the rest of the request; 1 when fully sent, 0 when blocked, -1 dead. */
static int do_send(struct conn *c) {
    while (c->off < msgsize) {
        ssize_t k = send(c->fd, txbuf + c->off, msgsize - c->off, MSG_NOSIGNAL);
        if (k > 0) {
            c->off += (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        return -1;
    }
    c->state = ST_RECEIVING;
    c->off = 0;
    return 1;
}

static void begin_request(struct conn *c) {
    c->state = ST_SENDING;
    c->off = 0;
    if (!period_ns) c->t_sent = now_ns();
}

/* Drive a connection after an event.  timed: record into the histogram,
 * and keep going until the window closes; otherwise one round trip and
 * then idle. */
static void drive(struct worker *w, struct conn *c, int timed, uint64_t *pending) {
    char rx[16384];
    for (;;) {
        if (c->state == ST_SENDING) {
            int r = do_send(c);
            if (r < 0) goto dead;
            if (r == 0) return;
        }
        if (c->state != ST_RECEIVING) return;
        ssize_t k = recv(c->fd, rx, sizeof rx, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (k <= 0) goto dead;
        c->off += (size_t)k;
        if (c->off > msgsize) goto dead; /* server sent more than asked */
        if (c->off < msgsize) continue;
        int64_t t = now_ns();
        if (timed && period_ns) {
            /* every request due inside the window counts, however late */
            w->hist[bucket_of((uint64_t)(t - c->t_sent))]++;
            w->done++;
            c->done++;
            c->t_sent += period_ns;
            if (c->t_sent >= window_end) {
                c->state = ST_IDLE;
                (*pending)--;
                return;
            }
            if (c->t_sent > t) {
                c->state = ST_WAITING;
                heap_push(w, c);
                return;
            }
            begin_request(c); /* already due: the server is behind */
        } else if (timed) {
            if (t >= window_start && t < window_end) {
                w->hist[bucket_of((uint64_t)(t - c->t_sent))]++;
                w->done++;
                c->done++;
            }
            if (t >= window_end) {
                c->state = ST_IDLE;
                (*pending)--;
                return;
            }
            begin_request(c);
        } else {
            c->state = ST_IDLE;
            (*pending)--;
            return;
        }
    }
dead:
    if (c->state != ST_IDLE) (*pending)--;
    kill_conn(c);
    w->failed++;
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct epoll_event evs[512];
    int64_t limit = now_ns() + SETUP_LIMIT_NS;

    /* 1. connect, at most CONNECT_BATCH in flight */
    int next = 0, inflight = 0, connected = 0;
    while (connected < w->nconns && now_ns() < limit) {
        while (next < w->nconns && inflight < CONNECT_BATCH) {
            struct conn *c = &w->conns[next++];
            int rc = start_connect(w, c);
            if (rc < 0) {
                fprintf(stderr, "echo_client: connect: %s\n", strerror(-rc));
                atomic_store(&setup_failed, 1);
                goto out_setup;
            }
            inflight++;
        }
        int n = epoll_wait(w->ep, evs, 512, 100);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->state != ST_CONNECTING) continue;
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err == EINPROGRESS || err == EALREADY) continue;
            if (err == 0 && !(evs[i].events & EPOLLOUT)) continue;
            inflight--;
            if (err != 0) {
                /* refused (listen queue overflow): retry a few times */
                epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                if (++c->retries > 5 || start_connect(w, c) < 0) {
                    fprintf(stderr, "echo_client: connect: %s\n", strerror(err));
                    atomic_store(&setup_failed, 1);
                    goto out_setup;
                }
                inflight++;
                continue;
            }
            c->state = ST_IDLE;
            connected++;
        }
    }
    if (connected < w->nconns) {
        fprintf(stderr, "echo_client: only %d of %d connected\n", connected, w->nconns);
        atomic_store(&setup_failed, 1);
    }
out_setup:
    pthread_barrier_wait(&barrier); /* all threads connected */

    /* 2. one untimed round trip per connection */
    uint64_t pending = 0;
    if (!atomic_load(&setup_failed)) {
        for (int i = 0; i < w->nconns; i++) {
            begin_request(&w->conns[i]);
            pending++;
            drive(w, &w->conns[i], 0, &pending);
        }
        while (pending > 0 && now_ns() < limit) {
            int n = epoll_wait(w->ep, evs, 512, 100);
            for (int i = 0; i < n; i++) drive(w, evs[i].data.ptr, 0, &pending);
        }
        if (pending > 0 || w->failed) {
            fprintf(stderr, "echo_client: %llu connections got no echo, %d died\n",
                    (unsigned long long)pending, w->failed);
            atomic_store(&setup_failed, 1);
        }
    }
    pthread_barrier_wait(&barrier); /* primed; main samples idle RSS */
    pthread_barrier_wait(&barrier); /* window_start/end set */

    /* 3. timed window */
    if (!atomic_load(&setup_failed)) {
        pending = 0;
        for (int i = 0; i < w->nconns; i++) {
            struct conn *c = &w->conns[i];
            if (c->state == ST_DEAD) continue;
            pending++;
            if (period_ns) {
                /* stagger the schedules evenly over one period */
                c->t_sent = window_start +
                    (int64_t)((double)period_ns * (w->first + i) / total_conns);
                c->state = ST_WAITING;
                heap_push(w, c);
                continue;
            }
            begin_request(c);
            drive(w, c, 1, &pending);
        }
        int64_t hard = window_end + 5 * 1000000000LL; /* stragglers */
        while (pending > 0) {
            int64_t t = now_ns();
            if (t >= hard) break;
            while (w->nheap > 0 && w->heap[0]->t_sent <= t) {
                struct conn *c = heap_pop(w);
                begin_request(c);
                drive(w, c, 1, &pending);
            }
            int64_t wait = 10000000; /* 10 ms */
            if (w->nheap > 0 && w->heap[0]->t_sent - t < wait) wait = w->heap[0]->t_sent - t;
            if (wait < 0) wait = 0;
            struct timespec ts = {wait / 1000000000LL, wait % 1000000000LL};
            int n = epoll_pwait2(w->ep, evs, 512, &ts, NULL);
            for (int i = 0; i < n; i++) drive(w, evs[i].data.ptr, 1, &pending);
        }
    }
    pthread_barrier_wait(&barrier); /* window over */
    for (int i = 0; i < w->nconns; i++) kill_conn(&w->conns[i]);
    return NULL;
}

static int proc_stat_ticks(long pid, unsigned long long *ticks) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    /* after ')': field 3 is state; utime is field 14, stime 15 */
    unsigned long long ut = 0, st = 0;
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        field++;
        if (field == 14) ut = strtoull(tok, NULL, 10);
        if (field == 15) {
            st = strtoull(tok, NULL, 10);
            break;
        }
    }
    if (field != 15) return -1;
    *ticks = ut + st;
    return 0;
}

static long proc_rss_kib(long pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
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

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: echo_client HOST PORT CONNS SECONDS [MSGSIZE]\n");
        return 1;
    }
    int conns = atoi(argv[3]);
    double seconds = atof(argv[4]);
    if (argc > 5) msgsize = (size_t)atol(argv[5]);
    if (conns <= 0 || seconds <= 0 || msgsize == 0 || msgsize > (1 << 20)) {
        fprintf(stderr, "echo_client: bad arguments\n");
        return 1;
    }
    const char *e = getenv("ECHO_THREADS");
    if (e && atoi(e) > 0) nthreads = atoi(e);
    if (nthreads > conns) nthreads = conns;
    long spid = (e = getenv("ECHO_SERVER_PID")) ? atol(e) : 0;
    long idle_ms = (e = getenv("ECHO_IDLE_MS")) ? atol(e) : 500;
    if ((e = getenv("ECHO_RATE")) && *e) {
        double rate = atof(e);
        if (rate <= 0 || (double)conns * 1e9 / rate < 1) {
            fprintf(stderr, "echo_client: bad ECHO_RATE '%s'\n", e);
            return 1;
        }
        period_ns = (int64_t)((double)conns * 1e9 / rate);
    }
    total_conns = conns;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(argv[1], argv[2], &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "echo_client: %s: %s\n", argv[1], gai_strerror(rc));
        return 1;
    }
    memcpy(&addr, ai->ai_addr, sizeof addr);
    freeaddrinfo(ai);
    txbuf = malloc(msgsize);
    for (size_t i = 0; i < msgsize; i++) txbuf[i] = (char)('a' + i % 26);

    long rss0 = spid ? proc_rss_kib(spid) : -1;
    struct worker *ws = calloc((size_t)nthreads, sizeof *ws);
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads + 1);
    for (int t = 0; t < nthreads; t++) {
        struct worker *w = &ws[t];
        w->nconns = conns / nthreads + (t < conns % nthreads);
        w->first = t == 0 ? 0 : ws[t - 1].first + ws[t - 1].nconns;
        w->conns = calloc((size_t)w->nconns, sizeof *w->conns);
        w->heap = calloc((size_t)w->nconns, sizeof *w->heap);
        for (int i = 0; i < w->nconns; i++) w->conns[i].fd = -1;
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        if (!w->conns || !w->heap || w->ep < 0 || pthread_create(&w->tid, NULL, worker_main, w)) {
            fprintf(stderr, "echo_client: out of resources\n");
            return 1;
        }
    }
    pthread_barrier_wait(&barrier); /* connected */
    pthread_barrier_wait(&barrier); /* primed */
    long rss_idle = -1;
    if (spid && !atomic_load(&setup_failed)) {
        struct timespec ts = {idle_ms / 1000, (idle_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        rss_idle = proc_rss_kib(spid);
    }
    unsigned long long tk0 = 0, tk1 = 0;
    int have_cpu = spid && proc_stat_ticks(spid, &tk0) == 0;
    window_start = now_ns();
    window_end = window_start + (int64_t)(seconds * 1e9);
    pthread_barrier_wait(&barrier); /* go */
    if (have_cpu) {
        /* sample the server's CPU time when the window closes */
        int64_t left = window_end - now_ns();
        if (left > 0) {
            struct timespec ts = {left / 1000000000LL, left % 1000000000LL};
            nanosleep(&ts, NULL);
        }
        if (proc_stat_ticks(spid, &tk1) != 0) have_cpu = 0;
    }
    pthread_barrier_wait(&barrier); /* done */
    for (int t = 0; t < nthreads; t++) pthread_join(ws[t].tid, NULL);
    if (atomic_load(&setup_failed)) return 2;

    uint64_t total = 0, died = 0;
    static uint64_t hist[NBUCKETS];
    for (int t = 0; t < nthreads; t++) {
        total += ws[t].done;
        died += (uint64_t)ws[t].failed;
        for (int b = 0; b < NBUCKETS; b++) hist[b] += ws[t].hist[b];
    }
    double pct[4] = {0.50, 0.99, 0.90, 0.999}, out[4] = {0, 0, 0, 0};
    for (int k = 0; k < 4; k++) {
        uint64_t want = (uint64_t)(pct[k] * (double)total + 0.5), acc = 0;
        if (want == 0) want = 1;
        for (int b = 0; b < NBUCKETS; b++) {
            acc += hist[b];
            if (acc >= want) {
                out[k] = (double)bucket_mid((unsigned)b) / 1000.0;
                break;
            }
        }
    }
    double secs = (double)(window_end - window_start) / 1e9;
    printf("conns=%d rps=%.0f p50_us=%.1f p99_us=%.1f p90_us=%.1f p999_us=%.1f", conns,
           (double)total / secs, out[0], out[1], out[2], out[3]);
    if (spid) {
        double cpu_us = have_cpu && total
            ? (double)(tk1 - tk0) * 1e6 / (double)sysconf(_SC_CLK_TCK) / (double)total
            : -1;
        printf(" srv_cpu_us_per_req=%.2f srv_rss0_kib=%ld srv_rss_idle_kib=%ld",
               cpu_us, rss0, rss_idle);
    }
    /* How evenly the round trips were spread over the connections: a server
     * that serves some connections over and over while others wait gets a
     * high rate on warm caches, and its starved connections show here
     * (conn_zero: none in the window; fairness: Jain's index, 1 = even). */
    uint32_t *per = malloc((size_t)conns * sizeof *per);
    int np = 0, zero = 0;
    double sum = 0, sq = 0;
    for (int t = 0; per && t < nthreads; t++)
        for (int i = 0; i < ws[t].nconns; i++) {
            uint32_t d = ws[t].conns[i].done;
            per[np++] = d;
            zero += d == 0;
            sum += d;
            sq += (double)d * d;
        }
    if (np) {
        qsort(per, (size_t)np, sizeof *per, cmp_u32);
        printf(" conn_min=%u conn_p1=%u conn_p50=%u conn_max=%u conn_zero=%d fairness=%.3f", per[0],
               per[np / 100], per[np / 2], per[np - 1], zero, sq > 0 ? sum * sum / (np * sq) : 1.0);
    }
    free(per);
    printf("\n");
    if (died) fprintf(stderr, "echo_client: %llu connections died during the run\n",
                      (unsigned long long)died);
    return 0;
}
