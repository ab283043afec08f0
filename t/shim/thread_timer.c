/* thread_timer: a POSIX timer that signals one thread (SIGEV_THREAD_ID,
 * the thread named by its gettid(2)), as per-thread CPU-time profilers
 * make them: 4 threads each make one for itself, 2 ms apart, and sleep in
 * 2 ms steps for 100 ms.  timer_create() succeeds (a green thread's own id
 * was refused with EINVAL), the handler runs on the thread the timer names
 * and on no other, each thread's at least once; timer_delete() stops it.
 * And a SIGEV_THREAD timer's function runs. */
#include "shim_test.h"

#include <sys/syscall.h>

enum { kThreads = 4 };

static __thread int me; /* 1 + the thread's index, 0 on main */
static atomic_int hits[kThreads + 1], wrong;

static void on_timer(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    int want = si->si_value.sival_int;
    if (si->si_code != SI_TIMER || want != me) atomic_fetch_add(&wrong, 1);
    if (me >= 0 && me <= kThreads) atomic_fetch_add(&hits[me], 1);
}

static void *timed(void *arg)
{
    me = (int)(intptr_t)arg;
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = SIGUSR1;
    ev.sigev_value.sival_int = me;
    ev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    timer_t t;
    if (timer_create(CLOCK_MONOTONIC, &ev, &t) != 0) {
        CHECK(0, "thread %d: timer_create(SIGEV_THREAD_ID, its gettid()): %s", me, strerror(errno));
        return NULL;
    }
    struct itimerspec its = {{0, 2000000}, {0, 2000000}};
    CHECK(timer_settime(t, 0, &its, NULL) == 0, "timer_settime: %s", strerror(errno));
    for (int i = 0; i < 50; i++) st_sleep_ms(2);
    CHECK(timer_delete(t) == 0, "timer_delete: %s", strerror(errno));
    int after = atomic_load(&hits[me]);
    st_sleep_ms(20);
    CHECK(atomic_load(&hits[me]) == after, "thread %d: signals after timer_delete", me);
    return NULL;
}

static void test_thread_id(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_timer;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t t[kThreads];
    for (int i = 0; i < kThreads; i++) pthread_create(&t[i], NULL, timed, (void *)(intptr_t)(i + 1));
    for (int i = 0; i < kThreads; i++) pthread_join(t[i], NULL);
    CHECK(atomic_load(&wrong) == 0, "%d signals ran on another thread than the timer's", atomic_load(&wrong));
    CHECK(atomic_load(&hits[0]) == 0, "%d signals ran on main", atomic_load(&hits[0]));
    for (int i = 1; i <= kThreads; i++) CHECK(atomic_load(&hits[i]) > 0, "thread %d: no signal", i);
    signal(SIGUSR1, SIG_DFL);
}

static atomic_int calls;
static void on_expiry(union sigval v)
{
    (void)v;
    atomic_fetch_add(&calls, 1);
}

static void *notified(void *arg)
{
    (void)arg;
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD;
    ev.sigev_notify_function = on_expiry;
    timer_t t;
    CHECK(timer_create(CLOCK_MONOTONIC, &ev, &t) == 0, "timer_create(SIGEV_THREAD): %s", strerror(errno));
    struct itimerspec its = {{0, 0}, {0, 5000000}};
    timer_settime(t, 0, &its, NULL);
    for (int i = 0; i < 200 && !atomic_load(&calls); i++) st_sleep_ms(5);
    timer_delete(t);
    return NULL;
}

static void test_sigev_thread(void)
{
    pthread_t t;
    pthread_create(&t, NULL, notified, NULL);
    pthread_join(t, NULL);
    CHECK(atomic_load(&calls) == 1, "the SIGEV_THREAD function ran %d times", atomic_load(&calls));
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    static const struct st_test tests[] = {{"thread_id", test_thread_id}, {"sigev_thread", test_sigev_thread}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("thread_timer");
}
