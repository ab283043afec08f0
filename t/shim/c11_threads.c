/* c11_threads: a program written with C11's <threads.h> instead of
 * pthreads.  glibc builds thrd_create, mtx_lock, cnd_wait, call_once and
 * thrd_sleep on its pthread functions through internal calls: under the
 * shim, C11 threads were OS threads (a thread per task kept an OS thread
 * each), and a thread parked by pthread_mutex_lock on a mutex that another
 * released with mtx_unlock was never woken.
 *
 * Checks: many C11 threads parked in cnd_wait on few OS threads; the
 * mutex and condition variable shared between the two APIs both ways;
 * results of thrd_join and thrd_exit; timed and try locks; recursive
 * mutexes; thrd_sleep, also cut short by a signal; call_once; tss
 * destructors and thread_local per thread. */
#include <threads.h>

#include "shim_test.h"

#define PARKED 200

static mtx_t mu;
static cnd_t cv;
static int released, arrived;
static thread_local int mine;
static tss_t key;
static atomic_int dtors;

static void key_dtor(void *p)
{
    if (p) atomic_fetch_add(&dtors, 1);
}

static int parked(void *arg)
{
    mine = (int)(intptr_t)arg;
    tss_set(key, arg);
    mtx_lock(&mu);
    arrived++;
    cnd_broadcast(&cv);
    while (!released) cnd_wait(&cv, &mu);
    mtx_unlock(&mu);
    /* each thread's own copy survived the wait */
    return mine == (int)(intptr_t)arg && tss_get(key) == arg ? mine : -1;
}

static void test_many_parked(void)
{
    st_phase = "many parked";
    thrd_t t[PARKED];
    atomic_store(&dtors, 0);
    released = arrived = 0;
    int made = 0;
    for (int i = 0; i < PARKED; i++) {
        int r = thrd_create(&t[i], parked, (void *)(intptr_t)(i + 1));
        CHECK(r == thrd_success, "thrd_create %d: %d", i, r);
        if (r != thrd_success) break;
        made++;
    }
    mtx_lock(&mu);
    while (arrived < made) cnd_wait(&cv, &mu);
    mtx_unlock(&mu);
    int os = st_os_threads();
    /* green: a few workers; plain: one OS thread per C11 thread */
    if (st_under_shim()) CHECK(os > 0 && os < 40, "%d OS threads while %d C11 threads wait", os, made);
    else CHECK(os > made, "plain: %d OS threads for %d C11 threads", os, made);
    mtx_lock(&mu);
    released = 1;
    cnd_broadcast(&cv);
    mtx_unlock(&mu);
    for (int i = 0; i < made; i++) {
        int res = 0;
        CHECK(thrd_join(t[i], &res) == thrd_success, "thrd_join %d", i);
        CHECK(res == i + 1, "thread %d returned %d", i + 1, res);
    }
    CHECK(atomic_load(&dtors) == made, "tss destructors ran %d times for %d threads", atomic_load(&dtors), made);
}

/* ---- one mutex, two APIs ---- */

static pthread_mutex_t *as_pthread(mtx_t *m) { return (pthread_mutex_t *)m; }
static atomic_int holding;

static int hold_c11(void *arg)
{
    mtx_t *m = arg;
    mtx_lock(m);
    atomic_store(&holding, 1);
    thrd_sleep(&(struct timespec){0, 100000000}, NULL);
    mtx_unlock(m);
    return 0;
}

static int hold_pthread(void *arg)
{
    mtx_t *m = arg;
    pthread_mutex_lock(as_pthread(m));
    atomic_store(&holding, 1);
    usleep(100000);
    pthread_mutex_unlock(as_pthread(m));
    return 0;
}

static void test_mixed_mutex(void)
{
    st_phase = "mixed mutex";
    mtx_t m;
    mtx_init(&m, mtx_timed);
    for (int dir = 0; dir < 2; dir++) {
        thrd_t t;
        atomic_store(&holding, 0);
        thrd_create(&t, dir == 0 ? hold_c11 : hold_pthread, &m);
        while (!atomic_load(&holding)) thrd_sleep(&(struct timespec){0, 1000000}, NULL);
        int64_t t0 = st_mono_ns();
        if (dir == 0) {
            /* released by mtx_unlock: the waiter parked in pthread_mutex_timedlock must wake */
            struct timespec dl = st_deadline(CLOCK_REALTIME, 10000);
            int e = pthread_mutex_timedlock(as_pthread(&m), &dl);
            CHECK(e == 0, "pthread_mutex_timedlock after mtx_unlock: %s after %.0f ms", strerror(e),
                  st_ms(st_mono_ns() - t0));
            if (e == 0) pthread_mutex_unlock(as_pthread(&m));
        } else {
            struct timespec dl = st_deadline(CLOCK_REALTIME, 10000);
            int r = mtx_timedlock(&m, &dl);
            CHECK(r == thrd_success, "mtx_timedlock after pthread_mutex_unlock: %d", r);
            if (r == thrd_success) mtx_unlock(&m);
        }
        thrd_join(t, NULL);
    }
    mtx_destroy(&m);
}

