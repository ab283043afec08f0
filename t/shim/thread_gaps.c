/* thread_gaps: pthread semantics a green thread must keep where glibc
 * leans on the kernel's view of OS threads.
 *
 *  - robust: a thread that ends holding a robust mutex makes the next
 *    locker get EOWNERDEAD (the kernel walks an exiting OS thread's robust
 *    list; a green thread's is its own TCB's), then ENOTRECOVERABLE when
 *    it is unlocked without pthread_mutex_consistent.
 *  - cancel-waits: pthread_cancel reaches a thread waiting in waitpid(),
 *    wait(), waitid() and fcntl(F_SETLKW) (calls that wait in the kernel on
 *    the worker), runs its cleanup handlers and ends it PTHREAD_CANCELED.
 *  - sigqueue: pthread_sigqueue to a thread waiting in sigwaitinfo (and to
 *    one with an SA_SIGINFO handler) delivers the signal, with SI_QUEUE and
 *    its si_value.
 *  - timedlock-time: pthread_mutex_timedlock looks at the time only when
 *    it must wait: a free mutex is taken with a tv_nsec out of range (as
 *    glibc), one's own errorcheck mutex gives EDEADLK, a held one EINVAL. */
#include "shim_test.h"

#include <fcntl.h>
#include <sys/file.h>

/* ------------------------------------------------------------ robust -- */

static pthread_mutex_t rm;

static void *lock_and_end(void *arg)
{
    (void)arg;
    CHECK(pthread_mutex_lock(&rm) == 0, "owner: lock");
    return NULL; /* ends holding it */
}

struct locker {
    int lock, consistent, unlock;
    int do_consistent;
};

static void *lock_after_death(void *arg)
{
    struct locker *l = arg;
    l->lock = pthread_mutex_lock(&rm);
    if (l->lock == EOWNERDEAD && l->do_consistent) l->consistent = pthread_mutex_consistent(&rm);
    if (l->lock == 0 || l->lock == EOWNERDEAD) l->unlock = pthread_mutex_unlock(&rm);
    return NULL;
}

static int join_within(pthread_t t, int ms)
{
    struct timespec dl = st_deadline(CLOCK_REALTIME, ms);
    int e = pthread_timedjoin_np(t, NULL, &dl);
    if (e) pthread_detach(t);
    return e == 0;
}

static void test_robust(void)
{
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&rm, &ma);

    for (int consistent = 1; consistent >= 0; consistent--) {
        pthread_join(st_spawn(lock_and_end, NULL), NULL);
        struct locker l = {-1, -1, -1, consistent};
        int joined = join_within(st_spawn(lock_after_death, &l), 3000);
        CHECK(joined, "the next locker of a robust mutex whose owner ended was still waiting after 3 s");
        if (!joined) return;
        CHECK(l.lock == EOWNERDEAD, "the next lock gave %s, want EOWNERDEAD", strerrorname_np(l.lock));
        if (consistent) CHECK(l.consistent == 0, "pthread_mutex_consistent: %s", strerrorname_np(l.consistent));
        CHECK(l.unlock == 0, "unlock after EOWNERDEAD: %s", strerrorname_np(l.unlock));
    }
    /* The second round unlocked it without making it consistent. */
    int e = pthread_mutex_lock(&rm);
    CHECK(e == ENOTRECOVERABLE, "lock after an unlock without consistent gave %s, want ENOTRECOVERABLE",
          strerrorname_np(e));

    /* A locker already waiting when the owner ends is woken. */
    pthread_mutex_init(&rm, &ma);
    pthread_mutex_lock(&rm);
    struct locker l = {-1, -1, -1, 1};
    pthread_t w = st_spawn(lock_after_death, &l);
    st_sleep_ms(100);
    pthread_mutex_unlock(&rm);
    CHECK(join_within(w, 3000), "a plain handover hung");
    pthread_mutex_init(&rm, &ma);
    atomic_int held = 0;
    (void)held;
    pthread_join(st_spawn(lock_and_end, NULL), NULL);
    l = (struct locker){-1, -1, -1, 1};
    CHECK(join_within(st_spawn(lock_after_death, &l), 3000) && l.lock == EOWNERDEAD,
          "second robust mutex: lock gave %s", strerrorname_np(l.lock));
}

/* ------------------------------------------------------ cancel-waits -- */

static atomic_int entered, cleaned;
static int lock_fd = -1;

static void on_cleanup(void *arg)
{
    (void)arg;
    atomic_fetch_add(&cleaned, 1);
}

static void *waiter(void *arg)
{
    const char *how = arg;
    pthread_cleanup_push(on_cleanup, NULL);
    atomic_store(&entered, 1);
    if (!strcmp(how, "waitpid")) waitpid(-1, NULL, 0);
    else if (!strcmp(how, "wait")) wait(NULL);
    else if (!strcmp(how, "waitid")) {
        siginfo_t si;
        waitid(P_ALL, 0, &si, WEXITED);
    } else {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        fcntl(lock_fd, F_SETLKW, &fl);
    }
    pthread_cleanup_pop(0);
    return (void *)1;
}

