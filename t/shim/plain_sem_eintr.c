/* plain_sem_eintr: a program that has made no thread (its main is not green
 * under nprun) and waits on a semaphore: a signal's handler ends the wait
 * as glibc's does.
 *
 *   timed     sem_clockwait, handler without SA_RESTART: EINTR at once
 *   untimed   sem_wait, handler without SA_RESTART: EINTR at once
 *   futex     syscall(SYS_futex, FUTEX_WAIT_PRIVATE), untimed, the same
 *   restart   sem_wait, handler with SA_RESTART: goes on, then takes the
 *             post a second signal's handler makes
 *
 * (Python's threading.Event.wait in a thread-less program waits out its
 * whole timeout under the shim otherwise: Twisted's
 * test_spawnProcessEarlyIsReaped.)  Every signal comes from a child. */
#include <errno.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got;
static sem_t sem;

static void on_usr1(int s) { (void)s; got++; }
static void on_usr2(int s) { (void)s; sem_post(&sem); }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static pid_t send_later(int sig, int ms) {
    pid_t parent = getpid(), c = fork();
    if (c == 0) {
        usleep(ms * 1000);
        kill(parent, sig);
        _exit(0);
    }
    return c;
}

static int fail(const char *what, int r, int e, double el) {
    fprintf(stderr, "FAIL %s: r=%d errno=%d got=%d after %.2fs\n", what, r, e, (int)got, el);
    return 1;
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; // no SA_RESTART
    sigaction(SIGUSR1, &sa, NULL);
    sem_init(&sem, 0, 0);
    alarm(20);

    got = 0;
    pid_t c = send_later(SIGUSR1, 100);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += 5;
    double t0 = now();
    int r = sem_clockwait(&sem, CLOCK_MONOTONIC, &ts), e = errno;
    waitpid(c, NULL, 0);
    if (r != -1 || e != EINTR || got != 1 || now() - t0 > 3) return fail("timed", r, e, now() - t0);

    got = 0;
    c = send_later(SIGUSR1, 100);
    t0 = now();
    r = sem_wait(&sem);
    e = errno;
    waitpid(c, NULL, 0);
    if (r != -1 || e != EINTR || got != 1 || now() - t0 > 3) return fail("untimed", r, e, now() - t0);

    got = 0;
    c = send_later(SIGUSR1, 100);
    t0 = now();
    static int word;
    r = (int)syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    e = errno;
    waitpid(c, NULL, 0);
    if (r != -1 || e != EINTR || got != 1 || now() - t0 > 3) return fail("futex", r, e, now() - t0);

    got = 0;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    pid_t c1 = send_later(SIGUSR1, 100), c2 = send_later(SIGUSR2, 400);
    t0 = now();
    r = sem_wait(&sem);
    e = errno;
    waitpid(c1, NULL, 0);
    waitpid(c2, NULL, 0);
    if (r != 0 || got != 1) return fail("restart", r, e, now() - t0);
    printf("plain_sem_eintr: ok\n");
    return 0;
}
