/* splice_park: splice(2), tee(2) and vmsplice(2) park the thread while the
 * side they would block on is not ready, as read(2) and write(2) do,
 * instead of holding their worker's OS thread in the kernel.  A
 * thread-per-connection proxy that moves bytes socket -> pipe -> socket
 * with splice() otherwise held one OS thread per idle connection.
 *
 * proxy: 16 proxy threads each splice() from a socket whose peer has sent
 * nothing yet into a pipe, then from the pipe into a socket with small
 * buffers whose reader starts late.  While all wait, the process has no
 * more OS threads than its workers and the monitor; then 1 MiB per
 * connection goes through, every byte in order.
 * tee: tee() from an empty pipe waits for its writer, copies, and leaves
 * the data in the first pipe.
 * vmsplice: into a full pipe waits for its reader; out of an empty pipe
 * waits for its writer.
 * nonblock: the program's O_NONBLOCK on the socket, or SPLICE_F_NONBLOCK
 * on an empty pipe, gives EAGAIN at once.
 * ends: SO_RCVTIMEO runs out with EAGAIN; a handler without SA_RESTART
 * ends a waiting splice() with EINTR; the peer's close gives 0; a bad
 * descriptor gives EBADF. */
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "shim_test.h"

#define CONNS 16
#define BYTES (1 << 20)

static int small_buffers(int s)
{
    int sz = 16 * 1024;
    return setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz) | setsockopt(s, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
}

struct conn {
    int from, to;   /* the proxy's sockets */
    int src, dst;   /* their peers: the writer and the reader */
    uint64_t seed;
    long moved;
    atomic_int *started;
};

static void *proxy(void *arg)
{
    struct conn *c = arg;
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
    atomic_fetch_add(c->started, 1);
    for (;;) {
        ssize_t n = splice(c->from, NULL, p[1], NULL, 65536, SPLICE_F_MOVE);
        CHECK(n >= 0, "splice socket -> pipe: %s", strerror(errno));
        if (n <= 0) break;
        while (n > 0) {
            ssize_t m = splice(p[0], NULL, c->to, NULL, (size_t)n, SPLICE_F_MOVE);
            CHECK(m > 0, "splice pipe -> socket: %zd (%s)", m, strerror(errno));
            if (m <= 0) goto out;
            n -= m;
            c->moved += m;
        }
    }
out:
    shutdown(c->to, SHUT_WR);
    close(p[0]), close(p[1]);
    return NULL;
}

static void *writer(void *arg)
{
    struct conn *c = arg;
    char *buf = malloc(BYTES);
    uint64_t s = c->seed;
    for (size_t i = 0; i < BYTES; i += 8) {
        uint64_t v = st_rand(&s);
        memcpy(buf + i, &v, 8);
    }
    CHECK(st_write_all(c->src, buf, BYTES) == 0, "writer: %s", strerror(errno));
    shutdown(c->src, SHUT_WR);
    free(buf);
    return NULL;
}

static void *reader(void *arg)
{
    struct conn *c = arg;
    uint64_t s = c->seed, h = ST_FNV_INIT, want = ST_FNV_INIT;
    char *buf = malloc(BYTES);
    ssize_t got = st_read_full(c->dst, buf, BYTES);
    CHECK(got == BYTES, "reader got %zd of %d bytes", got, BYTES);
    h = st_fnv(h, buf, got > 0 ? (size_t)got : 0);
    for (size_t i = 0; i < BYTES; i += 8) {
        uint64_t v = st_rand(&s);
        memcpy(buf + i, &v, 8);
    }
    want = st_fnv(want, buf, BYTES);
    CHECK(h == want, "the bytes through the proxy are not the bytes sent");
    char x;
    CHECK(read(c->dst, &x, 1) == 0, "no end after the data");
    free(buf);
    return NULL;
}

static void connected(uint16_t port, int l, int *mine, int *peer)
{
    *peer = st_connect(port);
    CHECK(*peer >= 0, "connect: %s", strerror(errno));
    *mine = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    CHECK(*mine >= 0, "accept: %s", strerror(errno));
    small_buffers(*mine), small_buffers(*peer);
}

