/* shared_accept: several processes take from one blocking descriptor, as
 * apache's children accept on one listening socket and make's jobs read
 * tokens from one pipe (and, here, a named FIFO and a terminal).  Readiness comes to all of them, one takes the
 * connection (or the byte) and the others go on waiting in the kernel.  A
 * signal sent to such a thread (pthread_kill, a handler without SA_RESTART)
 * must end its call with EINTR: apache wakes its listener so at a graceful
 * restart, and a child that never wakes is never replaced.
 *
 * Rounds of one connection (one byte) go until some child is seen waiting
 * in the kernel's accept (read) after the taker is known, then that child
 * is told to stop first; the others after.  Every child must end with its
 * call interrupted, within a bound.
 *
 *   shared_accept */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>

#include "shim_test.h"

enum { kChildren = 4, kRounds = 300 };

static int src_fd;                  /* the listening socket, the pipe's read end, the tty */
static int is_pipe;                 /* a byte at a time, by read(): pipe or tty */
static int report_fd;               /* a byte per take, to the parent */
static atomic_int stop;
static int interrupted;             /* the taker's call ended with EINTR after stop */
static pthread_t taker_thread;

static void on_usr1(int sig) { (void)sig; }

static void *taker(void *arg) {
    (void)arg;
    for (;;) {
        char b;
        int r = is_pipe ? (int)read(src_fd, &b, 1) : accept(src_fd, NULL, NULL);
        int e = errno;
        if (r >= 0) {
            if (!is_pipe) close(r);
            if (write(report_fd, "t", 1) != 1) return NULL;
            continue;
        }
        if (e == EINTR && atomic_load(&stop)) {
            interrupted = 1;
            return NULL;
        }
        if (e != EINTR) return NULL;
    }
}

/* A child: its taker thread takes until told to stop; its main thread
 * reads the order from ctl and interrupts the taker. */
static int child(int ctl) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART: the call must end */
    sigaction(SIGUSR1, &sa, NULL);
    if (pthread_create(&taker_thread, NULL, taker, NULL) != 0) return 4;
    char c;
    if (read(ctl, &c, 1) != 1) return 5;
    atomic_store(&stop, 1);
    /* Sent again while the taker runs, as apache does: a signal that came
     * just before the taker's call began found nothing to interrupt. */
    for (int i = 0; i < 100 && !interrupted; i++) {
        pthread_kill(taker_thread, SIGUSR1);
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    pthread_join(taker_thread, NULL);
    return interrupted ? 0 : 6;
}

/* Whether a task of pid waits in the kernel's accept (read) on fd. */
static int kernel_take_seen(pid_t pid, int fd) {
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[384];
        snprintf(path, sizeof path, "%s/%s/syscall", dir, de->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        long nr = -1;
        unsigned long a0 = 0;
        if (fscanf(f, "%ld %lx", &nr, &a0) == 2 && a0 == (unsigned long)fd &&
            (is_pipe ? nr == SYS_read : (nr == SYS_accept || nr == SYS_accept4)))
            found = 1;
        fclose(f);
    }
    closedir(d);
    return found;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Stop one child and wait for it (3 s at most): its taker's call must have
 * ended with EINTR. */
static void stop_child(pid_t pid, int ctl, const char *what) {
    CHECK(write(ctl, "s", 1) == 1, "%s: order: %s", what, strerror(errno));
    int status = -1;
    pid_t r = 0;
    for (int i = 0; i < 300 && (r = waitpid(pid, &status, WNOHANG)) == 0; i++) sleep_ms(10);
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        CHECK(0, "%s: child %d did not end in 3 s: its taker's call was never interrupted", what, (int)pid);
        return;
    }
    CHECK(r == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "%s: child %d ended with status 0x%x (6: its taker's call never gave EINTR)", what, (int)pid, status);
}

enum Source { kAccept, kPipe, kFifo, kTty };

