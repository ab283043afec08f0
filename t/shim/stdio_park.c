/* stdio_park: stdio on sockets, where libc makes the reads itself.
 *
 *   idle      a thread-per-connection server reading its requests with
 *             fgets on fdopen'ed sockets: 300 clients connect and stay
 *             quiet, then one more asks and must be answered; then each
 *             quiet one asks and is answered.  Under the shim the waiting
 *             threads park (a few OS threads); they held every worker
 *             sysmon may add, and the last client was never served
 *   readers   fgets, getline, getdelim, fread, fgetc, getc and the
 *             getc_unlocked macro, over a socket whose writer sends lines
 *             cut in pieces (1, 7 and 300 bytes), with pauses: every byte arrives, in order
 *   ends      the end of the file (NULL, feof); SO_RCVTIMEO (NULL, EAGAIN,
 *             ferror, after the timeout); a handler without SA_RESTART
 *             (EINTR) and with it (the line, whole)
 *   prompt    a line-buffered stream's read flushes a line-buffered stdout
 *             first, as glibc's does: the prompt reaches the peer, which
 *             answers only then
 *   reuse     pclose and freopen close the stream's file inside libc: a
 *             popen's line read 4 times over, and a line read after a
 *             freopen onto a FIFO, at the number a pipe had
 *   update    one read-write stream (fdopen "r+") on a socket: a request
 *             written with fprintf, its answer read at once with fgets,
 *             getc and getline, no fflush between: the read sends the
 *             request first, as glibc's does (the peer answers only after
 *             it; the read waited before it, for ever)
 *   direct    fread of more than a buffer reads into the caller's memory,
 *             as glibc's does: SOCK_SEQPACKET records of 6000 bytes come
 *             whole (not cut to the 4096 the file had ready, the rest
 *             lost), and a terminal's next line after its ^D is read (the
 *             end flag stops only fills; fread returned 0)
 *   scan      40 threads wait in fscanf on sockets: they park (a few OS
 *             threads), and each reads its number */
#include <fcntl.h>
#include <termios.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "shim_test.h"

enum { kIdle = 300 };

/* ---------------------------------------------------------------- idle -- */

static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    FILE *in = fdopen(fd, "r"), *out = fdopen(dup(fd), "w");
    if (!in || !out) return NULL;
    char line[128];
    while (fgets(line, sizeof line, in)) {
        fprintf(out, "echo %s", line);
        fflush(out);
    }
    fclose(in);
    fclose(out);
    return NULL;
}

static atomic_int srv_stop;
static void *acceptor(void *arg)
{
    int ls = (int)(intptr_t)arg;
    while (!atomic_load(&srv_stop)) {
        int c = accept(ls, NULL, NULL);
        if (c < 0) continue;
        pthread_t t;
        if (pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)c) == 0) pthread_detach(t);
        else close(c);
    }
    return NULL;
}

/* One request on c and its answer by end (st_mono_ns): 1 if right. */
static int ask(int c, const char *what, int64_t end)
{
    char want[64], got[64] = {0};
    int n = snprintf(want, sizeof want, "echo %s\n", what);
    char req[64];
    int m = snprintf(req, sizeof req, "%s\n", what);
    if (st_write_all(c, req, (size_t)m) != 0) return 0;
    struct pollfd p = {c, POLLIN, 0};
    size_t have = 0;
    while (have < (size_t)n && st_mono_ns() < end) {
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t r = read(c, got + have, (size_t)n - have);
        if (r <= 0) break;
        have += (size_t)r;
    }
    return have == (size_t)n && memcmp(got, want, (size_t)n) == 0;
}

static void test_idle(void)
{
    st_phase = "idle";
    st_raise_nofile();
    st_threads_up();
    uint16_t port;
    int ls = st_listen(1024, &port);
    CHECK(ls >= 0, "listen: %s", strerror(errno));
    if (ls < 0) return;
    pthread_t acc = st_spawn(acceptor, (void *)(intptr_t)ls);
    static int quiet[kIdle];
    int base = st_os_threads();
    for (int i = 0; i < kIdle; i++) quiet[i] = st_connect(port);
    st_sleep_ms(300); /* each in its fgets */
    int during = st_os_threads();
    int last = st_connect(port);
    CHECK(last >= 0 && ask(last, "last", st_mono_ns() + 10000000000LL), "with %d quiet clients in fgets, a new client was not answered in 10 s",
          kIdle);
    if (st_under_shim())
        CHECK(during <= base + 10, "%d threads in fgets on sockets: %d OS threads, %d before; they should park",
              kIdle, during, base);
    int answered = 0;
    int64_t end = st_mono_ns() + 20000000000LL; /* 20 s for them all */
    for (int i = 0; i < kIdle; i++) answered += quiet[i] >= 0 && ask(quiet[i], "quiet", end);
    CHECK(answered == kIdle, "%d of the %d quiet clients answered", answered, kIdle);
    printf("os_threads=%d with %d clients in fgets (%d before)\n", during, kIdle, base);
    for (int i = 0; i < kIdle; i++) close(quiet[i]);
    close(last);
    atomic_store(&srv_stop, 1);
    int wake = st_connect(port); /* the acceptor's last accept */
    pthread_join(acc, NULL);
    close(wake);
    close(ls);
}

