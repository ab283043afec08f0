/* A connection suite after Go's nettest.TestConn: basic I/O, ping-pong,
 * racy reads and writes with buffers reused after timeouts, present /
 * future / close timeouts, and all methods called concurrently.  TCP over
 * loopback, every port. */
#include <pthread.h>

#include "np_test.h"

struct conn {
    np_fd *c1, *c2;
};

static struct conn make_conn(void) {
    int a, b;
    tcp_pair(&a, &b);
    struct conn k = {must_open(a), must_open(b)};
    return k;
}

static void drop_conn(struct conn *k) {
    np_close(k->c1);
    np_close(k->c2);
}

static uint32_t rng(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* ---- basic I/O: random chunk sizes both ways, checksummed ---------------- */

struct half {
    np_fd *pd;
    size_t total;
    uint64_t sum;
    uint32_t seed;
};

static void *send_chunks(void *a) {
    struct half *h = a;
    /* Thread-local on purpose: 70 KB of static TLS in the test program,
     * which glibc carves out of every thread stack (sysmon must still start). */
    static _Thread_local unsigned char buf[70000];
    size_t sent = 0;
    while (sent < h->total) {
        size_t n = 1 + rng(&h->seed) % sizeof buf;
        if (n > h->total - sent) n = h->total - sent;
        for (size_t i = 0; i < n; i++) {
            buf[i] = (unsigned char)rng(&h->seed);
            h->sum += buf[i];
        }
        cr_assert_eq(np_write(h->pd, buf, n), (ssize_t)n);
        sent += n;
    }
    shutdown(np_fileno(h->pd), SHUT_WR);
    return NULL;
}

static void *recv_chunks(void *a) {
    struct half *h = a;
    unsigned char buf[9000];
    ssize_t r;
    while ((r = np_read(h->pd, buf, 1 + rng(&h->seed) % sizeof buf)) > 0) {
        for (ssize_t i = 0; i < r; i++) h->sum += buf[i];
        h->total += (size_t)r;
    }
    cr_assert_eq(r, 0);
    return NULL;
}

static int basic_io(void *x) {
    (void)x;
    struct conn k = make_conn();
    struct half w = {k.c1, 8u << 20, 0, 1}, r = {k.c2, 0, 0, 2};
    np_thread *tw, *tr;
    np_spawn(&tw, send_chunks, &w);
    np_spawn(&tr, recv_chunks, &r);
    np_join(tw, NULL);
    np_join(tr, NULL);
    cr_assert_eq(r.total, w.total);
    cr_assert_eq(r.sum, w.sum);
    drop_conn(&k);
    return 0;
}
PORT_TEST(nettest, basic_io, .timeout = 60) { run_green(basic_io, NULL); }

/* ---- ping-pong -------------------------------------------------------------- */

static void *ponger(void *a) {
    np_fd *pd = a;
    uint64_t v;
    while (np_read(pd, &v, sizeof v) == sizeof v) {
        v++;
        if (np_write(pd, &v, sizeof v) != sizeof v) break;
    }
    return NULL;
}

static int ping_pong(void *x) {
    (void)x;
    struct conn k = make_conn();
    np_thread *t;
    np_spawn(&t, ponger, k.c2);
    uint64_t v = 0;
    for (int i = 0; i < 2000; i++) {
        cr_assert_eq(np_write(k.c1, &v, sizeof v), (ssize_t)sizeof v);
        uint64_t got;
        cr_assert_eq(np_read(k.c1, &got, sizeof got), (ssize_t)sizeof got);
        cr_assert_eq(got, v + 1);
        v = got;
    }
    np_close(k.c1);
    np_join(t, NULL);
    np_close(k.c2);
    return 0;
}
PORT_TEST(nettest, ping_pong) { run_green(ping_pong, NULL); }

/* ---- racy reads and writes, buffers reused after timeouts ------------------ */

static atomic_int racy_done;
struct racy {
    np_fd *pd;
    uint32_t seed;
};

static void racy_reader(void *a) {
    struct racy *r = a;
    char buf[1024];
    for (int i = 0; i < 200; i++) {
        np_set_deadline(r->pd, np_now() + (int64_t)(rng(&r->seed) % 500) * US, NP_READ);
        ssize_t n = np_read(r->pd, buf, sizeof buf);
        cr_assert(n > 0 || n == -ETIMEDOUT, "read: %zd", n);
        memset(buf, 0xee, sizeof buf); /* reuse at once: nothing may write into it now */
    }
    atomic_fetch_add(&racy_done, 1);
}

static void racy_writer(void *a) {
    struct racy *r = a;
    char buf[1024];
    memset(buf, 'w', sizeof buf);
    for (int i = 0; i < 200; i++) {
        np_set_deadline(r->pd, np_now() + (int64_t)(rng(&r->seed) % 500) * US, NP_WRITE);
        ssize_t n = np_write(r->pd, buf, sizeof buf);
        cr_assert(n > 0 || n == -ETIMEDOUT, "write: %zd", n);
        memset(buf, 'x', sizeof buf);
    }
    atomic_fetch_add(&racy_done, 1);
}

static int racy(void *x) {
    (void)x;
    struct conn k = make_conn();
    struct racy rs[8];
    for (int i = 0; i < 8; i++) {
        rs[i].pd = i & 1 ? k.c1 : k.c2;
        rs[i].seed = (uint32_t)i * 7919u + 1;
        np_go(i < 4 ? racy_reader : racy_writer, &rs[i]);
    }
    int64_t end = np_now() + 30000 * MS;
    while (atomic_load(&racy_done) < 8 && np_now() < end) np_sleep(MS);
    cr_assert_eq(atomic_load(&racy_done), 8);
    drop_conn(&k);
    return 0;
}
PORT_TEST(nettest, racy_read_write, .timeout = 60) { run_green(racy, NULL); }

/* ---- present, future and close timeouts ----------------------------------- */

static void expire_soon(void *a) {
    np_sleep(10 * MS);
    np_set_deadline(a, np_now(), NP_READ); /* "now": expires at once */
}

static void write_in(void *a) {
    np_sleep(20 * MS);
    np_write(a, "data", 4);
}

static void close_soon(void *a) {
    np_sleep(10 * MS);
    np_close(a);
}

static int timeouts(void *x) {
    (void)x;
    char buf[8];
    /* present: a deadline of "now" set while a read is blocked */
    struct conn k = make_conn();
    np_go(expire_soon, k.c1);
    cr_assert_eq(np_read(k.c1, buf, sizeof buf), -ETIMEDOUT);
    drop_conn(&k);
    /* future: a far deadline does not stop the data */
    k = make_conn();
    np_set_deadline(k.c1, np_now() + 10000 * MS, NP_READ);
    np_go(write_in, k.c2);
    cr_assert_eq(np_read(k.c1, buf, sizeof buf), 4);
    drop_conn(&k);
    /* close: with a deadline pending, close wins and says so */
    k = make_conn();
    np_set_deadline(k.c1, np_now() + 10000 * MS, NP_READ);
    np_go(close_soon, k.c1);
    cr_assert_eq(np_read(k.c1, buf, sizeof buf), -EBADF);
    np_close(k.c2);
    return 0;
}
PORT_TEST(nettest, present_future_close_timeouts) { run_green(timeouts, NULL); }

/* ---- every method at once ----------------------------------------------------- */

static atomic_int stop_all, methods_done;

static void m_read(void *a) {
    char buf[256];
    while (!atomic_load(&stop_all))
        if (np_read(a, buf, sizeof buf) == -EBADF) break;
    atomic_fetch_add(&methods_done, 1);
}
static void m_write(void *a) {
    char buf[256] = {0};
    while (!atomic_load(&stop_all))
        if (np_write(a, buf, sizeof buf) == -EBADF) break;
    atomic_fetch_add(&methods_done, 1);
}
static void m_deadline(void *a) {
    while (!atomic_load(&stop_all)) {
        if (np_set_deadline(a, np_now() + MS, NP_READ | NP_WRITE) == -EBADF) break;
        np_fileno(a);
        np_yield();
    }
    atomic_fetch_add(&methods_done, 1);
}

static int all_methods(void *x) {
    (void)x;
    struct conn k = make_conn();
    for (int i = 0; i < 2; i++) {
        np_go(m_read, k.c1);
        np_go(m_read, k.c2);
        np_go(m_write, k.c1);
        np_go(m_write, k.c2);
        np_go(m_deadline, k.c1);
        np_go(m_deadline, k.c2);
    }
    np_sleep(200 * MS);
    cr_assert_eq(np_close(k.c1), 0);
    cr_assert_eq(np_close(k.c2), 0);
    atomic_store(&stop_all, 1);
    int64_t end = np_now() + 10000 * MS;
    while (atomic_load(&methods_done) < 12 && np_now() < end) np_sleep(MS);
    cr_assert_eq(atomic_load(&methods_done), 12);
    return 0;
}
PORT_TEST(nettest, concurrent_methods, .timeout = 60) { run_green(all_methods, NULL); }
