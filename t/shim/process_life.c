/* process_life: a process's life as a threaded program lives it, from
 * threads other than main while others work.
 *
 *   fork        the child has one thread, works with threads of its own,
 *               and its readiness registrations are not in an epoll
 *               instance of the parent's (it has none of the parent's
 *               registrations, the parent none of its); the parent goes on
 *   fork-load   forks while other threads create threads, lock, allocate
 *               and do I/O: every child starts threads and does I/O
 *   spawn       fork+exec, system(), popen(), posix_spawn() and vfork from
 *               several threads at once, exit statuses and output checked
 *   daemon      daemon(3) and the double fork (setsid, every descriptor
 *               closed), started from a thread: the daemon serves loopback
 *               TCP with threads of its own
 *   exec        exec from a thread (not main) of a program with threads
 *               parked in reads: the new image has the program's own
 *               descriptors and none of the runtime's (anon_inode ones)
 *   close-all   a program that closes every descriptor it does not know,
 *               after the runtime may have grown workers, keeps working
 *   shared      O_NONBLOCK and SO_RCVTIMEO set by a child on a socket it
 *               shares with its parent hold in the parent, as Linux has
 *               them on the open file, not the process
 *   inherited   descriptors the program had before it started (given by
 *               its parent) and opened in a constructor, before main
 *
 * The exec'd images are this program again (/proc/self/exe) with a mode
 * argument; the descriptor checker runs without LD_PRELOAD. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <sys/syscall.h>

#include "shim_test.h"

extern char **environ;

/* ------------------------------------------------------------ helpers -- */

static void pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        perror("socketpair");
        exit(2);
    }
}

/* An echo thread on one end of a socket pair, until EOF. */
static void *echo(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char b[256];
    for (;;) {
        ssize_t n = read(fd, b, sizeof b);
        if (n <= 0) break;
        if (st_write_all(fd, b, (size_t)n)) break;
    }
    return NULL;
}

static int round_trip(int fd)
{
    char b[8];
    return write(fd, "ping", 4) == 4 && st_read_full(fd, b, 4) == 4 && memcmp(b, "ping", 4) == 0;
}

/* The environment without LD_PRELOAD: an image that must be the program
 * alone. */
static char **env_without_preload(void)
{
    static char *env[512];
    int n = 0;
    for (char **e = environ; *e && n < 510; e++)
        if (strncmp(*e, "LD_PRELOAD=", 11) != 0) env[n++] = *e;
    env[n] = NULL;
    return env;
}

/* Is fd an anonymous-inode file (epoll, eventfd, io_uring, timerfd...)? */
static int is_anon(int fd, char *what, size_t cap)
{
    char path[64], target[128];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n <= 0) return 0;
    target[n] = 0;
    if (what) snprintf(what, cap, "%s", target);
    return strncmp(target, "anon_inode:", 11) == 0;
}

/* The open descriptors, as a bitmap of the first 1024. */
static void open_fds(unsigned char *bits)
{
    memset(bits, 0, 1024 / 8);
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        int fd = atoi(de->d_name);
        if (de->d_name[0] != '.' && fd != dirfd(d) && fd < 1024) bits[fd / 8] |= (unsigned char)(1 << (fd % 8));
    }
    closedir(d);
}
static int bit(const unsigned char *bits, int fd) { return fd < 1024 && (bits[fd / 8] >> (fd % 8)) & 1; }

/* Does epoll instance `ep` (a descriptor of this process) watch inode `ino`? */
static int epoll_watches(int ep, unsigned long ino)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, " ino:");
        if (strncmp(line, "tfd:", 4) == 0 && p && strtoul(p + 5, NULL, 16) == ino) found = 1;
    }
    fclose(f);
    return found;
}
static int is_epoll(int fd)
{
    char what[128];
    return is_anon(fd, what, sizeof what) && strstr(what, "eventpoll") != NULL;
}
/* How many epoll instances among the first 1024 descriptors watch ino;
 * `only` (if not null) limits the look to those descriptors. */
