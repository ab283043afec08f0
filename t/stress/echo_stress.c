/* A checksummed echo stress, for the fault-injection build (src/fault.hpp)
 * and as a plain one.  Many connections (TCP through np_accept, and unix
 * socket pairs) carry a stream whose every byte is a function of the
 * connection's seed and the byte's offset: what comes back is checked byte
 * for byte, so a lost, repeated or reordered byte is caught where it
 * happens.  Random sizes, random calls (read/readv/recvfrom/recvmsg,
 * write/writev/sendto/sendmsg), random deadlines (none, far, tight, moved
 * on with every chunk).
 *
 * A connection may end early only for a reason the API reported: a reset
 * (-ECONNRESET on either end: an injected reset is sticky, the other end
 * then sees end of file or EPIPE), or a deadline the test set.  Anything
 * else, and any wrong byte, fails the run.  At the end: no green thread
 * left (np_stats), no descriptor left (np_stats, /proc/self/fd back to its
 * count before the run); a watchdog ends a run that hangs.
 *
 *   echo_stress [-n conns] [-p parallel] [-s seed] [-t watchdog_s] [-R] [-E]
 *     -R  resets may happen (NP_FAULT_KINDS includes reset): else every
 *         connection without a tight deadline must complete
 *     -E  instead: accept under a real EMFILE (RLIMIT_NOFILE lowered in a
 *         child process) keeps serving once descriptors are free again
 *
 * NP_POLLER picks the poller; the driver (t/stress/faults.sh) runs each. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"

#define MAGIC 0x4e505354u

enum { DL_NONE, DL_FAR, DL_TIGHT, DL_ROLLING };

struct conn {
    uint32_t id;
    uint64_t seed;
    size_t total;
    int unix_pair;
    int dl;
    int64_t dl_ns;
    /* what the API said */
    atomic_int cli_reset, srv_reset, cli_timeout, srv_timeout, cli_epipe, srv_epipe;
    atomic_int cli_other, srv_other; /* an unexpected error (its value) */
    atomic_int corrupt;
    size_t recvd;
    int eof_early;
    int done;
};

static struct conn *conns;
static int nconns = 2000, parallel = 150, watchdog_s = 50, resets_ok = 0;
static uint64_t run_seed = 1;
static atomic_int active_clients, active_servers, finished;
static atomic_long retries_mem, accept_emfile, srv_unattributed, bytes_ok;
static atomic_int all_done;
static struct sockaddr_in laddr;

static uint64_t mix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t *s) { return mix(*s += 0x632BE59BD9B4E019ull); }

/* The stream: byte o of connection seed s. */
static void gen(uint64_t s, size_t off, unsigned char *p, size_t n) {
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) {
        size_t o = off + i;
        if (i == 0 || (o & 7) == 0) w = mix(s ^ ((uint64_t)(o >> 3) * 0xD1342543DE82EF95ull));
        p[i] = (unsigned char)(w >> ((o & 7) * 8));
    }
}

static int fd_count(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n - 3; /* ., .., the DIR's own */
}

/* ---- I/O with a random call --------------------------------------------- */

static ssize_t rd(np_fd *f, void *b, size_t n, uint64_t *r) {
    switch (rnd(r) % 4) {
    case 0: return np_read(f, b, n);
    case 1: {
        size_t h = n / 2;
        struct iovec iov[3] = {{b, h}, {(char *)b + h, 0}, {(char *)b + h, n - h}};
        return np_readv(f, iov, 3);
    }
    case 2: return np_recvfrom(f, b, n, 0, NULL, NULL);
    default: {
        struct iovec iov = {b, n};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
        return np_recvmsg(f, &m, 0);
    }
    }
}

static ssize_t wr(np_fd *f, const void *b, size_t n, uint64_t *r) {
    switch (rnd(r) % 4) {
    case 0: return np_write(f, b, n);
    case 1: {
        size_t h = n / 3;
        struct iovec iov[2] = {{(void *)b, h}, {(char *)b + h, n - h}};
        return np_writev(f, iov, 2);
    }
    case 2: return np_sendto(f, b, n, 0, NULL, 0);
    default: {
        struct iovec iov = {(void *)b, n};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
        return np_sendmsg(f, &m, 0);
    }
    }
}