/* ------------------------------------------------------------- readers -- */

struct feed {
    int fd;
    const char *data;
    size_t n, piece;
};

/* Writes data in pieces, a pause of 1 ms after every 8th, then closes. */
static void *feeder(void *arg)
{
    struct feed *f = arg;
    int i = 0;
    for (size_t off = 0; off < f->n; off += f->piece) {
        size_t k = f->n - off < f->piece ? f->n - off : f->piece;
        if (st_write_all(f->fd, f->data + off, k) != 0) break;
        if (++i % 8 == 0) st_sleep_ms(1);
    }
    close(f->fd);
    return NULL;
}

static char text[3000];
static size_t text_n;

/* A stream over a socket pair, fed text in pieces of `piece`. */
static FILE *fed(size_t piece, pthread_t *t, struct feed *f)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return NULL;
    *f = (struct feed){sv[1], text, text_n, piece};
    *t = st_spawn(feeder, f);
    return fdopen(sv[0], "r");
}

static void test_readers(void)
{
    st_phase = "readers";
    text_n = 0;
    for (int i = 0; text_n < sizeof text - 100; i++)
        text_n += (size_t)snprintf(text + text_n, sizeof text - text_n, "line %d of the text, %.*s;\n", i, i % 40,
                                   "abcdefghijklmnopqrstuvwxyz0123456789ABCD");
    static const char *ways[] = {"fgets", "getline", "getdelim", "fread", "fgetc", "getc", "getc_unlocked"};
    static const size_t pieces[] = {1, 7, 300};
    for (size_t w = 0; w < sizeof ways / sizeof *ways; w++)
        for (size_t p = 0; p < sizeof pieces / sizeof *pieces; p++) {
            if (pieces[p] == 1 && w < 4) continue; /* a byte at a time: the byte readers only */
            pthread_t t;
            struct feed f;
            FILE *in = fed(pieces[p], &t, &f);
            CHECK(in != NULL, "fdopen: %s", strerror(errno));
            if (!in) continue;
            static char got[sizeof text + 200];
            size_t n = 0;
            char *line = NULL;
            size_t cap = 0;
            ssize_t r;
            int c;
            switch (w) {
            case 0:
                while (fgets(got + n, 50, in)) n += strlen(got + n); /* lines longer than 49 come in parts */
                break;
            case 1:
                while ((r = getline(&line, &cap, in)) > 0) memcpy(got + n, line, (size_t)r), n += (size_t)r;
                break;
            case 2:
                while ((r = getdelim(&line, &cap, ';', in)) > 0) memcpy(got + n, line, (size_t)r), n += (size_t)r;
                break;
            case 3:
                while ((r = (ssize_t)fread(got + n, 1, 1000, in)) > 0) n += (size_t)r;
                break;
            case 4:
                while ((c = fgetc(in)) != EOF) got[n++] = (char)c;
                break;
            case 5:
                while ((c = getc(in)) != EOF) got[n++] = (char)c;
                break;
            default:
                flockfile(in);
                while ((c = getc_unlocked(in)) != EOF) got[n++] = (char)c;
                funlockfile(in);
            }
            free(line);
            CHECK(feof(in) && !ferror(in), "%s, pieces of %zu: %s", ways[w], pieces[p],
                  ferror(in) ? strerror(errno) : "not at its end");
            CHECK(n == text_n && memcmp(got, text, n) == 0, "%s, pieces of %zu: %zu bytes of %zu, %s", ways[w],
                  pieces[p], n, text_n, n == text_n ? "different" : "short");
            fclose(in);
            pthread_join(t, NULL);
        }
}

/* ---------------------------------------------------------------- ends -- */

static volatile sig_atomic_t ends_sig;
static void on_ends(int sig) { (void)sig; ends_sig++; }

