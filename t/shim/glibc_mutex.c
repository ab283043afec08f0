/* glibc_mutex: the mutexes the library leaves to glibc (robust ones, and
 * process-shared ones: LMDB's writer mutex is both), held across a wait
 * while other threads block on them, as slapd's writers do.  glibc names
 * their owner by the thread's id:
 *
 *   handover  for each kind (robust, shared, shared recursive, shared
 *             error-checking; and priority-inheritance ones, plain and
 *             recursive, which the library takes as its own: glibc's would
 *             refuse the unlock of a holder that came back on another
 *             worker, as PulseAudio's mainloop lock in Blender did), a
 *             holder sleeps with it while 3 threads block on it: every
 *             unlock succeeds, each waiter gets it in turn, 20 rounds,
 *             none left waiting
 *   owner     a shared recursive mutex held by one thread is not entered by
 *             another (trylock: EBUSY), whichever worker each runs on; an
 *             error-checking one refuses an unlock by a thread that does
 *             not hold it (EPERM) */
#include "shim_test.h"

enum { kWaiters = 3, kRounds = 20 };

static pthread_mutex_t mx;
static atomic_int held_by, entries, bad_unlock, overlap;

static void *contender(void *arg)
{
    int me = (int)(intptr_t)arg;
    for (int r = 0; r < kRounds; r++) {
        if (pthread_mutex_lock(&mx) != 0) {
            atomic_fetch_add(&bad_unlock, 1);
            return NULL;
        }
        if (atomic_exchange(&held_by, me) != 0) atomic_fetch_add(&overlap, 1);
        atomic_fetch_add(&entries, 1);
        st_sleep_ms(1); /* parked while holding it: the thread may move */
        atomic_store(&held_by, 0);
        if (pthread_mutex_unlock(&mx) != 0) atomic_fetch_add(&bad_unlock, 1);
    }
    return NULL;
}

static void init_kind(int robust, int shared, int type, int pi)
{
    pthread_mutexattr_t at;
    pthread_mutexattr_init(&at);
    if (pi) pthread_mutexattr_setprotocol(&at, PTHREAD_PRIO_INHERIT);
    if (robust) pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
    if (shared) pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_settype(&at, type);
    pthread_mutex_init(&mx, &at);
    pthread_mutexattr_destroy(&at);
}

static void test_handover(void)
{
    static const struct {
        const char *name;
        int robust, shared, type, pi;
    } kinds[] = {
        {"robust", 1, 0, PTHREAD_MUTEX_NORMAL, 0},
        {"robust shared", 1, 1, PTHREAD_MUTEX_NORMAL, 0},
        {"shared recursive", 0, 1, PTHREAD_MUTEX_RECURSIVE, 0},
        {"shared error-checking", 0, 1, PTHREAD_MUTEX_ERRORCHECK, 0},
        {"priority-inheritance", 0, 0, PTHREAD_MUTEX_NORMAL, 1},
        {"priority-inheritance recursive", 0, 0, PTHREAD_MUTEX_RECURSIVE, 1},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        init_kind(kinds[k].robust, kinds[k].shared, kinds[k].type, kinds[k].pi);
        atomic_store(&entries, 0);
        atomic_store(&bad_unlock, 0);
        atomic_store(&overlap, 0);
        pthread_t t[kWaiters + 1];
        for (int i = 0; i <= kWaiters; i++) t[i] = st_spawn(contender, (void *)(intptr_t)(i + 1));
        for (int i = 0; i <= kWaiters; i++) pthread_join(t[i], NULL);
        CHECK(atomic_load(&bad_unlock) == 0 && atomic_load(&overlap) == 0 &&
                  atomic_load(&entries) == (kWaiters + 1) * kRounds,
              "%s: %d failed locks or unlocks, %d overlaps, %d of %d entries", kinds[k].name,
              atomic_load(&bad_unlock), atomic_load(&overlap), atomic_load(&entries), (kWaiters + 1) * kRounds);
        pthread_mutex_destroy(&mx);
    }
}

static atomic_int step;
static void *other(void *arg)
{
    (void)arg;
    while (atomic_load(&step) != 1) st_sleep_ms(1);
    int r = pthread_mutex_trylock(&mx);
    int u = pthread_mutex_unlock(&mx); /* not ours */
    atomic_store(&step, 2);
    return (void *)(intptr_t)(r * 1000 + u);
}

static void test_owner(void)
{
    for (int type = 0; type < 2; type++) {
        init_kind(0, 1, type ? PTHREAD_MUTEX_ERRORCHECK : PTHREAD_MUTEX_RECURSIVE, 0);
        atomic_store(&step, 0);
        pthread_t t = st_spawn(other, NULL);
        CHECK(pthread_mutex_lock(&mx) == 0, "lock");
        st_sleep_ms(2); /* parked holding it */
        atomic_store(&step, 1);
        while (atomic_load(&step) != 2) st_sleep_ms(1);
        void *ru;
        pthread_join(t, &ru);
        int r = (int)(intptr_t)ru / 1000, u = (int)(intptr_t)ru % 1000;
        CHECK(r == EBUSY, "%s: another thread's trylock of a held mutex: %d, want EBUSY",
              type ? "error-checking" : "recursive", r);
        CHECK(u == EPERM, "%s: another thread's unlock: %d, want EPERM", type ? "error-checking" : "recursive", u);
        CHECK(pthread_mutex_unlock(&mx) == 0, "%s: the holder's unlock failed", type ? "error-checking" : "recursive");
        pthread_mutex_destroy(&mx);
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    static const struct st_test tests[] = {{"handover", test_handover}, {"owner", test_owner}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("glibc_mutex");
}
