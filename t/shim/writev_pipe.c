/* writev_pipe: writes that several threads make to one pipe or socket.
 *   records:  4 threads writev 200-byte records (2 buffers) into one pipe:
 *             each arrives whole (PIPE_BUF or less is atomic, writev too);
 *   writers:  2 threads write() into one pipe that a reader drains: every
 *             byte arrives, none waits for a wake-up that never comes (a
 *             pipe says "writable" only when a read makes a full one not
 *             full, so a readiness taken by one writer is not seen again);
 *   large:    writev of 200 buffers (1 MiB) to a socket read slowly: all
 *             of it, in order;
 *   pieces:   a TCP reply in 26 small buffers, Nagle on: 100 request and
 *             reply round trips take well under a second, as one writev
 *             sends the pieces together (one send each would wait for the
 *             peer's delayed ACK, 40 ms a reply). */
#include <fcntl.h>
#include <poll.h>
#include <sys/uio.h>

#include "shim_test.h"

#define REC 200
#define PER 2000

static int pfd[2];

static void *record_writer(void *arg)
{
    char head[20], body[REC - 20];
    memset(head, 'A' + (int)(intptr_t)arg, sizeof head);
    memset(body, 'a' + (int)(intptr_t)arg, sizeof body);
    struct iovec v[2] = {{head, sizeof head}, {body, sizeof body}};
    for (int i = 0; i < PER; i++)
        if (writev(pfd[1], v, 2) != REC) return (void *)1;
    return NULL;
}

static void test_records(void)
{
    CHECK(pipe(pfd) == 0, "pipe");
    fcntl(pfd[1], F_SETPIPE_SZ, 1 << 20);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) t[i] = st_spawn(record_writer, (void *)(intptr_t)i);
    char rec[REC];
    int torn = 0;
    for (int n = 0; n < 4 * PER; n++) {
        size_t got = 0;
        while (got < REC) {
            ssize_t r = read(pfd[0], rec + got, REC - got);
            if (r <= 0) break;
            got += (size_t)r;
        }
        if (got < REC) {
            CHECK(0, "records: the pipe ended after %d records", n);
            break;
        }
        int w = rec[0] - 'A';
        int ok = w >= 0 && w < 4;
        for (int k = 0; ok && k < REC; k++) ok = rec[k] == (k < 20 ? 'A' : 'a') + w;
        torn += !ok;
    }
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        CHECK(r == NULL, "records: writer %d had a short writev", i);
    }
    CHECK(torn == 0, "records: %d of %d records torn", torn, 4 * PER);
    close(pfd[0]);
    close(pfd[1]);
}

static void *plain_writer(void *arg)
{
    (void)arg;
    char rec[REC];
    memset(rec, 'w', sizeof rec);
    for (int i = 0; i < 20000; i++)
        if (write(pfd[1], rec, REC) != REC) return (void *)1;
    return NULL;
}

static void test_writers(void)
{
    CHECK(pipe(pfd) == 0, "pipe");
    pthread_t t[2];
    for (int i = 0; i < 2; i++) t[i] = st_spawn(plain_writer, NULL);
    static char buf[1 << 16];
    long total = 0, want = 2L * 20000 * REC;
    while (total < want) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        if (poll(&p, 1, 5000) != 1) {
            CHECK(0, "writers: nothing to read for 5 s after %ld of %ld bytes", total, want);
            break;
        }
        ssize_t r = read(pfd[0], buf, sizeof buf);
        if (r <= 0) break;
        total += r;
    }
    if (total < want) { /* let the writers go */
        close(pfd[0]);
        pfd[0] = -1;
    }
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    CHECK(total == want, "writers: read %ld of %ld bytes", total, want);
    if (pfd[0] >= 0) close(pfd[0]);
    close(pfd[1]);
}

static int sv[2];
static void *slow_reader(void *arg)
{
    long want = (long)(intptr_t)arg, got = 0;
    unsigned char buf[4096];
    int bad = 0;
    while (got < want) {
        ssize_t r = read(sv[1], buf, sizeof buf);
        if (r <= 0) break;
        for (ssize_t k = 0; k < r; k++) bad += buf[k] != (unsigned char)((got + k) % 251);
        got += r;
        if ((got / 4096) % 16 == 0) st_sleep_ms(1);
    }
    return (void *)(intptr_t)(got == want && !bad);
}

static void test_large(void)
{
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    enum { NB = 200, LEN = 5243 };
    static unsigned char data[NB * LEN];
    for (size_t k = 0; k < sizeof data; k++) data[k] = (unsigned char)(k % 251);
    struct iovec v[NB];
    for (int i = 0; i < NB; i++) v[i] = (struct iovec){data + (size_t)i * LEN, LEN};
    pthread_t r = st_spawn(slow_reader, (void *)(intptr_t)sizeof data);
    ssize_t n = writev(sv[0], v, NB);
    CHECK(n == (ssize_t)sizeof data, "large: writev of %zu bytes returned %zd", sizeof data, n);
    void *ok;
    pthread_join(r, &ok);
    CHECK(ok != NULL, "large: the reader did not get the bytes in order");
    close(sv[0]);
    close(sv[1]);
}

static void *piece_server(void *arg)
{
    int l = (int)(intptr_t)arg;
    int c = accept(l, NULL, NULL);
    if (c < 0) return NULL;
    char req[8], pieces[26][4];
    struct iovec v[26];
    for (int i = 0; i < 26; i++) {
        memset(pieces[i], 'a' + i, sizeof pieces[i]);
        v[i] = (struct iovec){pieces[i], i == 25 ? 1 : 4};
    }
    while (read(c, req, 1) == 1)
        if (writev(c, v, 26) != 101) break;
    close(c);
    return NULL;
}

static void test_pieces(void)
{
    uint16_t port;
    int l = st_listen(4, &port);
    pthread_t s = st_spawn(piece_server, (void *)(intptr_t)l);
    int c = st_connect(port);
    long t0 = st_mono_ms();
    int rounds = 0;
    for (; rounds < 100; rounds++) {
        if (write(c, "q", 1) != 1) break;
        size_t got = 0;
        char buf[128];
        while (got < 101) {
            ssize_t r = read(c, buf, sizeof buf);
            if (r <= 0) break;
            got += (size_t)r;
        }
        if (got != 101) break;
    }
    long took = st_mono_ms() - t0;
    CHECK(rounds == 100, "pieces: %d of 100 round trips", rounds);
    CHECK(took < 2000, "pieces: 100 round trips took %ld ms (a reply in 26 sends waits on delayed ACKs)", took);
    close(c);
    pthread_join(s, NULL);
    close(l);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    signal(SIGPIPE, SIG_IGN);
    static const struct st_test tests[] = {
        {"records", test_records},
        {"writers", test_writers},
        {"large", test_large},
        {"pieces", test_pieces},
    };
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("writev_pipe");
}
