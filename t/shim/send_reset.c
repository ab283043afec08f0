/* send_reset: a blocking send(2) that waits for room, or a MSG_WAITALL
 * recv(2) that waits for the rest, when the peer resets the connection:
 * the call returns the count it moved, and the error stays on the socket
 * for the next call (ECONNRESET), as the kernel keeps it (sk_err).  Under
 * the shim the rest of the call is an attempt of its own, which took the
 * error and had the count hide it: the next send said EPIPE (Python's
 * sendall then raised BrokenPipeError for a reset), and the SIGPIPE came
 * with the call that moved data. */
#include <fcntl.h>
#include <poll.h>

#include "shim_test.h"

static atomic_int pipes;
static void on_pipe(int sig)
{
    (void)sig;
    atomic_fetch_add(&pipes, 1);
}

struct pair {
    int c, s;
};

static struct pair connected(void)
{
    uint16_t port;
    int l = st_listen(4, &port);
    struct pair p;
    p.c = st_connect(port);
    p.s = accept(l, NULL, NULL);
    CHECK(p.c >= 0 && p.s >= 0, "connect/accept: %s", strerror(errno));
    close(l);
    return p;
}

/* Closed with SO_LINGER 0: an RST, not a FIN. */
static void reset(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

struct later {
    int fd;
    long ms;
    const void *data;
    size_t n;
};

static void *reset_later(void *arg)
{
    struct later *l = arg;
    st_sleep_ms(l->ms);
    if (l->n) CHECK(st_write_all(l->fd, l->data, l->n) == 0, "peer's write");
    st_sleep_ms(l->n ? 50 : 0);
    reset(l->fd);
    return NULL;
}

static void test_send(void)
{
    struct pair p = connected();
    int small = 65536;
    setsockopt(p.c, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    size_t n = 8 << 20;
    char *buf = calloc(1, n);
    struct later l = {p.s, 200, NULL, 0};
    pthread_t t = st_spawn(reset_later, &l);
    atomic_store(&pipes, 0);
    ssize_t r = send(p.c, buf, n, 0); /* the peer reads nothing */
    int e = errno;
    pthread_join(t, NULL);
    CHECK(r > 0 && (size_t)r < n, "send: %zd (%s), want part of %zu", r, r < 0 ? strerror(e) : "-", n);
    CHECK(atomic_load(&pipes) == 0, "send that moved %zd bytes raised SIGPIPE", r);
    r = send(p.c, buf, 1000, 0);
    e = errno;
    CHECK(r == -1 && e == ECONNRESET, "send after the reset: %zd (%s), want ECONNRESET", r,
          r < 0 ? strerror(e) : "-");
    free(buf);
    close(p.c);
}

static void test_recv_waitall(void)
{
    struct pair p = connected();
    static char part[1000], buf[4000];
    memset(part, 'x', sizeof part);
    struct later l = {p.s, 100, part, sizeof part};
    pthread_t t = st_spawn(reset_later, &l);
    ssize_t r = recv(p.c, buf, sizeof buf, MSG_WAITALL);
    int e = errno;
    pthread_join(t, NULL);
    CHECK(r == (ssize_t)sizeof part, "recv MSG_WAITALL: %zd (%s), want %zu", r, r < 0 ? strerror(e) : "-",
          sizeof part);
    r = recv(p.c, buf, sizeof buf, 0);
    e = errno;
    CHECK(r == -1 && e == ECONNRESET, "recv after the reset: %zd (%s), want ECONNRESET", r,
          r < 0 ? strerror(e) : "-");
    close(p.c);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    signal(SIGPIPE, on_pipe);
    static const struct st_test tests[] = {
        {"send", test_send},
        {"recv-waitall", test_recv_waitall},
    };
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("send_reset");
}