/* A transient error worth another try (an application's backoff). */
static int transient(ssize_t e) {
    if (e == -ENOMEM || e == -ENOBUFS) {
        atomic_fetch_add(&retries_mem, 1);
        np_sleep(200 * 1000);
        return 1;
    }
    return 0;
}

/* Records an error the API reported; 1 when it ends the connection. */
static void note(atomic_int *reset, atomic_int *timeout, atomic_int *epipe, atomic_int *other, ssize_t e) {
    if (e == -ECONNRESET) atomic_store(reset, 1);
    else if (e == -ETIMEDOUT) atomic_store(timeout, 1);
    else if (e == -EPIPE) atomic_store(epipe, 1);
    else atomic_store(other, (int)-e);
}

/* ---- the server's side ---------------------------------------------------- */

struct srv_arg {
    np_fd *f;
};

static void server_conn(void *a) {
    np_fd *f = a;
    uint64_t r = mix((uint64_t)(uintptr_t)a ^ run_seed);
    unsigned char *buf = malloc(40000);
    uint32_t hdr[2];
    size_t got = 0;
    struct conn *c = NULL;
    while (got < sizeof hdr) {
        ssize_t n = rd(f, (char *)hdr + got, sizeof hdr - got, &r);
        if (n > 0) got += (size_t)n;
        else if (n < 0 && transient(n)) continue;
        else {
            if (n < 0) atomic_fetch_add(&srv_unattributed, 1);
            goto out;
        }
    }
    if (hdr[0] != MAGIC || hdr[1] >= (uint32_t)nconns) {
        fprintf(stderr, "server: bad header %#x %u\n", hdr[0], hdr[1]);
        exit(1);
    }
    c = &conns[hdr[1]];
    if (c->dl == DL_TIGHT) np_set_deadline(f, c->dl_ns, NP_READ | NP_WRITE);
    for (;;) {
        size_t want = 1 + rnd(&r) % 32768;
        ssize_t n = rd(f, buf, want, &r);
        if (n == 0) break;
        if (n < 0) {
            if (transient(n)) continue;
            note(&c->srv_reset, &c->srv_timeout, &c->srv_epipe, &c->srv_other, n);
            goto out;
        }
        size_t off = 0;
        while (off < (size_t)n) {
            ssize_t w = wr(f, buf + off, (size_t)n - off, &r);
            if (w > 0) off += (size_t)w;
            else if (w < 0 && transient(w)) continue;
            else {
                note(&c->srv_reset, &c->srv_timeout, &c->srv_epipe, &c->srv_other, w ? w : -EIO);
                goto out;
            }
        }
    }
    shutdown(np_fileno(f), SHUT_WR);
out:
    free(buf);
    int e = np_close(f);
    if (e) fprintf(stderr, "server: np_close: %s\n", strerror(-e));
    atomic_fetch_sub(&active_servers, 1);
}

static np_fd *listener;
static void (*serve)(void *) = server_conn;

static void acceptor(void *a) {
    (void)a;
    for (;;) {
        np_fd *c;
        int e = np_accept(listener, &c, NULL, NULL);
        if (e == 0) {
            atomic_fetch_add(&active_servers, 1);
            if (np_go(serve, c)) {
                fprintf(stderr, "np_go failed\n");
                exit(1);
            }
            continue;
        }
        if (e == -EMFILE || e == -ENFILE || e == -ENOMEM || e == -ENOBUFS) {
            atomic_fetch_add(&accept_emfile, 1);
            np_sleep(1000 * 1000); /* descriptors come back as connections end */
            continue;
        }
        if (e == -EBADF) break; /* closed at the end */
        fprintf(stderr, "np_accept: %s\n", strerror(-e));
        exit(1);
    }
    atomic_fetch_sub(&active_servers, 1);
}

/* ---- the client's side ---------------------------------------------------- */

struct cli {
    struct conn *c;
    np_fd *f;
};

