/* Green-aware mutex and condition variable: exact counts under contention
 * across workers, no lost wake-ups, timeouts, plain OS threads mixed in,
 * and the error cases. */
#include <pthread.h>

#include "np_test.h"

static np_mutex mu = NP_MUTEX_INITIALIZER;
static np_cond cv = NP_COND_INITIALIZER;
static long counter;
static atomic_int finished;

enum { THREADS = 64, ITERS = 2000 };

static void incr(void *a) {
    (void)a;
    for (int i = 0; i < ITERS; i++) {
        cr_assert_eq(np_mutex_lock(&mu), 0);
        long v = counter;
        if (i % 7 == 0) np_yield(); /* hold it across a switch */
        counter = v + 1;
        cr_assert_eq(np_mutex_unlock(&mu), 0);
    }
    atomic_fetch_add(&finished, 1);
}

static void *plain_incr(void *a) {
    incr(a);
    return NULL;
}

static int contention(void *a) {
    (void)a;
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, plain_incr, NULL);
    for (int i = 0; i < THREADS; i++) np_go(incr, NULL);
    int64_t end = np_now() + 50000 * MS;
    while (atomic_load(&finished) < THREADS + 2 && np_now() < end) np_sleep(MS);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    cr_assert_eq(counter, (long)(THREADS + 2) * ITERS);
    return 0;
}

Test(sync, mutex_contention_exact_count, .timeout = 60) {
    np_test_init("epoll", 2);
    run_green(contention, NULL);
}

/* Producer/consumer through a condition variable: every item arrives. */
static int queue_len, produced, consumed_total;
enum { ITEMS = 20000, CONSUMERS = 8 };

static void consumer(void *a) {
    (void)a;
    np_mutex_lock(&mu);
    for (;;) {
        while (queue_len == 0 && produced < ITEMS) np_cond_wait(&cv, &mu);
        if (queue_len == 0 && produced >= ITEMS) break;
        queue_len--;
        consumed_total++;
    }
    np_mutex_unlock(&mu);
    atomic_fetch_add(&finished, 1);
}

static int prodcons(void *a) {
    (void)a;
    for (int i = 0; i < CONSUMERS; i++) np_go(consumer, NULL);
    for (int i = 0; i < ITEMS; i++) {
        np_mutex_lock(&mu);
        queue_len++;
        produced++;
        if (produced == ITEMS) np_cond_broadcast(&cv);
        else np_cond_signal(&cv);
        np_mutex_unlock(&mu);
        if (i % 64 == 0) np_yield();
    }
    int64_t end = np_now() + 30000 * MS;
    while (atomic_load(&finished) < CONSUMERS && np_now() < end) np_sleep(MS);
    cr_assert_eq(atomic_load(&finished), CONSUMERS, "a consumer missed its wake-up");
    cr_assert_eq(consumed_total, ITEMS);
    return 0;
}

Test(sync, cond_no_lost_wakeups, .timeout = 60) {
    np_test_init("epoll", 2);
    run_green(prodcons, NULL);
}

static int timedwait(void *a) {
    (void)a;
    np_mutex_lock(&mu);
    int64_t t0 = np_now();
    int r = np_cond_timedwait(&cv, &mu, t0 + 30 * MS);
    int64_t el = np_now() - t0;
    cr_assert_eq(r, -ETIMEDOUT);
    cr_assert_geq(el, 30 * MS);
    cr_assert_lt(el, 1000 * MS);
    /* The mutex is held again after a timeout. */
    cr_assert_eq(np_mutex_trylock(&mu), -EBUSY);
    cr_assert_eq(np_cond_destroy(&cv), 0, "the timed-out waiter left the queue");
    np_mutex_unlock(&mu);
    return 0;
}

Test(sync, cond_timedwait_green) { run_green(timedwait, NULL); }

Test(sync, cond_timedwait_plain_thread) { cr_assert_eq(timedwait(NULL), 0); }

static void signal_later(void *a) {
    (void)a;
    np_sleep(20 * MS);
    np_mutex_lock(&mu);
    counter = 1;
    np_cond_signal(&cv);
    np_mutex_unlock(&mu);
}

/* A plain OS thread waits, a green thread signals. */
Test(sync, plain_waiter_green_signaller) {
    np_go(signal_later, NULL);
    np_mutex_lock(&mu);
    while (!counter) cr_assert_eq(np_cond_timedwait(&cv, &mu, np_now() + 5000 * MS), 0);
    np_mutex_unlock(&mu);
}

static int errors(void *a) {
    (void)a;
    np_mutex m;
    np_cond c;
    cr_assert_eq(np_mutex_init(&m), 0);
    cr_assert_eq(np_cond_init(&c), 0);
    cr_assert_eq(np_mutex_unlock(&m), -EPERM, "unlocking an unlocked mutex");
    cr_assert_eq(np_mutex_lock(&m), 0);
    cr_assert_eq(np_mutex_lock(&m), -EDEADLK, "relocking from the owner");
    cr_assert_eq(np_mutex_trylock(&m), -EBUSY);
    cr_assert_eq(np_mutex_destroy(&m), -EBUSY);
    cr_assert_eq(np_mutex_unlock(&m), 0);
    cr_assert_eq(np_cond_wait(&c, &m), -EPERM, "waiting without the mutex");
    cr_assert_eq(np_mutex_destroy(&m), 0);
    cr_assert_eq(np_cond_destroy(&c), 0);
    cr_assert_eq(np_mutex_lock(NULL), -EINVAL);
    cr_assert_eq(np_mutex_unlock(NULL), -EINVAL);
    cr_assert_eq(np_cond_wait(NULL, &m), -EINVAL);
    cr_assert_eq(np_cond_wait(&c, NULL), -EINVAL);
    cr_assert_eq(np_cond_signal(NULL), -EINVAL);
    cr_assert_eq(np_cond_broadcast(NULL), -EINVAL);
    return 0;
}

Test(sync, bad_input) { run_green(errors, NULL); }

static np_mutex owner_mu = NP_MUTEX_INITIALIZER;
static void *foreign_unlock(void *a) {
    *(int *)a = np_mutex_unlock(&owner_mu);
    return NULL;
}

static int non_owner(void *a) {
    (void)a;
    np_mutex_lock(&owner_mu);
    int r = 1;
    np_thread *t;
    np_spawn(&t, foreign_unlock, &r);
    np_join(t, NULL);
    cr_assert_eq(r, -EPERM, "another thread unlocked our mutex");
    np_mutex_unlock(&owner_mu);
    return 0;
}

Test(sync, unlock_by_non_owner) { run_green(non_owner, NULL); }
