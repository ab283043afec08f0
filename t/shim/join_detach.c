/* join_detach: who releases a thread when a join and a detach meet, as
 * glibc decides it.  A thread that detaches itself while its joiner
 * already waits stays joinable (the join returns 0: stunnel's threads do
 * this at shutdown); one that detached itself and ended is joined with
 * EINVAL, and every other call on it fails instead of reaching a thread
 * that is gone; a joiner cancelled while it waits gives the thread back,
 * so another join takes it; an asynchronous cancellation ends a thread
 * that waits for a lock. */
#include <fcntl.h>

#include "shim_test.h"

static void *self_detach_late(void *arg)
{
    st_sleep_ms((int)(intptr_t)arg);
    return (void *)(intptr_t)pthread_detach(pthread_self());
}

static atomic_int detach_rc;
static void *self_detach_now(void *arg)
{
    (void)arg;
    atomic_store(&detach_rc, pthread_detach(pthread_self()));
    return NULL;
}

/* The joiner waits first; the thread then detaches itself and returns. */
static void test_join_then_detach(void)
{
    for (int i = 0; i < 20; i++) {
        pthread_t t = st_spawn(self_detach_late, (void *)(intptr_t)(i % 3 == 0 ? 0 : 20));
        void *r = (void *)1;
        int e = pthread_join(t, &r);
        /* i % 3 == 0: the detach may come first, then EINVAL is right too */
        CHECK(e == 0 || (i % 3 == 0 && e == EINVAL), "round %d: join gave %s", i, strerror(e));
        if (e == 0 && i % 3 != 0) CHECK(r == 0, "round %d: the thread's own detach gave %ld, want 0", i, (long)(intptr_t)r);
    }
}

/* The thread detached itself and ended: the join fails, and so does a
 * second detach; under the shim a signal or a name for it is refused too
 * (glibc would reach whatever now runs on that TCB's thread). */
static void test_detached_and_gone(void)
{
    for (int i = 0; i < 10; i++) {
        atomic_store(&detach_rc, -1);
        pthread_t t = st_spawn(self_detach_now, NULL);
        /* Detached, then ended: on a loaded machine either may take long. */
        for (int w = 0; w < 1000 && atomic_load(&detach_rc) == -1; w++) st_sleep_ms(5);
        st_sleep_ms(30);
        for (int w = 0; st_under_shim() && w < 1000 && pthread_kill(t, 0) == 0; w++) st_sleep_ms(5);
        CHECK(atomic_load(&detach_rc) == 0, "round %d: pthread_detach(pthread_self()) gave %d", i,
              atomic_load(&detach_rc));
        int e = pthread_join(t, NULL);
        CHECK(e == EINVAL, "round %d: join of a detached, ended thread gave %s, want EINVAL", i, strerror(e));
        if (st_under_shim()) {
            CHECK(pthread_detach(t) == EINVAL, "round %d: detach of an ended thread did not fail", i);
            CHECK(pthread_kill(t, SIGUSR1) == ESRCH, "round %d: pthread_kill of an ended thread did not give ESRCH",
                  i);
            CHECK(pthread_setname_np(t, "gone") == ESRCH, "round %d: pthread_setname_np of an ended thread", i);
        }
    }
}

static int gate[2];
static void *blocked_reader(void *arg)
{
    (void)arg;
    char c;
    return (void *)(intptr_t)read(gate[0], &c, 1);
}

static void *joiner(void *arg)
{
    pthread_join(*(pthread_t *)arg, NULL);
    return (void *)2;
}

/* A joiner cancelled while it waits: the thread can be joined again. */
static void test_cancelled_joiner(void)
{
    CHECK(pipe(gate) == 0, "pipe");
    pthread_t t = st_spawn(blocked_reader, NULL);
    pthread_t j = st_spawn(joiner, &t);
    st_sleep_ms(50);
    pthread_cancel(j);
    void *jr = NULL;
    pthread_join(j, &jr);
    CHECK(jr == PTHREAD_CANCELED, "the joiner did not end cancelled");
    CHECK(write(gate[1], "x", 1) == 1, "write");
    void *r = NULL;
    int e = pthread_join(t, &r);
    CHECK(e == 0 && (intptr_t)r == 1, "join after a cancelled joiner: %s, result %ld", strerror(e),
          (long)(intptr_t)r);
    close(gate[0]);
    close(gate[1]);
}

/* Asynchronous cancellation of a thread waiting for a lock (uwsgi stops
 * its threads so at a reload): it ends, cancelled, without the lock. */
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static void *async_waiter(void *arg)
{
    (void)arg;
    pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, NULL);
    pthread_mutex_lock(&held);
    pthread_mutex_unlock(&held);
    return NULL;
}

static void test_async_cancel(void)
{
    pthread_mutex_lock(&held);
    pthread_t t = st_spawn(async_waiter, NULL);
    st_sleep_ms(50);
    pthread_cancel(t);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 3;
    void *r = NULL;
    int e = pthread_timedjoin_np(t, &r, &until);
    CHECK(e == 0 && r == PTHREAD_CANCELED, "async cancel of a thread waiting for a lock: join %s, %s", strerror(e),
          r == PTHREAD_CANCELED ? "cancelled" : "not cancelled");
    pthread_mutex_unlock(&held);
    if (e) pthread_join(t, NULL);
    CHECK(pthread_mutex_trylock(&held) == 0, "the lock is taken after the cancelled waiter");
    pthread_mutex_unlock(&held);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    static const struct st_test tests[] = {
        {"join-then-detach", test_join_then_detach},
        {"detached-and-gone", test_detached_and_gone},
        {"cancelled-joiner", test_cancelled_joiner},
        {"async-cancel", test_async_cancel},
    };
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("join_detach");
}
