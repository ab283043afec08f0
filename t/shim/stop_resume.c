/* A thread that stops main by a signal, waits for its acknowledgement,
 * resumes it by another signal, and computes 3 ms before the next stop,
 * over and over (a stop-the-world collector: D's druntime, Boehm's), while
 * main sleeps 50 ms with nanosleep restarted on the time left.  The kernel
 * runs main, resumed, on the idle CPU, where it sleeps until the next stop:
 * the sleep ends on time.  Under the shim main was readied in the
 * collector's worker's own queue, which no idle worker takes, and ran only
 * at the next stop, with that stop pending: its nanosleep never slept.
 *
 * With one worker (NP_PROCS=1) the kernel's one CPU would preempt the
 * collector for main; the library does not preempt a computing thread that
 * soon (netpoll-preload(7), BUGS), so that case is not run here. */
#include <semaphore.h>

#include "shim_test.h"

static sem_t ack;
static atomic_int done;
static pthread_t mainth;

static void on_stop(int s)
{
    (void)s;
    sigset_t m;
    sigfillset(&m);
    sigdelset(&m, SIGUSR2);
    sem_post(&ack);
    sigsuspend(&m);
}
static void on_resume(int s) { (void)s; }

static void *collector(void *a)
{
    (void)a;
    while (!atomic_load(&done)) {
        int64_t end = st_mono_ns() + 3000000;
        volatile long x = 0;
        while (st_mono_ns() < end)
            for (int i = 0; i < 10000; i++) x += i;
        pthread_kill(mainth, SIGUSR1);
        while (sem_wait(&ack) != 0) {}
        pthread_kill(mainth, SIGUSR2); /* no wait for main to run again */
    }
    return NULL;
}

static void test_sleep_between_stops(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigfillset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_stop;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_flags = 0;
    sa.sa_handler = on_resume;
    sigaction(SIGUSR2, &sa, NULL);
    sem_init(&ack, 0, 0);
    mainth = pthread_self();
    pthread_t t = st_spawn(collector, NULL);
    int64_t t0 = st_mono_ns();
    struct timespec req = {0, 50000000}, rem;
    /* Bounded: with the bug it never ends by itself. */
    while (nanosleep(&req, &rem) != 0 && errno == EINTR && st_mono_ns() - t0 < 20000000000LL) req = rem;
    int64_t took = st_mono_ns() - t0;
    atomic_store(&done, 1);
    pthread_join(t, NULL);
    CHECK(took < 5000000000LL, "a 50 ms sleep between stops took %lld ms", (long long)(took / 1000000));
    printf("sleep between stops: %lld ms\n", (long long)(took / 1000000));
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *p = getenv("NP_PROCS");
    if (p && strcmp(p, "1") == 0 && getenv("LD_PRELOAD")) {
        puts("stop_resume: one worker, not run (see the comment at the top)");
        return 0;
    }
    st_watchdog(60);
    static const struct st_test tests[] = {{"sleep-between-stops", test_sleep_between_stops}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("stop_resume");
}
