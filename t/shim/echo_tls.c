/* echo_tls: a thread-per-connection echo server whose per-connection state
 * lives in __thread variables, and its clients, in one program.
 *
 *   echo_tls [N connections, default 1000] [M round trips, default 20]
 *
 * N client threads connect and hold every connection open at once (a
 * barrier); while they do, the program prints its OS thread count as
 * `os_threads=K`. Then each client does M round trips of random sizes
 * (1..16 KiB) and checks every echoed byte. The server thread of each
 * connection keeps a running FNV checksum, byte and read counts in __thread
 * variables (and reads into a __thread buffer); at end of file it reports
 * them, and they must equal what the client computed on its own.
 *
 * errno is checked per thread: every blocking read runs with errno preset to
 * a value of the thread's own, which a successful read must leave alone; and
 * each round a client provokes EAGAIN on a non-blocking socketpair it owns,
 * yields and sleeps, and then errno must still be EAGAIN. */
#include "shim_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>

enum { MAX_MSG = 16384, TLS_BUF = 4096 };

struct totals {
    uint64_t sum, bytes, reads;
    uint64_t id;
};

static int nconn = 1000, rounds = 20;
static uint16_t port;
static int listener;
static pthread_barrier_t all_connected, go_ahead;
static atomic_int servers_running;
static struct totals *server_seen;   /* what each server thread's __thread state said */
static struct totals *client_sent;   /* what each client computed independently */
static pthread_t *server_tids;

/* The server's per-connection state: one copy per thread, or the test fails. */
static __thread uint64_t tls_sum = ST_FNV_INIT;   /* initialised: .tdata */
static __thread uint64_t tls_bytes, tls_reads;    /* zero: .tbss */
static __thread int tls_id = -1;
static __thread unsigned char tls_buf[TLS_BUF];

/* The address of tls_sum looked up afresh, to compare against an address a
 * caller computed before it blocked (a green thread that moved to another OS
 * thread must still see its own block). */
__attribute__((noinline)) static uint64_t *tls_sum_addr(void)
{
    __asm__ volatile("" ::: "memory");
    return &tls_sum;
}

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint32_t id;
    if (st_read_full(fd, &id, sizeof id) != sizeof id || id >= (uint32_t)nconn) {
        CHECK(0, "server: no connection id");
        close(fd);
        return NULL;
    }
    atomic_fetch_add(&servers_running, 1);
    CHECK(tls_id == -1 && tls_sum == ST_FNV_INIT && tls_bytes == 0,
          "server %u: fresh __thread state is not its initial image", id);
    tls_id = (int)id;
    uint64_t *sum_at_start = &tls_sum;
    const int my_errno = 20000 + (int)id;
    for (;;) {
        errno = my_errno;
        ssize_t n = read(fd, tls_buf, sizeof tls_buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            CHECK(0, "server %u: read: %s", id, strerror(errno));
            break;
        }
        if (n == 0) break;
        CHECK(errno == my_errno, "server %u: errno %d after a successful read, set %d", id,
              errno, my_errno);
        tls_sum = st_fnv(tls_sum, tls_buf, (size_t)n);
        tls_bytes += (uint64_t)n;
        tls_reads++;
        if (st_write_all(fd, tls_buf, (size_t)n) < 0) {
            CHECK(0, "server %u: write: %s", id, strerror(errno));
            break;
        }
        CHECK(tls_id == (int)id, "server %u: __thread id became %d", id, tls_id);
        CHECK(sum_at_start == tls_sum_addr(), "server %u: &tls_sum moved across blocking calls",
              id);
    }
    struct totals t = {tls_sum, tls_bytes, tls_reads, id};
    server_seen[id] = t;
    if (st_write_all(fd, &t, sizeof t) < 0)
        CHECK(0, "server %u: writing totals: %s", id, strerror(errno));
    close(fd);
    return NULL;
}

static void *acceptor(void *arg)
{
    (void)arg;
    for (int i = 0; i < nconn; i++) {
        int c = accept(listener, NULL, NULL);
        if (c < 0 && errno == EINTR) {
            i--;
            continue;
        }
        if (c < 0) {
            CHECK(0, "accept: %s", strerror(errno));
            exit(2);
        }
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int e = pthread_create(&server_tids[i], NULL, serve, (void *)(intptr_t)c);
        if (e) {
            fprintf(stderr, "pthread_create (server %d): %s\n", i, strerror(e));
            exit(2);
        }
    }
    return NULL;
}

/* Client-side state is per thread too; checked against locals. */
static __thread uint64_t tls_client_echoed;

