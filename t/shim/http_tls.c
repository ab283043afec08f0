/* http_tls: a minimal thread-per-connection HTTP/1.1 server (keep-alive,
 * pipelining, GET of generated content whose size the path names) with its
 * per-connection state in __thread variables, and client threads checking
 * every byte of every response, in one program.
 *
 *   http_tls [C connections, default 1000] [K requests per connection, default 20]
 *
 * GET /gen/<size>/<seed> returns <size> bytes generated from <seed>; any other
 * path is a 404. Each response carries X-Request (the server thread's
 * __thread request count on this connection) and X-Served (its __thread count
 * of body bytes sent before this response): the client checks both against
 * its own counts. The request parser's buffer is a __thread array. All C
 * connections are held open at once (a barrier) while the program prints
 * `os_threads=K`. */
#include "shim_test.h"

#include <ctype.h>
#include <pthread.h>
#include <sched.h>

enum { IN_BUF = 8192, MAX_BODY = 65536 };

static int nconn = 1000, nreq = 20;
static uint16_t port;
static int listener;
static pthread_barrier_t all_connected, go_ahead;
static atomic_int servers_running;
static atomic_long bodies_checked, body_bytes;
static pthread_t *server_tids;

static unsigned char body_byte(uint32_t seed, uint32_t i)
{
    if (i % 64 == 63) return '\n';
    return (unsigned char)('!' + (seed * 2654435761u + i * 40503u + (i >> 7)) % 94);
}

/* ---- server: every piece of connection state is __thread ---- */
static __thread char tls_in[IN_BUF];
static __thread size_t tls_in_len;
static __thread unsigned tls_requests;
static __thread unsigned long long tls_served;
static __thread int tls_fd = -1;

static int server_send(const char *status, const char *extra, uint32_t size, uint32_t seed)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nServer: http_tls\r\nContent-Length: %u\r\n"
                     "Content-Type: text/plain\r\nX-Request: %u\r\nX-Served: %llu\r\n%s\r\n",
                     status, size, tls_requests, tls_served, extra);
    if (st_write_all(tls_fd, head, (size_t)n) < 0) return -1;
    unsigned char chunk[4096];
    for (uint32_t off = 0; off < size;) {
        uint32_t k = size - off < sizeof chunk ? size - off : (uint32_t)sizeof chunk;
        for (uint32_t i = 0; i < k; i++) chunk[i] = body_byte(seed, off + i);
        if (st_write_all(tls_fd, chunk, k) < 0) return -1;
        off += k;
    }
    tls_served += size;
    return 0;
}

/* Handle the request in tls_in[0..hdr_len); returns 1 to keep the connection. */
static int server_handle(size_t hdr_len)
{
    tls_requests++;
    char line[256];
    size_t ll = (size_t)((char *)memchr(tls_in, '\r', hdr_len) - tls_in);
    if (ll >= sizeof line) ll = sizeof line - 1;
    memcpy(line, tls_in, ll);
    line[ll] = 0;
    int keep = 1;
    for (size_t i = 0; i + 19 <= hdr_len; i++)
        if (strncasecmp(tls_in + i, "\r\nConnection: close", 19) == 0) keep = 0;
    const char *extra = keep ? "" : "Connection: close\r\n";
    unsigned size, seed;
    char tail;
    if (sscanf(line, "GET /gen/%u/%u HTTP/1.1%c", &size, &seed, &tail) == 2 && size <= MAX_BODY) {
        if (server_send("200 OK", extra, size, seed) < 0) return 0;
    } else {
        static const char nf[] = "not found\n";
        char h[512];
        int n = snprintf(h, sizeof h,
                         "HTTP/1.1 404 Not Found\r\nContent-Length: %zu\r\nX-Request: %u\r\n"
                         "X-Served: %llu\r\n%s\r\n%s",
                         sizeof nf - 1, tls_requests, tls_served, extra, nf);
        tls_served += sizeof nf - 1;
        if (st_write_all(tls_fd, h, (size_t)n) < 0) return 0;
    }
    return keep;
}