/* ---- one condition variable, two APIs ---- */

static mtx_t cm;
static cnd_t cc;
static int cflag, cwaiting;

static int signal_pthread(void *arg)
{
    (void)arg;
    mtx_lock(&cm);
    while (!cwaiting) {
        mtx_unlock(&cm);
        thrd_sleep(&(struct timespec){0, 1000000}, NULL);
        mtx_lock(&cm);
    }
    cflag = 1;
    pthread_cond_signal((pthread_cond_t *)&cc);
    mtx_unlock(&cm);
    return 0;
}

static int signal_c11(void *arg)
{
    (void)arg;
    pthread_mutex_lock(as_pthread(&cm));
    while (!cwaiting) {
        pthread_mutex_unlock(as_pthread(&cm));
        usleep(1000);
        pthread_mutex_lock(as_pthread(&cm));
    }
    cflag = 1;
    cnd_signal(&cc);
    pthread_mutex_unlock(as_pthread(&cm));
    return 0;
}

static void test_mixed_cond(void)
{
    st_phase = "mixed cond";
    mtx_init(&cm, mtx_plain);
    cnd_init(&cc);
    for (int dir = 0; dir < 2; dir++) {
        thrd_t t;
        cflag = cwaiting = 0;
        thrd_create(&t, dir == 0 ? signal_pthread : signal_c11, NULL);
        struct timespec dl = st_deadline(CLOCK_REALTIME, 10000);
        int r = 0;
        if (dir == 0) {
            mtx_lock(&cm);
            cwaiting = 1;
            while (!cflag && r == thrd_success) r = cnd_timedwait(&cc, &cm, &dl);
            mtx_unlock(&cm);
            CHECK(cflag && r == thrd_success, "cnd_timedwait woken by pthread_cond_signal: %d", r);
        } else {
            pthread_mutex_lock(as_pthread(&cm));
            cwaiting = 1;
            while (!cflag && r == 0) r = pthread_cond_timedwait((pthread_cond_t *)&cc, as_pthread(&cm), &dl);
            pthread_mutex_unlock(as_pthread(&cm));
            CHECK(cflag && r == 0, "pthread_cond_timedwait woken by cnd_signal: %s", strerror(r));
        }
        thrd_join(t, NULL);
    }
    cnd_destroy(&cc);
    mtx_destroy(&cm);
}

/* ---- results and errors ---- */

static int exits_early(void *arg)
{
    (void)arg;
    thrd_exit(-7);
}

static int try_other(void *arg)
{
    return mtx_trylock(arg);
}

static int timed_other(void *arg)
{
    struct timespec dl = st_deadline(CLOCK_REALTIME, 50);
    return mtx_timedlock(arg, &dl);
}

static atomic_int detached_ran;
static int detached_body(void *arg)
{
    (void)arg;
    atomic_fetch_add(&detached_ran, 1);
    return 0;
}

static void test_results(void)
{
    st_phase = "results";
    thrd_t t;
    int res = 0;
    CHECK(thrd_create(&t, exits_early, NULL) == thrd_success, "thrd_create");
    CHECK(thrd_join(t, &res) == thrd_success && res == -7, "thrd_exit(-7) joined as %d", res);

    mtx_t m;
    CHECK(mtx_init(&m, mtx_timed) == thrd_success, "mtx_init");
    mtx_lock(&m);
    thrd_create(&t, try_other, &m);
    thrd_join(t, &res);
    CHECK(res == thrd_busy, "mtx_trylock of a held mutex: %d, want thrd_busy", res);
    int64_t t0 = st_mono_ns();
    thrd_create(&t, timed_other, &m);
    thrd_join(t, &res);
    CHECK(res == thrd_timedout, "mtx_timedlock of a held mutex: %d, want thrd_timedout", res);
    CHECK(st_mono_ns() - t0 >= 40000000, "mtx_timedlock gave up after %.0f ms", st_ms(st_mono_ns() - t0));
    mtx_unlock(&m);
    mtx_destroy(&m);

    mtx_t r;
    mtx_init(&r, mtx_plain | mtx_recursive);
    CHECK(mtx_lock(&r) == thrd_success && mtx_lock(&r) == thrd_success && mtx_trylock(&r) == thrd_success,
          "recursive locks");
    mtx_unlock(&r);
    mtx_unlock(&r);
    mtx_unlock(&r);
    thrd_create(&t, try_other, &r);
    thrd_join(t, &res);
    CHECK(res == thrd_success, "recursive mutex free after three unlocks: %d", res);
    mtx_destroy(&r);

    atomic_store(&detached_ran, 0);
    for (int i = 0; i < 20; i++) {
        thrd_create(&t, detached_body, NULL);
        CHECK(thrd_detach(t) == thrd_success, "thrd_detach");
    }
    for (int i = 0; i < 2000 && atomic_load(&detached_ran) < 20; i++) thrd_sleep(&(struct timespec){0, 1000000}, NULL);
    CHECK(atomic_load(&detached_ran) == 20, "%d of 20 detached threads ran", atomic_load(&detached_ran));
    thrd_t self = thrd_current();
    CHECK(thrd_equal(self, thrd_current()), "thrd_equal");
}

