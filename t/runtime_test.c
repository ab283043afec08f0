/* Green threads: spawn/join, detached threads, sleep, yield, np_main, calls
 * from plain OS threads, statistics, configuration and bad input. */
#include <pthread.h>
#include <sched.h>

#include "np_test.h"

static void *add_one(void *a) { return (void *)((intptr_t)a + 1); }

static int spawn_join_many(void *arg) {
    int n = *(int *)arg;
    np_thread **t = malloc(sizeof *t * (size_t)n);
    for (int i = 0; i < n; i++) cr_assert_eq(np_spawn(&t[i], add_one, (void *)(intptr_t)i), 0);
    for (int i = 0; i < n; i++) {
        void *r = NULL;
        cr_assert_eq(np_join(t[i], &r), 0);
        cr_assert_eq((intptr_t)r, i + 1);
    }
    free(t);
    return 0;
}

Test(runtime, spawn_join_100k, .timeout = 60) {
    SKIP_UNDER_VALGRIND();
    SKIP_UNDER_TSAN("a scale test");
    int n = 100000;
    run_green(spawn_join_many, &n);
    np_stats s = {.size = sizeof s};
    cr_assert_eq(np_stats_get(&s), 0);
    cr_assert_eq(s.threads, 0, "threads left: %llu", (unsigned long long)s.threads);
    cr_assert_geq(s.spawned, 100001);
}

static atomic_int detached_done;
static void detached(void *a) {
    np_yield();
    atomic_fetch_add(&detached_done, (int)(intptr_t)a);
}

static int run_detached(void *arg) {
    (void)arg;
    for (int i = 0; i < 10000; i++) cr_assert_eq(np_go(detached, (void *)1), 0);
    int64_t end = np_now() + 20000 * MS;
    while (atomic_load(&detached_done) < 10000 && np_now() < end) np_sleep(MS);
    cr_assert_eq(atomic_load(&detached_done), 10000);
    return 0;
}

Test(runtime, detached_threads) {
    SKIP_UNDER_TSAN("a scale test");
    run_green(run_detached, NULL);
}

static int returns_42(void *a) {
    (void)a;
    return 42;
}

Test(runtime, main_returns_result) {
    cr_assert_eq(np_main(returns_42, NULL), 42);
    /* np_main again, and nested from a green thread. */
    cr_assert_eq(np_main(returns_42, NULL), 42);
}

static int nested_main(void *a) {
    (void)a;
    return np_main(returns_42, NULL) == 42 ? 0 : 1;
}

Test(runtime, main_nested) { run_green(nested_main, NULL); }

static int sleep_accuracy(void *a) {
    (void)a;
    int64_t ds[] = {1, 1000, 100 * US, MS, 5 * MS, 20 * MS, 100 * MS};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) {
        int64_t t0 = np_now();
        cr_assert_eq(np_sleep(ds[i]), 0);
        int64_t el = np_now() - t0;
        cr_assert_geq(el, ds[i], "slept %lld < %lld", (long long)el, (long long)ds[i]);
        /* Not grossly late: a generous bound for a shared machine. */
        cr_assert_lt(el, ds[i] + 200 * MS, "slept %lld for %lld", (long long)el, (long long)ds[i]);
    }
    return 0;
}

Test(runtime, sleep_never_early) { run_green(sleep_accuracy, NULL); }

static atomic_int sleepers_done;
static void sleeper(void *a) {
    (void)a;
    np_sleep(100 * MS);
    atomic_fetch_add(&sleepers_done, 1);
}

static int concurrent_sleepers(void *a) {
    (void)a;
    int64_t t0 = np_now();
    for (int i = 0; i < 1000; i++) np_go(sleeper, NULL);
    while (atomic_load(&sleepers_done) < 1000) np_sleep(MS);
    int64_t el = np_now() - t0;
    /* 1000 sleeps of 100 ms in parallel: far from 100 s serialised. */
    cr_assert_lt(el, 2000 * MS, "took %lld ms", (long long)(el / MS));
    return 0;
}

Test(runtime, sleepers_do_not_serialize) {
    SKIP_UNDER_TSAN("a timing test");
    run_green(concurrent_sleepers, NULL);
}

static atomic_long counts[4];
static atomic_int yield_stop;
static void yielder(void *a) {
    int i = (int)(intptr_t)a;
    while (!atomic_load(&yield_stop)) {
        atomic_fetch_add(&counts[i], 1);
        np_yield();
    }
}

static int yield_fairness(void *a) {
    (void)a;
    for (int i = 0; i < 4; i++) np_go(yielder, (void *)(intptr_t)i);
    np_sleep(200 * MS);
    atomic_store(&yield_stop, 1);
    np_sleep(20 * MS);
    long mn = counts[0], mx = counts[0];
    for (int i = 1; i < 4; i++) {
        if (counts[i] < mn) mn = counts[i];
        if (counts[i] > mx) mx = counts[i];
    }
    cr_assert_gt(mn, 1000, "a yielder barely ran: %ld", mn);
    cr_assert_lt(mx, mn * 3, "unfair: min %ld max %ld", mn, mx);
    return 0;
}

