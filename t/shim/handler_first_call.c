// Async-signal-safe calls made by a signal handler that lands while the
// thread it interrupts is in its own first call of the same function: the
// shim must have found libc's function before (a lazy lookup's static
// guard, entered again from the handler, aborts with recursive_init_error).
// Each round is a fresh exec, so each has first calls; a short interval
// timer keeps kernel signals coming.  Then the same handler, with tgkill
// of a thread's ID and close added, lands on threads being made and ended
// and on first I/O on new descriptors: whatever lock the library holds
// there, a handler must not find it held by its own thread.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim_test.h"

static int pipefd[2], sock[2];
static atomic_int handled, churning, last_tid;

// What a handler may do: each call is on the list of async-signal-safe
// functions, or commonly made there (ioctl for a terminal's size).
static void calls(void) {
    int n = 0;
    struct timespec zero = {0, 0};
    struct pollfd p = {pipefd[0], POLLIN, 0};
    sigset_t none;
    sigemptyset(&none);
    (void)fcntl(pipefd[0], F_GETFL);
    (void)ioctl(pipefd[0], FIONREAD, &n);
    (void)pthread_sigmask(SIG_BLOCK, NULL, &none);
    (void)ppoll(&p, 1, &zero, NULL);
    fd_set r;
    FD_ZERO(&r);
    FD_SET(pipefd[0], &r);
    (void)pselect(pipefd[0] + 1, &r, NULL, NULL, &zero, NULL);
    int one = 1;
    (void)setsockopt(sock[0], SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int d = dup(pipefd[1]);
    if (d >= 0) close(d);
    (void)flock(pipefd[0], LOCK_SH | LOCK_NB);
    struct sigaction old;
    (void)sigaction(SIGUSR2, NULL, &old);
    (void)kill(getpid(), 0);
    (void)raise(0);
    sigset_t pend;
    (void)sigpending(&pend);
    stack_t ss;
    (void)sigaltstack(NULL, &ss);
}

static void on_alrm(int sig) {
    (void)sig;
    int e = errno;
    calls();
    if (atomic_load(&churning)) {
        int t = atomic_load(&last_tid);
        if (t) (void)syscall(SYS_tgkill, getpid(), t, 0); // ESRCH once it has ended
        int d = dup(sock[1]);
        if (d >= 0) close(d);
    }
    atomic_fetch_add(&handled, 1);
    errno = e;
}

static void *churn(void *arg) {
    (void)arg;
    atomic_store(&last_tid, (int)syscall(SYS_gettid));
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return (void *)1;
    char c = 'x';
    void *bad = write(sv[0], &c, 1) == 1 && read(sv[1], &c, 1) == 1 ? NULL : (void *)1;
    close(sv[0]);
    close(sv[1]);
    return bad;
}

static int round_once(void) {
    if (pipe(pipefd) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sock) != 0) return 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alrm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 20}, {0, 20}};
    setitimer(ITIMER_REAL, &it, NULL);
    calls(); // the first calls, with signals landing on them
    for (int i = 0; i < 200 && atomic_load(&handled) < 3; i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    // Threads made and ended, each with a first write on a new socket.
    struct itimerval slower = {{0, 100}, {0, 100}};
    setitimer(ITIMER_REAL, &slower, NULL);
    atomic_store(&churning, 1);
    for (int i = 0; i < 100; i++) {
        pthread_t th;
        if (pthread_create(&th, NULL, churn, NULL) != 0) return 4;
        void *r;
        pthread_join(th, &r);
        if (r != NULL) return 5;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    return atomic_load(&handled) > 0 ? 0 : 3;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "round") == 0) return round_once();
    if (st_exec_rounds(argv[0], 40) != 0) return 1;
    puts("ok");
    return 0;
}