/* ---- sleeps and once ---- */

static void on_usr1(int sig) { (void)sig; }

static atomic_int sleeper_up;
static int sleeper(void *arg)
{
    struct timespec *rem = arg;
    atomic_store(&sleeper_up, 1);
    return thrd_sleep(&(struct timespec){5, 0}, rem);
}

static atomic_int once_runs;
static once_flag flag = ONCE_FLAG_INIT;
static void once_body(void)
{
    thrd_sleep(&(struct timespec){0, 20000000}, NULL); /* others arrive meanwhile */
    atomic_fetch_add(&once_runs, 1);
}
static int call_it(void *arg)
{
    (void)arg;
    call_once(&flag, once_body);
    return atomic_load(&once_runs);
}

static int yielder(void *arg)
{
    atomic_int *turn = arg;
    for (int i = 0; i < 200; i++) {
        while (atomic_load(turn) % 2 != 1) thrd_yield();
        atomic_fetch_add(turn, 1);
    }
    return 0;
}

static void test_sleep_once(void)
{
    st_phase = "sleep";
    int64_t t0 = st_mono_ns();
    CHECK(thrd_sleep(&(struct timespec){0, 20000000}, NULL) == 0, "thrd_sleep");
    CHECK(st_mono_ns() - t0 >= 20000000, "thrd_sleep(20 ms) took %.1f ms", st_ms(st_mono_ns() - t0));
    CHECK(thrd_sleep(&(struct timespec){0, -1}, NULL) < -1, "thrd_sleep with a bad duration");

    struct sigaction sa = {.sa_handler = on_usr1}; /* no SA_RESTART */
    sigaction(SIGUSR1, &sa, NULL);
    struct timespec rem = {0, 0};
    thrd_t t;
    atomic_store(&sleeper_up, 0);
    thrd_create(&t, sleeper, &rem);
    while (!atomic_load(&sleeper_up)) thrd_yield();
    usleep(50000);
    t0 = st_mono_ns();
    pthread_kill(t, SIGUSR1);
    int res = 0;
    thrd_join(t, &res);
    CHECK(res == -1, "thrd_sleep interrupted by a signal returned %d, want -1", res);
    CHECK(rem.tv_sec >= 3 && rem.tv_sec <= 5, "time left %ld s", (long)rem.tv_sec);
    CHECK(st_mono_ns() - t0 < 3000000000LL, "the signal ended the sleep after %.0f ms", st_ms(st_mono_ns() - t0));

    st_phase = "once";
    thrd_t ts[16];
    for (int i = 0; i < 16; i++) thrd_create(&ts[i], call_it, NULL);
    for (int i = 0; i < 16; i++) {
        thrd_join(ts[i], &res);
        CHECK(res == 1, "call_once returned before its function ended (%d runs seen)", res);
    }
    CHECK(atomic_load(&once_runs) == 1, "call_once ran %d times", atomic_load(&once_runs));

    st_phase = "yield";
    atomic_int turn = 0;
    thrd_create(&t, yielder, &turn);
    for (int i = 0; i < 200; i++) {
        while (atomic_load(&turn) % 2 != 0) thrd_yield();
        atomic_fetch_add(&turn, 1);
    }
    thrd_join(t, NULL);
    CHECK(atomic_load(&turn) == 400, "turns %d", atomic_load(&turn));
}

int main(void)
{
    st_watchdog(100);
    mtx_init(&mu, mtx_plain);
    cnd_init(&cv);
    tss_create(&key, key_dtor);
    static const struct st_test tests[] = {
        {"many_parked", test_many_parked}, {"mixed_mutex", test_mixed_mutex},
        {"mixed_cond", test_mixed_cond},   {"results", test_results},
        {"sleep_once", test_sleep_once},
    };
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("c11_threads");
}