static void test_proxy(void)
{
    st_threads_up();
    uint16_t port;
    int l = st_listen(2 * CONNS, &port);
    static struct conn c[CONNS];
    pthread_t pt[CONNS], wt[CONNS], rt[CONNS];
    atomic_int started = 0;
    int base = st_os_threads();
    for (int i = 0; i < CONNS; i++) {
        c[i] = (struct conn){.seed = 7 + (uint64_t)i, .started = &started};
        connected(port, l, &c[i].from, &c[i].src);
        connected(port, l, &c[i].to, &c[i].dst);
        pt[i] = st_spawn(proxy, &c[i]);
    }
    CHECK(st_wait_for(&started, CONNS, 10000), "proxies started");
    st_sleep_ms(300); /* each waits in its first splice() */
    int during = st_os_threads();
    const char *procs = getenv("NP_PROCS");
    if (st_under_shim() && procs)
        CHECK(during <= base + 1, "%d OS threads while %d splice() calls wait, %d before (NP_PROCS=%s)", during,
              CONNS, base, procs);
    for (int i = 0; i < CONNS; i++) wt[i] = st_spawn(writer, &c[i]);
    st_sleep_ms(300); /* the readers are late: the proxies wait on full sockets */
    during = st_os_threads();
    if (st_under_shim() && procs)
        CHECK(during <= base + 1, "%d OS threads while %d writers and their splice() calls wait, %d before", during,
              CONNS, base);
    for (int i = 0; i < CONNS; i++) rt[i] = st_spawn(reader, &c[i]);
    for (int i = 0; i < CONNS; i++) {
        pthread_join(pt[i], NULL), pthread_join(wt[i], NULL), pthread_join(rt[i], NULL);
        CHECK(c[i].moved == BYTES, "proxy %d moved %ld bytes", i, c[i].moved);
        close(c[i].from), close(c[i].to), close(c[i].src), close(c[i].dst);
    }
    close(l);
}

struct later {
    int fd;
    long ms;
    const char *what;
};

static void *write_later(void *arg)
{
    struct later *w = arg;
    st_sleep_ms(w->ms);
    CHECK(write(w->fd, w->what, strlen(w->what)) == (ssize_t)strlen(w->what), "write later: %s", strerror(errno));
    return NULL;
}

static void *read_later(void *arg)
{
    struct later *w = arg;
    st_sleep_ms(w->ms);
    static char buf[1 << 16];
    ssize_t n = read(w->fd, buf, sizeof buf);
    CHECK(n > 0, "read later: %zd (%s)", n, strerror(errno));
    return NULL;
}

static void test_tee(void)
{
    int a[2], b[2];
    CHECK(pipe2(a, O_CLOEXEC) == 0 && pipe2(b, O_CLOEXEC) == 0, "pipe2");
    struct later w = {a[1], 200, "tee'd words"};
    pthread_t t = st_spawn(write_later, &w);
    int64_t t0 = st_mono_ns();
    ssize_t n = tee(a[0], b[1], 100, 0);
    double ms = st_ms(st_mono_ns() - t0);
    CHECK(n == 11, "tee from a pipe written later: %zd (%s)", n, strerror(errno));
    CHECK(ms >= 150, "tee returned after %.0f ms, before the write", ms);
    char x[32] = {0}, y[32] = {0};
    CHECK(read(b[0], x, sizeof x) == 11 && read(a[0], y, sizeof y) == 11, "read both pipes");
    CHECK(strcmp(x, "tee'd words") == 0 && strcmp(y, x) == 0, "tee copied \"%s\", left \"%s\"", x, y);
    pthread_join(t, NULL);
    close(a[0]), close(a[1]), close(b[0]), close(b[1]);
}

static void test_vmsplice(void)
{
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe2");
    int size = fcntl(p[1], F_GETPIPE_SZ);
    static _Alignas(4096) char page[4096]; /* a slot each */
    memset(page, 'v', sizeof page);
    struct iovec v = {page, sizeof page};
    int filled = 0;
    for (int i = 0; i < 64 && filled < size; i++) { /* full, without waiting */
        ssize_t n = vmsplice(p[1], &v, 1, SPLICE_F_NONBLOCK);
        if (n <= 0) break;
        filled += (int)n;
    }
    CHECK(filled >= size, "filled %d of the pipe's %d bytes", filled, size);
    errno = 0;
    CHECK(vmsplice(p[1], &v, 1, SPLICE_F_NONBLOCK) == -1 && errno == EAGAIN, "a full pipe, SPLICE_F_NONBLOCK: %s",
          strerror(errno));
    struct later r = {p[0], 200, NULL};
    pthread_t t = st_spawn(read_later, &r);
    int64_t t0 = st_mono_ns();
    ssize_t n = vmsplice(p[1], &v, 1, 0);
    double ms = st_ms(st_mono_ns() - t0);
    CHECK(n > 0, "vmsplice into a full pipe: %zd (%s)", n, strerror(errno));
    CHECK(ms >= 150, "vmsplice into a full pipe returned after %.0f ms, before the read", ms);
    pthread_join(t, NULL);
    close(p[0]), close(p[1]);

    CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe2");
    struct later w = {p[1], 200, "to user"};
    t = st_spawn(write_later, &w);
    char buf[32] = {0};
    struct iovec u = {buf, sizeof buf};
    t0 = st_mono_ns();
    n = vmsplice(p[0], &u, 1, 0);
    ms = st_ms(st_mono_ns() - t0);
    CHECK(n == 7 && strcmp(buf, "to user") == 0, "vmsplice from an empty pipe: %zd \"%s\" (%s)", n, buf,
          strerror(errno));
    CHECK(ms >= 150, "vmsplice from an empty pipe returned after %.0f ms, before the write", ms);
    pthread_join(t, NULL);
    close(p[0]), close(p[1]);
}

