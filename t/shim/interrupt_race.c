/* interrupt_race: a signal or a cancellation for a thread that is on its way
 * into pthread_cond_wait reaches it, and reaches only it.
 *
 * The shim woke a parked thread for a pthread_kill or pthread_cancel with a
 * wake-up on the word it waits on, after it had looked for what is pending
 * and before it had parked: one that came in between found no waiter there
 * and was lost -- the thread slept in pthread_cond_wait with its handler
 * not run, or cancelled and never ending.  And the wake-up was for every
 * waiter on the word: a signal for one of a thousand threads waiting on a
 * condition variable had all thousand wake and wait again.
 *
 *   kill:    4 threads loop in pthread_cond_wait; main sends each SIGUSR1
 *            again as soon as its handler has run; every handler must run
 *            within 2 s.
 *   cancel:  a thread enters pthread_cond_wait, main cancels it at varying
 *            moments; it must end (its cleanup handler run) within 2 s.
 *   herd:    200 threads wait on one condition variable; 2000 signals for
 *            one of them must not wake the others (plain: none do). */
#include "shim_test.h"

#include <semaphore.h>

#define SIG SIGUSR1
#define NKILL 4

static _Thread_local int my_slot = -1;
static atomic_long handled[NKILL + 1];
static void on_sig(int sig)
{
    (void)sig;
    atomic_fetch_add(&handled[my_slot < 0 ? NKILL : my_slot], 1);
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static atomic_int stop;

static void *looper(void *arg)
{
    my_slot = (int)(intptr_t)arg;
    pthread_mutex_lock(&mu);
    while (!atomic_load(&stop)) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void stop_all(pthread_t *t, int n)
{
    pthread_mutex_lock(&mu);
    atomic_store(&stop, 1);
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (int k = 0; k < n; k++) pthread_join(t[k], NULL);
    atomic_store(&stop, 0);
}

static void test_kill(void)
{
    pthread_t t[NKILL];
    long sent[NKILL] = {0}, total = 0;
    int64_t since[NKILL], end = st_mono_ns() + 6000000000LL;
    for (int k = 0; k < NKILL; k++) t[k] = st_spawn(looper, (void *)(intptr_t)k);
    st_sleep_ms(20);
    for (int k = 0; k < NKILL; k++) since[k] = 0;
    int lost = -1;
    while (total < 400000 && st_mono_ns() < end && lost < 0) {
        for (int k = 0; k < NKILL; k++) {
            if (atomic_load(&handled[k]) == sent[k]) { /* the last one was taken: another */
                sent[k]++, total++;
                since[k] = st_mono_ns();
                pthread_kill(t[k], SIG);
            } else if (st_mono_ns() - since[k] > 2000000000LL) {
                lost = k;
                break;
            }
        }
    }
    CHECK(lost < 0, "kill: signal %ld for thread %d (of %ld sent) not handled in 2 s", lost < 0 ? 0 : sent[lost],
          lost, total);
    if (lost >= 0) _exit(st_finish("interrupt_race")); /* it sleeps: no way to end it */
    for (int k = 0; k < NKILL; k++) while (atomic_load(&handled[k]) != sent[k]) st_sleep_ms(1);
    stop_all(t, NKILL);
}

static sem_t ended;
static atomic_int entering;
static void unlock_and_note(void *arg)
{
    (void)arg;
    pthread_mutex_unlock(&mu);
    sem_post(&ended);
}
static void *waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    pthread_cleanup_push(unlock_and_note, NULL);
    atomic_store(&entering, 1);
    for (;;) pthread_cond_wait(&cv, &mu);
    pthread_cleanup_pop(0);
    return NULL;
}

static void test_cancel(void)
{
    sem_init(&ended, 0, 0);
    int64_t end = st_mono_ns() + 6000000000LL;
    long i;
    for (i = 0; i < 100000 && st_mono_ns() < end; i++) {
        atomic_store(&entering, 0);
        pthread_t t = st_spawn(waiter, NULL);
        while (!atomic_load(&entering)) sched_yield();
        for (volatile int k = 0, n = (int)(i % 64) * 4; k < n; k++) {
        } /* cancel at different points of its way into the wait */
        pthread_cancel(t);
        struct timespec d;
        clock_gettime(CLOCK_REALTIME, &d);
        d.tv_sec += 2;
        int r;
        while ((r = sem_timedwait(&ended, &d)) == -1 && errno == EINTR) {
        }
        CHECK(r == 0, "cancel %ld: the thread, cancelled in pthread_cond_wait, has not ended in 2 s", i);
        if (r) _exit(st_finish("interrupt_race"));
        void *ret;
        pthread_join(t, &ret);
        CHECK(ret == PTHREAD_CANCELED, "cancel %ld: joined %p", i, ret);
    }
}

#define NHERD 200
static atomic_long herd_wakes;
static void *herd_waiter(void *arg)
{
    my_slot = (int)(intptr_t)arg;
    pthread_mutex_lock(&mu);
    while (!atomic_load(&stop)) {
        pthread_cond_wait(&cv, &mu);
        if (my_slot != 0 && !atomic_load(&stop)) atomic_fetch_add(&herd_wakes, 1);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void test_herd(void)
{
    static pthread_t t[NHERD];
    for (int k = 0; k < NHERD; k++) t[k] = st_spawn(herd_waiter, (void *)(intptr_t)(k ? NKILL : 0));
    st_sleep_ms(100);
    long before = atomic_load(&handled[0]);
    for (int i = 0; i < 2000; i++) {
        pthread_kill(t[0], SIG);
        for (int64_t s = st_mono_ns(); atomic_load(&handled[0]) == before + i && st_mono_ns() - s < 2000000000LL;)
            sched_yield();
    }
    long others = atomic_load(&herd_wakes);
    stop_all(t, NHERD);
    CHECK(others < 2000, "herd: 2000 signals for one thread woke the %d others %ld times", NHERD - 1, others);
}

int main(void)
{
    st_watchdog(60);
    struct sigaction sa = {.sa_handler = on_sig};
    sigemptyset(&sa.sa_mask);
    sigaction(SIG, &sa, NULL);
    static const struct st_test tests[] = {{"kill", test_kill}, {"cancel", test_cancel}, {"herd", test_herd}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("interrupt_race");
}