static void *reader(void *a) {
    struct cli *k = a;
    struct conn *c = k->c;
    uint64_t r = mix(c->seed ^ 7);
    unsigned char *buf = malloc(32768), *exp = malloc(32768);
    for (;;) {
        size_t want = 1 + rnd(&r) % 32768;
        ssize_t n = rd(k->f, buf, want, &r);
        if (n == 0) {
            if (c->recvd != c->total) c->eof_early = 1;
            break;
        }
        if (n < 0) {
            if (transient(n)) continue;
            note(&c->cli_reset, &c->cli_timeout, &c->cli_epipe, &c->cli_other, n);
            break;
        }
        if (c->recvd + (size_t)n > c->total) {
            fprintf(stderr, "conn %u: %zu bytes past the end\n", c->id, c->recvd + (size_t)n - c->total);
            atomic_store(&c->corrupt, 1);
            break;
        }
        gen(c->seed, c->recvd, exp, (size_t)n);
        if (memcmp(buf, exp, (size_t)n)) {
            size_t i = 0;
            while (buf[i] == exp[i]) i++;
            fprintf(stderr, "conn %u: wrong byte at offset %zu (of %zu): got %#x, want %#x\n", c->id,
                    c->recvd + i, c->total, buf[i], exp[i]);
            atomic_store(&c->corrupt, 1);
            break;
        }
        c->recvd += (size_t)n;
        atomic_fetch_add(&bytes_ok, n);
        if (c->dl == DL_ROLLING) np_set_deadline(k->f, np_now() + c->dl_ns, NP_READ);
    }
    free(buf);
    free(exp);
    return NULL;
}

static void client(void *a) {
    struct conn *c = a;
    struct cli k = {c, NULL};
    uint64_t r = mix(c->seed ^ 3);
    np_fd *srv = NULL;
    int e;
    if (c->unix_pair) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
            perror("socketpair");
            exit(1);
        }
        if ((e = np_open(sv[0], &k.f)) || (e = np_open(sv[1], &srv))) {
            fprintf(stderr, "np_open: %s\n", strerror(-e));
            exit(1);
        }
        atomic_fetch_add(&active_servers, 1);
        np_go(server_conn, srv);
    } else {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0 || (e = np_open(s, &k.f))) {
            fprintf(stderr, "client socket: %s\n", strerror(errno));
            exit(1);
        }
        if ((e = np_connect(k.f, (struct sockaddr *)&laddr, sizeof laddr))) {
            /* A reset while the handshake ends is a reset all the same. */
            note(&c->cli_reset, &c->cli_timeout, &c->cli_epipe, &c->cli_other, e);
            goto closed;
        }
    }
    if (c->dl == DL_FAR) np_set_deadline(k.f, np_now() + 60 * 1000000000LL, NP_READ | NP_WRITE);
    if (c->dl == DL_TIGHT) np_set_deadline(k.f, c->dl_ns, NP_READ | NP_WRITE);
    if (c->dl == DL_ROLLING) np_set_deadline(k.f, np_now() + c->dl_ns, NP_READ | NP_WRITE);
    np_thread *t;
    if (np_spawn(&t, reader, &k)) {
        fprintf(stderr, "np_spawn failed\n");
        exit(1);
    }
    uint32_t hdr[2] = {MAGIC, c->id};
    unsigned char *buf = malloc(16384);
    size_t off = 0, hoff = 0;
    int failed = 0;
    while (hoff < sizeof hdr) {
        ssize_t n = wr(k.f, (char *)hdr + hoff, sizeof hdr - hoff, &r);
        if (n > 0) hoff += (size_t)n;
        else if (n < 0 && transient(n)) continue;
        else {
            note(&c->cli_reset, &c->cli_timeout, &c->cli_epipe, &c->cli_other, n ? n : -EIO);
            failed = 1;
            break;
        }
    }
    while (!failed && off < c->total) {
        size_t want = 1 + rnd(&r) % 16384;
        if (want > c->total - off) want = c->total - off;
        gen(c->seed, off, buf, want);
        size_t done = 0;
        while (done < want) {
            ssize_t n = wr(k.f, buf + done, want - done, &r);
            if (n > 0) done += (size_t)n;
            else if (n < 0 && transient(n)) continue;
            else {
                note(&c->cli_reset, &c->cli_timeout, &c->cli_epipe, &c->cli_other, n ? n : -EIO);
                failed = 1;
                break;
            }
        }
        off += done;
        if (c->dl == DL_ROLLING) np_set_deadline(k.f, np_now() + c->dl_ns, NP_WRITE);
    }
    free(buf);
    /* All sent: end of file for the server.  Failed: end the reader too. */
    shutdown(np_fileno(k.f), failed ? SHUT_RDWR : SHUT_WR);
    np_join(t, NULL);
closed:
    e = np_close(k.f);
    if (e) {
        fprintf(stderr, "client: np_close: %s\n", strerror(-e));
        exit(1);
    }
    c->done = 1;
    atomic_fetch_add(&finished, 1);
    atomic_fetch_sub(&active_clients, 1);
}

