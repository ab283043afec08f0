/* sysmon: threads queued behind a worker stuck in a call the engine does
 * not know about run elsewhere; a thread that never parks is asked to
 * yield so a sleeper on its worker wakes in time. */
#include <pthread.h>

#include "np_test.h"

static atomic_int ran;
static atomic_long ran_at;

static void quick(void *a) {
    (void)a;
    atomic_fetch_add(&ran, 1);
    atomic_store(&ran_at, (long)np_now());
}

static int stuck_worker(void *x) {
    (void)x;
    int64_t t0 = np_now();
    for (int i = 0; i < 10; i++) np_go(quick, NULL); /* queued on this worker */
    usleep(400 * 1000); /* blocks this worker's OS thread, unknown to netpoll */
    cr_assert_eq(atomic_load(&ran), 10, "the queued threads waited for the stuck worker");
    cr_assert_lt(atomic_load(&ran_at) - t0, 300 * MS, "they ran only after %ld ms",
                 (long)((atomic_load(&ran_at) - t0) / MS));
    return 0;
}

Test(sysmon, queued_threads_leave_a_stuck_worker, .timeout = 30) {
    np_test_init("epoll", 2);
    run_green(stuck_worker, NULL);
}

static atomic_int stop_spin;
static void spinner(void *a) {
    np_fd *pd = a;
    char b[1];
    /* Never parks: the socket always has data (it is never drained below 1). */
    while (!atomic_load(&stop_spin)) np_recvfrom(pd, b, 1, MSG_PEEK, NULL, NULL);
}

static int sleeper_wakes(void *x) {
    (void)x;
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    np_fd *pd = must_open(sv[0]);
    cr_assert_eq(write(sv[1], "x", 1), 1);
    np_go(spinner, pd); /* one worker: it shares this thread's worker */
    int64_t t0 = np_now();
    np_sleep(5 * MS);
    int64_t el = np_now() - t0;
    atomic_store(&stop_spin, 1);
    cr_assert_lt(el, 500 * MS, "a 5 ms sleep took %lld ms behind a spinning thread", (long long)(el / MS));
    np_sleep(MS);
    np_close(pd);
    close(sv[1]);
    return 0;
}

Test(sysmon, spinning_thread_is_asked_to_yield, .timeout = 30) {
    np_test_init("epoll", 1);
    run_green(sleeper_wakes, NULL);
}
