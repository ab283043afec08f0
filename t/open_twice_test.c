/* One descriptor number, one registration: np_open of a number registered
 * already fails with -EEXIST on every port, whichever worker's poller holds
 * the first registration.  And NP_POLLER's fallback says what happens when
 * epoll cannot start either. */
#include <pthread.h>
#include <sys/resource.h>

#include "np_test.h"

static void open_twice_fails(void) {
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    np_fd *a = must_open(sv[0]), *b = NULL;
    cr_assert_eq(np_open(sv[0], &b), -EEXIST);
    cr_assert_null(b, "no second handle");
    cr_assert_eq(np_open_flags(sv[0], NP_OPEN_NONBLOCK, &b), -EEXIST);
    /* The first handle still works. */
    cr_assert_eq(write(sv[1], "x", 1), 1);
    char c;
    np_set_deadline(a, np_now() + 2000 * MS, NP_READ);
    cr_assert_eq(np_read(a, &c, 1), 1);
    /* Closed, the number is free again. */
    cr_assert_eq(np_close(a), 0);
    int s2[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s2), 0);
    if (s2[0] != sv[0]) { /* make the new socket take the old number */
        cr_assert_eq(dup3(s2[0], sv[0], O_CLOEXEC), sv[0]);
        close(s2[0]);
    }
    np_fd *again = must_open(sv[0]);
    np_close(again);
    close(s2[1]);
    close(sv[1]);
}

static int from_green(void *x) {
    (void)x;
    open_twice_fails(); /* both on this worker's poller */
    return 0;
}

/* From a plain OS thread the workers' pollers take turns: the second
 * np_open goes to another worker's poller than the first. */
PORT_TEST(open_twice, eexist) {
    run_green(from_green, NULL);
    open_twice_fails();
}

/* Out of descriptors, NP_POLLER=poll cannot make its pollers and neither
 * can epoll: the message must not claim that epoll is used. */
Test(poller_choice, env_fallback_fails_too, .init = cr_redirect_stderr) {
    setenv("NP_POLLER", "poll", 1);
    int lowest = dup(0);
    cr_assert_geq(lowest, 0);
    close(lowest);
    struct rlimit old, rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    rl = old;
    rl.rlim_cur = (rlim_t)lowest; /* no descriptor can be made */
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    int r = np_init(NULL);
    setrlimit(RLIMIT_NOFILE, &old);
    cr_assert_eq(r, -EMFILE, "np_init: %d", r);
    char buf[1024];
    captured_stderr(buf, sizeof buf);
    cr_assert(strstr(buf, "NP_POLLER=poll unavailable"), "stderr: %s", buf);
    cr_assert(strstr(buf, "epoll too"), "stderr: %s", buf);
    cr_assert_null(strstr(buf, "using epoll"), "stderr: %s", buf);
}