static int epolls_watching(unsigned long ino, const unsigned char *only)
{
    int n = 0;
    for (int fd = 3; fd < 1024; fd++)
        if ((!only || bit(only, fd)) && is_epoll(fd) && epoll_watches(fd, ino)) n++;
    return n;
}
static unsigned long inode_of(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

/* Run this program again in `mode`; the pid, or -1. clean: without
 * LD_PRELOAD. */
static pid_t self_spawn(const char *mode, const char *arg, int clean)
{
    char *argv[] = {"process_life", (char *)mode, (char *)arg, NULL};
    pid_t pid;
    int e = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, clean ? env_without_preload() : environ);
    return e ? -1 : pid;
}

/* ---------------------------------------------------------- the modes -- */

/* "fds KEEP": exit 0 if the only anon_inode descriptors are none, and KEEP
 * (a descriptor the program passed on purpose) is open; else the count of
 * strangers, or 100 for KEEP lost. */
static int mode_fds(const char *keep)
{
    int want = keep ? atoi(keep) : -1;
    if (want >= 0 && fcntl(want, F_GETFD) < 0) return 100;
    int strangers = 0;
    for (int fd = 3; fd < 1024; fd++) {
        char what[128];
        if (fd == want) continue;
        if (is_anon(fd, what, sizeof what)) {
            fprintf(stderr, "process_life fds: descriptor %d is %s: leaked across exec\n", fd, what);
            strangers++;
        }
    }
    return strangers > 99 ? 99 : strangers;
}

/* ------------------------------------------------------------- fork -- */

struct fork_report {
    int threads_at_start, threads_ok;
    unsigned long ino;
    int in_inherited_epoll, pid_ok;
};

/* In the child: one thread; a thread of its own reads a socket that data
 * reaches 50 ms later (so it parks, and the socket is registered). */
static atomic_int child_reader_got;
static void *child_reader(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char c;
    if (read(fd, &c, 1) == 1) atomic_store(&child_reader_got, 1);
    return NULL;
}

static void fork_child(int report_fd, pid_t parent)
{
    struct fork_report r;
    memset(&r, 0, sizeof r);
    r.threads_at_start = st_os_threads();
    r.pid_ok = getpid() != parent && getppid() == parent;
    unsigned char inherited[128];
    open_fds(inherited);
    int sv[2];
    pair(sv);
    r.ino = inode_of(sv[0]);
    pthread_t t = st_spawn(child_reader, (void *)(intptr_t)sv[0]);
    struct timespec ts = {0, 50 * 1000000};
    nanosleep(&ts, NULL);
    /* while the reader is parked on it: which epoll instances watch it? */
    r.in_inherited_epoll = epolls_watching(r.ino, inherited);
    (void)!write(sv[1], "x", 1);
    pthread_join(t, NULL);
    r.threads_ok = atomic_load(&child_reader_got);
    /* several threads of its own, each echoing */
    enum { N = 8 };
    int ev[N][2];
    pthread_t e[N];
    for (int i = 0; i < N; i++) {
        pair(ev[i]);
        e[i] = st_spawn(echo, (void *)(intptr_t)ev[i][0]);
    }
    for (int i = 0; i < N; i++)
        if (!round_trip(ev[i][1])) r.threads_ok = 0;
    for (int i = 0; i < N; i++) close(ev[i][1]);
    for (int i = 0; i < N; i++) pthread_join(e[i], NULL);
    (void)!write(report_fd, &r, sizeof r);
    /* keep the socket open until the parent has looked at its epolls */
    char c;
    (void)!read(report_fd, &c, 1);
    _exit(0);
}

struct forker_arg {
    struct fork_report r;
    int status, got;
    unsigned long parent_watching;
};

static void *forker(void *arg)
{
    struct forker_arg *a = arg;
    int rp[2];
    pair(rp);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        alarm(20);
        close(rp[0]);
        fork_child(rp[1], parent);
    }
    close(rp[1]);
    a->got = st_read_full(rp[0], &a->r, sizeof a->r) == (ssize_t)sizeof a->r;
    /* the child's socket, registered in the child: in no epoll of ours */
    if (a->got && a->r.ino) a->parent_watching = (unsigned long)epolls_watching(a->r.ino, NULL);
    (void)!write(rp[0], "k", 1);
    a->status = st_wait_status(pid);
    close(rp[0]);
    return NULL;
}

