/* linger_close: close(2) of a TCP connection with SO_LINGER on and a time
 * waits, as the kernel's last close does, until the peer has acknowledged
 * what was sent (and the FIN), the time runs out, or a signal comes, but it
 * parks the thread instead of holding its worker's OS thread in the kernel.
 * privoxy sets SO_LINGER {1, 5} on each client's socket: with clients that
 * read slowly, every close held a worker, sysmon added workers up to its
 * limit, and then every thread of the process waited for the lingering
 * closes to time out.
 *
 * many: 100 server threads each write 64 KiB to a client that does not read
 * yet, then close() with a 5 s linger.  All reach close() at once and stay
 * in it; meanwhile the process runs on (main is not held up by the
 * lingering closes) with no more OS threads than before.  Then the clients
 * read: every byte and an end of file (no reset), and every close returns 0.
 * timeout: a 1 s linger on a client that does not read: close() returns 0
 * after about 1 s (not twice that), and the data still arrives after it.
 * signal: a handler run for the closing thread ends the wait; close() is 0.
 * unread: data the server never read makes close() reset the connection at
 * once, without waiting.
 * dup, passed, fork: another reference to the file (a dup(), a copy sent
 * with SCM_RIGHTS, a forked child's) makes close() return at once with no
 * FIN: the other reference still writes on the connection. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "shim_test.h"

#define CONNS 100
#define DATA (64 * 1024)

static char data[DATA];

/* A connection with a small receive buffer (so most of what the server
 * writes stays in the server's send queue until the client reads), and the
 * server's end of it, accepted here (by a green thread under the shim). */