static void *signal_later(void *arg)
{
    pthread_t target = *(pthread_t *)arg;
    st_sleep_ms(100);
    pthread_kill(target, SIGUSR1);
    return NULL;
}

struct late_line {
    int fd;
    long ms;
};
static void *line_later(void *arg)
{
    struct late_line *l = arg;
    st_sleep_ms(l->ms);
    if (write(l->fd, "late\n", 5) != 5) return (void *)1;
    return NULL;
}

static void test_ends(void)
{
    st_phase = "ends";
    char buf[64];
    int sv[2];

    /* the end */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    FILE *in = fdopen(sv[0], "r");
    CHECK(write(sv[1], "last", 4) == 4, "write");
    close(sv[1]);
    CHECK(fgets(buf, sizeof buf, in) && strcmp(buf, "last") == 0, "a last line without its newline was lost");
    CHECK(!fgets(buf, sizeof buf, in) && feof(in) && !ferror(in), "at the end: not NULL with feof");
    fclose(in);

    /* SO_RCVTIMEO */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    struct timeval tv = {0, 200000};
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    in = fdopen(sv[0], "r");
    int64_t t0 = st_mono_ns();
    errno = 0;
    char *r = fgets(buf, sizeof buf, in);
    int e = errno;
    double ms = st_ms(st_mono_ns() - t0);
    CHECK(!r && e == EAGAIN && ferror(in), "SO_RCVTIMEO: fgets gave %s, errno %s, ferror %d; want NULL, EAGAIN, 1",
          r ? "a line" : "NULL", strerror(e), ferror(in));
    CHECK(ms >= 190 && ms < 5000, "SO_RCVTIMEO of 200 ms: fgets returned after %.0f ms", ms);
    fclose(in);
    close(sv[1]);

    /* a handler, without and with SA_RESTART */
    for (int restart = 0; restart < 2; restart++) {
        struct sigaction sa = {0};
        sa.sa_handler = on_ends;
        sa.sa_flags = restart ? SA_RESTART : 0;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGUSR1, &sa, NULL);
        ends_sig = 0;
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
        in = fdopen(sv[0], "r");
        pthread_t me = pthread_self(), k, w;
        k = st_spawn(signal_later, &me);
        struct late_line late = {sv[1], 400};
        w = st_spawn(line_later, &late);
        errno = 0;
        r = fgets(buf, sizeof buf, in);
        e = errno;
        pthread_join(k, NULL);
        pthread_join(w, NULL);
        CHECK(ends_sig == 1, "SA_RESTART %d: the handler ran %d times", restart, (int)ends_sig);
        if (restart)
            CHECK(r && strcmp(buf, "late\n") == 0, "SA_RESTART: fgets gave %s (%s), not the late line",
                  r ? buf : "NULL", strerror(e));
        else
            CHECK(!r && e == EINTR && ferror(in), "no SA_RESTART: fgets gave %s, errno %s; want NULL, EINTR",
                  r ? "a line" : "NULL", strerror(e));
        fclose(in);
        close(sv[1]);
    }
    signal(SIGUSR1, SIG_DFL);
}

/* -------------------------------------------------------------- prompt -- */

struct prompt_peer {
    int out_r, sock;
};
static void *prompt_answerer(void *arg)
{
    struct prompt_peer *p = arg;
    char b[64];
    size_t n = 0;
    struct pollfd pf = {p->out_r, POLLIN, 0};
    int64_t end = st_mono_ns() + 3000000000LL;
    while (n < 7 && st_mono_ns() < end) {
        if (poll(&pf, 1, 50) <= 0) continue;
        ssize_t r = read(p->out_r, b + n, sizeof b - n);
        if (r <= 0) break;
        n += (size_t)r;
    }
    int seen = n >= 7 && memcmp(b, "prompt:", 7) == 0;
    if (write(p->sock, "answer\n", 7) != 7) return (void *)0;
    return (void *)(intptr_t)seen;
}

static void test_prompt(void)
{
    st_phase = "prompt";
    fflush(stdout);
    int saved = dup(1), outp[2], sv[2];
    CHECK(saved >= 0 && pipe(outp) == 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "setup: %s",
          strerror(errno));
    dup2(outp[1], 1);
    setvbuf(stdout, NULL, _IOLBF, 0);
    FILE *in = fdopen(sv[0], "r");
    setvbuf(in, NULL, _IOLBF, 0);
    struct prompt_peer peer = {outp[0], sv[1]};
    pthread_t t = st_spawn(prompt_answerer, &peer);
    fputs("prompt:", stdout); /* no newline: it waits in stdout's buffer */
    char buf[32];
    char *r = fgets(buf, sizeof buf, in);
    void *seen;
    pthread_join(t, &seen);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    CHECK(r && strcmp(buf, "answer\n") == 0, "no answer read");
    CHECK((intptr_t)seen == 1, "the prompt was not flushed before the read waited");
    fclose(in);
    close(sv[1]);
    close(outp[0]);
    close(outp[1]);
}

