/* stdio_write_park: stdio writes to sockets and pipes, where libc makes
 * the writes itself.
 *
 *   many      48 threads write to their own socket or pipe (fdopen "w")
 *             whose peer does not read yet, 1 MB each: fully buffered
 *             fprintf, fwrite and the putc_unlocked macro; line-buffered
 *             fprintf and fputs; unbuffered fprintf and fputc; then
 *             fclose.  Under the shim
 *             the blocked writers park (a few OS threads: each held one
 *             before), then every byte arrives, in order
 *   flush     16 streams with 512 KiB buffers filled without a write, then
 *             fflush (8) or fclose (8), which wait for the peer: parked,
 *             return 0, and the peer gets everything
 *   lines     line buffering kept: a line's start stays buffered, its end
 *             sends it; an unbuffered stream's text goes at once; a fully
 *             buffered one keeps what fits; puts and putchar on a
 *             line-buffered stdout
 *   timeout   SO_SNDTIMEO: fprintf to a full socket fails after the
 *             timeout with EAGAIN and ferror, as libc's write does
 *   epipe     the peer closed: fflush fails with EPIPE, SIGPIPE once (a
 *             handler counts it), fclose then 0; a closed descriptor's
 *             fflush fails with EBADF */
#include <poll.h>
#include <sys/time.h>

#include "shim_test.h"

enum { kWriters = 48, kTotal = 1 << 20, kFlushers = 16, kFlushBuf = 512 * 1024 };

/* The OS threads a shim run may have: its workers and a few more (the
 * workers sysmon added for an earlier case stay). */
static int few_threads(void)
{
    const char *p = getenv("NP_PROCS");
    return (p && atoi(p) > 0 ? atoi(p) : 2) + 8;
}

/* ---------------------------------------------------------------- many -- */

/* Writer i's output, made by the same calls on a memory stream (expect)
 * or on the socket stream. */
static void produce(FILE *f, int i)
{
    static const char pad[] = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    char *block = malloc(10000);
    for (size_t k = 0; k < 10000; k++) block[k] = (char)('a' + (k * 7 + (size_t)i) % 26);
    long written = 0;
    for (int k = 0; written < kTotal; k++) {
        int n = 0;
        switch (i % 4) {
        case 0: /* fully buffered: fprintf, fwrite, the putc_unlocked macro */
            n = fprintf(f, "%d %d %s\n", i, k, pad);
            if (k % 50 == 0) n += (int)fwrite(block, 1, 10000, f);
            for (int j = 0; j < 5; j++, n++) putc_unlocked('0' + j, f);
            break;
        case 1: /* line-buffered: fprintf with newlines, fputs without */
            n = fprintf(f, "line %d %d %s\n", i, k, pad);
            n += fputs("part ", f) >= 0 ? 5 : 0;
            if (k % 40 == 0) n += (int)fwrite(block, 1, 10000, f);
            break;
        case 2: /* unbuffered: fprintf and fputc */
            n = fprintf(f, "u %d %d %.20s|", i, k, pad);
            fputc('\n', f);
            n++;
            break;
        default: /* fully buffered, large pieces */
            n = (int)fwrite(block, 1, 10000, f);
            n += fprintf(f, "%d:%d\n", i, k);
            break;
        }
        written += n;
    }
    free(block);
}

static void setup(FILE *f, int i)
{
    if (i % 4 == 1) setvbuf(f, NULL, _IOLBF, 0);
    if (i % 4 == 2) setvbuf(f, NULL, _IONBF, 0);
}

static atomic_int many_done;
static void *writer(void *arg)
{
    int fd = (int)(intptr_t)arg >> 8, i = (int)(intptr_t)arg & 0xff;
    FILE *f = fdopen(fd, "w");
    if (!f) return NULL;
    setup(f, i);
    produce(f, i);
    CHECK(!ferror(f), "writer %d: ferror (%s)", i, strerror(errno));
    CHECK(fclose(f) == 0, "writer %d: fclose: %s", i, strerror(errno));
    atomic_fetch_add(&many_done, 1);
    return NULL;
}

