/* A signal that lands while another signal's handler is being entered, or
 * while the program changes a signal's action, on a single-threaded
 * process (before the runtime starts): CPython's test_signal
 * (test_stress_delivery_simultaneous) sends itself SIGUSR1 while a 1-10 us
 * ITIMER_REAL runs out.  The shim's kernel handler and its sigaction()
 * take one lock; the nested signal's handler spun on it for ever.
 * Run in a forked child (still one thread), which the parent bounds. */
#include "shim_test.h"
#include <sys/time.h>

static volatile sig_atomic_t usr1, alrm; /* one each: a nested handler loses no count */
static void on_sig(int sig)
{
    if (sig == SIGUSR1) usr1++;
    else alrm++;
}

static void short_timer(unsigned *seed)
{
    struct itimerval it = {{0, 0}, {0, 1 + (long)(rand_r(seed) % 10)}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static int child(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    unsigned seed = 1;
    long want = 0;
    /* SIGALRM while SIGUSR1's handler starts. */
    for (int i = 0; i < 20000; i++) {
        short_timer(&seed);
        kill(getpid(), SIGUSR1);
        want += 2;
        while (usr1 + alrm < want) {
            struct timespec ts = {0, 10000};
            nanosleep(&ts, NULL);
        }
    }
    /* SIGALRM while sigaction() changes SIGUSR1's action. */
    for (int i = 0; i < 20000; i++) {
        long before = alrm;
        short_timer(&seed);
        while (alrm == before) sigaction(SIGUSR1, &sa, NULL);
    }
    return 0;
}

int main(void)
{
    pid_t p = fork();
    if (p == 0) _exit(child());
    CHECK(p > 0, "fork: %s", strerror(errno));
    if (p <= 0) return st_finish("nested_signal");
    int st = 0;
    pid_t r = 0;
    for (int ms = 0; ms < 30000 && (r = waitpid(p, &st, WNOHANG)) == 0; ms += 10) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    if (r == 0) {
        kill(p, SIGKILL);
        waitpid(p, &st, 0);
    }
    CHECK(r == p, "the child hung (a signal nested in the shim's handler or sigaction)");
    CHECK(r != p || (WIFEXITED(st) && WEXITSTATUS(st) == 0), "child status %#x", st);
    return st_finish("nested_signal");
}