static void pair(int l, uint16_t port, int *cli, int *srv)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    *cli = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 4096, big = 1 << 20;
    setsockopt(*cli, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    CHECK(connect(*cli, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s", strerror(errno));
    *srv = accept(l, NULL, NULL);
    CHECK(*srv >= 0, "accept: %s", strerror(errno));
    setsockopt(*srv, SOL_SOCKET, SO_SNDBUF, &big, sizeof big); /* the whole DATA fits: write returns */
}

static int set_linger(int s, int secs)
{
    struct linger lg = {1, secs};
    return setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

/* Reads to the end: the bytes got, and the read's errno at the end (0: EOF). */
static size_t drain(int c, int *err)
{
    static __thread char buf[65536];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(c, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            *err = r < 0 ? errno : 0;
            return got;
        }
        if (got + (size_t)r <= DATA) CHECK(memcmp(buf, data + got, (size_t)r) == 0, "other bytes at %zu", got);
        got += (size_t)r;
    }
}

struct conn {
    int srv, linger, rc;
    atomic_int *in_close, *closed;
    int64_t close_ns; /* how long close() took */
};

static void *serve(void *arg)
{
    struct conn *c = arg;
    CHECK(set_linger(c->srv, c->linger) == 0, "SO_LINGER: %s", strerror(errno));
    CHECK(st_write_all(c->srv, data, DATA) == 0, "write: %s", strerror(errno));
    atomic_fetch_add(c->in_close, 1);
    int64_t t0 = st_mono_ns();
    c->rc = close(c->srv);
    c->close_ns = st_mono_ns() - t0;
    atomic_fetch_add(c->closed, 1);
    return NULL;
}

static void test_many(void)
{
    st_threads_up();
    st_raise_nofile();
    uint16_t port;
    int l = st_listen(CONNS, &port);
    static int cli[CONNS];
    static struct conn conns[CONNS];
    pthread_t t[CONNS];
    atomic_int in_close = 0, closed = 0;
    int base = st_os_threads();
    for (int i = 0; i < CONNS; i++) {
        int s;
        pair(l, port, &cli[i], &s);
        conns[i] = (struct conn){s, 5, -1, &in_close, &closed, 0};
    }
    int64_t t0 = st_mono_ns();
    for (int i = 0; i < CONNS; i++) t[i] = st_spawn(serve, &conns[i]);
    int all = st_wait_for(&in_close, CONNS, 10000);
    double ms = st_ms(st_mono_ns() - t0);
    CHECK(all, "only %d of %d threads reached close()", atomic_load(&in_close), CONNS);
    /* Main runs on beside the lingering closes (each waits for its client). */
    CHECK(ms < 4000, "%.0f ms until %d threads were in close(): the lingering closes held the others", ms, CONNS);
    st_sleep_ms(100);
    int during = st_os_threads();
    CHECK(atomic_load(&closed) == 0, "%d close() calls returned before their clients read (5 s linger)",
          atomic_load(&closed));
    const char *procs = getenv("NP_PROCS");
    if (st_under_shim() && procs)
        CHECK(during <= base + 1, "%d OS threads while %d close() calls linger, %d before (NP_PROCS=%s)", during,
              CONNS, base, procs);
    for (int i = 0; i < CONNS; i++) {
        int err = -1;
        size_t got = drain(cli[i], &err);
        CHECK(got == DATA && err == 0, "client %d: %zu of %d bytes, then %s", i, got, DATA,
              err ? strerror(err) : "EOF");
        close(cli[i]);
    }
    for (int i = 0; i < CONNS; i++) {
        pthread_join(t[i], NULL);
        CHECK(conns[i].rc == 0, "close() %d returned %d", i, conns[i].rc);
    }
    close(l);
}

static void test_timeout(void)
{
    uint16_t port;
    int l = st_listen(4, &port);
    int c, s;
    pair(l, port, &c, &s);
    atomic_int in_close = 0, closed = 0;
    struct conn one = {s, 1, -1, &in_close, &closed, 0};
    pthread_t t = st_spawn(serve, &one);
    pthread_join(t, NULL);
    double ms = st_ms(one.close_ns);
    CHECK(one.rc == 0, "close() returned %d", one.rc);
    CHECK(ms >= 800 && ms < 1800, "close() with a 1 s linger, the client not reading, took %.0f ms", ms);
    int err = -1;
    size_t got = drain(c, &err);
    CHECK(got == DATA && err == 0, "after the linger time: %zu of %d bytes, then %s", got, DATA,
          err ? strerror(err) : "EOF");
    close(c), close(l);
}

static atomic_int handled;
static void on_usr1(int sig)
{
    (void)sig;
    atomic_fetch_add(&handled, 1);
}

static void test_signal(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    uint16_t port;
    int l = st_listen(4, &port);
    int c, s;
    pair(l, port, &c, &s);
    atomic_int in_close = 0, closed = 0;
    struct conn one = {s, 5, -1, &in_close, &closed, 0};
    pthread_t t = st_spawn(serve, &one);
    CHECK(st_wait_for(&in_close, 1, 5000), "reached close()");
    st_sleep_ms(300);
    CHECK(atomic_load(&closed) == 0, "close() returned before the signal");
    pthread_kill(t, SIGUSR1);
    pthread_join(t, NULL);
    double ms = st_ms(one.close_ns);
    CHECK(atomic_load(&handled) == 1, "handler ran %d times", atomic_load(&handled));
    CHECK(one.rc == 0, "close() returned %d", one.rc);
    CHECK(ms >= 250 && ms < 2500, "close() took %.0f ms with a signal after 300 ms (5 s linger)", ms);
    int err = -1;
    size_t got = drain(c, &err);
    CHECK(got == DATA && err == 0, "after the signal: %zu of %d bytes, then %s", got, DATA,
          err ? strerror(err) : "EOF");
    close(c), close(l);
    signal(SIGUSR1, SIG_DFL);
}

static void test_unread(void)
{
    uint16_t port;
    int l = st_listen(4, &port);
    int c, s;
    pair(l, port, &c, &s);
    CHECK(write(c, "never read", 10) == 10, "client write");
    st_sleep_ms(50);
    atomic_int in_close = 0, closed = 0;
    struct conn one = {s, 5, -1, &in_close, &closed, 0};
    pthread_t t = st_spawn(serve, &one);
    pthread_join(t, NULL);
    double ms = st_ms(one.close_ns);
    CHECK(one.rc == 0, "close() returned %d", one.rc);
    CHECK(ms < 1000, "close() with unread data took %.0f ms: the kernel resets at once", ms);
    int err = -1;
    drain(c, &err);
    CHECK(err == ECONNRESET, "the client's read ended with %s, not ECONNRESET", err ? strerror(err) : "EOF");
    close(c), close(l);
}

/* s's file has another reference, other: close(s) returns at once and sends
 * no FIN, and other still writes; its own close lingers as usual. */
static void other_reference(int s, int other, const char *what)
{
    CHECK(set_linger(s, 5) == 0, "SO_LINGER");
    CHECK(st_write_all(s, data, DATA - 4) == 0, "write");
    int64_t t0 = st_mono_ns();
    CHECK(close(s) == 0, "close");
    double ms = st_ms(st_mono_ns() - t0);
    CHECK(ms < 1000, "%s: close() of one reference took %.0f ms", what, ms);
    if (other >= 0) {
        ssize_t w = write(other, data + DATA - 4, 4);
        CHECK(w == 4, "%s: write on the other reference after close(): %zd (%s)", what, w, strerror(errno));
    }
}

struct reader {
    int c, err;
    size_t got;
};
static void *read_all(void *arg)
{
    struct reader *r = arg;
    r->got = drain(r->c, &r->err);
    return NULL;
}

/* The client reads on a thread of its own while the last reference, with
 * its 5 s linger, is closed here: it waits for that reader only. */
static void last_close(int c, int last, const char *what)
{
    struct reader rd = {c, -1, 0};
    pthread_t t = st_spawn(read_all, &rd);
    CHECK(close(last) == 0, "%s: close() of the last reference", what);
    pthread_join(t, NULL);
    CHECK(rd.got == DATA && rd.err == 0, "%s: %zu of %d bytes, then %s", what, rd.got, DATA,
          rd.err ? strerror(rd.err) : "EOF");
}

static void test_dup(void)
{
    signal(SIGPIPE, SIG_IGN);
    uint16_t port;
    int l = st_listen(4, &port);
    int c, s;
    pair(l, port, &c, &s);
    int d = dup(s);
    other_reference(s, d, "dup");
    last_close(c, d, "dup");
    close(c), close(l);
}

static void test_passed(void)
{
    uint16_t port;
    int l = st_listen(4, &port);
    int c, s, sv[2];
    pair(l, port, &c, &s);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    char byte = 'x';
    struct iovec iov = {&byte, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &s, sizeof s);
    CHECK(sendmsg(sv[0], &m, 0) == 1, "sendmsg SCM_RIGHTS: %s", strerror(errno));
    /* The copy stays in flight (in the socketpair) while s is closed. */
    other_reference(s, -1, "passed");
    memset(cbuf, 0, sizeof cbuf);
    m.msg_controllen = sizeof cbuf;
    int r = -1;
    CHECK(recvmsg(sv[1], &m, 0) == 1, "recvmsg: %s", strerror(errno));
    cm = CMSG_FIRSTHDR(&m);
    if (cm && cm->cmsg_type == SCM_RIGHTS) memcpy(&r, CMSG_DATA(cm), sizeof r);
    CHECK(r >= 0, "no descriptor received");
    if (r >= 0) {
        ssize_t w = write(r, data + DATA - 4, 4);
        CHECK(w == 4, "passed: write on the copy after close(): %zd (%s)", w, strerror(errno));
        last_close(c, r, "passed");
    }
    close(sv[0]), close(sv[1]), close(c), close(l);
}

static void test_fork(void)
{
    uint16_t port;
    int l = st_listen(4, &port);
    int c, s, p[2];
    pair(l, port, &c, &s);
    CHECK(pipe(p) == 0, "pipe");
    pid_t pid = fork();
    if (pid == 0) { /* holds the socket; writes the end once the parent has closed */
        char b;
        close(p[1]);
        if (read(p[0], &b, 1) != 1) _exit(3);
        _exit(write(s, data + DATA - 4, 4) == 4 ? 0 : 4);
    }
    CHECK(pid > 0, "fork: %s", strerror(errno));
    close(p[0]);
    other_reference(s, -1, "fork");
    CHECK(write(p[1], "g", 1) == 1, "pipe write");
    close(p[1]);
    int st = st_wait_status(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s", st_status_str(st));
    int err = -1;
    size_t got = drain(c, &err);
    CHECK(got == DATA && err == 0, "fork: %zu of %d bytes, then %s", got, DATA, err ? strerror(err) : "EOF");
    close(c), close(l);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    for (size_t i = 0; i < DATA; i++) data[i] = (char)(i % 251);
    /* fork last: a process that forked shares its files from then on. */
    static const struct st_test tests[] = {{"many", test_many},     {"timeout", test_timeout},
                                           {"signal", test_signal}, {"unread", test_unread},
                                           {"dup", test_dup},       {"passed", test_passed},
                                           {"fork", test_fork}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("linger_close");
}
