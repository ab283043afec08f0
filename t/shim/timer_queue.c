/* timer_queue: a POSIX timer's signal is queued apart from other timers',
 * as the kernel queues it, even on a standard signal.  The kernel hands
 * each expiry to the library; merging them there lost most of them.
 *
 * busy: two threads compute while 10 rounds of 20 one-shot timers on
 * SIGUSR2 (then SIGRTMIN) expire 5 us apart, each round a new set: the
 * handler runs once for each of the 200 timers, with its own sigev_value,
 * and no overrun.
 * blocked: 20 timers expire together while the only thread blocks the
 * signal; once let through, the handler runs once for each.
 * overrun: a 1 ms periodic timer whose signal the thread blocks for 100 ms:
 * once let through, the handler's first run has an si_overrun that counts
 * the expiries missed meanwhile. */
#include <signal.h>
#include <time.h>

#include "shim_test.h"

#define TIMERS 200
#define ROUND 20

static atomic_int runs, seen[TIMERS], overruns, first_overrun = -1;

static void on_timer(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    if (atomic_fetch_add(&runs, 1) == 0) atomic_store(&first_overrun, si->si_overrun);
    if (si->si_code == SI_TIMER && si->si_value.sival_int >= 0 && si->si_value.sival_int < TIMERS) {
        atomic_fetch_add(&seen[si->si_value.sival_int], 1);
        atomic_fetch_add(&overruns, si->si_overrun);
    }
}

static void handle(int sig)
{
    struct sigaction sa = {.sa_sigaction = on_timer, .sa_flags = SA_SIGINFO | SA_RESTART};
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(sig, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
}

static void block(int sig, int how)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    CHECK(pthread_sigmask(how, &set, NULL) == 0, "pthread_sigmask: %s", strerror(errno));
}

static void reset(void)
{
    atomic_store(&runs, 0), atomic_store(&overruns, 0), atomic_store(&first_overrun, -1);
    for (int i = 0; i < TIMERS; i++) atomic_store(&seen[i], 0);
}

/* Timers first..first+n-1, expiring `ms` from now, `gap_ns` apart. */
static void arm(timer_t *id, int sig, int first, int n, long ms, long gap_ns)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    for (int i = first; i < first + n; i++) {
        struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = sig, .sigev_value.sival_int = i};
        CHECK(timer_create(CLOCK_MONOTONIC, &ev, &id[i]) == 0, "timer_create: %s", strerror(errno));
        long ns = now.tv_nsec + ms * 1000000L + (i - first) * gap_ns;
        struct itimerspec at = {.it_value = {now.tv_sec + ns / 1000000000L, ns % 1000000000L}};
        CHECK(timer_settime(id[i], TIMER_ABSTIME, &at, NULL) == 0, "timer_settime: %s", strerror(errno));
    }
}

/* Every timer of 0..n-1 ran the handler once; then they go. */
static void check_all(timer_t *id, int n, const char *name)
{
    for (long t0 = st_mono_ms(); atomic_load(&runs) < n && st_mono_ms() - t0 < 5000;) st_sleep_ms(10);
    st_sleep_ms(50); /* none more */
    CHECK(atomic_load(&runs) == n, "%s: %d handler runs for %d timers", name, atomic_load(&runs), n);
    int missed = 0, twice = 0;
    for (int i = 0; i < n; i++) missed += atomic_load(&seen[i]) == 0, twice += atomic_load(&seen[i]) > 1;
    CHECK(!missed && !twice, "%s: %d timers' values never seen, %d seen more than once", name, missed, twice);
    CHECK(atomic_load(&overruns) == 0, "%s: %d overruns of one-shot timers", name, atomic_load(&overruns));
    for (int i = 0; i < n; i++) timer_delete(id[i]);
}

static atomic_int stop;

static void *compute(void *arg)
{
    (void)arg;
    for (long t0 = st_mono_ms(); !atomic_load(&stop) && st_mono_ms() - t0 < 20000;)
        for (volatile int i = 0; i < 10000; i++) {
        }
    return NULL;
}

static void busy(int sig, const char *name)
{
    handle(sig);
    reset();
    static timer_t id[TIMERS];
    atomic_store(&stop, 0);
    pthread_t t[2] = {st_spawn(compute, NULL), st_spawn(compute, NULL)};
    for (int r = 0; r < TIMERS / ROUND; r++) {
        arm(id, sig, r * ROUND, ROUND, 10, 5000);
        struct timespec end = st_deadline(CLOCK_MONOTONIC, 40);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &end, NULL) == EINTR) {
        }
    }
    check_all(id, TIMERS, name);
    atomic_store(&stop, 1);
    pthread_join(t[0], NULL), pthread_join(t[1], NULL);
}

static void test_busy(void)
{
    busy(SIGUSR2, "SIGUSR2");
    busy(SIGRTMIN, "SIGRTMIN");
}

static void test_blocked(void)
{
    handle(SIGUSR2);
    reset();
    block(SIGUSR2, SIG_BLOCK);
    timer_t id[ROUND];
    arm(id, SIGUSR2, 0, ROUND, 50, 0);
    st_sleep_ms(200); /* all expired, their signals pending */
    block(SIGUSR2, SIG_UNBLOCK);
    check_all(id, ROUND, "blocked");
}

static void test_overrun(void)
{
    handle(SIGUSR2);
    reset();
    block(SIGUSR2, SIG_BLOCK);
    timer_t id;
    struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2, .sigev_value.sival_int = 0};
    CHECK(timer_create(CLOCK_MONOTONIC, &ev, &id) == 0, "timer_create: %s", strerror(errno));
    struct itimerspec every = {.it_value = {0, 1000000}, .it_interval = {0, 1000000}};
    CHECK(timer_settime(id, 0, &every, NULL) == 0, "timer_settime: %s", strerror(errno));
    st_sleep_ms(100);
    block(SIGUSR2, SIG_UNBLOCK);
    for (long t0 = st_mono_ms(); atomic_load(&runs) == 0 && st_mono_ms() - t0 < 3000;) st_sleep_ms(1);
    struct itimerspec off = {0};
    CHECK(timer_settime(id, 0, &off, NULL) == 0, "disarm");
    int o = atomic_load(&first_overrun);
    CHECK(o >= 30 && o <= 1000, "si_overrun %d in the first run after about 100 expiries of a 1 ms timer", o);
    timer_delete(id);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    static const struct st_test tests[] = {{"busy", test_busy}, {"blocked", test_blocked}, {"overrun", test_overrun}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("timer_queue");
}
