/* Embedded mode: no worker threads; a host event loop polls np_poll_fd()
 * with its own poll(2) and calls np_poll(), which runs the green threads. */
#include <poll.h>
#include <pthread.h>

#include "np_test.h"

static int echoed;
static void echo_once(void *a) {
    np_fd *pd = a;
    char buf[64];
    ssize_t n = np_read(pd, buf, sizeof buf);
    if (n > 0) np_write(pd, buf, (size_t)n);
    echoed = (int)n;
}

static int slept;
static void sleeper(void *a) {
    (void)a;
    np_sleep(30 * MS);
    slept = 1;
}

static void host_loop(const char *poller) {
    np_test_init_embedded(poller);
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    np_fd *pd = must_open(sv[0]);
    cr_assert_eq(np_go(echo_once, pd), 0);
    cr_assert_eq(np_go(sleeper, NULL), 0);
    np_stats s = {.size = sizeof s};
    np_stats_get(&s);
    cr_assert_eq(s.workers, 0, "embedded mode starts no workers");
    /* Nothing runs until the host calls np_poll. */
    cr_assert_eq(np_poll(0), 0);
    cr_assert_eq(write(sv[1], "hi", 2), 2);
    int pfd = np_poll_fd();
    cr_assert_geq(pfd, 0);
    int64_t end = np_now() + 5000 * MS;
    while ((!echoed || !slept) && np_now() < end) {
        int64_t t = np_poll_timeout();
        int ms = t < 0 ? 1000 : (int)((t + MS - 1) / MS);
        struct pollfd p = {pfd, POLLIN, 0};
        poll(&p, 1, ms);
        cr_assert_geq(np_poll(0), 0);
    }
    cr_assert_eq(echoed, 2);
    cr_assert_eq(slept, 1);
    char buf[8];
    cr_assert_eq(read(sv[1], buf, sizeof buf), 2, "the echo came back");
    np_close(pd);
    close(sv[1]);
}

Test(embed, host_poll_loop_epoll) { host_loop("epoll"); }
Test(embed, host_poll_loop_io_uring) { host_loop("io_uring"); }
Test(embed, host_poll_loop_poll) { host_loop("poll"); }

static int main_fn(void *a) {
    (void)a;
    np_sleep(5 * MS);
    return 5;
}

Test(embed, main_drives_itself) {
    np_test_init_embedded("epoll");
    cr_assert_eq(np_main(main_fn, NULL), 5);
}

static void *long_poll(void *a) {
    int64_t *el = a;
    int64_t t0 = np_now();
    np_poll(10000 * MS);
    *el = np_now() - t0;
    return NULL;
}

/* A break from this thread ends another thread's long np_poll. */
static void break_ends_long_poll(void) {
    int64_t el = -1;
    pthread_t t;
    pthread_create(&t, NULL, long_poll, &el);
    usleep(50 * 1000);
    cr_assert_eq(np_poll_break(), 0);
    pthread_join(t, NULL);
    cr_assert_lt(el, 2000 * MS, "the break came through after %lld ms", (long long)(el / MS));
}

static void break_test(const char *poller) {
    np_test_init_embedded(poller);
    break_ends_long_poll();
}

Test(embed, break_interrupts_long_poll_epoll) { break_test("epoll"); }
Test(embed, break_interrupts_long_poll_io_uring) { break_test("io_uring"); }
Test(embed, break_interrupts_long_poll_poll) { break_test("poll"); }

static void spawned_from_other_thread(void *a) { *(int *)a = 1; }

static void *spawner(void *a) {
    np_go(spawned_from_other_thread, a);
    return NULL;
}

/* np_go from another OS thread wakes the host's poll. */
Test(embed, go_from_another_thread_wakes_host) {
    np_test_init_embedded("epoll");
    int flag = 0;
    pthread_t t;
    int64_t t0 = np_now();
    pthread_create(&t, NULL, spawner, &flag);
    while (!flag && np_now() - t0 < 5000 * MS) np_poll(3000 * MS);
    pthread_join(t, NULL);
    cr_assert_eq(flag, 1);
    cr_assert_lt(np_now() - t0, 2000 * MS, "the host was woken, not timed out");
}

/* The host's loop polls with delay 0: a consumed break must not leave the
 * fd readable, or the loop would spin. */
static void break_consumed(const char *poller) {
    np_test_init_embedded(poller);
    int pfd = np_poll_fd();
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(np_poll_break(), 0);
        struct pollfd p = {pfd, POLLIN, 0};
        cr_assert_eq(poll(&p, 1, 1000), 1, "a break makes the fd readable");
        np_poll(0);
        p.revents = 0;
        cr_assert_eq(poll(&p, 1, 50), 0, "still readable after np_poll: a host loop would spin");
    }
}

