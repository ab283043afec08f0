/* fork_paths: the ways to make a process other than fork(), and set*id
 * called by main.
 *
 *   daemon      daemon(3) (glibc's own fork inside): the daemon has the
 *               caller's signal mask, not a worker's, so SIGTERM ends it
 *   _Fork       _Fork(), clone() without CLONE_VM, syscall(SYS_clone) and
 *   clone ...   syscall(SYS_clone3) as vsftpd makes its sessions: the child
 *               has the caller's mask, starts a thread of its own that
 *               writes to a pipe it reads, and looks up a user; none of it
 *               reaches the parent's threads, workers or helpers
 *   setuid      main drops root (setgroups, setgid, setuid) while another
 *               thread runs: every OS thread of the process has the new
 *               ids, the one the kernel shows for the process too
 *               (skipped unless root)
 *
 * The setuid case runs in this program again (/proc/self/exe setuid), so
 * that main is the program's main. */
#include <fcntl.h>
#include <dirent.h>
#include <grp.h>
#include <linux/sched.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "shim_test.h"

extern char **environ;

/* The SigBlk line of this OS thread (the kernel's mask), as hex. */
static unsigned long long kernel_sigblk(void)
{
    char line[256];
    FILE *f = fopen("/proc/thread-self/status", "r");
    unsigned long long m = ~0ULL;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "SigBlk: %llx", &m) == 1) break;
    if (f) fclose(f);
    return m;
}

static unsigned long long bits_of(const sigset_t *s)
{
    unsigned long long b = 0;
    for (int sig = 1; sig < 65; sig++)
        if (sigismember(s, sig) == 1) b |= 1ULL << (sig - 1);
    return b;
}

/* ------------------------------------------------------------- daemon -- */

static void test_daemon(void)
{
    st_phase = "daemon";
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    pid_t kid = fork();
    CHECK(kid >= 0, "fork");
    if (kid == 0) {
        close(p[0]);
        if (daemon(1, 1) != 0) _exit(3);
        char msg[64];
        int n = snprintf(msg, sizeof msg, "%ld %llx\n", (long)getpid(), kernel_sigblk());
        (void)!write(p[1], msg, (size_t)n);
        close(p[1]);
        for (int i = 0; i < 300; i++) { /* 30 s at most, if SIGTERM does not come */
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        _exit(4);
    }
    close(p[1]);
    char buf[64] = {0};
    ssize_t n = st_read_full(p[0], buf, sizeof buf - 1);
    close(p[0]);
    CHECK(st_wait_status_within(kid, 5000) == 0, "the process that called daemon() did not exit 0");
    long dpid = 0;
    unsigned long long blk = ~0ULL;
    CHECK(n > 0 && sscanf(buf, "%ld %llx", &dpid, &blk) == 2, "no word from the daemon: '%s'", buf);
    if (dpid <= 0) return;
    CHECK(blk == 0, "the daemon's signal mask is %llx, the caller's was empty", blk);
    kill((pid_t)dpid, SIGTERM);
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", dpid);
    int gone = 0;
    for (int i = 0; i < 500 && !gone; i++) { /* ours only until it is reaped by init: a zombie counts */
        FILE *f = fopen(path, "r");
        char st = 'X';
        if (f) {
            if (fscanf(f, "%*d (%*[^)]) %c", &st) != 1) st = 'X';
            fclose(f);
        }
        gone = st == 'X' || st == 'Z';
        if (!gone) st_sleep_ms(10);
    }
    CHECK(gone, "SIGTERM did not end the daemon (pid %ld)", dpid);
    if (!gone) kill((pid_t)dpid, SIGKILL);
}

/* ----------------------------------------------------- fork without fork -- */

static int child_pipe[2];

static void *child_writer(void *arg)
{
    (void)arg;
    st_sleep_ms(20); /* the reader parks first */
    return (void *)(intptr_t)(write(child_pipe[1], "hi", 2) == 2);
}

/* In the child: 0 when all is well, else what went wrong. */
static int child_body(unsigned long long want_mask)
{
    if (kernel_sigblk() != want_mask) return 10;
    if (pipe(child_pipe) != 0) return 11;
    pthread_t th;
    if (pthread_create(&th, NULL, child_writer, NULL) != 0) return 12;
    char b[2];
    if (read(child_pipe[0], b, 2) != 2 || memcmp(b, "hi", 2) != 0) return 13;
    void *ok;
    pthread_join(th, &ok);
    if (!ok) return 14;
    struct passwd *pw = getpwnam("root");
    if (!pw || pw->pw_uid != 0) return 15;
    return 0;
}

static unsigned long long clone_mask;
static int clone_child(void *arg)
{
    (void)arg;
    return child_body(clone_mask);
}

enum how { kFork_, kClone, kRawClone, kClone3 };
static const char *how_name[] = {"_Fork", "clone", "syscall(SYS_clone)", "syscall(SYS_clone3)"};

static void one_way(enum how how)
{
    st_phase = how_name[how];
    /* A mask of the thread's own, so a child with a worker's shows. */
    sigset_t m, old;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGHUP);
    pthread_sigmask(SIG_SETMASK, &m, &old);
    unsigned long long want = bits_of(&m);
    pid_t pid = -1;
    if (how == kFork_) {
        pid = _Fork();
        if (pid == 0) _exit(child_body(want));
    } else if (how == kClone) {
        enum { kStack = 256 * 1024 };
        char *stack = malloc(kStack);
        clone_mask = want;
        pid = clone(clone_child, stack + kStack, SIGCHLD, NULL);
        free(stack); /* the child has its own copy */
    } else if (how == kRawClone) {
        pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
        if (pid == 0) _exit(child_body(want));
    } else {
        struct clone_args ca = {.exit_signal = SIGCHLD};
        pid = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
        if (pid == 0) _exit(child_body(want));
    }
    int err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0 && how == kClone3 && err == ENOSYS) { /* an older kernel, valgrind */
        printf("%s: not here (ENOSYS)\n", how_name[how]);
        return;
    }
    CHECK(pid > 0, "%s: %s", how_name[how], strerror(err));
    if (pid <= 0) return;
    int st = st_wait_status_within(pid, 10000);
    CHECK(st == 0, "%s: the child ended with %s (10: its mask, 11-14: its thread and pipe, 15: getpwnam)",
          how_name[how], st_status_str(st));
}

