/* sendfile_park: sendfile(2) to a blocking stream socket parks the thread
 * while the socket is full, as send(2) does, instead of holding its
 * worker's OS thread in the kernel.  A file server with a thread per
 * connection that answers with sendfile() to clients that read slowly
 * otherwise held one OS thread per stalled transfer (sysmon added workers
 * for them, up to its limit, then everything waited).
 *
 * blocked: 16 server threads each sendfile() 2 MiB of a file to a client
 * that does not read yet; while all wait, the process must not have more
 * OS threads than its workers and the monitor.  Then the clients read:
 * every byte arrives, in order, each call returns all it was asked, and the
 * file offset moved (the one passed, or the file's own).
 * timeout: with SO_SNDTIMEO and a client that never reads, sendfile()
 * returns what went (or fails with EAGAIN), and the offset moved by as much.
 * eof: asked for more than the file holds, it returns what there was. */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include "shim_test.h"

#define CONNS 16
#define FILE_SIZE (2 << 20)
#define START 1000 /* sent from here on */

static char path[64];
static uint64_t want_hash;

static void make_file(void)
{
    strcpy(path, "/tmp/sendfile_park.XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
    uint64_t seed = 42;
    static char buf[FILE_SIZE];
    for (size_t i = 0; i < sizeof buf; i += 8) {
        uint64_t v = st_rand(&seed);
        memcpy(buf + i, &v, 8);
    }
    CHECK(st_write_all(fd, buf, sizeof buf) == 0, "write file: %s", strerror(errno));
    want_hash = st_fnv(ST_FNV_INIT, buf + START, FILE_SIZE - START);
    close(fd);
}

static int small_buffers(int s)
{
    int sz = 32 * 1024;
    return setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz) | setsockopt(s, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
}

struct server {
    int sock, i;
    atomic_int *started;
};

static void *serve(void *arg)
{
    struct server *s = arg;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    size_t count = FILE_SIZE - START;
    atomic_fetch_add(s->started, 1);
    if (s->i % 2 == 0) { /* from an offset of its own */
        off_t off = START;
        ssize_t r = sendfile(s->sock, fd, &off, count);
        CHECK(r == (ssize_t)count, "conn %d: sendfile with an offset returned %zd, not %zu (%s)", s->i, r, count,
              strerror(errno));
        CHECK(off == FILE_SIZE, "conn %d: offset %lld after, not %d", s->i, (long long)off, FILE_SIZE);
        CHECK(lseek(fd, 0, SEEK_CUR) == 0, "conn %d: the file's own offset moved", s->i);
    } else { /* from the file's own offset */
        CHECK(lseek(fd, START, SEEK_SET) == START, "lseek");
        ssize_t r = sendfile(s->sock, fd, NULL, count);
        CHECK(r == (ssize_t)count, "conn %d: sendfile returned %zd, not %zu (%s)", s->i, r, count, strerror(errno));
        CHECK(lseek(fd, 0, SEEK_CUR) == FILE_SIZE, "conn %d: the file's offset is %lld after, not %d", s->i,
              (long long)lseek(fd, 0, SEEK_CUR), FILE_SIZE);
    }
    close(fd);
    close(s->sock);
    return NULL;
}

static void *client_read(void *arg)
{
    int c = *(int *)arg;
    static __thread char buf[FILE_SIZE];
    ssize_t got = st_read_full(c, buf, sizeof buf);
    CHECK(got == FILE_SIZE - START, "client got %zd bytes, not %d", got, FILE_SIZE - START);
    if (got == FILE_SIZE - START) CHECK(st_fnv(ST_FNV_INIT, buf, (size_t)got) == want_hash, "client got other bytes");
    close(c);
    return NULL;
}

static void test_blocked(void)
{
    st_threads_up();
    uint16_t port;
    int l = st_listen(CONNS, &port);
    int clients[CONNS];
    struct server srv[CONNS];
    pthread_t st[CONNS], ct[CONNS];
    atomic_int started = 0;
    int base = st_os_threads();
    for (int i = 0; i < CONNS; i++) {
        clients[i] = st_connect(port);
        CHECK(clients[i] >= 0, "connect: %s", strerror(errno));
        small_buffers(clients[i]);
        int s = accept(l, NULL, NULL);
        CHECK(s >= 0, "accept: %s", strerror(errno));
        small_buffers(s);
        srv[i] = (struct server){s, i, &started};
        st[i] = st_spawn(serve, &srv[i]);
    }
    CHECK(st_wait_for(&started, CONNS, 10000), "servers started");
    st_sleep_ms(300); /* each fills its socket and waits */
    int during = st_os_threads();
    const char *procs = getenv("NP_PROCS");
    if (st_under_shim() && procs)
        CHECK(during <= base + 1, "%d OS threads while %d sendfile() calls wait, %d before (NP_PROCS=%s)", during,
              CONNS, base, procs);
    for (int i = 0; i < CONNS; i++) ct[i] = st_spawn(client_read, &clients[i]);
    for (int i = 0; i < CONNS; i++) pthread_join(st[i], NULL), pthread_join(ct[i], NULL);
    close(l);
}

static void test_timeout(void)
{
    uint16_t port;
    int l = st_listen(1, &port);
    int c = st_connect(port);
    CHECK(c >= 0, "connect: %s", strerror(errno));
    small_buffers(c);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0, "accept: %s", strerror(errno));
    small_buffers(s);
    struct timeval tv = {0, 200 * 1000};
    CHECK(setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0, "SO_SNDTIMEO");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    off_t off = START;
    int64_t t0 = st_mono_ns();
    errno = 0;
    ssize_t r = sendfile(s, fd, &off, FILE_SIZE - START);
    double ms = st_ms(st_mono_ns() - t0);
    int e = errno;
    CHECK((r > 0 && r < FILE_SIZE - START) || (r < 0 && e == EAGAIN),
          "sendfile to a client that does not read, with SO_SNDTIMEO: %zd (%s)", r, strerror(e));
    CHECK(off == START + (r > 0 ? r : 0), "offset %lld after %zd sent from %d", (long long)off, r, START);
    CHECK(ms >= 150 && ms < 5000, "returned after %.0f ms, with a 200 ms timeout", ms);
    /* What went is what the file holds there. */
    if (r > 0) {
        char *got = malloc((size_t)r), *file = malloc((size_t)r);
        CHECK(st_read_full(c, got, (size_t)r) == r, "client read");
        CHECK(pread(fd, file, (size_t)r, START) == r, "pread");
        CHECK(memcmp(got, file, (size_t)r) == 0, "the bytes sent are not the file's");
        free(got), free(file);
    }
    close(fd), close(s), close(c), close(l);
}

static void test_eof(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    off_t off = FILE_SIZE - 100;
    ssize_t r = sendfile(sv[0], fd, &off, 4096);
    CHECK(r == 100 && off == FILE_SIZE, "sendfile past the end: %zd, offset %lld", r, (long long)off);
    r = sendfile(sv[0], fd, &off, 4096);
    CHECK(r == 0, "sendfile at the end: %zd", r);
    errno = 0;
    r = sendfile(sv[0], -1, &off, 10);
    CHECK(r == -1 && errno == EBADF, "sendfile from a bad descriptor: %zd (%s)", r, strerror(errno));
    char b[100];
    CHECK(read(sv[1], b, sizeof b) == 100, "read");
    close(fd), close(sv[0]), close(sv[1]);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    make_file();
    static const struct st_test tests[] = {{"blocked", test_blocked}, {"timeout", test_timeout}, {"eof", test_eof}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    unlink(path);
    return st_finish("sendfile_park");
}
