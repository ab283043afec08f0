/* Go conformance for descriptors, run against every port (PORT_TEST):
 * deadlines, close, fd reuse, I/O edge cases, the poller. */
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>

#include "np_test.h"

/* ---- helpers ------------------------------------------------------------ */

struct pair {
    int a, b;
    np_fd *pa, *pb;
};

static void open_pair(struct pair *p, int tcp) {
    if (tcp) {
        tcp_pair(&p->a, &p->b);
    } else {
        int sv[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        p->a = sv[0];
        p->b = sv[1];
    }
    p->pa = must_open(p->a);
    p->pb = must_open(p->b);
}

static void close_pair(struct pair *p) {
    if (p->pa) np_close(p->pa);
    if (p->pb) np_close(p->pb);
}

/* Fill the socket's send path until a non-waiting write would block. */
static size_t fill(int fd) {
    static char junk[65536];
    size_t total = 0;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    for (;;) {
        ssize_t n = write(fd, junk, sizeof junk);
        if (n <= 0) break;
        total += (size_t)n;
    }
    return total;
}

#define GREEN(fn) run_green(fn, NULL)

/* ---- deadlines -------------------------------------------------------- */

static int past_deadline_fails_even_when_ready(void *x) {
    (void)x;
    struct pair p;
    open_pair(&p, 1);
    char buf[16];
    cr_assert_eq(write(p.b, "data", 4), 4);
    np_sleep(5 * MS); /* data is there */
    cr_assert_eq(np_set_deadline(p.pa, np_now() - 1, NP_READ | NP_WRITE), 0);
    for (int i = 0; i < 3; i++) { /* repeatedly, and nothing is consumed */
        cr_assert_eq(np_read(p.pa, buf, sizeof buf), -ETIMEDOUT);
        cr_assert_eq(np_write(p.pa, "x", 1), -ETIMEDOUT, "buffer space is ready too");
    }
    cr_assert_eq(np_set_deadline(p.pa, 0, NP_READ | NP_WRITE), 0);
    cr_assert_eq(np_read(p.pa, buf, sizeof buf), 4, "the data is still there");

    /* accept with a connection waiting */
    struct sockaddr_in sa;
    int ls = listener(&sa);
    np_fd *pl = must_open(ls);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
    np_set_deadline(pl, 1, NP_READ); /* 1 ns after boot: long past */
    np_fd *acc;
    cr_assert_eq(np_accept(pl, &acc, NULL, NULL), -ETIMEDOUT);
    cr_assert_eq(np_accept(pl, &acc, NULL, NULL), -ETIMEDOUT);
    np_set_deadline(pl, 0, NP_READ);
    cr_assert_eq(np_accept(pl, &acc, NULL, NULL), 0);
    np_close(acc);
    np_close(pl);
    close(c);
    close_pair(&p);
    return 0;
}
PORT_TEST(deadline, past_fails_even_when_ready) { GREEN(past_deadline_fails_even_when_ready); }

struct delayed_write {
    int fd;
    int64_t delay;
};
static void write_later(void *a) {
    struct delayed_write *d = a;
    np_sleep(d->delay);
    cr_assert_eq(write(d->fd, "late", 4), 4);
}

static int past_then_cleared_blocks(void *x) {
    (void)x;
    struct pair p;
    open_pair(&p, 0);
    np_set_deadline(p.pa, np_now() - 1, NP_READ);
    char buf[8];
    cr_assert_eq(np_read(p.pa, buf, sizeof buf), -ETIMEDOUT);
    np_set_deadline(p.pa, 0, NP_READ);
    struct delayed_write d = {p.b, 50 * MS};
    np_go(write_later, &d);
    int64_t t0 = np_now();
    cr_assert_eq(np_read(p.pa, buf, sizeof buf), 4, "blocked until the data came");
    cr_assert_geq(np_now() - t0, 40 * MS);
    close_pair(&p);
    return 0;
}
PORT_TEST(deadline, past_then_cleared_blocks) { GREEN(past_then_cleared_blocks); }

static int directions_independent(void *x) {
    (void)x;
    struct pair p;
    open_pair(&p, 1);
    np_set_deadline(p.pa, np_now() - 1, NP_READ);
    char buf[8];
    cr_assert_eq(np_read(p.pa, buf, sizeof buf), -ETIMEDOUT);
    /* The write side has no deadline: a full buffer blocks it. */
    size_t filled = fill(p.a);
    cr_assert_gt(filled, 0);
    int64_t t0 = np_now();
    np_set_deadline(p.pa, t0 + 100 * MS, NP_WRITE);
    cr_assert_eq(np_write(p.pa, "x", 1), -ETIMEDOUT);
    cr_assert_geq(np_now() - t0, 100 * MS, "the write waited for its own deadline");
    close_pair(&p);
    return 0;
}
PORT_TEST(deadline, directions_independent) { GREEN(directions_independent); }

static int fires_on_time(void *x) {
    (void)x;
    struct pair p;
    open_pair(&p, 0);
    int64_t ds[] = {MS, 5 * MS, 20 * MS, 100 * MS, 400 * MS};
    char buf[8];
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) {
        int64_t t0 = np_now();
        np_set_deadline(p.pa, t0 + ds[i], NP_READ);
        cr_assert_eq(np_read(p.pa, buf, sizeof buf), -ETIMEDOUT);
        int64_t el = np_now() - t0;
        cr_assert_geq(el, ds[i], "fired early: %lld < %lld", (long long)el, (long long)ds[i]);
        /* ~10% in Go's test; generous here for a shared 2-core machine. */
        cr_assert_lt(el, ds[i] + ds[i] / 2 + 100 * MS, "fired late: %lld for %lld", (long long)el,
                     (long long)ds[i]);
    }
    close_pair(&p);
    return 0;
}
PORT_TEST(deadline, fires_no_earlier_and_on_time) { GREEN(fires_on_time); }