static void test_fork(void)
{
    st_phase = "fork";
    enum { M = 6 };
    int sv[M][2];
    pthread_t t[M];
    for (int i = 0; i < M; i++) {
        pair(sv[i]);
        t[i] = st_spawn(echo, (void *)(intptr_t)sv[i][0]);
    }
    for (int round = 0; round < 3; round++) {
        struct forker_arg a;
        memset(&a, 0, sizeof a);
        pthread_t f = st_spawn(forker, &a);
        for (int i = 0; i < M; i++) CHECK(round_trip(sv[i][1]), "parent echo %d while a thread forks", i);
        pthread_join(f, NULL);
        CHECK(a.got, "fork: no report from the child");
        CHECK(a.status == 0, "fork: child %s", st_status_str(a.status));
        CHECK(a.r.pid_ok, "fork: the child's pid or parent pid is wrong");
        CHECK(a.r.threads_at_start == 1, "fork: the child has %d OS threads, want 1 (the caller)",
              a.r.threads_at_start);
        CHECK(a.r.threads_ok, "fork: the child's own threads did not work");
        CHECK(a.r.in_inherited_epoll == 0,
              "fork: the child's socket is registered in %d epoll instance(s) it inherited from the parent",
              a.r.in_inherited_epoll);
        CHECK(a.parent_watching == 0, "fork: the parent's epoll instances watch the child's socket (%lu)",
              a.parent_watching);
    }
    for (int i = 0; i < M; i++) CHECK(round_trip(sv[i][1]), "parent echo %d after the forks", i);
    for (int i = 0; i < M; i++) close(sv[i][1]);
    for (int i = 0; i < M; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < M; i++) close(sv[i][0]);
}

/* ------------------------------------------------------- fork-load -- */

static atomic_int load_stop;
static pthread_mutex_t load_mu = PTHREAD_MUTEX_INITIALIZER;
static long load_counter;

static void *tiny(void *arg)
{
    void *p = malloc(64 + (size_t)(intptr_t)arg);
    pthread_mutex_lock(&load_mu);
    load_counter++;
    pthread_mutex_unlock(&load_mu);
    free(p);
    return arg;
}

static void *churn(void *arg)
{
    (void)arg;
    int p[2];
    if (pipe(p)) return (void *)1;
    char c = 0;
    for (int i = 0; !atomic_load(&load_stop) && i < 1000000; i++) {
        pthread_t t = st_spawn(tiny, (void *)(intptr_t)(i % 4096));
        void *r;
        pthread_join(t, &r);
        if (r != (void *)(intptr_t)(i % 4096)) return (void *)2;
        if (write(p[1], &c, 1) != 1 || read(p[0], &c, 1) != 1) return (void *)3;
        void *m = malloc((size_t)(i % 8192) + 1);
        free(m);
    }
    close(p[0]);
    close(p[1]);
    return NULL;
}

/* The child's own lock: load_mu may be held by a parent's thread at the
 * fork, and stays held in the child (POSIX) */
static pthread_mutex_t child_mu = PTHREAD_MUTEX_INITIALIZER;
static long child_counter;
static void *child_worker(void *arg)
{
    int *sv = arg;
    char c = 'a';
    for (int i = 0; i < 50; i++) {
        pthread_mutex_lock(&child_mu);
        child_counter++;
        pthread_mutex_unlock(&child_mu);
        void *m = malloc(100);
        free(m);
        if (write(sv[1], &c, 1) != 1 || read(sv[0], &c, 1) != 1) return (void *)1;
    }
    return NULL;
}

static int load_child(void)
{
    alarm(20);
    int sv[4][2];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        if (pipe(sv[i])) return 10;
        if (pthread_create(&t[i], NULL, child_worker, sv[i])) return 11;
    }
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        if (r) return 12;
    }
    return 0;
}

static void test_fork_load(void)
{
    st_phase = "fork under load";
    enum { C = 3, FORKS = 20 };
    pthread_t c[C];
    atomic_store(&load_stop, 0);
    for (int i = 0; i < C; i++) c[i] = st_spawn(churn, NULL);
    int bad = 0;
    for (int i = 0; i < FORKS; i++) {
        pid_t pid = fork();
        if (pid == 0) _exit(load_child());
        int st = st_wait_status(pid);
        if (st != 0 && bad++ < 3) CHECK(0, "fork under load: child %d %s", i, st_status_str(st));
        struct timespec ts = {0, (long)(i % 5) * 1000000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&load_stop, 1);
    for (int i = 0; i < C; i++) {
        void *r;
        pthread_join(c[i], &r);
        CHECK(r == NULL, "fork under load: churn thread %d failed (%ld)", i, (long)(intptr_t)r);
    }
    CHECK(bad == 0, "fork under load: %d of %d children failed", bad, FORKS);
}

/* ------------------------------------------------------------ spawn -- */

static void *do_system(void *arg)
{
    (void)arg;
    int st = system("exit 3");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3, "system(\"exit 3\"): %s", st_status_str(st));
    return NULL;
}