/* --------------------------------------------------------------- reuse -- */

static const char *reuse_fifo;
static void *fifo_writer(void *arg)
{
    (void)arg;
    int fd = open(reuse_fifo, O_WRONLY);
    if (fd < 0 || write(fd, "from the fifo\n", 14) != 14) return (void *)1;
    st_sleep_ms(50);
    close(fd);
    return NULL;
}

static void test_reuse(void)
{
    st_phase = "reuse";
    /* pclose and freopen close the stream's file inside libc; the next
     * file at that number is another one, and must be waited on as such */
    for (int i = 0; i < 4; i++) {
        FILE *p = popen("sleep 0.05; echo from popen", "r");
        CHECK(p != NULL, "popen: %s", strerror(errno));
        if (!p) continue;
        char buf[64];
        CHECK(fgets(buf, sizeof buf, p) && strcmp(buf, "from popen\n") == 0, "popen %d: no line", i);
        CHECK(pclose(p) == 0, "pclose %d", i);
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/np-stdio-park-%d", (int)getpid());
    unlink(path);
    CHECK(mkfifo(path, 0600) == 0, "mkfifo: %s", strerror(errno));
    reuse_fifo = path;
    int pp[2];
    CHECK(pipe(pp) == 0, "pipe: %s", strerror(errno));
    FILE *in = fdopen(pp[0], "r");
    pthread_t t = st_spawn(fifo_writer, NULL);
    CHECK(write(pp[1], "from the pipe\n", 14) == 14, "write");
    char buf[64];
    CHECK(fgets(buf, sizeof buf, in) && strcmp(buf, "from the pipe\n") == 0, "the pipe's line");
    CHECK(freopen(path, "r", in) == in, "freopen: %s", strerror(errno));
    CHECK(fgets(buf, sizeof buf, in) && strcmp(buf, "from the fifo\n") == 0, "after freopen: no line");
    void *r;
    pthread_join(t, &r);
    fclose(in);
    close(pp[1]);
    unlink(path);
}

/* -------------------------------------------------------------- update -- */

/* Answers each request line on fd with it upper-cased; "none\n" if no
 * request comes within 2 s (a read that waited before sending it). */
static void *upper_peer(void *arg)
{
    int fd = (int)(intptr_t)arg;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 2000) <= 0) {
            if (write(fd, "none\n", 5) != 5) break;
            continue;
        }
        char b[64];
        ssize_t n = read(fd, b, sizeof b);
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++)
            if (b[i] >= 'a' && b[i] <= 'z') b[i] = (char)(b[i] - 32);
        if (st_write_all(fd, b, (size_t)n) != 0) break;
    }
    return NULL;
}

static void test_update(void)
{
    st_phase = "update";
    static const char *ways[] = {"fgets", "getc", "getline"};
    for (int w = 0; w < 3; w++) {
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
        pthread_t t = st_spawn(upper_peer, (void *)(intptr_t)sv[1]);
        FILE *f = fdopen(sv[0], "r+");
        for (int i = 0; i < 2; i++) {
            char want[32], got[64] = "", *line = NULL;
            size_t cap = 0, n = 0;
            int c;
            fprintf(f, "ask %d\n", i); /* held in f's buffer */
            snprintf(want, sizeof want, "ASK %d\n", i);
            switch (w) {
            case 0:
                if (!fgets(got, sizeof got, f)) strcpy(got, "(NULL)");
                break;
            case 1:
                while (n < sizeof got - 1 && (c = getc(f)) != EOF && (got[n++] = (char)c) != '\n') {}
                break;
            default:
                if (getline(&line, &cap, f) > 0) snprintf(got, sizeof got, "%s", line);
                free(line);
            }
            CHECK(strcmp(got, want) == 0, "%s after fprintf on an r+ stream: got \"%.20s\", want \"ASK %d\"", ways[w],
                  got, i);
            fseek(f, 0, SEEK_CUR); /* reading to writing (ESPIPE, harmless) */
        }
        fclose(f);
        pthread_join(t, NULL);
        close(sv[1]);
    }
}

