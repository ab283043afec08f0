// A SIGCHLD handler that reaps with waitpid, landing while the thread it
// interrupts is in its first waitpid call: the shim must not resolve the
// real function lazily there (smbd, via tdb's robust-mutex probe, aborted
// with recursive_init_error). Each round is a fresh exec, so each has a
// first call; a short interval timer keeps kernel signals coming.
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim_test.h"

static atomic_int armed;

static void on_chld(int sig) {
    (void)sig;
    if (!atomic_load(&armed)) return; // reaping starts with the main thread's first wait
    int e = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
    errno = e;
}

static int round_once(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_chld;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    pid_t c = fork();
    if (c == 0) _exit(7);
    int st = 0;
    pid_t r;
    // Kernel signals, many, so that one lands inside the first call.
    struct itimerval it = {{0, 20}, {0, 20}};
    atomic_store(&armed, 1);
    setitimer(ITIMER_REAL, &it, NULL);
    do r = waitpid(c, &st, 0); // the first call; ECHILD if the handler reaped it
    while (r < 0 && errno == EINTR);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    if (r != c && !(r < 0 && errno == ECHILD)) return 1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "round") == 0) return round_once();
    if (st_exec_rounds(argv[0], 30) != 0) return 1;
    puts("ok");
    return 0;
}
