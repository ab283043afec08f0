/* signal_fd: the signalfd shape of a server.  main blocks the signals
 * before any thread exists (every thread inherits the mask), one thread
 * reads them from a signalfd while others work.  The signals come from a
 * thread of the process (kill of its own pid), from another process, and
 * from a POSIX timer; a poll() on the signalfd sees them too.  None may
 * kill the process or be lost.  A forked child makes a signalfd of its
 * own at once and reads from it.
 *
 *   signal_fd */
#include <poll.h>
#include <pthread.h>
#include <sys/signalfd.h>
#include <sys/wait.h>

#include "shim_test.h"

#define ROUNDS 20

static int sfd;
static atomic_int got_usr1, got_usr2, got_hup, from_child;
static atomic_int stop;

static void *reader(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        struct pollfd p = {.fd = sfd, .events = POLLIN};
        int n = poll(&p, 1, 2000);
        if (n == 0) continue;
        CHECK(n == 1 && (p.revents & POLLIN), "poll on the signalfd: %d %#x", n, p.revents);
        struct signalfd_siginfo si;
        ssize_t r = read(sfd, &si, sizeof si);
        if (r < 0 && errno == EAGAIN) continue; /* another read took it */
        CHECK(r == (ssize_t)sizeof si, "read signalfd: %zd (%s)", r, r < 0 ? strerror(errno) : "-");
        if (r != (ssize_t)sizeof si) break;
        if (si.ssi_signo == SIGUSR1) atomic_fetch_add(&got_usr1, 1);
        else if (si.ssi_signo == SIGUSR2) atomic_fetch_add(&got_usr2, 1);
        else if (si.ssi_signo == SIGHUP) {
            /* the sender first: main reads from_child once it sees got_hup */
            if (si.ssi_pid != (uint32_t)getpid()) atomic_fetch_add(&from_child, 1);
            atomic_fetch_add(&got_hup, 1);
        } else if (si.ssi_signo == SIGTERM) {
            atomic_store(&stop, 1);
        }
    }
    return NULL;
}

/* Busy threads: pipe ping-pong, so the workers are never idle. */
static void *busy(void *arg) {
    (void)arg;
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    char c = 0;
    while (!atomic_load(&stop)) {
        CHECK(write(p[1], &c, 1) == 1, "write");
        CHECK(read(p[0], &c, 1) == 1, "read");
    }
    close(p[0]);
    close(p[1]);
    return NULL;
}

static void wait_for(atomic_int *v, int n, const char *what) {
    int64_t end = st_mono_ns() + 10 * 1000000000LL;
    while (atomic_load(v) < n && st_mono_ns() < end) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    CHECK(atomic_load(v) >= n, "%s: %d of %d", what, atomic_load(v), n);
}

int main(void) {
    st_watchdog(60);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigaddset(&s, SIGUSR2);
    sigaddset(&s, SIGHUP);
    sigaddset(&s, SIGTERM);
    CHECK(pthread_sigmask(SIG_BLOCK, &s, NULL) == 0, "pthread_sigmask");
    sfd = signalfd(-1, &s, SFD_CLOEXEC | SFD_NONBLOCK);
    CHECK(sfd >= 0, "signalfd: %s", strerror(errno));
    pthread_t r, b[3];
    CHECK(pthread_create(&r, NULL, reader, NULL) == 0, "pthread_create");
    for (int i = 0; i < 3; i++) CHECK(pthread_create(&b[i], NULL, busy, NULL) == 0, "pthread_create");

    st_phase = "kill of the own pid";
    for (int i = 0; i < ROUNDS; i++) {
        CHECK(kill(getpid(), SIGUSR1) == 0, "kill");
        wait_for(&got_usr1, i + 1, "SIGUSR1 from a thread of the process");
    }
    st_phase = "kill from another process";
    for (int i = 0; i < ROUNDS; i++) {
        pid_t pid = fork();
        if (pid == 0) _exit(kill(getppid(), SIGHUP) == 0 ? 0 : 1);
        int st;
        CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child kill");
        wait_for(&got_hup, i + 1, "SIGHUP from a child");
    }
    CHECK(atomic_load(&from_child) == ROUNDS, "ssi_pid named the child %d times of %d", atomic_load(&from_child),
          ROUNDS);
    st_phase = "a POSIX timer";
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR2;
    timer_t tm;
    CHECK(timer_create(CLOCK_MONOTONIC, &ev, &tm) == 0, "timer_create");
    for (int i = 0; i < ROUNDS; i++) {
        struct itimerspec its = {{0, 0}, {0, 2 * 1000 * 1000}};
        CHECK(timer_settime(tm, 0, &its, NULL) == 0, "timer_settime");
        wait_for(&got_usr2, i + 1, "SIGUSR2 from a timer");
    }
    timer_delete(tm);
    st_phase = "a forked child's own signalfd";
    /* PostgreSQL's shape: every backend it forks makes a signalfd of its
     * own.  The call is at once (the child has no other thread to wait
     * for), and reads what its parent sends. */
    for (int i = 0; i < 3; i++) {
        int pp[2];
        CHECK(pipe(pp) == 0, "pipe");
        pid_t pid = fork();
        if (pid == 0) {
            sigset_t w; /* one the parent reads no signalfd of */
            sigemptyset(&w);
            sigaddset(&w, SIGWINCH);
            pthread_sigmask(SIG_BLOCK, &w, NULL);
            int64_t t0 = st_mono_ns();
            int fd = signalfd(-1, &w, SFD_CLOEXEC);
            int64_t took = st_mono_ns() - t0;
            char c = 'r';
            if (fd < 0 || write(pp[1], &c, 1) != 1) _exit(2);
            struct signalfd_siginfo si;
            if (read(fd, &si, sizeof si) != sizeof si || si.ssi_signo != SIGWINCH) _exit(3);
            _exit(took < 300 * 1000000LL ? 0 : 4);
        }
        char c;
        CHECK(read(pp[0], &c, 1) == 1, "the child's signalfd");
        CHECK(kill(pid, SIGWINCH) == 0, "kill");
        int st;
        CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "child: status 0x%x (4: its signalfd took 300 ms or more)", st);
        close(pp[0]);
        close(pp[1]);
    }
    st_phase = "SIGTERM ends the reader";
    CHECK(kill(getpid(), SIGTERM) == 0, "kill SIGTERM");
    pthread_join(r, NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++) pthread_join(b[i], NULL);
    close(sfd);
    return st_finish("signal_fd");
}