static void test_nonblock(void)
{
    int sv[2], p[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0 && pipe2(p, O_CLOEXEC) == 0, "socketpair, pipe2");
    CHECK(fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK) == 0, "O_NONBLOCK");
    errno = 0;
    int64_t t0 = st_mono_ns();
    ssize_t n = splice(sv[0], NULL, p[1], NULL, 100, 0);
    CHECK(n == -1 && errno == EAGAIN, "splice from an O_NONBLOCK socket with nothing: %zd (%s)", n, strerror(errno));
    errno = 0;
    n = splice(p[0], NULL, sv[1], NULL, 100, SPLICE_F_NONBLOCK);
    CHECK(n == -1 && errno == EAGAIN, "SPLICE_F_NONBLOCK from an empty pipe: %zd (%s)", n, strerror(errno));
    CHECK(st_ms(st_mono_ns() - t0) < 1000, "non-blocking splice() waited");
    CHECK(!(fcntl(sv[1], F_GETFL) & O_NONBLOCK), "the socket's own flags changed");
    close(sv[0]), close(sv[1]), close(p[0]), close(p[1]);
}

static void on_usr1(int sig) { (void)sig; }

struct kill_later {
    pthread_t t;
    long ms;
};

static void *kill_later(void *arg)
{
    struct kill_later *k = arg;
    st_sleep_ms(k->ms);
    pthread_kill(k->t, SIGUSR1);
    return NULL;
}

static void test_ends(void)
{
    int sv[2], p[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0 && pipe2(p, O_CLOEXEC) == 0, "socketpair, pipe2");
    struct timeval tv = {0, 200 * 1000};
    CHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
    int64_t t0 = st_mono_ns();
    errno = 0;
    ssize_t n = splice(sv[0], NULL, p[1], NULL, 100, 0);
    double ms = st_ms(st_mono_ns() - t0);
    CHECK(n == -1 && errno == EAGAIN, "splice with SO_RCVTIMEO and nothing sent: %zd (%s)", n, strerror(errno));
    CHECK(ms >= 150 && ms < 5000, "returned after %.0f ms with a 200 ms SO_RCVTIMEO", ms);
    tv.tv_usec = 0;
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

    struct sigaction sa = {.sa_handler = on_usr1}; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    struct kill_later k = {pthread_self(), 200};
    pthread_t t = st_spawn(kill_later, &k);
    errno = 0;
    n = splice(sv[0], NULL, p[1], NULL, 100, 0);
    CHECK(n == -1 && errno == EINTR, "splice ended by a handler without SA_RESTART: %zd (%s)", n, strerror(errno));
    pthread_join(t, NULL);

    CHECK(write(sv[1], "end", 3) == 3, "write");
    shutdown(sv[1], SHUT_WR);
    n = splice(sv[0], NULL, p[1], NULL, 100, 0);
    CHECK(n == 3, "splice of what was sent: %zd (%s)", n, strerror(errno));
    n = splice(sv[0], NULL, p[1], NULL, 100, 0);
    CHECK(n == 0, "splice after the peer's end: %zd (%s)", n, strerror(errno));
    errno = 0;
    n = splice(-1, NULL, p[1], NULL, 100, 0);
    CHECK(n == -1 && errno == EBADF, "splice from -1: %zd (%s)", n, strerror(errno));
    errno = 0;
    n = tee(p[0], 12345, 10, 0);
    CHECK(n == -1 && errno == EBADF, "tee to a closed number: %zd (%s)", n, strerror(errno));
    close(sv[0]), close(sv[1]), close(p[0]), close(p[1]);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    static const struct st_test tests[] = {{"proxy", test_proxy},       {"tee", test_tee}, {"vmsplice", test_vmsplice},
                                           {"nonblock", test_nonblock}, {"ends", test_ends}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("splice_park");
}
