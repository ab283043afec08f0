/* fortify: a program built with _FORTIFY_SOURCE (as Debian builds its
 * packages) calls __read_chk, __recv_chk, __recvfrom_chk, __poll_chk,
 * __ppoll_chk, __fgets_chk and __fread_chk where the buffer's size is known
 * and the length is not (the last three were glibc's own, which blocked
 * the worker).
 *
 *   park      16 threads wait in each of the seven at once, on socket pairs:
 *             under the shim they park, so the process keeps a few OS
 *             threads; each gets what is sent, whole
 *   overflow  a length past the buffer ends the process as glibc ends it:
 *             "*** buffer overflow detected ***" and SIGABRT (not a trap)
 *
 * The processes that must die are this program again with a mode argument. */
#undef _FORTIFY_SOURCE
#define _FORTIFY_SOURCE 2
#include <poll.h>
#include <sys/wait.h>

#include "shim_test.h"

#if !defined(__OPTIMIZE__)
#error "fortify needs -O2: _FORTIFY_SOURCE does nothing without optimisation"
#endif

enum { kPerKind = 16, kKinds = 7, kThreads = kPerKind * kKinds };

static int pairs[kThreads][2];
static volatile size_t want = 8; /* not known at compile time: the _chk entry points */
static atomic_int waiting;

/* Letters: no newline for fgets to stop at, no NUL for strlen. */
static char msg_byte(int i, int k) { return (char)('a' + (i * 3 + k) % 26); }

static const char *const kind_names[kKinds] = {"__read_chk", "__recv_chk",  "__recvfrom_chk", "__poll_chk",
                                               "__ppoll_chk", "__fgets_chk", "__fread_chk"};

static void *waiter(void *arg)
{
    int i = (int)(intptr_t)arg, fd = pairs[i][0];
    char buf[16];
    ssize_t n = -1;
    FILE *f = NULL;
    atomic_fetch_add(&waiting, 1);
    switch (i % kKinds) {
    case 0:
        n = read(fd, buf, want);
        break;
    case 1:
        n = recv(fd, buf, want, 0);
        break;
    case 2:
        n = recvfrom(fd, buf, want, 0, NULL, NULL);
        break;
    case 3: {
        struct pollfd p[2] = {{fd, POLLIN, 0}, {-1, 0, 0}};
        volatile nfds_t np = 2;
        if (poll(p, np, -1) == 1 && (p[0].revents & POLLIN)) n = read(fd, buf, want);
        break;
    }
    case 4: {
        struct pollfd p[2] = {{fd, POLLIN, 0}, {-1, 0, 0}};
        volatile nfds_t np = 2;
        if (ppoll(p, np, NULL, NULL) == 1 && (p[0].revents & POLLIN)) n = read(fd, buf, want);
        break;
    }
    case 5:
        /* n - 1 = 8 bytes: the whole message, no newline needed */
        if ((f = fdopen(fd, "r")) && fgets(buf, (int)want + 1, f)) n = (ssize_t)strlen(buf);
        break;
    default:
        if ((f = fdopen(fd, "r"))) n = (ssize_t)fread(buf, 1, want, f);
    }
    if (f) fclose(f);
    else close(fd);
    if (n != 8) return (void *)(intptr_t)-1;
    for (int k = 0; k < 8; k++)
        if (buf[k] != msg_byte(i, k)) return (void *)(intptr_t)-2;
    return NULL;
}

static void test_park(void)
{
    st_phase = "park";
    st_threads_up();
    int base = st_os_threads();
    pthread_t t[kThreads];
    for (int i = 0; i < kThreads; i++) {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, pairs[i]) == 0, "socketpair: %s", strerror(errno));
        t[i] = st_spawn(waiter, (void *)(intptr_t)i);
    }
    st_wait_for(&waiting, kThreads, 5000);
    st_sleep_ms(100); /* into their calls */
    int during = st_os_threads();
    if (st_under_shim())
        CHECK(during <= base + 8, "%d threads waiting in fortified calls: %d OS threads, %d before; they "
              "should park", kThreads, during, base);
    for (int i = 0; i < kThreads; i++) {
        char msg[8];
        for (int k = 0; k < 8; k++) msg[k] = msg_byte(i, k);
        CHECK(st_write_all(pairs[i][1], msg, sizeof msg) == 0, "write: %s", strerror(errno));
    }
    for (int i = 0; i < kThreads; i++) {
        void *r;
        pthread_join(t[i], &r);
        CHECK(r == NULL, "thread %d (%s): %s", i, kind_names[i % kKinds],
              (intptr_t)r == -1 ? "short or failed" : "wrong bytes");
        close(pairs[i][1]);
    }
}

/* The mode: one call with a length past its buffer; it must not return. */
static int mode_overflow(const char *call)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 3;
    if (write(sv[1], "0123456789abcdefghij", 20) != 20) return 3;
    char buf[8];
    volatile size_t n = 16;
    if (strcmp(call, "read") == 0) (void)!read(sv[0], buf, n);
    else if (strcmp(call, "recv") == 0) (void)!recv(sv[0], buf, n, 0);
    else if (strcmp(call, "recvfrom") == 0) (void)!recvfrom(sv[0], buf, n, 0, NULL, NULL);
    else if (strcmp(call, "fgets") == 0) {
        /* 8 bytes read into 8: no room for the terminator */
        FILE *f = fdopen(sv[0], "r");
        if (f) (void)!fgets(buf, (int)n, f);
    } else if (strcmp(call, "fread") == 0) {
        FILE *f = fdopen(sv[0], "r");
        if (f) (void)!fread(buf, 1, n, f);
    } else {
        struct pollfd p[1] = {{sv[0], POLLIN, 0}};
        volatile nfds_t np = 2;
        if (strcmp(call, "ppoll") == 0) (void)ppoll(p, np, &(struct timespec){0, 0}, NULL);
        else (void)poll(p, np, 0);
    }
    return 0; /* not reached with the check */
}

static void test_overflow(void)
{
    st_phase = "overflow";
    static const char *calls[] = {"read", "recv", "recvfrom", "poll", "ppoll", "fgets", "fread"};
    for (size_t i = 0; i < sizeof calls / sizeof *calls; i++) {
        int err[2];
        CHECK(pipe(err) == 0, "pipe: %s", strerror(errno));
        pid_t kid = fork();
        if (kid == 0) {
            dup2(err[1], 2);
            close(err[0]);
            execl("/proc/self/exe", "fortify", "overflow", calls[i], (char *)NULL);
            _exit(127);
        }
        close(err[1]);
        char msg[256] = {0};
        size_t got = 0;
        ssize_t r;
        while (got < sizeof msg - 1 && (r = read(err[0], msg + got, sizeof msg - 1 - got)) > 0) got += (size_t)r;
        close(err[0]);
        int st = st_wait_status(kid);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s past its buffer: %s, want SIGABRT", calls[i],
              st_status_str(st));
        CHECK(strstr(msg, "buffer overflow detected") != NULL, "%s past its buffer: stderr says \"%s\"", calls[i],
              msg);
    }
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "overflow") == 0) return mode_overflow(argv[2]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    static const struct st_test tests[] = {{"park", test_park}, {"overflow", test_overflow}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("fortify");
}
