/* fd_numbers: a thread parked in poll(2) or select(2) over several
 * descriptors must not take a descriptor number from the program.  The
 * preload shim waits for such a set on a short-lived epoll set of its own;
 * made at the lowest free number, it held the one the program had just
 * closed for as long as the wait lasted: another thread's read(2) of that
 * closed number did not fail with EBADF (it read the epoll set), and its next
 * socket(2) or open(2) got another number than without the library, where
 * POSIX gives the lowest free one.  CPython's test_ssl
 * (test_makefile_close: close a socket, then os.read() its old number and
 * expect EBADF) failed so under nprun -p 1.
 *
 * A thread polls two pipes (and then selects on them) for a second while
 * main closes a descriptor below the pipes' and checks the number is
 * closed and is the one open(2) gives next.  (The runtime's lasting
 * descriptors, made at the first pthread_create(), are not checked.)
 *
 * blocked_worker: a thread sleeps in a system call the library does not
 * see (made by hand, as a program's own assembly or a library's raw call
 * would), and the library looks at its worker's state in /proc while main
 * opens and closes /dev/null in a loop: each open must give the lowest
 * free number.  Opened for each look, the /proc file took that number for
 * a moment, many times a second. */
#include <fcntl.h>
#include <poll.h>
#include <sys/select.h>
#include <sys/syscall.h>

#include "shim_test.h"

static int p1[2], p2[2];

static void *poller(void *arg)
{
    struct pollfd fds[2] = {{p1[0], POLLIN, 0}, {p2[0], POLLIN, 0}};
    if ((intptr_t)arg == 0) {
        CHECK(poll(fds, 2, 1000) == 0, "poll over two idle pipes: %s", strerror(errno));
    } else {
        fd_set r;
        FD_ZERO(&r);
        FD_SET(p1[0], &r);
        FD_SET(p2[0], &r);
        struct timeval tv = {1, 0};
        int n = p1[0] > p2[0] ? p1[0] : p2[0];
        CHECK(select(n + 1, &r, NULL, NULL, &tv) == 0, "select over two idle pipes: %s", strerror(errno));
    }
    return NULL;
}

static void test_closed_number(void)
{
    st_threads_up(); /* the runtime's own descriptors are made: not those checked */
    for (intptr_t how = 0; how < 2; how++) {
        st_phase = how ? "select" : "poll";
        int hole = open("/dev/null", O_RDONLY | O_CLOEXEC); /* the lowest free number, below the pipes */
        CHECK(hole >= 0, "open /dev/null: %s", strerror(errno));
        CHECK(pipe(p1) == 0 && pipe(p2) == 0, "pipe: %s", strerror(errno));
        close(hole); /* free below the pipes, as a socket the program closed */
        pthread_t th;
        CHECK(pthread_create(&th, NULL, poller, (void *)how) == 0, "pthread_create");
        usleep(200 * 1000); /* the poller is parked in its wait */
        errno = 0;
        char c;
        CHECK(read(hole, &c, 0) == -1 && errno == EBADF, "%s: read of closed descriptor %d: errno %d (%s), not EBADF",
              st_phase, hole, errno, strerror(errno));
        int again = open("/dev/null", O_RDONLY | O_CLOEXEC);
        CHECK(again == hole, "%s: open gave descriptor %d, not the lowest free one, %d", st_phase, again, hole);
        if (again >= 0) close(again);
        pthread_join(th, NULL);
        close(p1[0]), close(p1[1]), close(p2[0]), close(p2[1]);
    }
}

static int blk[2];

/* read(2) made by hand: the library sees no call, its worker just sleeps. */
static long raw_read(int fd, void *b, size_t n)
{
#if defined(__x86_64__)
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "0"((long)SYS_read), "D"((long)fd), "S"(b), "d"(n) : "rcx", "r11", "memory");
    return r;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = SYS_read;
    register long x0 __asm__("x0") = fd;
    register long x1 __asm__("x1") = (long)b;
    register long x2 __asm__("x2") = (long)n;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
#else
    return read(fd, b, n);
#endif
}

static void *raw_blocker(void *arg)
{
    (void)arg;
    char c;
    CHECK(raw_read(blk[0], &c, 1) == 1, "raw read of the pipe");
    return NULL;
}

static void test_blocked_worker(void)
{
    CHECK(pipe2(blk, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
    /* Twice: the first round lets the runtime add the worker it adds for
     * a blocked one (its descriptors are made then, and not checked). */
    for (int round = 0; round < 2; round++) {
        st_phase = round ? "checked round" : "warm-up round";
        int hole = open("/dev/null", O_RDONLY | O_CLOEXEC);
        CHECK(hole >= 0, "open /dev/null: %s", strerror(errno));
        close(hole);
        pthread_t th;
        CHECK(pthread_create(&th, NULL, raw_blocker, NULL) == 0, "pthread_create");
        int64_t end = st_mono_ns() + 400000000;
        long opens = 0, wrong = 0, first_wrong = -1;
        while (st_mono_ns() < end && opens < 2000000) {
            int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (fd != hole && wrong++ == 0) first_wrong = fd;
            if (fd >= 0) close(fd);
            opens++;
        }
        if (round)
            CHECK(wrong == 0, "%ld of %ld opens gave another number than the lowest free one, %d (first: %ld)", wrong,
                  opens, hole, first_wrong);
        CHECK(write(blk[1], "x", 1) == 1, "write: %s", strerror(errno));
        pthread_join(th, NULL);
    }
    close(blk[0]), close(blk[1]);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    static const struct st_test tests[] = {{"closed_number", test_closed_number}, {"blocked_worker", test_blocked_worker}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("fd_numbers");
}