/* Reads fd to its end and compares with what writer i makes. */
static void check_stream(int fd, int i, const char *what)
{
    char *want = NULL;
    size_t wn = 0;
    FILE *m = open_memstream(&want, &wn);
    produce(m, i);
    fclose(m);
    char *got = malloc(wn + 65536);
    ssize_t n = st_read_full(fd, got, wn + 65536);
    CHECK(n == (ssize_t)wn && memcmp(got, want, wn) == 0, "%s %d: %zd bytes, want %zu%s", what, i, n, wn,
          n == (ssize_t)wn ? " (different)" : "");
    free(got);
    free(want);
}

static void test_many(void)
{
    st_phase = "many";
    st_threads_up();
    int peer[kWriters];
    pthread_t t[kWriters];
    int base = st_os_threads();
    for (int i = 0; i < kWriters; i++) {
        int sv[2]; /* every third a pipe */
        if (i % 3 == 2) {
            CHECK(pipe(sv) == 0, "pipe: %s", strerror(errno));
            int w = sv[1];
            sv[1] = sv[0];
            sv[0] = w;
        } else {
            CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
        }
        peer[i] = sv[1];
        t[i] = st_spawn(writer, (void *)(intptr_t)(sv[0] << 8 | i));
    }
    st_sleep_ms(500); /* each blocked on its full socket or pipe */
    int during = st_os_threads();
    CHECK(atomic_load(&many_done) == 0, "%d writers done before their peers read", atomic_load(&many_done));
    if (st_under_shim())
        CHECK(during <= few_threads(), "%d threads writing to full sockets: %d OS threads, %d before; they should park",
              kWriters, during, base);
    printf("os_threads=%d with %d writers blocked (%d before)\n", during, kWriters, base);
    for (int i = 0; i < kWriters; i++) {
        check_stream(peer[i], i, "writer");
        close(peer[i]);
        pthread_join(t[i], NULL);
    }
}

/* --------------------------------------------------------------- flush -- */

static void *flusher(void *arg)
{
    int fd = (int)(intptr_t)arg >> 8, i = (int)(intptr_t)arg & 0xff;
    FILE *f = fdopen(fd, "w");
    if (!f) return NULL;
    char *buf = malloc(kFlushBuf);
    setvbuf(f, buf, _IOFBF, kFlushBuf);
    for (int k = 0; k < kFlushBuf / 8 - 1; k++) fprintf(f, "%07d\n", k + i);
    if (i % 2 == 0) {
        CHECK(fflush(f) == 0, "fflush %d: %s", i, strerror(errno));
        CHECK(fclose(f) == 0, "fclose %d after fflush: %s", i, strerror(errno));
    } else {
        CHECK(fclose(f) == 0, "fclose %d: %s", i, strerror(errno));
    }
    free(buf);
    return NULL;
}

static void test_flush(void)
{
    st_phase = "flush";
    int peer[kFlushers];
    pthread_t t[kFlushers];
    int base = st_os_threads();
    for (int i = 0; i < kFlushers; i++) {
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
        peer[i] = sv[1];
        t[i] = st_spawn(flusher, (void *)(intptr_t)(sv[0] << 8 | i));
    }
    st_sleep_ms(500);
    int during = st_os_threads();
    if (st_under_shim())
        CHECK(during <= few_threads(), "%d threads in fflush or fclose on full sockets: %d OS threads, %d before",
              kFlushers, during, base);
    for (int i = 0; i < kFlushers; i++) {
        static char got[kFlushBuf];
        ssize_t n = st_read_full(peer[i], got, sizeof got);
        int ok = n == kFlushBuf - 8;
        for (int k = 0; ok && k < kFlushBuf / 8 - 1; k++) {
            char want[9];
            snprintf(want, sizeof want, "%07d\n", k + i);
            ok = memcmp(got + 8 * k, want, 8) == 0;
        }
        CHECK(ok, "flusher %d: %zd bytes, want %d, or different", i, n, kFlushBuf - 8);
        close(peer[i]);
        pthread_join(t[i], NULL);
    }
}

/* --------------------------------------------------------------- lines -- */

/* What is readable on fd within ms: its length, the text in buf. */
static ssize_t readable(int fd, char *buf, size_t n, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0) return 0;
    return read(fd, buf, n);
}