static void test_fork_like(void)
{
    for (int h = kFork_; h <= kClone3; h++) one_way((enum how)h);
}

/* ------------------------------------------------------------- setuid -- */

static pthread_mutex_t su_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t su_c = PTHREAD_COND_INITIALIZER;
static int su_done;

static void *su_waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&su_m);
    while (!su_done) pthread_cond_wait(&su_c, &su_m);
    pthread_mutex_unlock(&su_m);
    return NULL;
}

/* Every task's Uid: and Gid: lines all `id`; how many tasks did not. */
static int tasks_not(unsigned id)
{
    DIR *d = opendir("/proc/self/task");
    int bad = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        unsigned u[4] = {0}, g[4] = {0};
        int have = 0;
        while (f && fgets(line, sizeof line, f)) {
            if (sscanf(line, "Uid: %u %u %u %u", &u[0], &u[1], &u[2], &u[3]) == 4) have |= 1;
            if (sscanf(line, "Gid: %u %u %u %u", &g[0], &g[1], &g[2], &g[3]) == 4) have |= 2;
        }
        if (f) fclose(f);
        if (!f) continue; /* gone meanwhile */
        for (int i = 0; i < 4; i++)
            if (u[i] != id || g[i] != id) have = 0;
        if (have != 3) {
            printf("task %s: Uid %u %u %u %u, Gid %u %u %u %u\n", e->d_name, u[0], u[1], u[2], u[3], g[0], g[1], g[2],
                   g[3]);
            bad++;
        }
    }
    if (d) closedir(d);
    return bad;
}

static int mode_setuid(void)
{
    st_watchdog(30);
    pthread_t th = st_spawn(su_waiter, NULL);
    st_sleep_ms(20);
    unsigned nobody = 65534;
    CHECK(setgroups(0, NULL) == 0, "setgroups: %s", strerror(errno));
    CHECK(setgid(nobody) == 0, "setgid: %s", strerror(errno));
    CHECK(setuid(nobody) == 0, "setuid: %s", strerror(errno));
    CHECK(getuid() == nobody && geteuid() == nobody, "main: uid %u, euid %u", getuid(), geteuid());
    int bad = tasks_not(nobody);
    CHECK(bad == 0, "%d OS threads kept other ids after main's setuid", bad);
    pthread_mutex_lock(&su_m);
    su_done = 1;
    pthread_cond_broadcast(&su_c);
    pthread_mutex_unlock(&su_m);
    pthread_join(th, NULL);
    return st_finish("fork_paths setuid");
}

static void test_setuid(void)
{
    st_phase = "setuid";
    if (geteuid() != 0) {
        printf("setuid: skipped (not root)\n");
        return;
    }
    char *argv[] = {"fork_paths", "setuid", NULL};
    pid_t pid;
    CHECK(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ) == 0, "posix_spawn");
    int st = st_wait_status_within(pid, 20000);
    CHECK(st == 0, "main's setuid: %s", st_status_str(st));
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "setuid") == 0) return mode_setuid();
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(90);
    static const struct st_test tests[] = {
        {"daemon", test_daemon},
        {"fork-like", test_fork_like},
        {"setuid", test_setuid},
    };
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("fork_paths");
}