/* ---- the run ---------------------------------------------------------------- */

static void *watchdog(void *a) {
    (void)a;
    for (int i = 0; i < watchdog_s * 10 && !atomic_load(&all_done); i++) usleep(100 * 1000);
    if (atomic_load(&all_done)) return NULL;
    np_stats st = {.size = sizeof st};
    np_stats_get(&st);
    fprintf(stderr,
            "echo_stress: WATCHDOG after %d s: %d of %d finished, %d clients and %d servers live; "
            "threads %llu parked %llu poll_waiters %llu descriptors %llu\n",
            watchdog_s, atomic_load(&finished), nconns, atomic_load(&active_clients),
            atomic_load(&active_servers), (unsigned long long)st.threads, (unsigned long long)st.parked,
            (unsigned long long)st.poll_waiters, (unsigned long long)st.descriptors);
    for (int i = 0; i < nconns; i++)
        if (!conns[i].done && conns[i].seed)
            fprintf(stderr, "  conn %d: %s total %zu recvd %zu dl %d\n", i, conns[i].unix_pair ? "unix" : "tcp",
                    conns[i].total, conns[i].recvd, conns[i].dl);
    _exit(3);
}

/* The descriptors once the runtime has settled: a worker still starting
 * (its ring made again after a refused submission) holds one for a moment,
 * which the count at the end would then lack. */
static int settled_fd_count(void) {
    int n = fd_count();
    for (int same = 0, i = 0; same < 3 && i < 100; i++) {
        np_sleep(10 * 1000 * 1000);
        int m = fd_count();
        same = m == n ? same + 1 : 0;
        n = m;
    }
    return n;
}

