/* short_reads: a blocking read of a stream socket that came back with less
 * than it asked for, and the read after it.  Under the shim that next read
 * may wait for readiness before it tries (the socket was empty), so each
 * case here is one where something is still there, or comes, with no new
 * readiness to show it:
 *
 *   eof        the last data and the end of file arrive together: the read
 *              after the data returns 0 at once (TCP and a unix socket)
 *   urgent     the peer sends data, an urgent byte, more data at once: the
 *              read stops short at the urgent mark, and the next one gets
 *              the rest with nothing more sent
 *   poll       a short read, then data and a poll that reports it: the read
 *              after the poll gets the data
 *   two        two threads read one socket, their reads interleaved with
 *              bursts, every byte read once, none left behind
 *   echo       request and answer, many rounds on many connections: every
 *              answer comes
 *
 * Each wait is bounded: a read that hangs fails its case within seconds. */
#include <poll.h>
#include <sys/un.h>

#include "shim_test.h"

/* ------------------------------------------------------------- helpers -- */

static uint16_t port;
static int lfd;

/* A connected TCP pair on loopback: *c the client's end, *s the server's. */
static void tcp_pair(int *c, int *s)
{
    *c = st_connect(port);
    CHECK(*c >= 0, "connect: %s", strerror(errno));
    *s = accept(lfd, NULL, NULL);
    CHECK(*s >= 0, "accept: %s", strerror(errno));
}

struct timed {
    int fd;
    char buf[256];
    ssize_t n;
    atomic_int done;
};

static void *read_once(void *arg)
{
    struct timed *t = arg;
    ssize_t r;
    do r = read(t->fd, t->buf, sizeof t->buf);
    while (r < 0 && errno == EINTR);
    t->n = r;
    atomic_store(&t->done, 1);
    return NULL;
}

/* A read on another thread, waited for at most ms: its result, or -2 if it
 * has not returned (the thread is then left, its socket shut down). */
static ssize_t read_within(int fd, char *out, long ms)
{
    static struct timed t;
    memset(&t, 0, sizeof t);
    t.fd = fd;
    pthread_t th = st_spawn(read_once, &t);
    if (!st_wait_for(&t.done, 1, (int)ms)) {
        shutdown(fd, SHUT_RDWR);
        pthread_join(th, NULL);
        return -2;
    }
    pthread_join(th, NULL);
    if (t.n > 0 && out) memcpy(out, t.buf, (size_t)t.n);
    return t.n;
}

/* A first round in which the server's read waits (so the shim has the
 * socket registered) and comes back short: the next read is one after a
 * short read. */
static void prime(int c, int s, const char *what)
{
    static struct timed t;
    memset(&t, 0, sizeof t);
    t.fd = s;
    pthread_t th = st_spawn(read_once, &t);
    st_sleep_ms(3);
    CHECK(write(c, "x", 1) == 1, "%s: write: %s", what, strerror(errno));
    pthread_join(th, NULL);
    CHECK(t.n == 1, "%s: the first read returned %zd, want 1", what, t.n);
}

/* ----------------------------------------------------------------- eof -- */

static void eof_on(int c, int s, const char *what, int round)
{
    char buf[4096];
    CHECK(write(c, "last", 4) == 4, "%s: write: %s", what, strerror(errno));
    shutdown(c, SHUT_WR);
    st_sleep_ms(round & 1); /* together, or the end of file just after */
    ssize_t n = read(s, buf, sizeof buf);
    CHECK(n == 4, "%s round %d: the data read returned %zd, want 4", what, round, n);
    n = read_within(s, NULL, 5000);
    CHECK(n == 0, "%s round %d: the read after the last data %s", what, round,
          n == -2 ? "did not return within 5 s (end of file missed)" : "did not return 0");
}

static void test_eof(void)
{
    for (int i = 0; i < 40; i++) {
        int c, s;
        tcp_pair(&c, &s);
        prime(c, s, "tcp");
        eof_on(c, s, "tcp", i);
        close(c);
        close(s);
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
        prime(sv[0], sv[1], "unix");
        eof_on(sv[0], sv[1], "unix", i);
        close(sv[0]);
        close(sv[1]);
    }
}

/* -------------------------------------------------------------- urgent -- */

struct collect {
    int fd;
    char got[16];
    size_t have, want;
    atomic_int done;
};

/* Reads until want bytes are in, or end of file, or an error. */
static void *collect_body(void *arg)
{
    struct collect *k = arg;
    while (k->have < k->want) {
        ssize_t n = read(k->fd, k->got + k->have, k->want - k->have);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        k->have += (size_t)n;
    }
    atomic_store(&k->done, 1);
    return NULL;
}