/* One worker: round-robin among yielders is strict. */
Test(runtime, yield_fairness) {
    np_test_init("epoll", 1);
    run_green(yield_fairness, NULL);
}

/* Threads readied from outside the workers wait in the global queue, which
 * a worker busy with threads of its own looks at only now and then: they
 * must not each wait for a look of their own (one per 61 switches), but go
 * in batches, as Go's do.  Counted in yields, not time: 300 threads taken
 * one a look would wait about 18,000 of them. */
#define GLOBAL_N 300
static atomic_long g_yields, g_last_start;
static atomic_int g_started, g_stop;
static void g_spinner(void *a) {
    (void)a;
    while (!atomic_load(&g_stop)) {
        atomic_fetch_add(&g_yields, 1);
        np_yield();
    }
}
static void g_record(void *a) {
    (void)a;
    atomic_store(&g_last_start, atomic_load(&g_yields));
    atomic_fetch_add(&g_started, 1);
}
static void *g_outside(void *a) {
    long *from = a;
    *from = atomic_load(&g_yields);
    for (int i = 0; i < GLOBAL_N; i++) cr_assert_eq(np_go(g_record, NULL), 0);
    return NULL;
}
static int global_batches(void *a) {
    (void)a;
    for (int i = 0; i < 2; i++) np_go(g_spinner, NULL);
    while (atomic_load(&g_yields) < 1000) np_sleep(MS);
    pthread_t t;
    long from = 0;
    cr_assert_eq(pthread_create(&t, NULL, g_outside, &from), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    int64_t end = np_now() + 10000 * MS;
    while (atomic_load(&g_started) < GLOBAL_N && np_now() < end) np_sleep(MS);
    atomic_store(&g_stop, 1);
    cr_assert_eq(atomic_load(&g_started), GLOBAL_N);
    long waited = atomic_load(&g_last_start) - from;
    cr_assert_lt(waited, 3000, "the last of %d threads from outside ran %ld yields later", GLOBAL_N, waited);
    np_sleep(10 * MS);
    return 0;
}

Test(runtime, global_queue_taken_in_batches, .timeout = 60) {
    np_test_init("epoll", 1);
    run_green(global_batches, NULL);
}

static void *plain_spawner(void *a) {
    (void)a;
    np_thread *t;
    cr_assert_eq(np_spawn(&t, add_one, (void *)41), 0);
    void *r;
    cr_assert_eq(np_join(t, &r), 0);
    cr_assert_eq((intptr_t)r, 42);
    int64_t t0 = np_now();
    cr_assert_eq(np_sleep(20 * MS), 0);
    cr_assert_geq(np_now() - t0, 20 * MS);
    cr_assert_eq(np_in_green(), 0);
    np_yield(); /* sched_yield on a plain thread */
    return NULL;
}

Test(runtime, from_plain_os_threads) {
    pthread_t th[4];
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, plain_spawner, NULL);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
}

static void set_flag(void *a) { atomic_store((atomic_int *)a, 1); }

Test(runtime, go_from_plain_thread_starts_runtime) {
    atomic_int flag = 0;
    cr_assert_eq(np_go(set_flag, &flag), 0);
    int64_t end = np_now() + 5000 * MS;
    while (!atomic_load(&flag) && np_now() < end) usleep(1000);
    cr_assert_eq(atomic_load(&flag), 1);
}

static int in_green(void *a) {
    (void)a;
    return np_in_green() ? 0 : 1;
}

Test(runtime, in_green) { run_green(in_green, NULL); }

static np_thread *_Atomic self_handle;
static void *join_self(void *a) {
    (void)a;
    while (!atomic_load(&self_handle)) np_yield();
    return (void *)(intptr_t)np_join(atomic_load(&self_handle), NULL);
}

static int joins_itself(void *a) {
    (void)a;
    np_thread *t;
    cr_assert_eq(np_spawn(&t, join_self, NULL), 0);
    atomic_store(&self_handle, t);
    void *r;
    cr_assert_eq(np_join(t, &r), 0);
    cr_assert_eq((intptr_t)r, -EDEADLK, "a thread joining itself: %ld", (long)(intptr_t)r);
    return 0;
}

Test(runtime, join_self_is_edeadlk) { run_green(joins_itself, NULL); }

Test(runtime, bad_input) {
    cr_assert_eq(np_main(NULL, NULL), -EINVAL);
    cr_assert_eq(np_go(NULL, NULL), -EINVAL);
    np_thread *t;
    cr_assert_eq(np_spawn(NULL, add_one, NULL), -EINVAL);
    cr_assert_eq(np_spawn(&t, NULL, NULL), -EINVAL);
    cr_assert_eq(np_join(NULL, NULL), -EINVAL);
    cr_assert_eq(np_stats_get(NULL), -EINVAL);
    np_stats s = {.size = 1};
    cr_assert_eq(np_stats_get(&s), -EINVAL);
}