static void *do_popen(void *arg)
{
    (void)arg;
    FILE *f = popen("echo hello; echo world", "r");
    CHECK(f != NULL, "popen: %s", strerror(errno));
    if (!f) return NULL;
    char a[32] = "", b[32] = "";
    CHECK(fgets(a, sizeof a, f) && fgets(b, sizeof b, f), "popen: short output");
    CHECK(strcmp(a, "hello\n") == 0 && strcmp(b, "world\n") == 0, "popen: read '%s' '%s'", a, b);
    int st = pclose(f);
    CHECK(st == 0, "pclose: %s", st_status_str(st));
    f = popen("cat > /dev/null; exit 5", "w");
    CHECK(f != NULL, "popen w: %s", strerror(errno));
    if (!f) return NULL;
    fputs("some input\n", f);
    st = pclose(f);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 5, "pclose (w): %s", st_status_str(st));
    return NULL;
}

static void *do_posix_spawn(void *arg)
{
    (void)arg;
    char *argv[] = {"sh", "-c", "exit 4", NULL};
    pid_t pid;
    int e = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ);
    CHECK(e == 0, "posix_spawn: %s", strerror(e));
    if (e) return NULL;
    int st = st_wait_status(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 4, "posix_spawn'd sh: %s", st_status_str(st));
    /* posix_spawnp with file actions: stdout to a pipe */
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    char *argv2[] = {"echo", "spawned", NULL};
    e = posix_spawnp(&pid, "echo", &fa, NULL, argv2, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    CHECK(e == 0, "posix_spawnp echo: %s", strerror(e));
    char b[32] = "";
    ssize_t n = st_read_full(p[0], b, sizeof b - 1);
    close(p[0]);
    CHECK(n == 8 && memcmp(b, "spawned\n", 8) == 0, "posix_spawnp output: %zd '%s'", n, b);
    if (!e) {
        st = st_wait_status(pid);
        CHECK(st == 0, "posix_spawnp'd echo: %s", st_status_str(st));
    }
    return NULL;
}

static void *do_fork_exec(void *arg)
{
    (void)arg;
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", "exit 6", (char *)NULL);
        _exit(127);
    }
    int st = st_wait_status(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 6, "fork+exec sh: %s", st_status_str(st));
    return NULL;
}

static void *do_vfork(void *arg)
{
    (void)arg;
    pid_t pid = vfork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", "exit 7", (char *)NULL);
        _exit(127);
    }
    CHECK(pid > 0, "vfork: %s", strerror(errno));
    int st = st_wait_status(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7, "vfork+exec sh: %s", st_status_str(st));
    pid = vfork();
    if (pid == 0) _exit(8);
    st = st_wait_status(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 8, "vfork+_exit: %s", st_status_str(st));
    return NULL;
}

static void test_spawn(void)
{
    st_phase = "spawn";
    enum { M = 4 };
    int sv[M][2];
    pthread_t e[M];
    for (int i = 0; i < M; i++) {
        pair(sv[i]);
        e[i] = st_spawn(echo, (void *)(intptr_t)sv[i][0]);
    }
    void *(*fns[])(void *) = {do_system, do_popen, do_posix_spawn, do_fork_exec, do_vfork};
    enum { F = sizeof fns / sizeof fns[0] };
    for (int round = 0; round < 2; round++) {
        pthread_t t[F * 2];
        for (int i = 0; i < F * 2; i++) t[i] = st_spawn(fns[i % F], NULL);
        for (int i = 0; i < M; i++) CHECK(round_trip(sv[i][1]), "echo %d while threads spawn", i);
        for (int i = 0; i < F * 2; i++) pthread_join(t[i], NULL);
    }
    for (int i = 0; i < M; i++) close(sv[i][1]);
    for (int i = 0; i < M; i++) pthread_join(e[i], NULL);
    for (int i = 0; i < M; i++) close(sv[i][0]);
}

