/* far_timeouts: a timeout far in the future means "no deadline" to many
 * programs: skalibs (s6-supervise, s6-svscan) waits with ppoll and a
 * relative 2^62 s, others pass huge absolute times to the timed waits.
 * None may wrap into the past.  ppoll, pselect, select, nanosleep,
 * pthread_cond_timedwait and sem_timedwait, each with tv_sec 2^32, 2^62
 * and the largest value: the call must still wait when something else
 * ends it (a timer's signal, a wake-up) 150 ms later. */
#include <poll.h>
#include <semaphore.h>
#include <sys/select.h>
#include <sys/time.h>

#include "shim_test.h"

enum { kWaitMs = 150 };

static void on_alarm(int sig) { (void)sig; }
static void arm(void)
{
    struct itimerval it = {{0, 0}, {0, kWaitMs * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static sem_t sem;
static int go;
static void *waker(void *arg)
{
    st_sleep_ms(kWaitMs);
    pthread_mutex_lock(&mu);
    go = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    return arg;
}
static void *poster(void *arg)
{
    st_sleep_ms(kWaitMs);
    sem_post(&sem);
    return arg;
}

static void waited(const char *what, long long sec, int64_t t0)
{
    double ms = st_ms(st_mono_ns() - t0);
    CHECK(ms >= kWaitMs * 0.6, "%s with tv_sec %lld returned after %.1f ms, before what ends it (%d ms)", what, sec,
          ms, kWaitMs);
}

static void test_far(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    sem_init(&sem, 0, 0);
    static const long long secs[] = {1LL << 32, 1LL << 62, 0x7fffffffffffffffLL};
    for (size_t i = 0; i < sizeof secs / sizeof secs[0]; i++) {
        struct timespec ts = {(time_t)secs[i], 0};
        struct pollfd f = {.fd = p[0], .events = POLLIN};
        arm();
        int64_t t0 = st_mono_ns();
        ppoll(&f, 1, &ts, NULL);
        waited("ppoll", secs[i], t0);
        fd_set rs;
        FD_ZERO(&rs);
        FD_SET(p[0], &rs);
        arm();
        t0 = st_mono_ns();
        pselect(p[0] + 1, &rs, NULL, NULL, &ts, NULL);
        waited("pselect", secs[i], t0);
        struct timeval tv = {(time_t)secs[i], 0};
        FD_ZERO(&rs);
        FD_SET(p[0], &rs);
        arm();
        t0 = st_mono_ns();
        select(p[0] + 1, &rs, NULL, NULL, &tv);
        waited("select", secs[i], t0);
        arm();
        t0 = st_mono_ns();
        nanosleep(&ts, NULL);
        waited("nanosleep", secs[i], t0);
        pthread_mutex_lock(&mu);
        go = 0;
        pthread_t th = st_spawn(waker, NULL);
        t0 = st_mono_ns();
        while (!go && pthread_cond_timedwait(&cv, &mu, &ts) != ETIMEDOUT) {}
        pthread_mutex_unlock(&mu);
        waited("pthread_cond_timedwait", secs[i], t0);
        pthread_join(th, NULL);
        th = st_spawn(poster, NULL);
        t0 = st_mono_ns();
        while (sem_timedwait(&sem, &ts) != 0 && errno == EINTR) {}
        waited("sem_timedwait", secs[i], t0);
        pthread_join(th, NULL);
    }
    signal(SIGALRM, SIG_DFL);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    static const struct st_test tests[] = {{"far", test_far}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("far_timeouts");
}