static void test_urgent(void)
{
    for (int i = 0; i < 20; i++) {
        int c, s;
        tcp_pair(&c, &s);
        prime(c, s, "tcp");
        /* the reader waits for them: its wake-up takes the one readiness */
        static struct collect k;
        memset(&k, 0, sizeof k);
        k.fd = s;
        k.want = 4;
        pthread_t th = st_spawn(collect_body, &k);
        st_sleep_ms(3);
        /* one send each, back to back: they arrive as one readiness */
        CHECK(send(c, "ab", 2, 0) == 2 && send(c, "U", 1, MSG_OOB) == 1 && send(c, "cd", 2, 0) == 2,
              "send: %s", strerror(errno));
        int in_time = st_wait_for(&k.done, 1, 5000);
        if (!in_time) shutdown(s, SHUT_RDWR);
        pthread_join(th, NULL);
        CHECK(in_time && k.have == 4 && memcmp(k.got, "abcd", 4) == 0, "round %d: read \"%.*s\" in 5 s, want "
              "\"abcd\" (data left behind the urgent mark)", i, (int)k.have, k.got);
        if (!in_time) break;
        close(c);
        close(s);
    }
}

/* ---------------------------------------------------------------- poll -- */

static void test_poll(void)
{
    for (int i = 0; i < 40; i++) {
        int c, s;
        tcp_pair(&c, &s);
        char buf[4096];
        prime(c, s, "tcp");
        CHECK(write(c, "yz", 2) == 2, "write");
        struct pollfd p = {s, POLLIN, 0};
        CHECK(poll(&p, 1, 5000) == 1 && (p.revents & POLLIN), "round %d: poll did not see the data", i);
        ssize_t n = read_within(s, buf, 5000);
        CHECK(n == 2, "round %d: the read after poll %s", i, n == -2 ? "did not return within 5 s" : "failed");
        close(c);
        close(s);
    }
}

/* ----------------------------------------------------------------- two -- */

enum { kTwoBytes = 20000 };
static atomic_long two_got;
static atomic_int two_stop;

static void *two_reader(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[64];
    while (!atomic_load(&two_stop)) {
        ssize_t n = read(fd, buf, 1 + (size_t)(st_mono_ns() % sizeof buf));
        if (n <= 0) break;
        atomic_fetch_add(&two_got, n);
    }
    return NULL;
}

static void test_two(void)
{
    int c, s;
    tcp_pair(&c, &s);
    atomic_store(&two_got, 0);
    atomic_store(&two_stop, 0);
    pthread_t a = st_spawn(two_reader, (void *)(intptr_t)s), b = st_spawn(two_reader, (void *)(intptr_t)s);
    static char chunk[97];
    memset(chunk, 'q', sizeof chunk);
    long sent = 0;
    uint64_t seed = 7;
    while (sent < kTwoBytes) {
        size_t k = 1 + st_rand(&seed) % sizeof chunk;
        if (st_write_all(c, chunk, k) != 0) break;
        sent += (long)k;
        if (st_rand(&seed) % 8 == 0) st_sleep_ms(1);
    }
    long t0 = st_mono_ms();
    while (atomic_load(&two_got) < sent && st_mono_ms() - t0 < 5000) st_sleep_ms(1);
    CHECK(atomic_load(&two_got) == sent, "two readers got %ld of %ld bytes within 5 s", atomic_load(&two_got),
          sent);
    atomic_store(&two_stop, 1);
    close(c); /* end of file ends both */
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    close(s);
}

/* ---------------------------------------------------------------- echo -- */

enum { kEchoConns = 50, kEchoRounds = 200 };

static void *echo_serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0 || st_write_all(fd, buf, (size_t)n) != 0) break;
    }
    close(fd);
    return NULL;
}

static void *echo_client(void *arg)
{
    (void)arg;
    int fd = st_connect(port);
    if (fd < 0) return (void *)1;
    char msg[100], back[100];
    memset(msg, 'e', sizeof msg);
    intptr_t bad = 0;
    for (int r = 0; r < kEchoRounds && !bad; r++) {
        size_t len = 1 + (size_t)r % sizeof msg;
        if (st_write_all(fd, msg, len) != 0 || st_read_full(fd, back, len) != (ssize_t)len) bad = 1;
    }
    close(fd);
    return (void *)bad;
}

static void *echo_acceptor(void *arg)
{
    (void)arg;
    for (int i = 0; i < kEchoConns; i++) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) break;
        pthread_detach(st_spawn(echo_serve, (void *)(intptr_t)fd));
    }
    return NULL;
}

static void test_echo(void)
{
    pthread_t acc = st_spawn(echo_acceptor, NULL);
    pthread_t cl[kEchoConns];
    for (int i = 0; i < kEchoConns; i++) cl[i] = st_spawn(echo_client, NULL);
    int bad = 0;
    for (int i = 0; i < kEchoConns; i++) {
        void *r;
        pthread_join(cl[i], &r);
        bad += r != NULL;
    }
    pthread_join(acc, NULL);
    CHECK(bad == 0, "%d of %d echo connections failed", bad, kEchoConns);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(120);
    signal(SIGPIPE, SIG_IGN);
    lfd = st_listen(128, &port);
    static const struct st_test tests[] = {
        {"eof", test_eof}, {"urgent", test_urgent}, {"poll", test_poll}, {"two", test_two}, {"echo", test_echo},
    };
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    close(lfd);
    return st_finish("short_reads");
}
