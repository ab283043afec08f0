/* kernel_wait: a thread wakes another, then at once waits in the kernel for
 * something only the woken thread can bring about: a child that needs the
 * woken thread's byte before it exits (waitpid, wait4, waitid, system,
 * pclose), a file lock the woken thread holds (flock, fcntl F_SETLKW,
 * lockf), and a line on a pipe read by stdio (libc's own read, which the
 * engine cannot see: the woken thread is taken from behind it).  With OS
 * threads the woken thread simply runs; with green threads it must not
 * stay queued behind the worker that blocked.
 *
 *   kernel_wait */
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/wait.h>

#include "shim_test.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go;
static int out_fd;                 /* the pipe end the helper writes to */
static int lock_fd;                /* the helper's descriptor of the locked file */
static char lock_path[64];

/* Parks until told to go, then does its one thing. */
static void *writer(void *arg) {
    (void)arg;
    pthread_mutex_lock(&mu);
    while (!go) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    CHECK(write(out_fd, "x", 1) == 1, "writer: %s", strerror(errno));
    return NULL;
}

static void *unlocker(void *arg) {
    (void)arg;
    pthread_mutex_lock(&mu);
    while (!go) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    CHECK(flock(lock_fd, LOCK_UN) == 0, "flock unlock: %s", strerror(errno));
    return NULL;
}

/* Start a helper and let it park on the condition variable. */
static pthread_t start_parked(void *(*fn)(void *)) {
    go = 0;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, fn, NULL) == 0, "pthread_create");
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    return t;
}

/* Wake it, and block at once (no call in between gives way). */
static void wake(void) {
    pthread_mutex_lock(&mu);
    go = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

/* A child that exits with 7 once it reads a byte. */
static pid_t child_waiting_for_byte(void) {
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    pid_t pid = fork();
    if (pid == 0) {
        close(p[1]);
        char c;
        _exit(read(p[0], &c, 1) == 1 ? 7 : 1);
    }
    close(p[0]);
    out_fd = p[1];
    return pid;
}

static void wait_case(int how) {
    pid_t pid = child_waiting_for_byte();
    pthread_t t = start_parked(writer);
    wake();
    int st = -1;
    if (how == 0) {
        CHECK(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
    } else if (how == 1) {
        CHECK(wait4(pid, &st, 0, NULL) == pid, "wait4: %s", strerror(errno));
    } else {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        CHECK(waitid(P_PID, (id_t)pid, &si, WEXITED) == 0, "waitid: %s", strerror(errno));
        st = si.si_status << 8;
    }
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7, "case %d: child status %#x", how, st);
    pthread_join(t, NULL);
    close(out_fd);
}

/* system() and pclose(): the child reads the byte from a FIFO-like pipe
 * passed as its stdin. */
static void shell_case(int use_popen) {
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    out_fd = p[1];
    int saved = dup(0);
    dup2(p[0], 0);
    close(p[0]);
    pthread_t t = start_parked(writer);
    if (use_popen) {
        FILE *f = popen("head -c 1 >/dev/null; exit 7", "r");
        CHECK(f != NULL, "popen");
        dup2(saved, 0);
        wake();
        int st = f ? pclose(f) : -1;
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7, "pclose: status %#x", st);
    } else {
        wake();
        int st = system("head -c 1 >/dev/null; exit 7");
        dup2(saved, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7, "system: status %#x", st);
    }
    close(saved);
    pthread_join(t, NULL);
    close(out_fd);
}

/* flock locks belong to an open file description: the helper's own open
 * of the file holds it, the main thread's second open waits for it.  fcntl
 * and lockf locks belong to the process, so there a child holds the lock
 * until it reads the helper's byte. */
static void lock_case(int kind) {
    if (kind == 0) {
        lock_fd = open(lock_path, O_RDWR | O_CREAT, 0600);
        CHECK(lock_fd >= 0, "open %s: %s", lock_path, strerror(errno));
        CHECK(flock(lock_fd, LOCK_EX) == 0, "flock: %s", strerror(errno));
        pthread_t t = start_parked(unlocker);
        int fd = open(lock_path, O_RDWR);
        wake();
        CHECK(flock(fd, LOCK_EX) == 0, "flock wait: %s", strerror(errno));
        close(fd);
        pthread_join(t, NULL);
        close(lock_fd);
        return;
    }
    int p[2], ready[2];
    CHECK(pipe(p) == 0 && pipe(ready) == 0, "pipe");
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(lock_path, O_RDWR | O_CREAT, 0600);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        int ok = kind == 1 ? fcntl(fd, F_SETLK, &fl) == 0 : lockf(fd, F_TLOCK, 0) == 0;
        if (!ok || write(ready[1], "L", 1) != 1) _exit(1);
        char c;
        _exit(read(p[0], &c, 1) == 1 ? 0 : 1); /* exit drops the lock */
    }
    close(p[0]);
    close(ready[1]);
    char c = 0;
    CHECK(read(ready[0], &c, 1) == 1 && c == 'L', "the child did not take the lock");
    close(ready[0]);
    out_fd = p[1];
    int fd = open(lock_path, O_RDWR);
    pthread_t t = start_parked(writer);
    wake();
    if (kind == 1) {
        struct flock w = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        CHECK(fcntl(fd, F_SETLKW, &w) == 0, "F_SETLKW: %s", strerror(errno));
    } else {
        CHECK(lockf(fd, F_LOCK, 0) == 0, "lockf F_LOCK: %s", strerror(errno));
    }
    close(fd);
    int st = -1;
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "lock kind %d: child status %#x", kind, st);
    pthread_join(t, NULL);
    close(out_fd);
}