static void set_deadline_later(void *a) {
    np_fd *pd = a;
    np_sleep(20 * MS);
    np_set_deadline(pd, np_now() + 200 * MS, NP_READ);
}

static int extend_while_blocked(void *x) {
    (void)x;
    struct pair p;
    open_pair(&p, 0);
    int64_t t0 = np_now();
    np_set_deadline(p.pa, t0 + 50 * MS, NP_READ);
    np_go(set_deadline_later, p.pa);
    char buf[8];
    cr_assert_eq(np_read(p.pa, buf, sizeof buf), -ETIMEDOUT);
    int64_t el = np_now() - t0;
    cr_assert_geq(el, 220 * MS, "the old 50 ms timer fired (%lld ms)", (long long)(el / MS));
    close_pair(&p);
    return 0;
}
PORT_TEST(deadline, extended_while_blocked) { GREEN(extend_while_blocked); }

static int far_future(void *x) {
    (void)x;
    struct pair p;
    open_pair(&p, 0);
    cr_assert_eq(np_set_deadline(p.pa, INT64_MAX, NP_READ | NP_WRITE), 0);
    struct delayed_write d = {p.b, 20 * MS};
    np_go(write_later, &d);
    char buf[8];
    cr_assert_eq(np_read(p.pa, buf, sizeof buf), 4);
    cr_assert_eq(np_write(p.pa, "ok", 2), 2);
    close_pair(&p);
    return 0;
}
PORT_TEST(deadline, int64_max_never_fires) { GREEN(far_future); }

/* Deadlines from 1 ns to 100 ms during a copy: every one times out. */
struct copier {
    np_fd *src;
    int64_t deadline_ns;
    ssize_t result;
    atomic_int done;
};

static void copy_until_deadline(void *a) {
    struct copier *c = a;
    char buf[4096];
    np_set_deadline(c->src, np_now() + c->deadline_ns, NP_READ);
    ssize_t r;
    while ((r = np_read(c->src, buf, sizeof buf)) > 0) {
    }
    c->result = r;
    atomic_store(&c->done, 1);
}

static int deadlines_during_copy(void *x) {
    (void)x;
    int64_t ds[] = {1, 1000, 100 * US, MS, 10 * MS, 100 * MS};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) {
        struct pair p;
        open_pair(&p, 1);
        struct copier c = {.src = p.pa, .deadline_ns = ds[i]};
        np_go(copy_until_deadline, &c);
        static const char chunk[1024];
        int64_t end = np_now() + 5000 * MS;
        while (!atomic_load(&c.done) && np_now() < end) {
            /* The reader may stop (its deadline) while the buffer is full:
             * a short write deadline keeps this loop looking at done. */
            np_set_deadline(p.pb, np_now() + 20 * MS, NP_WRITE);
            ssize_t w = np_write(p.pb, chunk, sizeof chunk);
            if (w < 0 && w != -ETIMEDOUT) break;
            np_yield();
        }
        while (!atomic_load(&c.done) && np_now() < end) np_sleep(MS);
        cr_assert_eq(c.result, -ETIMEDOUT, "deadline %lld ns: %zd", (long long)ds[i], c.result);
        close_pair(&p);
    }
    return 0;
}
PORT_TEST(deadline, during_copy_all_time_out, .timeout = 60) { GREEN(deadlines_during_copy); }
Test(deadline_epoll, during_copy_one_worker) {
    np_test_init("epoll", 1);
    GREEN(deadlines_during_copy);
}

/* Many threads setting deadlines on many fds at once. */
static atomic_int storm_done;
static void storm(void *a) {
    (void)a;
    struct pair p;
    open_pair(&p, 0);
    char buf[8];
    for (int i = 0; i < 20; i++) {
        np_set_deadline(p.pa, np_now() + (i % 5 + 1) * MS, NP_READ);
        cr_assert_eq(np_read(p.pa, buf, sizeof buf), -ETIMEDOUT);
    }
    close_pair(&p);
    atomic_fetch_add(&storm_done, 1);
}

