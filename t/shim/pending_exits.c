/* Threads that end while a signal sent to the process is pending, blocked
 * by every thread (stress-ng's loadavg stressor blocks SIGALRM and looks
 * for it with sigpending(2) in each of its thousands of threads).  Each
 * ending thread looked over every live thread for another to take the
 * signal, although none lets it through: N threads ending took time
 * growing as N squared (20000 threads: 23 s instead of 4).
 *
 *   ends     N threads parked at once, then let go and joined, with
 *            SIGUSR1 pending for the process: under the shim the joins
 *            take under 3 s (0.1 s; they took 8 s under -p 1, and for
 *            ever under -p 2, its workers spinning on the threads' list;
 *            plain, where each is an OS thread's exit, 2 s: not timed),
 *            and sigtimedwait then takes the SIGUSR1, still pending */
#include "shim_test.h"

#ifndef N
#define N 20000
#endif

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go;

static void *parked(void *arg)
{
    pthread_mutex_lock(&mu);
    while (!go) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return arg;
}

static pthread_t th[N];

static void test_ends(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, NULL); /* every thread made now blocks it */
    CHECK(kill(getpid(), SIGUSR1) == 0, "kill: %s", strerror(errno));
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 * 1024);
    int n = 0;
    for (; n < N; n++)
        if (pthread_create(&th[n], &a, parked, NULL) != 0) break;
    pthread_attr_destroy(&a);
    CHECK(n >= N / 2, "only %d threads made", n);
    int64_t t0 = st_mono_ns();
    pthread_mutex_lock(&mu);
    go = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    double ms = st_ms(st_mono_ns() - t0);
    printf("%d threads ended in %.0f ms\n", n, ms);
    CHECK(!st_under_shim() || ms < 3000, "%d threads took %.0f ms to end with a signal pending, want < 3000", n, ms);
    struct timespec zero = {0, 0};
    CHECK(sigtimedwait(&s, NULL, &zero) == SIGUSR1, "SIGUSR1 no longer pending: %s", strerror(errno));
}

int main(void)
{
    st_watchdog(100);
    const struct st_test tests[] = {{"ends", test_ends}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("pending_exits");
}