static void cancel_in(const char *how)
{
    atomic_store(&entered, 0);
    atomic_store(&cleaned, 0);
    pid_t child = fork();
    if (child == 0) {
        if (!strcmp(how, "F_SETLKW")) { /* holds the lock until killed */
            struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
            fcntl(lock_fd, F_SETLK, &fl);
        }
        pause();
        _exit(0);
    }
    st_sleep_ms(100);
    pthread_t t = st_spawn(waiter, (void *)how);
    st_wait_for(&entered, 1, 3000);
    st_sleep_ms(200); /* in the call */
    CHECK(pthread_cancel(t) == 0, "%s: pthread_cancel", how);
    int ok = st_wait_for(&cleaned, 1, 3000);
    CHECK(ok, "%s: a thread waiting there was not cancelled within 3 s", how);
    kill(child, SIGKILL);
    if (ok) {
        void *r = NULL;
        pthread_join(t, &r);
        CHECK(r == PTHREAD_CANCELED, "%s: the thread ended with %p, want PTHREAD_CANCELED", how, r);
    } else {
        pthread_detach(t); /* the child's death ends its wait */
        st_sleep_ms(200);
    }
    while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {}
}

static void test_cancel_waits(void)
{
    char path[] = "/tmp/thread_gaps.XXXXXX";
    lock_fd = mkstemp(path);
    CHECK(lock_fd >= 0, "mkstemp: %s", strerror(errno));
    unlink(path);
    cancel_in("waitpid");
    cancel_in("wait");
    cancel_in("waitid");
    if (lock_fd >= 0) cancel_in("F_SETLKW");
    close(lock_fd);
}

/* ---------------------------------------------------------- sigqueue -- */

static atomic_int got_code, got_value, got_signo;

static void *sigwaiter(void *arg)
{
    (void)arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN + 1);
    siginfo_t si;
    struct timespec ts = {3, 0};
    atomic_store(&got_signo, sigtimedwait(&s, &si, &ts));
    atomic_store(&got_code, si.si_code);
    atomic_store(&got_value, si.si_value.sival_int);
    return NULL;
}

static pthread_t handler_thread;
static atomic_int handler_ok;
static void on_rt(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    atomic_store(&got_signo, sig);
    atomic_store(&got_code, si->si_code);
    atomic_store(&got_value, si->si_value.sival_int);
    atomic_store(&handler_ok, pthread_equal(pthread_self(), handler_thread) ? 1 : 2);
}
static atomic_int stop_spin;
static void *unblocked(void *arg)
{
    (void)arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN + 2);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    while (!atomic_load(&stop_spin) && !atomic_load(&handler_ok)) st_sleep_ms(5);
    return NULL;
}

static void test_sigqueue(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN + 1);
    sigaddset(&s, SIGRTMIN + 2);
    pthread_sigmask(SIG_BLOCK, &s, NULL);

    /* Left at its default action, blocked and waited for. */
    pthread_t w = st_spawn(sigwaiter, NULL);
    st_sleep_ms(100);
    CHECK(pthread_sigqueue(w, SIGRTMIN + 1, (union sigval){.sival_int = 4242}) == 0, "pthread_sigqueue");
    pthread_join(w, NULL);
    CHECK(atomic_load(&got_signo) == SIGRTMIN + 1, "sigtimedwait gave %d, want %d", atomic_load(&got_signo),
          SIGRTMIN + 1);
    CHECK(atomic_load(&got_code) == SI_QUEUE && atomic_load(&got_value) == 4242,
          "sigtimedwait: si_code %d si_value %d, want SI_QUEUE 4242", atomic_load(&got_code),
          atomic_load(&got_value));

    /* A handler, on the one thread it was sent to. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGRTMIN + 2, &sa, NULL);
    atomic_store(&got_code, 0);
    atomic_store(&got_value, 0);
    handler_thread = st_spawn(unblocked, NULL);
    st_sleep_ms(100);
    CHECK(pthread_sigqueue(handler_thread, SIGRTMIN + 2, (union sigval){.sival_int = 77}) == 0,
          "pthread_sigqueue to a handler");
    st_wait_for(&handler_ok, 1, 3000);
    atomic_store(&stop_spin, 1);
    pthread_join(handler_thread, NULL);
    CHECK(atomic_load(&handler_ok) == 1, "the handler ran %s", atomic_load(&handler_ok) ? "on another thread" : "nowhere");
    CHECK(atomic_load(&got_code) == SI_QUEUE && atomic_load(&got_value) == 77,
          "handler: si_code %d si_value %d, want SI_QUEUE 77", atomic_load(&got_code), atomic_load(&got_value));
}

/* --------------------------------------------------- timedlock-time -- */

static pthread_mutex_t tm;
static void *hold_tm(void *arg)
{
    (void)arg;
    struct timespec bad = {0, 1000000000};
    return (void *)(intptr_t)pthread_mutex_timedlock(&tm, &bad);
}

static void test_timedlock_time(void)
{
    struct timespec bad = {0, 1000000000};
    pthread_mutex_init(&tm, NULL);
    int e = pthread_mutex_timedlock(&tm, &bad);
    CHECK(e == 0, "timedlock of a free mutex, tv_nsec 1e9: %s, want 0", strerrorname_np(e));
    void *r;
    pthread_join(st_spawn(hold_tm, NULL), &r);
    CHECK((intptr_t)r == EINVAL, "timedlock of a held mutex, tv_nsec 1e9: %s, want EINVAL",
          strerrorname_np((int)(intptr_t)r));
    if (e == 0) pthread_mutex_unlock(&tm);
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&tm, &ma);
    pthread_mutex_lock(&tm);
    e = pthread_mutex_timedlock(&tm, &bad);
    CHECK(e == EDEADLK, "timedlock of one's own errorcheck mutex, tv_nsec 1e9: %s, want EDEADLK",
          strerrorname_np(e));
    pthread_mutex_unlock(&tm);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    static const struct st_test tests[] = {
        {"robust", test_robust},
        {"cancel-waits", test_cancel_waits},
        {"sigqueue", test_sigqueue},
        {"timedlock-time", test_timedlock_time},
    };
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("thread_gaps");
}