static void *serve(void *arg)
{
    tls_fd = (int)(intptr_t)arg;
    int *fd_at_start = &tls_fd;
    CHECK(tls_in_len == 0 && tls_requests == 0 && tls_served == 0,
          "server: fresh __thread state is not zero");
    atomic_fetch_add(&servers_running, 1);
    for (;;) {
        char *end = memmem(tls_in, tls_in_len, "\r\n\r\n", 4);
        if (!end) {
            if (tls_in_len == sizeof tls_in) {
                CHECK(0, "server: request header too large");
                break;
            }
            ssize_t n = read(tls_fd, tls_in + tls_in_len, sizeof tls_in - tls_in_len);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) CHECK(0, "server: read: %s", strerror(errno));
            if (n <= 0) break;
            tls_in_len += (size_t)n;
            CHECK(fd_at_start == &tls_fd, "server: &tls_fd moved across a blocking read");
            continue;
        }
        size_t hdr_len = (size_t)(end - tls_in) + 4;
        int keep = server_handle(hdr_len);
        memmove(tls_in, tls_in + hdr_len, tls_in_len - hdr_len);
        tls_in_len -= hdr_len;
        if (!keep) break;
    }
    close(tls_fd);
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
            fprintf(stderr, "accept: %s\n", strerror(errno));
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

/* ---- client: a buffered reader over the connection ---- */
struct reader {
    int fd;
    size_t len, off;
    char buf[16384];
};

static int rd_fill(struct reader *r)
{
    if (r->off) {
        memmove(r->buf, r->buf + r->off, r->len - r->off);
        r->len -= r->off;
        r->off = 0;
    }
    if (r->len == sizeof r->buf) return -1;
    ssize_t n;
    do n = read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return n == 0 ? 0 : -1;
    r->len += (size_t)n;
    return 1;
}

static long header_value(const char *h, size_t hl, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl + 2 < hl; i++)
        if ((i == 0 || h[i - 1] == '\n') && strncasecmp(h + i, name, nl) == 0 && h[i + nl] == ':')
            return strtol(h + i + nl + 1, NULL, 10);
    return -1;
}

struct expect {
    int status;
    uint32_t size, seed;
};

/* Read one response and check it; 0 when it matches. */
static int client_response(struct reader *r, const struct expect *want, unsigned reqno,
                           unsigned long long served, int last, int id)
{
    char *end;
    while (!(end = memmem(r->buf + r->off, r->len - r->off, "\r\n\r\n", 4)))
        if (rd_fill(r) <= 0) {
            CHECK(0, "client %d request %u: connection ended inside a header", id, reqno);
            return -1;
        }
    char *h = r->buf + r->off;
    size_t hl = (size_t)(end - h) + 4;
    int status = 0;
    char first[64];   /* the status line, NUL-terminated for sscanf */
    size_t fl = (size_t)((char *)memchr(h, '\r', hl) - h);
    if (fl >= sizeof first) fl = sizeof first - 1;
    memcpy(first, h, fl);
    first[fl] = 0;
    sscanf(first, "HTTP/1.1 %d", &status);
    long clen = header_value(h, hl, "Content-Length");
    long xreq = header_value(h, hl, "X-Request");
    long xserved = header_value(h, hl, "X-Served");
    int closes = memmem(h, hl, "\r\nConnection: close\r\n", 21) != NULL;
    CHECK(status == want->status, "client %d request %u: status %d, want %d", id, reqno, status,
          want->status);
    CHECK(xreq == (long)reqno, "client %d: server's __thread request count %ld, want %u", id,
          xreq, reqno);
    CHECK(xserved == (long)served, "client %d request %u: server's __thread served %ld, want %llu",
          id, reqno, xserved, served);
    CHECK(closes == last, "client %d request %u: Connection: close %s", id, reqno,
          closes ? "unexpected" : "missing");
    long expect_len = want->status == 200 ? (long)want->size : 10;
    CHECK(clen == expect_len, "client %d request %u: Content-Length %ld, want %ld", id, reqno,
          clen, expect_len);
    if (clen < 0) return -1;
    r->off += hl;
    long bad = -1;
    for (long i = 0; i < clen;) {
        if (r->off == r->len && rd_fill(r) <= 0) {
            CHECK(0, "client %d request %u: body cut at %ld of %ld", id, reqno, i, clen);
            return -1;
        }
        size_t k = r->len - r->off;
        if ((long)k > clen - i) k = (size_t)(clen - i);
        for (size_t j = 0; j < k; j++) {
            unsigned char c = (unsigned char)r->buf[r->off + j];
            unsigned char w = want->status == 200 ? body_byte(want->seed, (uint32_t)(i + (long)j))
                                                  : (unsigned char)"not found\n"[i + (long)j];
            if (c != w && bad < 0) bad = i + (long)j;
        }
        r->off += k;
        i += (long)k;
    }
    CHECK(bad < 0, "client %d request %u: body differs at byte %ld", id, reqno, bad);
    atomic_fetch_add(&bodies_checked, 1);
    atomic_fetch_add(&body_bytes, clen);
    return 0;
}