Test(runtime, errno_untouched) {
    errno = 1234;
    np_fd *p;
    cr_assert_eq(np_open(-1, &p), -EBADF);
    cr_assert_eq(np_open(999999, &p), -EBADF);
    np_sleep(1000);
    cr_assert_eq(errno, 1234);
}

Test(config, bad_config) {
    np_config c = {0};
    c.size = 4; /* smaller than size + procs */
    cr_assert_eq(np_init(&c), -EINVAL);
    memset(&c, 0, sizeof c);
    c.size = sizeof c;
    c.poller = "kqueue-on-linux";
    cr_assert_eq(np_init(&c), -EINVAL);
    c.poller = NULL;
    c.procs = -1;
    cr_assert_eq(np_init(&c), -EINVAL);
    c.procs = 0;
    c.stack_size = 100; /* below the minimum */
    cr_assert_eq(np_init(&c), -EINVAL);
    c.stack_size = 0;
    c.flags = 0x80;
    cr_assert_eq(np_init(&c), -EINVAL);
    c.flags = 0;
    cr_assert_eq(np_init(&c), 0);
    c.procs = 1; /* running with another config */
    c.poller = "poll";
    cr_assert_eq(np_init(&c), -EBUSY);
}

Test(config, older_smaller_struct) {
    /* A caller that only knows size and procs. */
    struct {
        size_t size;
        int procs;
    } old = {sizeof old, 1};
    cr_assert_eq(np_init((np_config *)&old), 0);
    np_stats s = {.size = sizeof s};
    np_stats_get(&s);
    cr_assert_eq(s.workers, 1);
}

Test(config, env_garbage_uses_defaults, .init = cr_redirect_stderr) {
    setenv("NP_PROCS", "lots", 1);
    setenv("NP_STACK_SIZE", "12zz", 1);
    setenv("NP_POLLER", "carrier-pigeon", 1);
    cr_assert_eq(np_init(NULL), 0);
    cr_assert_eq(np_main(returns_42, NULL), 42);
    char buf[1024];
    captured_stderr(buf, sizeof buf);
    cr_assert(strstr(buf, "NP_PROCS=\"lots\""), "stderr: %s", buf);
    cr_assert(strstr(buf, "NP_STACK_SIZE=\"12zz\""), "stderr: %s", buf);
    cr_assert(strstr(buf, "NP_POLLER=\"carrier-pigeon\""), "stderr: %s", buf);
    np_stats s = {.size = sizeof s};
    np_stats_get(&s);
    cr_assert_eq(s.workers, (uint64_t)np_test_cpus());
}

Test(config, env_values) {
    setenv("NP_PROCS", "3", 1);
    setenv("NP_STACK_SIZE", "128k", 1);
    cr_assert_eq(np_init(NULL), 0);
    np_stats s = {.size = sizeof s};
    np_stats_get(&s);
    cr_assert_eq(s.workers, 3);
}

static void *deep(void *a) {
    /* Uses ~100 KiB of stack: fits only the bigger stacks. */
    volatile char buf[100 * 1024];
    buf[0] = 1;
    buf[sizeof buf - 1] = (char)(intptr_t)a;
    return (void *)(intptr_t)(buf[0] + buf[sizeof buf - 1]);
}

Test(config, stack_size_is_honoured) {
    np_config c = {.size = sizeof c, .stack_size = 256 * 1024};
    cr_assert_eq(np_init(&c), 0);
    np_thread *t;
    cr_assert_eq(np_spawn(&t, deep, (void *)2), 0);
    void *r;
    np_join(t, &r);
    cr_assert_eq((intptr_t)r, 3);
}

/* Unbounded recursion, a page-sized frame at a time (as real overflows go). */
#pragma GCC diagnostic ignored "-Winfinite-recursion"
static int recurse(int n) {
    volatile char buf[1024];
    buf[0] = (char)n;
    return recurse(n + 1) + buf[0];
}

static void *overflow(void *a) { return (void *)(intptr_t)recurse((int)(intptr_t)a); }

/* The first stacks have guard pages: overflow is a clean crash, reported. */
Test(config, stack_overflow_detected, .signal = SIGSEGV, .init = cr_redirect_stderr) {
    np_thread *t;
    np_spawn(&t, overflow, (void *)1);
    np_join(t, NULL);
}

Test(stats, counts) {
    np_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    cr_assert_eq(np_stats_get(&s), 0);
    cr_assert_eq(s.size, sizeof s);
    cr_assert_geq(s.workers, 1);
    cr_assert_gt(s.alloc_bytes, 0, "the engine's arena reports its bytes");
    /* A caller with an older, smaller struct gets only what it has. */
    struct {
        size_t size;
        uint64_t threads;
    } old = {sizeof old, 99};
    cr_assert_eq(np_stats_get((np_stats *)&old), 0);
    cr_assert_eq(old.threads, 0);
}