/* ----------------------------------------------------------- daemon -- */

/* In a daemon: a loopback TCP echo with a thread per connection, 8
 * clients; writes 'y' or 'n' to fd. */
static void *tcp_server(void *arg)
{
    int ls = (int)(intptr_t)arg;
    for (;;) {
        int c = accept(ls, NULL, NULL);
        if (c < 0) break;
        pthread_t t;
        if (pthread_create(&t, NULL, echo, (void *)(intptr_t)c) == 0) pthread_detach(t);
    }
    return NULL;
}

static void *tcp_client(void *arg)
{
    uint16_t port = (uint16_t)(intptr_t)arg;
    int s = st_connect(port);
    if (s < 0) return (void *)1;
    int ok = 1;
    for (int i = 0; i < 20 && ok; i++) ok = round_trip(s);
    close(s);
    return ok ? NULL : (void *)1;
}

static pid_t orig_sid; /* the test's session: a daemon has left it */
static void daemon_work(int fd)
{
    uint16_t port;
    int ls = st_listen(64, &port);
    pthread_t srv = st_spawn(tcp_server, (void *)(intptr_t)ls);
    pthread_detach(srv);
    pthread_t c[8];
    int ok = getppid() != 0;
    for (int i = 0; i < 8; i++) c[i] = st_spawn(tcp_client, (void *)(intptr_t)port);
    for (int i = 0; i < 8; i++) {
        void *r;
        pthread_join(c[i], &r);
        if (r) ok = 0;
    }
    char v = ok && getsid(0) != orig_sid ? 'y' : 'n';
    (void)!write(fd, &v, 1);
    _exit(0);
}

static void *daemon_starter(void *arg)
{
    int how = (int)(intptr_t)arg;
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    pid_t pid = fork();
    if (pid == 0) {
        alarm(20);
        close(p[0]);
        if (how == 0) {
            /* daemon(3): forks, the parent exits 0, setsid; 0-2 to /dev/null */
            if (daemon(0, 0) != 0) _exit(20);
            daemon_work(p[1]);
        }
        /* the classic double fork, every descriptor closed */
        pid_t q = fork();
        if (q < 0) _exit(21);
        if (q > 0) _exit(0);
        if (setsid() < 0) _exit(22);
        q = fork();
        if (q < 0) _exit(23);
        if (q > 0) _exit(0);
        if (chdir("/")) _exit(24);
        umask(0);
        long max = sysconf(_SC_OPEN_MAX);
        if (max < 0 || max > 65536) max = 65536;
        for (int fd = 0; fd < max; fd++)
            if (fd != p[1]) close(fd);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
            if (null > 2) close(null);
        }
        daemon_work(p[1]);
    }
    close(p[1]);
    int st = st_wait_status(pid);
    CHECK(st == 0, "%s: the first process %s", how ? "double fork" : "daemon(3)", st_status_str(st));
    char v = 0;
    ssize_t n = st_read_full(p[0], &v, 1);   /* EOF when the daemon is gone */
    close(p[0]);
    CHECK(n == 1 && v == 'y', "%s: the daemon %s", how ? "double fork" : "daemon(3)",
          n == 1 ? "is still in our session, or an echo failed" : "did not report");
    return NULL;
}

static void test_daemon(void)
{
    st_phase = "daemon";
    orig_sid = getsid(0);
    pthread_t a = st_spawn(daemon_starter, (void *)0);
    pthread_t b = st_spawn(daemon_starter, (void *)1);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
}

/* -------------------------------------------------------------- exec -- */

/* Make the runtime busy enough to grow: runnable threads while another
 * waits in the kernel (waitpid on a child that sleeps). */
static atomic_int grow_stop;
static void *spinner(void *arg)
{
    (void)arg;
    int64_t end = st_mono_ns() + 2000000000LL;
    while (!atomic_load(&grow_stop) && st_mono_ns() < end) sched_yield();
    return NULL;
}
static void grow_runtime(void)
{
    pthread_t s[4];
    atomic_store(&grow_stop, 0);
    for (int i = 0; i < 4; i++) s[i] = st_spawn(spinner, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct timespec ts = {0, 150 * 1000000};
        nanosleep(&ts, NULL);
        _exit(0);
    }
    st_wait_status(pid);
    atomic_store(&grow_stop, 1);
    for (int i = 0; i < 4; i++) pthread_join(s[i], NULL);
}