static void *client(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t rng = 0xD1B54A32D192ED03ULL * (uint64_t)(id + 1);
    struct reader *r = calloc(1, sizeof *r);
    struct expect *want = calloc((size_t)nreq, sizeof *want);
    int fd = st_connect(port);
    if (fd < 0 || !r || !want) {
        fprintf(stderr, "client %d: connect: %s\n", id, strerror(errno));
        exit(2);
    }
    r->fd = fd;
    pthread_barrier_wait(&all_connected);
    pthread_barrier_wait(&go_ahead);

    unsigned long long served = 0;
    int sent = 0, answered = 0;
    while (answered < nreq) {
        /* send one request, or two pipelined in one write */
        int batch = (st_rand(&rng) % 4 == 0) ? 2 : 1;
        char reqs[512];
        size_t rl = 0;
        for (int b = 0; b < batch && sent < nreq; b++, sent++) {
            struct expect *w = &want[sent];
            const char *conn = sent == nreq - 1 ? "Connection: close\r\n" : "";
            if (sent == 1) { /* one 404 per connection, keep-alive continues */
                w->status = 404;
                rl += (size_t)snprintf(reqs + rl, sizeof reqs - rl,
                                       "GET /missing HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", conn);
                continue;
            }
            w->status = 200;
            uint64_t x = st_rand(&rng);
            w->size = (x % 8 == 0) ? 0 : (uint32_t)((x >> 8) % (MAX_BODY + 1));
            w->seed = (uint32_t)(x >> 32);
            rl += (size_t)snprintf(reqs + rl, sizeof reqs - rl,
                                   "GET /gen/%u/%u HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   "User-Agent: http_tls\r\n%s\r\n",
                                   w->size, w->seed, conn);
        }
        if (st_write_all(fd, reqs, rl) < 0) {
            CHECK(0, "client %d: write: %s", id, strerror(errno));
            break;
        }
        while (answered < sent) {
            if (client_response(r, &want[answered], (unsigned)answered + 1, served,
                                answered == nreq - 1, id) < 0)
                goto out;
            served += want[answered].status == 200 ? want[answered].size : 10;
            answered++;
        }
    }
    /* the server closed after "Connection: close": end of file, nothing extra */
    CHECK(r->off == r->len && rd_fill(r) == 0, "client %d: no end of file after the last response",
          id);
out:
    close(fd);
    free(r);
    free(want);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1) nconn = atoi(argv[1]);
    if (argc > 2) nreq = atoi(argv[2]);
    if (nconn < 1 || nreq < 2) {
        fprintf(stderr, "usage: http_tls [connections] [requests per connection >= 2]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    st_raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    server_tids = calloc((size_t)nconn, sizeof *server_tids);
    pthread_t *client_tids = calloc((size_t)nconn, sizeof *client_tids);
    if (!server_tids || !client_tids) return 2;
    listener = st_listen(nconn < 4096 ? nconn : 4096, &port);
    pthread_barrier_init(&all_connected, NULL, (unsigned)nconn + 1);
    pthread_barrier_init(&go_ahead, NULL, (unsigned)nconn + 1);

    st_phase = "connecting";
    int64_t t0 = st_mono_ns();
    pthread_t acc;
    if (pthread_create(&acc, NULL, acceptor, NULL)) return 2;
    for (int i = 0; i < nconn; i++) {
        int e = pthread_create(&client_tids[i], NULL, client, (void *)(intptr_t)i);
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

    st_phase = "requests";
    for (int i = 0; i < nconn; i++) pthread_join(client_tids[i], NULL);
    st_phase = "joining servers";
    pthread_join(acc, NULL);
    for (int i = 0; i < nconn; i++) pthread_join(server_tids[i], NULL);
    int64_t t2 = st_mono_ns();
    long want = (long)nconn * nreq;
    CHECK(atomic_load(&bodies_checked) == want, "%ld responses checked, want %ld",
          atomic_load(&bodies_checked), want);
    printf("http_tls: %d keep-alive connections held open at once (connected in %.0f ms), "
           "%ld responses (%.1f MiB of bodies) checked in %.0f ms\n",
           nconn, st_ms(t1 - t0), atomic_load(&bodies_checked),
           (double)atomic_load(&body_bytes) / (1 << 20), st_ms(t2 - t1));
    close(listener);
    free(server_tids);
    free(client_tids);
    return st_finish("http_tls");
}
