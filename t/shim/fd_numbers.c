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
 * descriptors, made at the first pthread_create(), are not checked.) */
#include <fcntl.h>
#include <poll.h>
#include <sys/select.h>

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

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    static const struct st_test tests[] = {{"closed_number", test_closed_number}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("fd_numbers");
}