static int run(void *a) {
    (void)a;
    int fd0 = settled_fd_count();
    np_stats st0 = {.size = sizeof st0};
    np_stats_get(&st0);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    laddr.sin_family = AF_INET;
    laddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof laddr;
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(ls, (struct sockaddr *)&laddr, sizeof laddr) || listen(ls, 4096) ||
        getsockname(ls, (struct sockaddr *)&laddr, &al) || np_open(ls, &listener)) {
        perror("listener");
        return 1;
    }
    atomic_fetch_add(&active_servers, 1);
    np_go(acceptor, NULL);

    uint64_t r = mix(run_seed);
    int64_t t0 = np_now();
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->id = (uint32_t)i;
        c->seed = mix(run_seed * 1000003u + (uint64_t)i) | 1;
        uint64_t z = rnd(&r);
        unsigned sz = (unsigned)(z % 100);
        c->total = sz < 70 ? rnd(&r) % 4096 : sz < 96 ? rnd(&r) % 65536 : rnd(&r) % (1 << 20);
        c->unix_pair = rnd(&r) % 4 == 0;
        unsigned d = (unsigned)(rnd(&r) % 100);
        c->dl = d < 50 ? DL_NONE : d < 70 ? DL_FAR : d < 85 ? DL_TIGHT : DL_ROLLING;
        if (c->dl == DL_TIGHT) c->dl_ns = np_now() + (int64_t)(1 + rnd(&r) % 100) * 1000000;
        if (c->dl == DL_ROLLING) c->dl_ns = (int64_t)(20 + rnd(&r) % 200) * 1000000;
        while (atomic_load(&active_clients) >= parallel) np_sleep(500 * 1000);
        atomic_fetch_add(&active_clients, 1);
        if (np_go(client, c)) {
            fprintf(stderr, "np_go failed\n");
            return 1;
        }
    }
    while (atomic_load(&active_clients) > 0) np_sleep(1000 * 1000);
    np_close(listener);
    for (int i = 0; i < 5000 && atomic_load(&active_servers) > 0; i++) np_sleep(1000 * 1000);
    int64_t t1 = np_now();

    /* Every connection ends complete, or for a reason the API gave. */
    int bad = 0, ok = 0, by_reset = 0, by_deadline = 0, unexplained = 0;
    static char why[10][200];
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        int reset = c->cli_reset || c->srv_reset;
        int other = c->cli_other || c->srv_other;
        if (c->corrupt) {
            bad++;
            continue;
        }
        if (other) {
            fprintf(stderr, "conn %d: unexpected error: client %s, server %s\n", i,
                    c->cli_other ? strerror(c->cli_other) : "-", c->srv_other ? strerror(c->srv_other) : "-");
            bad++;
            continue;
        }
        int complete = c->recvd == c->total && !c->eof_early && !reset && !c->cli_timeout &&
                       !c->srv_timeout && !c->cli_epipe && !c->srv_epipe;
        if (complete) {
            ok++;
            continue;
        }
        if (reset && resets_ok) {
            by_reset++;
        } else if ((c->cli_timeout || c->srv_timeout) && (c->dl == DL_TIGHT || c->dl == DL_ROLLING)) {
            by_deadline++;
        } else {
            if (++unexplained <= 10)
                snprintf(why[unexplained - 1], sizeof why[0],
                         "conn %d (%s, dl %d): ended at %zu of %zu: eof_early %d reset %d/%d timeout %d/%d "
                         "epipe %d/%d\n",
                        i, c->unix_pair ? "unix" : "tcp", c->dl, c->recvd, c->total, c->eof_early,
                        c->cli_reset, c->srv_reset, c->cli_timeout, c->srv_timeout, c->cli_epipe, c->srv_epipe);
        }
    }
    /* A reset on the server before the header names no connection. */
    long unattributed = atomic_load(&srv_unattributed);
    if (unexplained && resets_ok && unexplained <= unattributed) unexplained = 0;
    for (int i = 0; i < unexplained && i < 10; i++) fputs(why[i], stderr);

    np_stats st = {.size = sizeof st};
    int leak = 0;
    for (int i = 0; i < 200; i++) { /* the last threads leave */
        np_stats_get(&st);
        if (st.threads <= st0.threads && st.descriptors == st0.descriptors && fd_count() == fd0) break;
        np_sleep(10 * 1000 * 1000);
    }
    int fd1 = fd_count();
    if (st.threads > st0.threads || st.parked > st0.parked || st.descriptors != st0.descriptors ||
        st.poll_waiters != 0 || fd1 != fd0) {
        fprintf(stderr,
                "left behind: threads %llu (before %llu), parked %llu, poll_waiters %llu, descriptors %llu "
                "(before %llu), fds %d (before %d)\n",
                (unsigned long long)st.threads, (unsigned long long)st0.threads, (unsigned long long)st.parked,
                (unsigned long long)st.poll_waiters, (unsigned long long)st.descriptors,
                (unsigned long long)st0.descriptors, fd1, fd0);
        leak = 1;
    }
    printf("echo_stress %s: %d connections in %.1f s, %.1f MiB checked: %d complete, %d reset, %d "
           "past a deadline, %d bad, %d unexplained; ENOMEM/ENOBUFS retries %ld, accept EMFILE-like %ld, "
           "fds %d -> %d\n",
           getenv("NP_POLLER") ? getenv("NP_POLLER") : "epoll", nconns, (double)(t1 - t0) / 1e9,
           (double)atomic_load(&bytes_ok) / 1048576.0, ok, by_reset, by_deadline, bad, unexplained,
           atomic_load(&retries_mem), atomic_load(&accept_emfile), fd0, fd1);
    fflush(stdout);
    return bad || unexplained || leak;
}

/* ---- accept under a real EMFILE ------------------------------------------------ */

enum { EM_CONNS = 40, EM_FREE = 6 };
static np_fd *em_cli[EM_CONNS];

static void em_server(void *a) {
    np_fd *f = a;
    char buf[4096];
    ssize_t n;
    while ((n = np_read(f, buf, sizeof buf)) > 0)
        if (np_write(f, buf, (size_t)n) != n) break;
    if (n < 0) {
        fprintf(stderr, "emfile: server read: %s\n", strerror((int)-n));
        exit(1);
    }
    np_close(f);
    atomic_fetch_sub(&active_servers, 1);
}

static void em_client(void *a) {
    np_fd *f = a;
    char out[3000], in[3000];
    uint64_t s = (uintptr_t)a;
    gen(s, 0, (unsigned char *)out, sizeof out);
    if (np_write(f, out, sizeof out) != (ssize_t)sizeof out) {
        fprintf(stderr, "emfile: write failed\n");
        exit(1);
    }
    size_t got = 0;
    while (got < sizeof in) {
        ssize_t n = np_read(f, in + got, sizeof in - got);
        if (n <= 0) {
            fprintf(stderr, "emfile: read: %zd\n", n);
            exit(1);
        }
        got += (size_t)n;
    }
    if (memcmp(in, out, sizeof in)) {
        fprintf(stderr, "emfile: wrong echo\n");
        exit(1);
    }
    np_close(f);
    atomic_fetch_add(&finished, 1);
    atomic_fetch_sub(&active_clients, 1);
}