static void *lines_thread(void *arg)
{
    (void)arg;
    char buf[256];
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    FILE *f = fdopen(sv[0], "w");
    setvbuf(f, NULL, _IOLBF, 0);
    CHECK(fprintf(f, "abc") == 3 && fputs("def", f) == 1 && fputc('g', f) == 'g', "line-buffered: the start");
    CHECK(readable(sv[1], buf, sizeof buf, 100) == 0, "line-buffered: a line's start was sent");
    CHECK(fprintf(f, "%s\nrest", "h") == 6, "line-buffered: fprintf");
    ssize_t n = readable(sv[1], buf, sizeof buf, 1000);
    CHECK(n == 9 && memcmp(buf, "abcdefgh\n", 9) == 0, "line-buffered: %zd bytes, want \"abcdefgh\\n\"", n);
    CHECK(readable(sv[1], buf, sizeof buf, 100) == 0, "line-buffered: the rest was sent");
    CHECK(fwrite("x\ny", 1, 3, f) == 3, "line-buffered: fwrite");
    n = readable(sv[1], buf, sizeof buf, 1000);
    CHECK(n == 6 && memcmp(buf, "restx\n", 6) == 0, "line-buffered: fwrite sent %zd bytes, want \"restx\\n\"", n);
    fclose(f);
    close(sv[1]);

    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    f = fdopen(sv[0], "w");
    setvbuf(f, NULL, _IONBF, 0);
    CHECK(fputc('a', f) == 'a' && fprintf(f, "%d", 42) == 2, "unbuffered: fputc, fprintf");
    n = readable(sv[1], buf, sizeof buf, 1000);
    if (n == 1) n += readable(sv[1], buf + 1, sizeof buf - 1, 1000);
    CHECK(n == 3 && memcmp(buf, "a42", 3) == 0, "unbuffered: %zd bytes, want \"a42\"", n);
    fclose(f);
    close(sv[1]);

    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    f = fdopen(sv[0], "w");
    CHECK(fprintf(f, "full\n") == 5 && fputc('\n', f) == '\n', "fully buffered: fprintf");
    CHECK(readable(sv[1], buf, sizeof buf, 100) == 0, "fully buffered: sent before its flush");
    CHECK(fflush(f) == 0, "fflush: %s", strerror(errno));
    n = readable(sv[1], buf, sizeof buf, 1000);
    CHECK(n == 6 && memcmp(buf, "full\n\n", 6) == 0, "fully buffered: %zd bytes after fflush", n);
    fclose(f);
    close(sv[1]);

    /* puts and putchar on a line-buffered stdout that is a socket */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    fflush(stdout);
    int saved = dup(1);
    dup2(sv[0], 1);
    int pr = puts("said"), cr = putchar('!');
    int fr = fflush(stdout);
    dup2(saved, 1);
    close(saved);
    CHECK(pr == 5 && cr == '!' && fr == 0, "puts %d, putchar %d, fflush %d", pr, cr, fr);
    n = readable(sv[1], buf, sizeof buf, 1000);
    if (n == 5) n += readable(sv[1], buf + 5, sizeof buf - 5, 1000);
    CHECK(n == 6 && memcmp(buf, "said\n!", 6) == 0, "stdout: %zd bytes, want \"said\\n!\"", n);
    close(sv[0]);
    close(sv[1]);
    return NULL;
}

static void test_lines(void)
{
    st_phase = "lines";
    pthread_join(st_spawn(lines_thread, NULL), NULL);
}

/* ------------------------------------------------------------- timeout -- */

static atomic_int ticks;
static atomic_int ticking;
static void *ticker(void *arg)
{
    (void)arg;
    while (atomic_load(&ticking)) {
        st_sleep_ms(5);
        atomic_fetch_add(&ticks, 1);
    }
    return NULL;
}