static void run_case(enum Source src) {
    static const char *const names[] = {"accept", "pipe", "fifo", "tty"};
    const char *what = names[src];
    int pipe_case = src != kAccept;
    is_pipe = pipe_case;
    int rep[2], tok[2] = {-1, -1};
    CHECK(pipe(rep) == 0, "pipe: %s", strerror(errno));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (src == kPipe) {
        CHECK(pipe(tok) == 0, "pipe: %s", strerror(errno));
        src_fd = tok[0];
    } else if (src == kFifo) { /* a named one: RWF_NOWAIT is refused on it */
        char path[64];
        snprintf(path, sizeof path, "/tmp/shared_accept.%d", (int)getpid());
        CHECK(mkfifo(path, 0600) == 0, "mkfifo: %s", strerror(errno));
        src_fd = open(path, O_RDWR); /* no wait for a writer */
        tok[1] = open(path, O_WRONLY);
        CHECK(src_fd >= 0 && tok[1] >= 0, "fifo: %s", strerror(errno));
        unlink(path);
    } else if (src == kTty) { /* the children read the terminal, raw */
        tok[1] = posix_openpt(O_RDWR | O_NOCTTY);
        CHECK(tok[1] >= 0 && grantpt(tok[1]) == 0 && unlockpt(tok[1]) == 0, "pty: %s", strerror(errno));
        src_fd = open(ptsname(tok[1]), O_RDWR | O_NOCTTY);
        struct termios tio;
        CHECK(src_fd >= 0 && tcgetattr(src_fd, &tio) == 0, "tty: %s", strerror(errno));
        cfmakeraw(&tio);
        tio.c_cc[VMIN] = 1;
        tio.c_cc[VTIME] = 0;
        CHECK(tcsetattr(src_fd, TCSANOW, &tio) == 0, "tty: %s", strerror(errno));
    } else {
        src_fd = socket(AF_INET, SOCK_STREAM, 0); /* blocking, as apache's */
        CHECK(src_fd >= 0 && bind(src_fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(src_fd, 128) == 0 &&
                  getsockname(src_fd, (struct sockaddr *)&sa, &sl) == 0,
              "%s: listener: %s", what, strerror(errno));
    }
    report_fd = rep[1];
    pid_t pids[kChildren];
    int ctl[kChildren];
    for (int i = 0; i < kChildren; i++) {
        int c[2];
        CHECK(pipe(c) == 0, "pipe: %s", strerror(errno));
        pids[i] = fork();
        if (pids[i] == 0) {
            close(c[1]);
            close(rep[0]);
            if (tok[1] >= 0) close(tok[1]);
            _exit(child(c[0]));
        }
        close(c[0]);
        ctl[i] = c[1];
    }
    close(rep[1]);
    /* Rounds until a child is seen in the kernel's call with nothing left
     * to take. */
    int seen = -1, rounds = 0;
    int64_t end = st_mono_ns() + (int64_t)20 * 1000000000;
    while (seen < 0 && rounds < kRounds && st_mono_ns() < end) {
        rounds++;
        if (pipe_case) {
            CHECK(write(tok[1], "x", 1) == 1, "%s: token: %s", what, strerror(errno));
        } else {
            int s = socket(AF_INET, SOCK_STREAM, 0);
            CHECK(s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof sa) == 0, "%s: connect: %s", what,
                  strerror(errno));
            close(s);
        }
        char b;
        if (read(rep[0], &b, 1) != 1) {
            CHECK(0, "%s: no child took round %d", what, rounds);
            break;
        }
        sleep_ms(5);
        for (int i = 0; i < kChildren && seen < 0; i++)
            if (kernel_take_seen(pids[i], src_fd)) seen = i;
    }
    /* Plain, every taker waits in the kernel; under the shim only one that
     * lost a race does (none on a pipe the kernel reads per call without
     * blocking).  Either way each must end when interrupted. */
    printf("%s: a child waiting in the kernel %s after %d rounds\n", what, seen >= 0 ? "seen" : "not seen", rounds);
    if (seen >= 0) stop_child(pids[seen], ctl[seen], what);
    for (int i = 0; i < kChildren; i++)
        if (i != seen) stop_child(pids[i], ctl[i], what);
    for (int i = 0; i < kChildren; i++) close(ctl[i]);
    close(rep[0]);
    close(src_fd);
    if (tok[1] >= 0) close(tok[1]);
}

static void case_accept(void) { run_case(kAccept); }
static void case_pipe(void) { run_case(kPipe); }
static void case_fifo(void) { run_case(kFifo); }
static void case_tty(void) { run_case(kTty); }

int main(void) {
    st_watchdog(100);
    setvbuf(stdout, NULL, _IOLBF, 0);
    static const struct st_test tests[] = {{"accept", case_accept}, {"pipe", case_pipe}, {"fifo", case_fifo}, {"tty", case_tty}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("shared_accept");
}