static int exec_keep = -1;
static void *execer(void *arg)
{
    (void)arg;
    char keep[16];
    snprintf(keep, sizeof keep, "%d", exec_keep);
    char *argv[] = {"process_life", "fds", keep, NULL};
    execve("/proc/self/exe", argv, env_without_preload());
    return (void *)1;
}
static void *parked_reader(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char c;
    (void)!read(fd, &c, 1);
    return NULL;
}

/* "exec-thread": threads parked in reads, then one (not main) exec's the
 * descriptor checker with a descriptor kept on purpose. */
static int mode_exec_thread(void)
{
    alarm(20);
    grow_runtime();
    int sv[4][2];
    for (int i = 0; i < 4; i++) {
        pair(sv[i]);
        st_spawn(parked_reader, (void *)(intptr_t)sv[i][0]);
    }
    int p[2];
    if (pipe(p)) return 30;
    exec_keep = p[1];
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
    pthread_t t = st_spawn(execer, NULL);
    pthread_join(t, NULL); /* never returns if the exec worked */
    return 31;
}

static void test_exec(void)
{
    st_phase = "exec";
    pid_t pid = self_spawn("exec-thread", NULL, 0);
    CHECK(pid > 0, "posix_spawn of this program");
    if (pid > 0) {
        int st = st_wait_status(pid);
        CHECK(st == 0, "exec from a thread: %s (1-99: runtime descriptors leaked into the new image; 100: "
                       "the program's own was lost; 30-31: the exec failed)",
              st_status_str(st));
    }
    /* fork, then exec from the child, of a process whose runtime grew */
    grow_runtime();
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    exec_keep = p[1];
    pid = fork();
    if (pid == 0) {
        execer(NULL);
        _exit(31);
    }
    close(p[1]);
    close(p[0]);
    int st = st_wait_status(pid);
    CHECK(st == 0, "fork+exec from a thread: %s (see above)", st_status_str(st));
}

/* --------------------------------------------------------- close-all -- */

/* "close-all": closes every descriptor above 2 it did not open, then
 * serves loopback TCP with threads as before. */
/* "close-all HOW": every descriptor from 3 up closed by a loop of
 * close(2), by closefrom(3), or by syscall(SYS_close_range) (programs
 * written before glibc's wrapper). */
static int mode_close_all(const char *how)
{
    alarm(20);
    grow_runtime();
    /* this program opened no anonymous-inode file: any there is the
     * runtime's (none without it), and must outlive the loop */
    unsigned char anon[128];
    memset(anon, 0, sizeof anon);
    for (int fd = 3; fd < 1024; fd++)
        if (is_anon(fd, NULL, 0)) anon[fd / 8] |= (unsigned char)(1 << (fd % 8));
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    if (how && strcmp(how, "closefrom") == 0) closefrom(3);
    else if (how && strcmp(how, "syscall") == 0) syscall(SYS_close_range, 3u, ~0u, 0);
    else
        for (int fd = 3; fd < max; fd++) close(fd);
    for (int fd = 3; fd < 1024; fd++)
        if (bit(anon, fd) && !is_anon(fd, NULL, 0)) {
            fprintf(stderr, "process_life close-all: the runtime's descriptor %d was closed\n", fd);
            return 42;
        }
    int p[2];
    if (pipe(p)) return 40;
    grow_runtime();
    uint16_t port;
    int ls = st_listen(64, &port);
    pthread_t srv = st_spawn(tcp_server, (void *)(intptr_t)ls);
    pthread_detach(srv);
    pthread_t c[8];
    for (int i = 0; i < 8; i++) c[i] = st_spawn(tcp_client, (void *)(intptr_t)port);
    for (int i = 0; i < 8; i++) {
        void *r;
        pthread_join(c[i], &r);
        if (r) return 41;
    }
    return 0;
}