Test(embed, break_consumed_epoll) { break_consumed("epoll"); }
Test(embed, break_consumed_io_uring) { break_consumed("io_uring"); }
Test(embed, break_consumed_poll) { break_consumed("poll"); }

/* With worker threads: np_poll_fd is one descriptor over every worker's
 * poller plus a break of its own; np_poll waits on it and polls them all;
 * a break interrupts a long np_poll and is consumed by it. */
static void with_workers(const char *poller) {
    np_test_init(poller, 2);
    int pfd = np_poll_fd();
    cr_assert_geq(pfd, 0, "np_poll_fd: %s", strerror(-pfd));
    cr_assert_eq(np_poll_fd(), pfd, "the same descriptor on every call");
    cr_assert_geq(np_poll(0), 0);
    cr_assert_eq(np_poll_break(), 0);
    struct pollfd p = {pfd, POLLIN, 0};
    cr_assert_eq(poll(&p, 1, 1000), 1, "a break makes the fd readable");
    int64_t t0 = np_now();
    cr_assert_geq(np_poll(5000 * MS), 0);
    cr_assert_lt(np_now() - t0, 2000 * MS, "a pending break ends the wait at once");
    break_ends_long_poll();
    /* The workers still serve descriptors. */
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    np_fd *pd = must_open(sv[0]);
    echoed = 0;
    cr_assert_eq(np_go(echo_once, pd), 0);
    cr_assert_eq(write(sv[1], "hi", 2), 2);
    char buf[8];
    cr_assert_eq(read(sv[1], buf, sizeof buf), 2, "the echo came back");
    np_close(pd);
    close(sv[1]);
}

Test(host_loop, with_workers_epoll, .timeout = 30) { with_workers("epoll"); }
Test(host_loop, with_workers_io_uring, .timeout = 30) { with_workers("io_uring"); }
Test(host_loop, with_workers_poll, .timeout = 30) { with_workers("poll"); }

/* A host loop that sleeps in poll(2) on np_poll_fd() with a long timeout
 * wakes when a registered descriptor becomes ready, on every poller (the
 * poll(2) poller has no descriptor of its own to offer: it mirrors its
 * set in an epoll set), and does not spin meanwhile. */
static int woke_reader;
static void wait_reader(void *a) {
    np_fd *pd = a;
    char buf[8];
    woke_reader = (int)np_read(pd, buf, sizeof buf);
}

static void *write_later(void *a) {
    usleep(100 * 1000); /* the host sleeps in poll(2) by then */
    cr_assert_eq(write(*(int *)a, "go", 2), 2);
    return NULL;
}

static void fd_wakes_on_ready(const char *poller) {
    np_test_init_embedded(poller);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    np_fd *pd = must_open(sv[0]);
    int pfd = np_poll_fd();
    cr_assert_geq(pfd, 0, "np_poll_fd: %s", strerror(-pfd));
    woke_reader = 0;
    cr_assert_eq(np_go(wait_reader, pd), 0);
    for (int i = 0; i < 3; i++) np_poll(0); /* the reader parks; writability is reported */
    cr_assert_eq(woke_reader, 0);
    pthread_t t;
    pthread_create(&t, NULL, write_later, &sv[1]);
    int64_t t0 = np_now();
    int passes = 0;
    while (!woke_reader && np_now() - t0 < 10000 * MS) {
        struct pollfd p = {pfd, POLLIN, 0};
        poll(&p, 1, 10000);
        cr_assert_geq(np_poll(0), 0);
        passes++;
    }
    pthread_join(t, NULL);
    int64_t took = np_now() - t0;
    cr_assert_eq(woke_reader, 2, "the reader ran: %d", woke_reader);
    cr_assert_lt(took, 3000 * MS, "the host slept through the event: %lld ms", (long long)(took / MS));
    cr_assert_lt(passes, 20, "the host loop spun: %d passes", passes);
    np_close(pd);
    close(sv[1]);
}

Test(embed, poll_fd_wakes_on_ready_epoll, .timeout = 30) { fd_wakes_on_ready("epoll"); }
Test(embed, poll_fd_wakes_on_ready_io_uring, .timeout = 30) { fd_wakes_on_ready("io_uring"); }
Test(embed, poll_fd_wakes_on_ready_poll, .timeout = 30) { fd_wakes_on_ready("poll"); }