static int run_emfile(void *a) {
    (void)a;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    laddr.sin_family = AF_INET;
    laddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof laddr;
    if (bind(ls, (struct sockaddr *)&laddr, sizeof laddr) || listen(ls, 128) ||
        getsockname(ls, (struct sockaddr *)&laddr, &al) || np_open(ls, &listener)) {
        perror("listener");
        return 1;
    }
    /* Every connection made (the kernel completes them, queued), none
     * accepted yet; then room for EM_FREE more descriptors only. */
    int maxfd = ls;
    for (int i = 0; i < EM_CONNS; i++) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int e;
        if (s < 0 || (e = np_open(s, &em_cli[i])) || (e = np_connect(em_cli[i], (struct sockaddr *)&laddr, sizeof laddr))) {
            fprintf(stderr, "emfile: client %d: %s\n", i, s < 0 ? strerror(errno) : strerror(-e));
            return 1;
        }
        if (s > maxfd) maxfd = s;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = (rlim_t)maxfd + 1 + EM_FREE;
    if (setrlimit(RLIMIT_NOFILE, &rl)) {
        perror("setrlimit");
        return 1;
    }
    /* Fill the holes below the limit too: exactly EM_FREE left. */
    int hog[64], nhog = 0, fd0 = fd_count();
    (void)fd0;
    while (nhog < 64) {
        int d = dup(0);
        if (d < 0) break;
        if (d > maxfd) { /* past the clients: give it back */
            close(d);
            break;
        }
        hog[nhog++] = d;
    }
    serve = em_server;
    atomic_fetch_add(&active_servers, 1);
    np_go(acceptor, NULL);
    int64_t t0 = np_now();
    atomic_store(&active_clients, EM_CONNS);
    for (int i = 0; i < EM_CONNS; i++) np_go(em_client, em_cli[i]);
    while (atomic_load(&active_clients) > 0 && np_now() - t0 < 20 * 1000000000LL) np_sleep(1000 * 1000);
    np_close(listener);
    for (int i = 0; i < nhog; i++) close(hog[i]);
    for (int i = 0; i < 2000 && atomic_load(&active_servers) > 0; i++) np_sleep(1000 * 1000);
    int done = atomic_load(&finished);
    long em = atomic_load(&accept_emfile);
    printf("echo_stress %s emfile: %d of %d connections served with room for %d descriptors, "
           "accept saw EMFILE %ld times, in %.2f s\n",
           getenv("NP_POLLER") ? getenv("NP_POLLER") : "epoll", done, EM_CONNS, EM_FREE, em,
           (double)(np_now() - t0) / 1e9);
    fflush(stdout);
    return done != EM_CONNS || em == 0 || atomic_load(&active_servers) != 0;
}

int main(int argc, char **argv) {
    int opt, emfile = 0;
    while ((opt = getopt(argc, argv, "n:p:s:t:RE")) != -1) {
        switch (opt) {
        case 'n': nconns = atoi(optarg); break;
        case 'p': parallel = atoi(optarg); break;
        case 's': run_seed = strtoull(optarg, NULL, 0); break;
        case 't': watchdog_s = atoi(optarg); break;
        case 'R': resets_ok = 1; break;
        case 'E': emfile = 1; break;
        default:
            fprintf(stderr, "usage: echo_stress [-n conns] [-p parallel] [-s seed] [-t secs] [-R] [-E]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    conns = calloc((size_t)nconns, sizeof *conns);
    pthread_t wd;
    pthread_create(&wd, NULL, watchdog, NULL);
    int rc;
    if (emfile) {
        /* The limit is lowered in a child: the parent's stays. */
        pid_t p = fork();
        if (p == 0) {
            alarm((unsigned)watchdog_s); /* no watchdog thread here */
            _exit(np_main(run_emfile, NULL));
        }
        int st;
        waitpid(p, &st, 0);
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    } else {
        rc = np_main(run, NULL);
    }
    atomic_store(&all_done, 1);
    pthread_join(wd, NULL);
    return rc;
}
