/* signal_preempted: a signal for a thread that computes, and never makes a
 * call that could park, reaches it: on the worker it holds, or once it
 * runs again when it was waiting for one as the signal came (the kernel
 * runs the handler when such a thread next runs).  The second case is the
 * one timer_queue's busy case loses whole rounds of timer signals to; it
 * is hard to make here on purpose, so this is the plain behaviour's check.
 *
 * Three threads compute; once all have started, main sends each in turn
 * SIGUSR1 (pthread_kill), 300 times, and waits for that thread's handler
 * to run: it must within 10 s every time (a loaded machine takes seconds
 * plain), and in the thread it was sent to. */
#include <signal.h>

#include "shim_test.h"

#define SPINNERS 3
#define ROUNDS 300

static atomic_int got[SPINNERS], stop, started;
static _Thread_local int me = -1;

static void on_usr1(int sig)
{
    (void)sig;
    if (me >= 0) atomic_fetch_add(&got[me], 1);
}

static void *spin(void *arg)
{
    me = (int)(intptr_t)arg;
    atomic_fetch_add(&started, 1); /* its handler counts from now on */
    for (long t0 = st_mono_ms(); !atomic_load(&stop) && st_mono_ms() - t0 < 60000;)
        for (volatile int i = 0; i < 1000; i++) {
        }
    return NULL;
}

static void test_kill(void)
{
    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    pthread_t t[SPINNERS];
    for (int i = 0; i < SPINNERS; i++) t[i] = st_spawn(spin, (void *)(intptr_t)i);
    CHECK(st_wait_for(&started, SPINNERS, 10000), "the computing threads started");
    int lost = 0;
    long worst = 0;
    for (int r = 0; r < ROUNDS && !lost; r++) {
        int i = r % SPINNERS, before = atomic_load(&got[i]);
        long t0 = st_mono_ms();
        CHECK(pthread_kill(t[i], SIGUSR1) == 0, "pthread_kill");
        while (atomic_load(&got[i]) == before && st_mono_ms() - t0 < 10000) st_sleep_ms(1);
        long d = st_mono_ms() - t0;
        if (d > worst) worst = d;
        if (atomic_load(&got[i]) == before) lost++;
    }
    CHECK(lost == 0, "%d signals to computing threads not handled within 10 s", lost);
    printf("worst delivery %ld ms\n", worst);
    atomic_store(&stop, 1);
    for (int i = 0; i < SPINNERS; i++) pthread_join(t[i], NULL);
    int sum = 0;
    for (int i = 0; i < SPINNERS; i++) sum += atomic_load(&got[i]);
    CHECK(lost || sum == ROUNDS, "%d handler runs for %d signals", sum, ROUNDS);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    static const struct st_test tests[] = {{"kill", test_kill}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("signal_preempted");
}