static void test_close_all(void)
{
    st_phase = "close-all";
    for (int i = 0; i < 3; i++) {
        const char *how = (const char *[]){"close", "closefrom", "syscall"}[i];
        pid_t pid = self_spawn("close-all", how, 0);
        CHECK(pid > 0, "posix_spawn of this program");
        if (pid > 0) {
            int st = st_wait_status(pid);
            CHECK(st == 0, "close every descriptor (%s), then serve: %s (42: a runtime descriptor was closed)", how,
                  st_status_str(st));
        }
    }
}

/* ------------------------------------------------------------ shared -- */

/* A read on fd in a thread; if it has not returned after limit_ms, a byte
 * written to wfd ends it. */
static void read_bounded(struct st_timed *r, int fd, int wfd, int limit_ms)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
    pthread_t t = st_spawn(st_timed_read, r);
    int64_t end = st_mono_ns() + (int64_t)limit_ms * 1000000;
    while (!atomic_load(&r->done) && st_mono_ns() < end) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    if (!atomic_load(&r->done)) (void)!write(wfd, "u", 1);
    pthread_join(t, NULL);
}

static void test_shared(void)
{
    st_phase = "shared flags";
    int sv[2];
    pair(sv);
    struct st_timed r;
    /* a blocking read that waits: the program's flags as they are now */
    pthread_t w;
    {
        memset(&r, 0, sizeof r);
        r.fd = sv[0];
        w = st_spawn(st_timed_read, &r);
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
        (void)!write(sv[1], "a", 1);
        pthread_join(w, NULL);
        CHECK(r.n == 1, "a blocking read: %zd", r.n);
    }
    /* a child sets O_NONBLOCK on the socket it shares */
    pid_t pid = fork();
    if (pid == 0) _exit(fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK) == 0 ? 0 : 1);
    CHECK(st_wait_status(pid) == 0, "the child's F_SETFL");
    int fl = fcntl(sv[0], F_GETFL);
    CHECK(fl >= 0 && (fl & O_NONBLOCK), "O_NONBLOCK set by a child is not seen by F_GETFL in the parent");
    read_bounded(&r, sv[0], sv[1], 2000);
    CHECK(r.n == -1 && r.err == EAGAIN, "O_NONBLOCK set by a child: the parent's read gave %zd errno %d "
                                        "after %.0f ms, want -1 EAGAIN at once",
          r.n, r.err, st_ms(r.ns));
    /* and cleared by another child: blocking again */
    pid = fork();
    if (pid == 0) _exit(fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) & ~O_NONBLOCK) == 0 ? 0 : 1);
    CHECK(st_wait_status(pid) == 0, "the child's F_SETFL");
    {
        memset(&r, 0, sizeof r);
        r.fd = sv[0];
        w = st_spawn(st_timed_read, &r);
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
        (void)!write(sv[1], "b", 1);
        pthread_join(w, NULL);
        CHECK(r.n == 1, "O_NONBLOCK cleared by a child: the parent's read gave %zd errno %d after %.0f ms, "
                        "want 1 (it waits for the byte)",
              r.n, r.err, st_ms(r.ns));
    }
    /* a child sets SO_RCVTIMEO (100 ms) on the socket it shares */
    pid = fork();
    if (pid == 0) {
        struct timeval tv = {0, 100000};
        _exit(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0 ? 0 : 1);
    }
    CHECK(st_wait_status(pid) == 0, "the child's setsockopt");
    read_bounded(&r, sv[0], sv[1], 8000);
    CHECK(r.n == -1 && r.err == EAGAIN && r.ns >= 95 * 1000000LL,
          "SO_RCVTIMEO 100 ms set by a child: the parent's read gave %zd errno %d after %.0f ms, "
          "want -1 EAGAIN after ~100 ms",
          r.n, r.err, st_ms(r.ns));
    close(sv[0]);
    close(sv[1]);
}

/* --------------------------------------------------------- inherited -- */

/* Opened before main (a constructor), used from threads. */
static int ctor_sv[2] = {-1, -1};
__attribute__((constructor)) static void open_early(void)
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, ctor_sv) != 0) ctor_sv[0] = ctor_sv[1] = -1;
}

static void *late_byte(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct timespec ts = {0, 60 * 1000000};
    nanosleep(&ts, NULL);
    (void)!write(fd, "z", 1);
    return NULL;
}

/* A descriptor this process did not open: blocking reads on it park and
 * wait for the writer; its flags are the file's. */
