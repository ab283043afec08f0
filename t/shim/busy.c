/* busy: threads that compute without a call that could park, as the
 * kernel time-slices them among the others.
 *   spin-flag:  a thread spins on a flag that main sets after a sleep
 *               (under nprun -p 1 both share the only worker);
 *   heartbeat:  two threads compute for 600 ms while a third ticks every
 *               10 ms: its ticks go on meanwhile;
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

/* One more worker for a thread that computes, not one per round of the
 * monitor: two computing threads cost a few OS threads, which stay (idle)
 * for the next time. */
static void test_settle(void)
{
    const char *p = getenv("NP_PROCS");
    if (!st_under_shim() || !p) return;
    int procs = atoi(p), n = st_os_threads();
    printf("os_threads=%d after the computing\n", n);
    CHECK(n <= procs + 2 + 4, "settle: %d OS threads after two threads computed (NP_PROCS %d)", n, procs);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    static const struct st_test tests[] = {
        {"spin-flag", test_spin_flag},
        {"heartbeat", test_heartbeat},
        {"settle", test_settle},
    };
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("busy");
}