static void *timeout_thread(void *arg)
{
    (void)arg;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    struct timeval tv = {0, 300000};
    CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0, "SO_SNDTIMEO: %s", strerror(errno));
    FILE *f = fdopen(sv[0], "w");
    static char big[8192];
    memset(big, 'z', sizeof big);
    int64_t t0 = st_mono_ns();
    int r = 0, k;
    for (k = 0; k < 10000 && r >= 0; k++) r = fprintf(f, "%.*s", (int)sizeof big - 1, big);
    int e = errno;
    double ms = st_ms(st_mono_ns() - t0);
    CHECK(r < 0 && e == EAGAIN && ferror(f), "fprintf to a full socket with SO_SNDTIMEO: %d (%s), ferror %d", r,
          strerror(e), ferror(f));
    CHECK(ms >= 250 && ms < 5000, "the timeout took %.0f ms, want 300", ms);
    clearerr(f);
    for (r = 0; r < 100 && fputs("more", f) != EOF;) r++;
    CHECK(fflush(f) == EOF && errno == EAGAIN, "fflush of a full socket: errno %s", strerror(errno));
    fclose(f);
    close(sv[1]);
    return NULL;
}

static void test_timeout(void)
{
    st_phase = "timeout";
    atomic_store(&ticking, 1);
    atomic_store(&ticks, 0);
    pthread_t tk = st_spawn(ticker, NULL);
    pthread_join(st_spawn(timeout_thread, NULL), NULL);
    atomic_store(&ticking, 0);
    pthread_join(tk, NULL);
    CHECK(atomic_load(&ticks) >= 40, "another thread ran %d times in 5 ms steps during the timeouts",
          atomic_load(&ticks));
}

/* --------------------------------------------------------------- epipe -- */

static atomic_int pipes;
static void on_pipe(int sig)
{
    (void)sig;
    atomic_fetch_add(&pipes, 1);
}

static void *epipe_thread(void *arg)
{
    (void)arg;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    close(sv[1]);
    FILE *f = fdopen(sv[0], "w");
    CHECK(fputs("lost", f) == 1, "fputs into the buffer");
    atomic_store(&pipes, 0);
    errno = 0;
    CHECK(fflush(f) == EOF && errno == EPIPE && ferror(f), "fflush to a closed peer: errno %s", strerror(errno));
    CHECK(atomic_load(&pipes) == 1, "SIGPIPE %d times, want 1", atomic_load(&pipes));
    CHECK(fflush(f) == 0, "fflush again: the buffer was emptied by the failure");
    CHECK(fputs("lost", f) == 1, "fputs into the buffer");
    errno = 0;
    CHECK(fclose(f) == EOF && errno == EPIPE, "fclose to a closed peer: errno %s", strerror(errno));
    CHECK(atomic_load(&pipes) == 2, "SIGPIPE %d times, want 2", atomic_load(&pipes));

    /* line-buffered: the failing write is fputs' own */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    close(sv[1]);
    f = fdopen(sv[0], "w");
    setvbuf(f, NULL, _IOLBF, 0);
    errno = 0;
    CHECK(fputs("line\n", f) == EOF && errno == EPIPE, "line-buffered fputs to a closed peer: errno %s",
          strerror(errno));
    CHECK(fwrite("ab\n", 1, 3, f) == 3 && ferror(f), "fwrite that all went to the buffer: its count, and ferror");
    CHECK(fprintf(f, "x%d\n", 1) == -1, "fprintf to a closed peer");
    fclose(f);

    /* a descriptor closed under the stream */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    f = fdopen(sv[0], "w");
    CHECK(fputs("gone", f) == 1, "fputs into the buffer");
    close(sv[0]);
    errno = 0;
    CHECK(fflush(f) == EOF && errno == EBADF, "fflush of a closed descriptor: errno %s", strerror(errno));
    fclose(f);
    close(sv[1]);
    return NULL;
}

static void test_epipe(void)
{
    st_phase = "epipe";
    struct sigaction sa = {0};
    sa.sa_handler = on_pipe;
    sigaction(SIGPIPE, &sa, NULL);
    pthread_join(st_spawn(epipe_thread, NULL), NULL);
    signal(SIGPIPE, SIG_IGN);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(100);
    signal(SIGPIPE, SIG_IGN);
    static const struct st_test tests[] = {{"many", test_many},       {"flush", test_flush}, {"lines", test_lines},
                                           {"timeout", test_timeout}, {"epipe", test_epipe}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("stdio_write_park");
}