/* -------------------------------------------------------------- direct -- */

static void *records(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static char b[6000];
    for (int i = 0; i < 3; i++) {
        memset(b, 'a' + i, sizeof b);
        st_sleep_ms(20);
        if (send(fd, b, sizeof b, 0) != (ssize_t)sizeof b) break;
    }
    close(fd);
    return NULL;
}

static void test_direct(void)
{
    st_phase = "direct";
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0, "socketpair: %s", strerror(errno));
    pthread_t t = st_spawn(records, (void *)(intptr_t)sv[1]);
    FILE *in = fdopen(sv[0], "r");
    static char b[100000];
    size_t n = fread(b, 1, sizeof b, in), each[3] = {0};
    for (size_t i = 0; i < n; i++)
        if (b[i] >= 'a' && b[i] <= 'c') each[b[i] - 'a']++;
    CHECK(n == 18000 && each[0] == 6000 && each[1] == 6000 && each[2] == 6000 && feof(in),
          "fread of 3 records of 6000 bytes: %zu bytes (%zu, %zu, %zu), feof %d", n, each[0], each[1], each[2],
          feof(in));
    fclose(in);
    pthread_join(t, NULL);

    /* a terminal: after its ^D, fread of more than a buffer reads again */
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    CHECK(m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0, "pty: %s", strerror(errno));
    if (m < 0) return;
    int s = open(ptsname(m), O_RDWR | O_NOCTTY);
    CHECK(s >= 0, "pty slave: %s", strerror(errno));
    struct termios tio;
    tcgetattr(s, &tio);
    tio.c_lflag &= ~(tcflag_t)ECHO;
    tcsetattr(s, TCSANOW, &tio);
    in = fdopen(s, "r");
    char line[64];
    CHECK(write(m, "ab\n\004", 4) == 4, "write");
    CHECK(fgets(line, sizeof line, in) && strcmp(line, "ab\n") == 0, "tty: the first line");
    CHECK(!fgets(line, sizeof line, in) && feof(in), "tty: ^D is not the end");
    CHECK(write(m, "more\n\004", 6) == 6, "write");
    n = fread(b, 1, 5000, in);
    CHECK(n == 5 && memcmp(b, "more\n", 5) == 0, "tty: fread after ^D gave %zu bytes, want 5 (\"more\\n\")", n);
    fclose(in);
    close(m);
}

/* ---------------------------------------------------------------- scan -- */

enum { kScanners = 40 };
static int scan_fd[kScanners][2];
static atomic_int scanning;
static void *scanner(void *arg)
{
    int i = (int)(intptr_t)arg, n = -1;
    FILE *in = fdopen(scan_fd[i][0], "r");
    if (!in) return (void *)(intptr_t)-1;
    atomic_fetch_add(&scanning, 1);
    int r = fscanf(in, "%d", &n);
    fclose(in);
    return (void *)(intptr_t)(r == 1 ? n : -1);
}

static void test_scan(void)
{
    st_phase = "scan";
    st_threads_up();
    int base = st_os_threads();
    pthread_t t[kScanners];
    for (int i = 0; i < kScanners; i++) {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, scan_fd[i]) == 0, "socketpair: %s", strerror(errno));
        t[i] = st_spawn(scanner, (void *)(intptr_t)i);
    }
    st_wait_for(&scanning, kScanners, 5000);
    st_sleep_ms(100); /* into their fscanf */
    int during = st_os_threads();
    if (st_under_shim())
        CHECK(during <= base + 8, "%d threads in fscanf on sockets: %d OS threads, %d before; they should park",
              kScanners, during, base);
    for (int i = 0; i < kScanners; i++) {
        char num[16];
        int n = snprintf(num, sizeof num, "%d\n", 1000 + i);
        CHECK(st_write_all(scan_fd[i][1], num, (size_t)n) == 0, "write");
    }
    for (int i = 0; i < kScanners; i++) {
        void *r;
        pthread_join(t[i], &r);
        CHECK((intptr_t)r == 1000 + i, "fscanf %d: got %ld", i, (long)(intptr_t)r);
        close(scan_fd[i][1]);
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(100);
    signal(SIGPIPE, SIG_IGN);
    static const struct st_test tests[] = {
        {"idle", test_idle},   {"readers", test_readers}, {"ends", test_ends},
        {"prompt", test_prompt}, {"reuse", test_reuse}, {"update", test_update},
        {"direct", test_direct}, {"scan", test_scan}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("stdio_park");
}