static int deadline_storm(void *x) {
    (void)x;
    for (int i = 0; i < 200; i++) np_go(storm, NULL);
    int64_t end = np_now() + 30000 * MS;
    while (atomic_load(&storm_done) < 200 && np_now() < end) np_sleep(MS);
    cr_assert_eq(atomic_load(&storm_done), 200);
    return 0;
}
PORT_TEST(deadline, storm_from_many_threads, .timeout = 60) { GREEN(deadline_storm); }

/* 2 us deadlines reset in a loop while reads and writes run. */
static atomic_int resetter_stop;
static void resetter(void *a) {
    np_fd *pd = a;
    while (!atomic_load(&resetter_stop)) {
        np_set_deadline(pd, np_now() + 2 * US, NP_READ | NP_WRITE);
        np_yield();
    }
}

static int tiny_deadlines(void *x) {
    (void)x;
    struct pair p;
    open_pair(&p, 0);
    np_go(resetter, p.pa);
    long ok = 0, timeouts = 0;
    char buf[64];
    int64_t end = np_now() + 300 * MS;
    while (np_now() < end) {
        ssize_t w = np_write(p.pa, "ping", 4);
        if (w == -ETIMEDOUT) timeouts++;
        else cr_assert_eq(w, 4);
        char tmp[256];
        while (read(p.b, tmp, sizeof tmp) > 0) {
        }
        ssize_t pw = write(p.b, "pong", 4); /* may find the buffer full: fine */
        cr_assert(pw == 4 || (pw < 0 && errno == EAGAIN), "peer write: %zd", pw);
        ssize_t r = np_read(p.pa, buf, sizeof buf);
        if (r == -ETIMEDOUT) timeouts++;
        else if (r > 0) ok++;
        else cr_assert_fail("read: %zd", r);
    }
    atomic_store(&resetter_stop, 1);
    np_sleep(5 * MS);
    cr_assert_gt(ok + timeouts, 10);
    close_pair(&p);
    return 0;
}
PORT_TEST(deadline, tiny_deadlines_reset_in_loop) { GREEN(tiny_deadlines); }

/* ---- close ---------------------------------------------------------------- */

struct blocked {
    np_fd *pd;
    int write;
    ssize_t result;
    atomic_int done;
};

static void block_on(void *a) {
    struct blocked *b = a;
    static char big[1 << 20];
    char buf[8];
    b->result = b->write ? np_write(b->pd, big, sizeof big) : np_read(b->pd, buf, sizeof buf);
    atomic_store(&b->done, 1);
}

static int close_wakes_both(void *x) {
    (void)x;
    struct pair p;
    open_pair(&p, 1);
    fill(p.a);
    struct blocked r = {.pd = p.pa, .write = 0}, w = {.pd = p.pa, .write = 1};
    np_go(block_on, &r);
    np_go(block_on, &w);
    np_sleep(30 * MS);
    cr_assert_eq(atomic_load(&r.done), 0, "reader is blocked");
    cr_assert_eq(atomic_load(&w.done), 0, "writer is blocked");
    cr_assert_eq(np_close(p.pa), 0);
    p.pa = NULL;
    /* Their operations have left; the threads record it just after. */
    int64_t end = np_now() + 2000 * MS;
    while ((!atomic_load(&r.done) || !atomic_load(&w.done)) && np_now() < end) np_sleep(MS);
    cr_assert_eq(atomic_load(&r.done), 1, "the reader was not woken");
    cr_assert_eq(atomic_load(&w.done), 1, "the writer was not woken");
    cr_assert_eq(r.result, -EBADF);
    cr_assert(w.result == -EBADF || w.result > 0, "writer: %zd", w.result);
    close_pair(&p);
    return 0;
}
PORT_TEST(close, wakes_reader_and_writer) { GREEN(close_wakes_both); }

static int use_after_close(void *x) {
    (void)x;
    struct pair p;
    open_pair(&p, 0);
    np_fd *pd = p.pa;
    cr_assert_eq(np_close(pd), 0);
    char buf[4];
    cr_assert_eq(np_read(pd, buf, 4), -EBADF);
    cr_assert_eq(np_write(pd, buf, 4), -EBADF);
    cr_assert_eq(np_set_deadline(pd, 0, NP_READ), -EBADF);
    cr_assert_eq(np_wait_read(pd), -EBADF);
    cr_assert_eq(np_fileno(pd), -EBADF);
    cr_assert_eq(np_close(pd), -EBADF, "double close");
    /* The fd itself was closed. */
    cr_assert_eq(fcntl(p.a, F_GETFD), -1);
    p.pa = NULL;
    close_pair(&p);
    return 0;
}
PORT_TEST(close, use_after_and_double_close) { GREEN(use_after_close); }

static atomic_int racers_done;
static void racer_read(void *a) {
    char buf[64];
    while (np_read(a, buf, sizeof buf) > 0) {
    }
    atomic_fetch_add(&racers_done, 1);
}
static void racer_write(void *a) {
    char buf[64] = {0};
    while (np_write(a, buf, sizeof buf) > 0) {
    }
    atomic_fetch_add(&racers_done, 1);
}