static int use_foreign(int rfd, int wfd, const char *what)
{
    int bad = 0;
    int fl = fcntl(rfd, F_GETFL);
    if (fl < 0 || (fl & O_NONBLOCK)) {
        fprintf(stderr, "%s: F_GETFL %#x\n", what, fl);
        bad++;
    }
    for (int i = 0; i < 3; i++) {
        struct st_timed r;
        memset(&r, 0, sizeof r);
        r.fd = rfd;
        pthread_t rd = st_spawn(st_timed_read, &r);
        pthread_t wr = st_spawn(late_byte, (void *)(intptr_t)wfd);
        pthread_join(rd, NULL);
        pthread_join(wr, NULL);
        if (r.n != 1) {
            fprintf(stderr, "%s: read %zd errno %d after %.0f ms\n", what, r.n, r.err, st_ms(r.ns));
            bad++;
        }
    }
    return bad;
}

/* "inherited R W": R and W are the ends of a socket pair this process's
 * parent made. */
static int mode_inherited(const char *fds)
{
    alarm(20);
    int r = -1, w = -1;
    if (!fds || sscanf(fds, "%d,%d", &r, &w) != 2) return 50;
    if (use_foreign(r, w, "inherited socket")) return 51;
    if (ctor_sv[0] < 0) return 52;
    if (use_foreign(ctor_sv[0], ctor_sv[1], "socket opened in a constructor")) return 53;
    return 0;
}

static void test_inherited(void)
{
    st_phase = "inherited";
    int sv[2];
    pair(sv);
    char arg[32];
    snprintf(arg, sizeof arg, "%d,%d", sv[0], sv[1]);
    pid_t pid = self_spawn("inherited", arg, 0);
    CHECK(pid > 0, "posix_spawn of this program");
    if (pid > 0) {
        int st = st_wait_status(pid);
        CHECK(st == 0, "descriptors from before start-up: %s (51: inherited; 52-53: opened in a constructor)",
              st_status_str(st));
    }
    close(sv[0]);
    close(sv[1]);
    CHECK(ctor_sv[0] >= 0 && use_foreign(ctor_sv[0], ctor_sv[1], "socket opened in a constructor") == 0,
          "a socket opened in a constructor");
}

/* ------------------------------------------------------------- main -- */

/* ------------------------------------------------------- lazy start -- */

/* Until the program's second thread there is no runtime: a process that
 * never makes a thread has its one OS thread, running main.  The second
 * thread starts the workers and the monitor, and main goes on as a green
 * thread, its OS thread waiting beside; threads made after add none. */
static void test_lazy_start(void)
{
    const char *p = getenv("NP_PROCS");
    int procs = p ? atoi(p) : 0;
    if (!st_under_shim() || procs < 1) {
        st_threads_up();
        return;
    }
    int first = st_os_threads();
    CHECK(first == 1, "lazy start: %d OS threads before the first pthread_create, want 1", first);
    st_threads_up();
    int up = st_os_threads();
    CHECK(up == procs + 2, "lazy start: %d OS threads after the first thread, want %d (NP_PROCS + the monitor + main's)",
          up, procs + 2);
    for (int i = 0; i < 20; i++) st_threads_up();
    int later = st_os_threads();
    CHECK(later == up, "lazy start: 20 more threads made and joined: %d OS threads, were %d", later, up);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "fds") == 0) return mode_fds(argc > 2 ? argv[2] : NULL);
    if (argc > 1 && strcmp(argv[1], "exec-thread") == 0) return mode_exec_thread();
    if (argc > 1 && strcmp(argv[1], "close-all") == 0) return mode_close_all(argc > 2 ? argv[2] : NULL);
    if (argc > 1 && strcmp(argv[1], "inherited") == 0) return mode_inherited(argc > 2 ? argv[2] : NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    signal(SIGPIPE, SIG_IGN);
    static const struct st_test tests[] = {
        {"lazy-start", test_lazy_start},
        {"fork", test_fork},         {"fork-load", test_fork_load}, {"spawn", test_spawn},
        {"daemon", test_daemon},     {"exec", test_exec},           {"close-all", test_close_all},
        {"shared", test_shared},     {"inherited", test_inherited},
    };
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("process_life");
}