/* stdio reads through libc's own read(), which no preload reaches: the
 * worker blocks unseen, with the woken writer queued behind it.  The line
 * comes from that writer: it must run elsewhere meanwhile.  Ten rounds,
 * each on a fresh pipe. */
static const char *line_out = "a line\n";
static void *line_writer(void *arg) {
    (void)arg;
    pthread_mutex_lock(&mu);
    while (!go) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    FILE *f = fdopen(out_fd, "w");
    CHECK(f && fputs(line_out, f) >= 0 && fclose(f) == 0, "line writer: %s", strerror(errno));
    return NULL;
}

static void stdio_case(void) {
    for (int round = 0; round < 10; round++) {
        int p[2];
        CHECK(pipe(p) == 0, "pipe");
        out_fd = p[1];
        FILE *in = fdopen(p[0], "r");
        CHECK(in != NULL, "fdopen");
        pthread_t t = start_parked(line_writer);
        wake();
        char buf[64] = "";
        CHECK(in && fgets(buf, sizeof buf, in) && strcmp(buf, line_out) == 0, "round %d: fgets gave \"%s\" (%s)",
              round, buf, strerror(errno));
        if (in) fclose(in);
        pthread_join(t, NULL);
    }
}

/* A timer's signal (SIGUSR1: the watchdog has SIGALRM) while the thread
 * waits for a child: without SA_RESTART the wait ends with EINTR, with it
 * the wait goes on; either way the handler runs, with the kernel's
 * siginfo. */
static volatile sig_atomic_t alarms, alarm_code;
static void on_alarm(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    alarms++;
    alarm_code = si->si_code;
}

static void signal_case(int restart) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_alarm;
    sa.sa_flags = SA_SIGINFO | (restart ? SA_RESTART : 0);
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    alarms = 0;
    pid_t pid = fork();
    if (pid == 0) {
        struct timespec ts = {0, 600 * 1000 * 1000};
        nanosleep(&ts, NULL);
        _exit(5);
    }
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR1;
    timer_t tm;
    CHECK(timer_create(CLOCK_MONOTONIC, &ev, &tm) == 0, "timer_create");
    struct itimerspec its = {{0, 0}, {0, 150 * 1000 * 1000}};
    CHECK(timer_settime(tm, 0, &its, NULL) == 0, "timer_settime");
    int st = -1;
    pid_t r = waitpid(pid, &st, 0);
    if (restart) {
        CHECK(r == pid && WIFEXITED(st) && WEXITSTATUS(st) == 5, "SA_RESTART: waitpid %d, status %#x (%s)", (int)r,
              st, r < 0 ? strerror(errno) : "-");
    } else {
        CHECK(r == -1 && errno == EINTR, "no SA_RESTART: waitpid %d (%s), not EINTR", (int)r,
              r < 0 ? strerror(errno) : "-");
        CHECK(waitpid(pid, &st, 0) == pid && WEXITSTATUS(st) == 5, "the second waitpid");
    }
    CHECK(alarms == 1, "restart=%d: the handler ran %d times during the wait", restart, (int)alarms);
    CHECK(alarm_code == SI_TIMER, "restart=%d: si_code %d, not SI_TIMER", restart, (int)alarm_code);
    timer_delete(tm);
    signal(SIGUSR1, SIG_DFL);
}

int main(void) {
    st_watchdog(60);
    snprintf(lock_path, sizeof lock_path, "/tmp/kernel_wait.%d", (int)getpid());
    /* First: the cases below may leave extra workers behind, which would
     * take the stranded writer without help. */
    st_phase = "fgets";
    stdio_case();
    const char *names[] = {"waitpid", "wait4", "waitid"};
    for (int i = 0; i < 3; i++) {
        st_phase = names[i];
        wait_case(i);
    }
    st_phase = "a signal in waitpid";
    signal_case(0);
    st_phase = "a signal in waitpid, SA_RESTART";
    signal_case(1);
    st_phase = "system";
    shell_case(0);
    st_phase = "popen";
    shell_case(1);
    st_phase = "flock";
    lock_case(0);
    st_phase = "fcntl F_SETLKW";
    lock_case(1);
    st_phase = "lockf";
    lock_case(2);
    unlink(lock_path);
    return st_finish("kernel_wait");
}