static int close_races(void *x) {
    (void)x;
    for (int round = 0; round < 100; round++) {
        struct pair p;
        open_pair(&p, round & 1);
        atomic_store(&racers_done, 0);
        np_go(racer_read, p.pa);
        np_go(racer_write, p.pa);
        np_go(racer_read, p.pb); /* drains so the writer keeps going */
        np_sleep((round % 3) * 100 * US);
        cr_assert_eq(np_close(p.pa), 0);
        cr_assert_eq(np_close(p.pb), 0);
        int64_t end = np_now() + 5000 * MS;
        while (atomic_load(&racers_done) < 3 && np_now() < end) np_sleep(100 * US);
        cr_assert_eq(atomic_load(&racers_done), 3);
    }
    return 0;
}
PORT_TEST(close, races_with_io, .timeout = 60) { GREEN(close_races); }

static int relisten(void *x) {
    (void)x;
    struct sockaddr_in sa;
    int ls = listener(&sa);
    np_fd *pl = must_open(ls);
    cr_assert_eq(np_close(pl), 0);
    int ls2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls2, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    cr_assert_eq(bind(ls2, (struct sockaddr *)&sa, sizeof sa), 0, "the port was released");
    cr_assert_eq(listen(ls2, 8), 0);
    np_fd *pl2 = must_open(ls2);
    np_fd *c = must_open(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    cr_assert_eq(np_connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
    np_fd *acc;
    cr_assert_eq(np_accept(pl2, &acc, NULL, NULL), 0);
    np_close(acc);
    np_close(c);
    np_close(pl2);
    return 0;
}
PORT_TEST(close, closed_listener_relisten) { GREEN(relisten); }

/* np_close from a thread other than the one whose poller armed the
 * descriptor (here a plain OS thread, after a green thread opened them):
 * when it returns the file is gone -- the address can be bound again and
 * the peer sees the end of the stream. */
struct held {
    struct sockaddr_in sa;
    np_fd *ls, *conn;
    int peer;
};

static int open_held(void *x) {
    struct held *h = x;
    h->ls = must_open(listener(&h->sa));
    int a, b;
    tcp_pair(&a, &b);
    h->conn = must_open(a);
    h->peer = b;
    char c;
    /* parks once: the registration is armed and in use */
    np_set_deadline(h->conn, np_now() + 20 * MS, NP_READ);
    cr_assert_eq(np_read(h->conn, &c, 1), -ETIMEDOUT);
    return 0;
}

PORT_TEST(close, from_another_thread_releases_the_file) {
    for (int i = 0; i < 20; i++) {
        struct held h;
        run_green(open_held, &h);
        cr_assert_eq(np_close(h.ls), 0);
        cr_assert_eq(np_close(h.conn), 0);
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_eq(bind(s, (struct sockaddr *)&h.sa, sizeof h.sa), 0,
                     "round %d: the address is still in use after np_close: %s", i, strerror(errno));
        close(s);
        struct pollfd pf = {.fd = h.peer, .events = POLLIN};
        cr_assert_eq(poll(&pf, 1, 0), 1, "round %d: the peer saw no close", i);
        char c;
        cr_assert_eq(read(h.peer, &c, 1), 0);
        close(h.peer);
    }
}

static int eof_and_errors(void *x) {
    (void)x;
    char buf[8];
    /* shutdown(RD): reads see EOF at once */
    struct pair p;
    open_pair(&p, 1);
    shutdown(p.a, SHUT_RD);
    cr_assert_eq(np_read(p.pa, buf, sizeof buf), 0);
    close_pair(&p);
    /* peer close: EOF after the data */
    open_pair(&p, 1);
    np_write(p.pb, "bye", 3);
    np_close(p.pb);
    p.pb = NULL;
    cr_assert_eq(np_read(p.pa, buf, sizeof buf), 3);
    cr_assert_eq(np_read(p.pa, buf, sizeof buf), 0);
    cr_assert_eq(np_read(p.pa, buf, sizeof buf), 0);
    close_pair(&p);
    /* RST: an error, not retried */
    open_pair(&p, 1);
    struct linger lg = {1, 0};
    setsockopt(p.b, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    np_close(p.pb);
    p.pb = NULL;
    ssize_t r = np_read(p.pa, buf, sizeof buf);
    cr_assert_eq(r, -ECONNRESET, "read after RST: %zd", r);
    close_pair(&p);
    return 0;
}
PORT_TEST(close, eof_shutdown_and_reset) { GREEN(eof_and_errors); }

/* ---- fd reuse ------------------------------------------------------------- */

static int reuse_no_stale(void *x) {
    (void)x;
    for (int i = 0; i < 50; i++) {
        int sv[2];
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
        np_fd *a = must_open(sv[0]);
        /* Readiness and an error pending for the old fd... */
        cr_assert_eq(write(sv[1], "stale", 5), 5);
        close(sv[1]);
        np_yield();
        int oldfd = sv[0];
        np_close(a);
        /* ...must not reach the new descriptor with the same number. */
        int sv2[2];
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv2);
        cr_assert(sv2[0] == oldfd || sv2[1] == oldfd, "fd number reused");
        np_fd *b = must_open(sv2[0]);
        np_set_deadline(b, np_now() + 5 * MS, NP_READ);
        char buf[8];
        cr_assert_eq(np_read(b, buf, sizeof buf), -ETIMEDOUT, "stale readiness leaked");
        np_close(b);
        close(sv2[1]);
    }
    return 0;
}
PORT_TEST(reuse, no_stale_readiness) { GREEN(reuse_no_stale); }

/* ---- I/O ------------------------------------------------------------------- */

static int zero_byte_read(void *x) {
    (void)x;
    struct pair p;
    open_pair(&p, 0);
    char buf[1];
    int64_t t0 = np_now();
    cr_assert_eq(np_read(p.pa, buf, 0), 0);
    cr_assert_lt(np_now() - t0, 50 * MS, "did not wait");
    close_pair(&p);
    return 0;
}
PORT_TEST(io, zero_byte_read) { GREEN(zero_byte_read); }

struct xfer {
    np_fd *pd;
    size_t n;
    uint64_t sum;
};
static void *big_writer(void *a) {
    struct xfer *x = a;
    size_t chunk = 1 << 20;
    unsigned char *buf = malloc(chunk);
    uint64_t sum = 0;
    for (size_t off = 0; off < x->n; off += chunk) {
        for (size_t i = 0; i < chunk; i++) {
            buf[i] = (unsigned char)((off + i) * 2654435761u >> 13);
            sum += buf[i];
        }
        cr_assert_eq(np_write(x->pd, buf, chunk), (ssize_t)chunk);
    }
    x->sum = sum;
    free(buf);
    shutdown(np_fileno(x->pd), SHUT_WR);
    return NULL;
}

static int big_transfer(void *arg) {
    (void)arg;
    struct pair p;
    open_pair(&p, 1);
    struct xfer w = {p.pa, 64u << 20, 0};
    np_thread *t;
    np_spawn(&t, big_writer, &w);
    unsigned char *buf = malloc(3 << 20); /* larger than the socket buffers */
    uint64_t sum = 0;
    size_t total = 0;
    ssize_t r;
    while ((r = np_read(p.pb, buf, 3 << 20)) > 0) {
        for (ssize_t i = 0; i < r; i++) sum += buf[i];
        total += (size_t)r;
    }
    cr_assert_eq(r, 0);
    np_join(t, NULL);
    cr_assert_eq(total, w.n);
    cr_assert_eq(sum, w.sum, "data corrupted in transit");
    free(buf);
    close_pair(&p);
    return 0;
}
PORT_TEST(io, big_transfer, .timeout = 60) { GREEN(big_transfer); }

static atomic_int accepted;
static void acceptor(void *a) {
    np_fd *pl = a;
    np_fd *c;
    while (np_accept(pl, &c, NULL, NULL) == 0) {
        atomic_fetch_add(&accepted, 1);
        np_close(c);
    }
}

static int concurrent_accept(void *x) {
    (void)x;
    struct sockaddr_in sa;
    np_fd *pl = must_open(listener(&sa));
    for (int i = 0; i < 8; i++) np_go(acceptor, pl);
    for (int i = 0; i < 200; i++) {
        np_fd *c = must_open(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        cr_assert_eq(np_connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
        np_close(c);
    }
    int64_t end = np_now() + 10000 * MS;
    while (atomic_load(&accepted) < 200 && np_now() < end) np_sleep(MS);
    cr_assert_eq(atomic_load(&accepted), 200);
    np_close(pl); /* acceptors wake with EBADF and end */
    return 0;
}
PORT_TEST(io, concurrent_accept) { GREEN(concurrent_accept); }

static void echo_conn(void *a) {
    np_fd *c = a;
    char buf[4096];
    ssize_t n;
    while ((n = np_read(c, buf, sizeof buf)) > 0)
        if (np_write(c, buf, (size_t)n) != n) break;
    np_close(c);
}
static void echo_server(void *a) {
    np_fd *pl = a, *c;
    while (np_accept(pl, &c, NULL, NULL) == 0) np_go(echo_conn, c);
}

static struct sockaddr_in stress_addr;
static atomic_int clients_ok;
static void client(void *a) {
    (void)a;
    np_fd *c = must_open(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (np_connect(c, (struct sockaddr *)&stress_addr, sizeof stress_addr) != 0) {
        np_close(c);
        return;
    }
    char out[512], in[512];
    for (int i = 0; i < 20; i++) {
        memset(out, 'a' + i, sizeof out);
        if (np_write(c, out, sizeof out) != 512) break;
        size_t got = 0;
        while (got < sizeof in) {
            ssize_t r = np_read(c, in + got, sizeof in - got);
            if (r <= 0) break;
            got += (size_t)r;
        }
        if (got != sizeof in || memcmp(in, out, sizeof in)) break;
        if (i == 19) atomic_fetch_add(&clients_ok, 1);
    }
    np_close(c);
}

static int stress(void *x) {
    (void)x;
    np_fd *pl = must_open(listener(&stress_addr));
    np_go(echo_server, pl);
    for (int i = 0; i < 1000; i++) np_go(client, NULL);
    int64_t end = np_now() + 30000 * MS;
    while (atomic_load(&clients_ok) < 1000 && np_now() < end) np_sleep(5 * MS);
    cr_assert_eq(atomic_load(&clients_ok), 1000);
    np_close(pl);
    /* The server's handlers see their clients' ends and finish: soon, but
     * a slow machine (or a sanitizer) takes its time. */
    np_stats s = {.size = sizeof s};
    end = np_now() + 10000 * MS;
    do {
        np_sleep(10 * MS);
        np_stats_get(&s);
    } while (s.poll_waiters != 0 && np_now() < end);
    cr_assert_eq(s.poll_waiters, 0, "waiter count back to 0, got %llu",
                 (unsigned long long)s.poll_waiters);
    return 0;
}
PORT_TEST(io, stress_1000_connections, .timeout = 90) { GREEN(stress); }

static int user_nonblocking(void *x) {
    (void)x;
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    np_fd *a;
    cr_assert_eq(np_open_flags(sv[0], NP_OPEN_NONBLOCK, &a), 0);
    char buf[8];
    cr_assert_eq(np_read(a, buf, sizeof buf), -EAGAIN);
    np_fd *b = must_open(sv[1]);
    cr_assert_eq(np_recvfrom(b, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL), -EAGAIN);
    cr_assert_eq(np_open_flags(sv[1], 0x100, &a), -EINVAL);
    np_close(a);
    np_close(b);
    return 0;
}
PORT_TEST(io, user_nonblocking_gets_eagain) { GREEN(user_nonblocking); }

static int regular_file(void *x) {
    (void)x;
    char path[] = "/tmp/netpoll-test-XXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    np_fd *f = must_open(fd);
    cr_assert_eq(np_write(f, "hello file", 10), 10);
    lseek(fd, 0, SEEK_SET);
    char buf[16] = {0};
    cr_assert_eq(np_read(f, buf, sizeof buf), 10);
    cr_assert_str_eq(buf, "hello file");
    cr_assert_eq(np_wait_read(f), -ENOTSUP);
    cr_assert_eq(np_wait_write(f), -ENOTSUP);
    cr_assert_eq(np_set_deadline(f, np_now() + MS, NP_READ), -ENOTSUP);
    cr_assert_eq(np_close(f), 0);
    return 0;
}
PORT_TEST(io, regular_file_blocking_io) { GREEN(regular_file); }

static int vectored_and_dgram(void *x) {
    (void)x;
    struct pair p;
    open_pair(&p, 0);
    struct iovec out[2] = {{"hel", 3}, {"lo", 2}};
    cr_assert_eq(np_writev(p.pa, out, 2), 5);
    char a[2], b[8];
    struct iovec in[2] = {{a, 2}, {b, 8}};
    cr_assert_eq(np_readv(p.pb, in, 2), 5);
    cr_assert_eq(memcmp(a, "he", 2), 0);
    cr_assert_eq(memcmp(b, "llo", 3), 0);
    cr_assert_eq(np_readv(p.pb, in, -1), -EINVAL);
    close_pair(&p);

    int u1 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), u2 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(u2, (struct sockaddr *)&sa, sizeof sa);
    socklen_t l = sizeof sa;
    getsockname(u2, (struct sockaddr *)&sa, &l);
    np_fd *d1 = must_open(u1), *d2 = must_open(u2);
    cr_assert_eq(np_sendto(d1, "dgram", 5, 0, (struct sockaddr *)&sa, sizeof sa), 5);
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    char buf[16];
    cr_assert_eq(np_recvfrom(d2, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl), 5);
    struct msghdr mh = {0};
    struct iovec iv = {"msg", 3};
    mh.msg_name = &sa;
    mh.msg_namelen = sizeof sa;
    mh.msg_iov = &iv;
    mh.msg_iovlen = 1;
    cr_assert_eq(np_sendmsg(d1, &mh, 0), 3);
    struct iovec iv2 = {buf, sizeof buf};
    struct msghdr mh2 = {0};
    mh2.msg_iov = &iv2;
    mh2.msg_iovlen = 1;
    cr_assert_eq(np_recvmsg(d2, &mh2, 0), 3);
    cr_assert_eq(memcmp(buf, "msg", 3), 0);
    np_close(d1);
    np_close(d2);
    return 0;
}
PORT_TEST(io, vectored_and_datagram) { GREEN(vectored_and_dgram); }

static int connect_errors(void *x) {
    (void)x;
    struct sockaddr_in sa;
    int ls = listener(&sa);
    close(ls); /* nobody listens there now */
    np_fd *c = must_open(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    cr_assert_eq(np_connect(c, (struct sockaddr *)&sa, sizeof sa), -ECONNREFUSED);
    np_close(c);
    return 0;
}
PORT_TEST(io, connect_refused) { GREEN(connect_errors); }

static int bad_input(void *x) {
    (void)x;
    np_fd *p;
    cr_assert_eq(np_open(-1, &p), -EBADF);
    cr_assert_eq(np_open(0, NULL), -EINVAL);
    cr_assert_eq(np_open(123456, &p), -EBADF);
    cr_assert_eq(np_close(NULL), -EINVAL);
    cr_assert_eq(np_read(NULL, NULL, 0), -EINVAL);
    cr_assert_eq(np_write(NULL, "", 0), -EINVAL);
    cr_assert_eq(np_wait_read(NULL), -EINVAL);
    cr_assert_eq(np_wait_write(NULL), -EINVAL);
    cr_assert_eq(np_set_deadline(NULL, 0, NP_READ), -EINVAL);
    cr_assert_eq(np_accept(NULL, &p, NULL, NULL), -EINVAL);
    cr_assert_eq(np_connect(NULL, NULL, 0), -EINVAL);
    cr_assert_eq(np_fileno(NULL), -EINVAL);
    struct pair pr;
    open_pair(&pr, 0);
    cr_assert_eq(np_set_deadline(pr.pa, 0, 0), -EINVAL);
    cr_assert_eq(np_set_deadline(pr.pa, 0, 4), -EINVAL);
    cr_assert_eq(np_read(pr.pa, NULL, 5), -EINVAL);
    cr_assert_eq(np_accept(pr.pa, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(np_fileno(pr.pa), pr.a);
    /* the fd is nonblocking now, as documented */
    cr_assert(fcntl(pr.a, F_GETFL) & O_NONBLOCK);
    close_pair(&pr);
    return 0;
}
PORT_TEST(io, bad_input) { GREEN(bad_input); }

static int wait_ready(void *x) {
    (void)x;
    struct pair p;
    open_pair(&p, 0);
    cr_assert_eq(np_wait_write(p.pa), 0, "a fresh socket is writable");
    struct delayed_write d = {p.b, 10 * MS};
    np_go(write_later, &d);
    cr_assert_eq(np_wait_read(p.pa), 0);
    char buf[8];
    cr_assert_eq(read(p.a, buf, sizeof buf), 4);
    close_pair(&p);
    return 0;
}
PORT_TEST(io, wait_read_write) { GREEN(wait_ready); }

/* nettest-style ping-pong with reads and writes from plain OS threads too. */
static void *plain_pinger(void *a) {
    np_fd *pd = a;
    char buf[4];
    for (int i = 0; i < 200; i++) {
        cr_assert_eq(np_write(pd, "ping", 4), 4);
        cr_assert_eq(np_read(pd, buf, 4), 4);
    }
    return NULL;
}
static void ponger(void *a) {
    np_fd *pd = a;
    char buf[4];
    while (np_read(pd, buf, 4) == 4) np_write(pd, "pong", 4);
}

PORT_TEST(io, plain_thread_io) {
    struct pair p;
    open_pair(&p, 1);
    np_go(ponger, p.pb);
    pthread_t t;
    pthread_create(&t, NULL, plain_pinger, p.pa);
    pthread_join(t, NULL);
    close_pair(&p);
}

/* ---- the poller ------------------------------------------------------------ */

Test(poller, trace, .init = cr_redirect_stderr) {
    setenv("NPDEBUG", "netpoll=1", 1);
    np_test_init("epoll", 1);
    struct pair p;
    open_pair(&p, 0);
    close_pair(&p);
    char buf[4096];
    captured_stderr(buf, sizeof buf);
    cr_assert(strstr(buf, "netpoll: epfd="), "%s", buf);
    cr_assert(strstr(buf, " add"), "%s", buf);
}

/* Tracing from a small stack: a 6 KiB handler with a 4 KiB buffer opens,
 * waits on (its registration moving to its worker) and closes descriptors,
 * each traced on its own stack. */
static atomic_int small_traced;

static void small_traced_handler(void *a) {
    int fd = *(int *)a;
    char buf[4096];
    np_fd *pd;
    cr_assert_eq(np_open(fd, &pd), 0);
    np_set_deadline(pd, np_now() + 5000 * MS, NP_READ);
    ssize_t n = np_read(pd, buf, sizeof buf);
    cr_assert_eq(n, 1);
    cr_assert_eq(np_close(pd), 0);
    atomic_fetch_add(&small_traced, 1);
}

static void *poke_later(void *a) {
    int *peers = a;
    usleep(20 * 1000);
    for (int i = 0; i < 8; i++) cr_assert_eq(write(peers[i], "t", 1), 1);
    return NULL;
}

static int trace_small(void *x) {
    (void)x;
    static int fds[8], peers[8];
    for (int i = 0; i < 8; i++) {
        int sv[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        fds[i] = sv[0];
        peers[i] = sv[1];
        cr_assert_eq(np_go_stack(small_traced_handler, &fds[i], 6 * 1024 + NP_ASAN_STACK_EXTRA), 0);
    }
    pthread_t t;
    pthread_create(&t, NULL, poke_later, peers);
    int64_t end = np_now() + 10000 * MS;
    while (atomic_load(&small_traced) < 8 && np_now() < end) np_sleep(MS);
    pthread_join(t, NULL);
    cr_assert_eq(atomic_load(&small_traced), 8);
    for (int i = 0; i < 8; i++) close(peers[i]);
    return 0;
}

static void trace_small_on(const char *poller) {
    SKIP_UNDER_TSAN("small stacks");
    setenv("NPDEBUG", "netpoll=1", 1);
    np_test_init(poller, 2);
    run_green(trace_small, NULL);
    char buf[8192];
    captured_stderr(buf, sizeof buf);
    cr_assert(strstr(buf, " add"), "%s", buf);
    cr_assert(strstr(buf, " del"), "%s", buf);
}

Test(poller, trace_on_small_stacks_epoll, .init = cr_redirect_stderr) { trace_small_on("epoll"); }
Test(poller, trace_on_small_stacks_io_uring, .init = cr_redirect_stderr) { trace_small_on("io_uring"); }
Test(poller, trace_on_small_stacks_poll, .init = cr_redirect_stderr) { trace_small_on("poll"); }

/* After a short read, data and hang-up that arrived together must still
 * be seen (t/short_read_test.c: more data queued behind a short read). */
static int short_read_then_eof(void *x) {
    (void)x;
    for (int round = 0; round < 20; round++) {
        struct pair p;
        open_pair(&p, round & 1);
        char buf[4096];
        /* A first short read. */
        cr_assert_eq(write(p.b, "one", 3), 3);
        cr_assert_eq(np_read(p.pa, buf, sizeof buf), 3);
        /* Data and FIN land before the next read. */
        cr_assert_eq(write(p.b, "two", 3), 3);
        shutdown(p.b, SHUT_WR);
        np_sleep(2 * MS);
        np_set_deadline(p.pa, np_now() + 2000 * MS, NP_READ);
        cr_assert_eq(np_read(p.pa, buf, sizeof buf), 3);
        ssize_t r = np_read(p.pa, buf, sizeof buf);
        cr_assert_eq(r, 0, "EOF after a short read (round %d): %zd", round, r);
        close_pair(&p);
    }
    return 0;
}
PORT_TEST(io, short_read_then_eof) { GREEN(short_read_then_eof); }

static int short_read_then_reset(void *x) {
    (void)x;
    struct pair p;
    open_pair(&p, 1);
    char buf[4096];
    cr_assert_eq(write(p.b, "one", 3), 3);
    cr_assert_eq(np_read(p.pa, buf, sizeof buf), 3);
    struct linger lg = {1, 0};
    setsockopt(p.b, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    np_close(p.pb);
    p.pb = NULL;
    np_sleep(2 * MS);
    np_set_deadline(p.pa, np_now() + 2000 * MS, NP_READ);
    cr_assert_eq(np_read(p.pa, buf, sizeof buf), -ECONNRESET);
    close_pair(&p);
    return 0;
}
PORT_TEST(io, short_read_then_reset) { GREEN(short_read_then_reset); }

/* Partial reads of a message stream, other read calls mixed in. */
static void trickle(void *a) {
    np_fd *pd = a;
    for (int i = 0; i < 300; i++) {
        char msg[7];
        memcpy(msg, "abcdefg", 7);
        np_write(pd, msg, 1 + i % 7);
        if (i % 5 == 0) np_sleep(100 * US);
    }
    shutdown(np_fileno(pd), SHUT_WR);
}

static int mixed_reads(void *x) {
    (void)x;
    struct pair p;
    open_pair(&p, 1);
    np_go(trickle, p.pb);
    size_t want = 0, got = 0;
    for (int i = 0; i < 300; i++) want += 1 + (size_t)(i % 7);
    np_set_deadline(p.pa, np_now() + 10000 * MS, NP_READ);
    for (int i = 0;; i++) {
        char buf[64];
        ssize_t r;
        if (i % 3 == 0) r = np_recvfrom(p.pa, buf, sizeof buf, 0, NULL, NULL);
        else if (i % 3 == 1) {
            struct iovec iov = {buf, sizeof buf};
            r = np_readv(p.pa, &iov, 1);
        } else r = np_read(p.pa, buf, sizeof buf);
        cr_assert_geq(r, 0, "read %d: %zd", i, r);
        if (r == 0) break;
        got += (size_t)r;
    }
    cr_assert_eq(got, want);
    close_pair(&p);
    return 0;
}
PORT_TEST(io, partial_reads_mixed_calls) { GREEN(mixed_reads); }