static void *client(void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg;
    uint64_t rng = 0x9E3779B97F4A7C15ULL * (id + 1);
    unsigned char *out = malloc(MAX_MSG), *in = malloc(MAX_MSG);
    int sp[2] = {-1, -1};
    int fd = st_connect(port);
    if (fd < 0 || !out || !in) {
        fprintf(stderr, "client %u: connect: %s\n", id, strerror(errno));
        exit(2);
    }
    if (st_write_all(fd, &id, sizeof id) < 0) CHECK(0, "client %u: write id", id);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) ||
        fcntl(sp[0], F_SETFL, fcntl(sp[0], F_GETFL) | O_NONBLOCK)) {
        fprintf(stderr, "client %u: socketpair: %s\n", id, strerror(errno));
        exit(2);
    }
    pthread_barrier_wait(&all_connected);
    pthread_barrier_wait(&go_ahead);   /* main has counted the OS threads */

    const int my_errno = 30000 + (int)id;
    uint64_t sum = ST_FNV_INIT, bytes = 0;
    for (int r = 0; r < rounds; r++) {
        size_t len = 1 + st_rand(&rng) % MAX_MSG;
        for (size_t i = 0; i < len; i++) out[i] = (unsigned char)(st_rand(&rng) >> 56);
        sum = st_fnv(sum, out, len);
        bytes += len;
        if (st_write_all(fd, out, len) < 0) {
            CHECK(0, "client %u: write: %s", id, strerror(errno));
            break;
        }
        size_t got = 0;
        while (got < len) {
            errno = my_errno;
            ssize_t n = read(fd, in + got, len - got);
            if (n <= 0) {
                CHECK(0, "client %u: read returned %zd: %s", id, n, strerror(errno));
                goto done;
            }
            CHECK(errno == my_errno, "client %u: errno %d after a successful read, set %d", id,
                  errno, my_errno);
            got += (size_t)n;
        }
        CHECK(memcmp(in, out, len) == 0, "client %u round %d: echo differs", id, r);
        tls_client_echoed += len;

        /* EAGAIN, then other threads run on this worker; errno stays ours */
        errno = my_errno;
        char c;
        ssize_t n = read(sp[0], &c, 1);
        CHECK(n == -1 && errno == EAGAIN, "client %u: empty non-blocking read: %zd, errno %d", id,
              n, errno);
        sched_yield();
        usleep(200);
        CHECK(errno == EAGAIN, "client %u: errno %d after yield+usleep, want EAGAIN (%d)", id,
              errno, EAGAIN);
    }
    CHECK(tls_client_echoed == bytes, "client %u: __thread echoed count %llu, local %llu", id,
          (unsigned long long)tls_client_echoed, (unsigned long long)bytes);
    client_sent[id] = (struct totals){sum, bytes, 0, id};
    shutdown(fd, SHUT_WR);
    struct totals t;
    if (st_read_full(fd, &t, sizeof t) != sizeof t) {
        CHECK(0, "client %u: no totals from the server", id);
    } else {
        CHECK(t.id == id && t.sum == sum && t.bytes == bytes,
              "client %u: server's __thread totals (id %llu, %llu bytes, sum %016llx) differ "
              "from the client's (%llu bytes, sum %016llx)",
              id, (unsigned long long)t.id, (unsigned long long)t.bytes,
              (unsigned long long)t.sum, (unsigned long long)bytes, (unsigned long long)sum);
    }
done:
    close(fd);
    close(sp[0]);
    close(sp[1]);
    free(out);
    free(in);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1) nconn = atoi(argv[1]);
    if (argc > 2) rounds = atoi(argv[2]);
    if (nconn < 1 || rounds < 1) {
        fprintf(stderr, "usage: echo_tls [connections] [round trips]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    st_raise_nofile();
    signal(SIGPIPE, SIG_IGN);

    server_seen = calloc((size_t)nconn, sizeof *server_seen);
    client_sent = calloc((size_t)nconn, sizeof *client_sent);
    server_tids = calloc((size_t)nconn, sizeof *server_tids);
    pthread_t *client_tids = calloc((size_t)nconn, sizeof *client_tids);
    if (!server_seen || !client_sent || !server_tids || !client_tids) return 2;
    listener = st_listen(nconn < 4096 ? nconn : 4096, &port);
    pthread_barrier_init(&all_connected, NULL, (unsigned)nconn + 1);
    pthread_barrier_init(&go_ahead, NULL, (unsigned)nconn + 1);

    int64_t t0 = st_mono_ns();
    st_phase = "connecting";
    pthread_t acc;
    if (pthread_create(&acc, NULL, acceptor, NULL)) return 2;
    for (int i = 0; i < nconn; i++) {
        int e = pthread_create(&client_tids[i], NULL, client, (void *)(uintptr_t)i);
        if (e) {
            fprintf(stderr, "pthread_create (client %d): %s\n", i, strerror(e));
            return 2;
        }
    }
    pthread_barrier_wait(&all_connected);
    st_phase = "waiting for every server thread";
    for (int ms = 0; atomic_load(&servers_running) < nconn && ms < 30000; ms++) usleep(1000);
    CHECK(atomic_load(&servers_running) == nconn, "only %d of %d server threads started",
          atomic_load(&servers_running), nconn);
    printf("connections_open=%d\n", nconn);
    printf("os_threads=%d\n", st_os_threads());
    int64_t t1 = st_mono_ns();
    pthread_barrier_wait(&go_ahead);

    st_phase = "round trips";
    for (int i = 0; i < nconn; i++) pthread_join(client_tids[i], NULL);
    st_phase = "joining servers";
    pthread_join(acc, NULL);
    for (int i = 0; i < nconn; i++) pthread_join(server_tids[i], NULL);
    int64_t t2 = st_mono_ns();

    uint64_t total = 0;
    for (int i = 0; i < nconn; i++) {
        CHECK(server_seen[i].id == (uint64_t)i && server_seen[i].sum == client_sent[i].sum &&
                  server_seen[i].bytes == client_sent[i].bytes && server_seen[i].reads > 0,
              "connection %d: server __thread totals differ from the client's", i);
        total += client_sent[i].bytes;
    }
    printf("echo_tls: %d connections held open at once (connected in %.0f ms), %d round trips "
           "each, %.1f MiB echoed in %.0f ms; __thread checksums, errno and EAGAIN checked\n",
           nconn, st_ms(t1 - t0), rounds, (double)total / (1 << 20), st_ms(t2 - t1));
    close(listener);
    free(server_seen);
    free(client_sent);
    free(server_tids);
    free(client_tids);
    return st_finish("echo_tls");
}
