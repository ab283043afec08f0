/* busy: threads that compute without a call that could park, as the
 * kernel time-slices them among the others.
 *   spin-flag:  a thread spins on a flag that main sets after a sleep
 *               (under nprun -p 1 both share the only worker);
 *   heartbeat:  two threads compute for 600 ms while a third ticks every
 *               10 ms: its ticks go on meanwhile;
 *   local-queue: main wakes helpers (mutex unlocks) and spins until they
 *               have run, as redis does with its io threads;
 *   settle:     that cost a few OS threads, not one per monitor round. */
#include "shim_test.h"

static atomic_int flag;
static void *spinner(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&flag, memory_order_relaxed)) {}
    return NULL;
}

static void test_spin_flag(void)
{
    atomic_store(&flag, 0);
    pthread_t t = st_spawn(spinner, NULL);
    long t0 = st_mono_ms();
    st_sleep_ms(50);
    atomic_store(&flag, 1);
    pthread_join(t, NULL);
    long took = st_mono_ms() - t0;
    CHECK(took < 3000, "spin-flag: main's 50 ms sleep and the join took %ld ms beside a spinning thread", took);
}

static atomic_int computing, ticks;
static void *compute(void *arg)
{
    volatile unsigned long x = 0;
    long end = st_mono_ms() + (long)(intptr_t)arg;
    while (st_mono_ms() < end)
        for (int i = 0; i < 100000; i++) x += (unsigned long)i;
    atomic_fetch_sub(&computing, 1);
    return NULL;
}

static void *ticker(void *arg)
{
    (void)arg;
    while (atomic_load(&computing) > 0) {
        st_sleep_ms(10);
        atomic_fetch_add(&ticks, 1);
    }
    return NULL;
}

static void test_heartbeat(void)
{
    atomic_store(&computing, 2);
    atomic_store(&ticks, 0);
    pthread_t c[2];
    for (int i = 0; i < 2; i++) c[i] = st_spawn(compute, (void *)(intptr_t)600);
    pthread_t t = st_spawn(ticker, NULL);
    for (int i = 0; i < 2; i++) pthread_join(c[i], NULL);
    pthread_join(t, NULL);
    /* 60 at most; a loaded 2-core machine gives fewer, none means starved */
    CHECK(atomic_load(&ticks) >= 10, "heartbeat: %d ticks of 10 ms while two threads computed 600 ms",
          atomic_load(&ticks));
}

/* redis's io threads: main wakes each helper by unlocking the mutex it
 * waits on, then spins until they have all done their part, and locks
 * them out again.  The woken helpers are queued behind main on its
 * worker, which main does not leave. */
#define HELPERS 4
static pthread_mutex_t hm[HELPERS];
static atomic_int hpending[HELPERS], hquit;
static void *io_helper(void *arg)
{
    int id = (int)(intptr_t)arg;
    while (!atomic_load(&hquit)) {
        for (int j = 0; j < 10000 && !atomic_load(&hpending[id]); j++) {}
        if (!atomic_load(&hpending[id])) {
            pthread_mutex_lock(&hm[id]);
            pthread_mutex_unlock(&hm[id]);
            continue;
        }
        atomic_store(&hpending[id], 0);
    }
    return NULL;
}

static void test_local_queue(void)
{
    pthread_t t[HELPERS];
    for (int i = 0; i < HELPERS; i++) {
        pthread_mutex_init(&hm[i], NULL);
        pthread_mutex_lock(&hm[i]);
    }
    for (int i = 0; i < HELPERS; i++) t[i] = st_spawn(io_helper, (void *)(intptr_t)i);
    st_sleep_ms(100);
    long t0 = st_mono_ms();
    int rounds = 0;
    for (; rounds < 20 && st_mono_ms() - t0 < 20000; rounds++) {
        for (int i = 0; i < HELPERS; i++) atomic_store(&hpending[i], 1);
        for (int i = 0; i < HELPERS; i++) pthread_mutex_unlock(&hm[i]);
        for (int left = 1; left && st_mono_ms() - t0 < 20000;) {
            left = 0;
            for (int i = 0; i < HELPERS; i++) left += atomic_load(&hpending[i]);
        }
        for (int i = 0; i < HELPERS; i++) pthread_mutex_lock(&hm[i]);
    }
    CHECK(rounds == 20 && st_mono_ms() - t0 < 20000, "local-queue: %d of 20 rounds in %ld ms", rounds,
          st_mono_ms() - t0);
    atomic_store(&hquit, 1);
    for (int i = 0; i < HELPERS; i++) {
        atomic_store(&hpending[i], 1);
        pthread_mutex_unlock(&hm[i]);
    }
    for (int i = 0; i < HELPERS; i++) pthread_join(t[i], NULL);
}

/* One more worker for a thread that computes, not one per round of the
 * monitor: two computing threads cost a few OS threads, which stay (idle)
 * for the next time. */
static void test_settle(void)
{
    const char *p = getenv("NP_PROCS");
    if (!st_under_shim() || !p) return;
    int procs = atoi(p), n = st_os_threads();
    printf("os_threads=%d after the computing\n", n);
    CHECK(n <= procs + 2 + 8, "settle: %d OS threads after threads computed (NP_PROCS %d)", n, procs);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    static const struct st_test tests[] = {
        {"spin-flag", test_spin_flag},
        {"heartbeat", test_heartbeat},
        {"local-queue", test_local_queue},
        {"settle", test_settle},
    };
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("busy");
}
