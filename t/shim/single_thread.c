/* A program is single-threaded until it makes a thread, and main is the
 * same thread before and after.
 *
 * Until its first pthread_create the process has one OS thread, so what
 * the kernel allows only a single-threaded process works: unshare of a new
 * user namespace (unshare -U, bubblewrap, browsers' sandboxes).  Then main
 * makes a thread and goes on: its TLS, errno, locals, pthread_self(),
 * gettid() (the process ID, as for any main thread) and stack attributes
 * stay; it waits in blocking calls that other threads end; it recurses
 * 2 MiB deep on its own stack; a thread signals it by the ID it kept.
 * A recursive and an error-checking mutex main locked while alone stay
 * main's: it unlocks them after (GStreamer's state and stream locks, held
 * across the start of a pad's task thread, which then took them).
 * Phases also made in a forked child (a daemon that makes threads after
 * its fork), and from a signal handler (a thread made there), and
 * pthread_exit from main with threads left. */
#include "shim_test.h"
#include "os_tid.h"
#include <dirent.h>
#include <sched.h>
#include <sys/syscall.h>

static int os_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* unshare(CLONE_NEWUSER) in a child made with fork() from here: 0 done,
 * 1 EINVAL (the process has other threads), 2 refused by this machine. */
static int userns_child(void)
{
    pid_t p = fork();
    if (p == 0) {
        if (unshare(CLONE_NEWUSER) == 0) _exit(0);
        _exit(errno == EINVAL ? 1 : 2);
    }
    int st = 0;
    if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st)) return 3;
    return WEXITSTATUS(st);
}

static __thread int tls_mark;
static int pipe_fd[2];
static pid_t main_tid;
static volatile sig_atomic_t usr1_seen;

static void on_usr1(int sig) { (void)sig; usr1_seen = 1; }

static char *volatile onstack_at;
static void on_onstack(int sig)
{
    (void)sig;
    onstack_at = (char *)__builtin_frame_address(0);
}

static void *writer(void *arg)
{
    (void)arg;
    usleep(50 * 1000); /* main is in read() by then */
    CHECK(write(pipe_fd[1], "x", 1) == 1, "writer: write");
    return NULL;
}

static pthread_mutex_t held_rec, held_check;
static void *try_held(void *arg)
{
    (void)arg;
    int r = pthread_mutex_trylock(&held_rec), c = pthread_mutex_trylock(&held_check);
    CHECK(r == 0 && c == 0, "a thread's trylock of the mutexes main released: %s, %s", strerror(r), strerror(c));
    if (r == 0) pthread_mutex_unlock(&held_rec);
    if (c == 0) pthread_mutex_unlock(&held_check);
    return NULL;
}

static void init_type(pthread_mutex_t *m, int type)
{
    pthread_mutexattr_t at;
    pthread_mutexattr_init(&at);
    pthread_mutexattr_settype(&at, type);
    pthread_mutex_init(m, &at);
    pthread_mutexattr_destroy(&at);
}

static void *signaller(void *arg)
{
    (void)arg;
    usleep(50 * 1000);
    CHECK(syscall(SYS_tgkill, getpid(), main_tid, SIGUSR1) == 0, "tgkill of main's kept ID: %s",
          strerror(errno));
    return NULL;
}

/* 2 MiB of frames on main's stack (8 MiB is the usual limit). */
__attribute__((noinline)) static long deep(int n)
{
    volatile char pad[1024];
    pad[0] = (char)n;
    if (n == 0) return 0;
    return deep(n - 1) + (pad[0] == (char)n);
}

static void stack_bounds(void **lo, size_t *size)
{
    pthread_attr_t a;
    *lo = NULL;
    *size = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstack(&a, lo, size);
        pthread_attr_destroy(&a);
    }
}

/* The phases of a program that starts alone and then makes threads. */
static void before_and_after(const char *who, int shimmed)
{
    st_phase = "alone";
    CHECK(os_threads() == 1, "%s: %d OS threads before any pthread_create", who, os_threads());
    int u = userns_child();
    CHECK(u != 1 && u != 3, "%s: unshare(CLONE_NEWUSER) in a single-threaded process: %s", who,
          u == 1 ? "EINVAL" : "child failed");
    main_tid = (pid_t)syscall(SYS_gettid);
    CHECK(main_tid == getpid(), "%s: main's gettid %d, its pid %d", who, (int)main_tid, (int)getpid());
    pthread_t me = pthread_self();
    tls_mark = 4242;
    volatile char local[256];
    memset((char *)local, 0x5a, sizeof local);
    void *lo0;
    size_t size0;
    stack_bounds(&lo0, &size0);
    char here;
    CHECK((char *)lo0 <= &here && &here < (char *)lo0 + size0, "%s: stack attributes hold a local", who);

    static char alt[64 * 1024];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0};
    CHECK(sigaltstack(&ss, NULL) == 0, "%s: sigaltstack", who);

    init_type(&held_rec, PTHREAD_MUTEX_RECURSIVE);
    init_type(&held_check, PTHREAD_MUTEX_ERRORCHECK);
    CHECK(pthread_mutex_lock(&held_rec) == 0 && pthread_mutex_lock(&held_rec) == 0 &&
              pthread_mutex_lock(&held_check) == 0,
          "%s: locks while alone", who);

    st_phase = "first thread";
    CHECK(pipe(pipe_fd) == 0, "pipe");
    pthread_t t;
    errno = 1234;
    CHECK(pthread_create(&t, NULL, writer, NULL) == 0, "%s: pthread_create", who);
    CHECK(errno == 1234, "%s: errno after pthread_create: %d", who, errno);
    CHECK(tls_mark == 4242, "%s: main's TLS after its first thread: %d", who, tls_mark);
    CHECK(pthread_equal(me, pthread_self()), "%s: pthread_self changed", who);
    CHECK(syscall(SYS_gettid) == main_tid, "%s: gettid changed to %ld", who, (long)syscall(SYS_gettid));
    int same = 1;
    for (size_t i = 0; i < sizeof local; i++) same &= local[i] == 0x5a;
    CHECK(same, "%s: main's locals changed", who);
    void *lo1;
    size_t size1;
    stack_bounds(&lo1, &size1);
    CHECK(lo1 == lo0 && size1 == size0, "%s: stack attributes changed: %p+%zu, were %p+%zu", who, lo1,
          size1, lo0, size0);
    char c = 0;
    CHECK(read(pipe_fd[0], &c, 1) == 1 && c == 'x', "%s: main's read of the thread's byte", who);
    CHECK(pthread_join(t, NULL) == 0, "%s: join", who);
    int u1 = pthread_mutex_unlock(&held_rec), u2 = pthread_mutex_unlock(&held_rec);
    int u3 = pthread_mutex_unlock(&held_check);
    CHECK(u1 == 0 && u2 == 0 && u3 == 0, "%s: main's unlocks of what it locked while alone: %s, %s, %s", who,
          strerror(u1), strerror(u2), strerror(u3));
    CHECK(pthread_create(&t, NULL, try_held, NULL) == 0 && pthread_join(t, NULL) == 0, "%s: try_held thread", who);
    if (shimmed)
        CHECK(st_os_tid() != getpid(), "%s: main still on the OS main thread (%d) with threads made", who,
              (int)st_os_tid());

    st_phase = "altstack";
    struct sigaction os;
    memset(&os, 0, sizeof os);
    os.sa_handler = on_onstack;
    os.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR2, &os, NULL);
    onstack_at = NULL;
    raise(SIGUSR2);
    CHECK(onstack_at >= alt && onstack_at < alt + sizeof alt, "%s: an SA_ONSTACK handler ran at %p, not on the sigaltstack set before the first thread",
          who, (void *)onstack_at);
    signal(SIGUSR2, SIG_DFL);
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, NULL);

    st_phase = "deep";
    CHECK(deep(2048) == 2048, "%s: deep recursion", who);

    st_phase = "signalled by its ID";
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART: the read ends with EINTR */
    sigaction(SIGUSR1, &sa, NULL);
    usr1_seen = 0;
    CHECK(pthread_create(&t, NULL, signaller, NULL) == 0, "%s: pthread_create", who);
    ssize_t r = read(pipe_fd[0], &c, 1);
    CHECK(r == -1 && errno == EINTR && usr1_seen, "%s: read interrupted by tgkill(main's ID): %zd %s %d", who,
          r, strerror(errno), (int)usr1_seen);
    pthread_join(t, NULL);
    signal(SIGUSR1, SIG_DFL);
    close(pipe_fd[0]);
    close(pipe_fd[1]);
}

/* A thread made inside a signal handler, while main is alone: the handler
 * returns to main's code as ever. */
static pthread_t from_handler;
static atomic_int handler_thread_ran;
static void *ran(void *arg)
{
    (void)arg;
    atomic_store(&handler_thread_ran, 1);
    return NULL;
}
static void on_usr2(int sig)
{
    (void)sig;
    CHECK(pthread_create(&from_handler, NULL, ran, NULL) == 0, "pthread_create in a handler");
}

static atomic_int last_done;
static void *last_one(void *arg)
{
    (void)arg;
    usleep(100 * 1000);
    atomic_store(&last_done, 1);
    printf("last thread done\n");
    fflush(stdout);
    return NULL;
}

int main(int argc, char **argv)
{
    st_watchdog(60);
    int shimmed = st_under_shim();

    /* A forked child of main, alone, then making threads. */
    st_phase = "forked child";
    pid_t p = fork();
    long failed_before = atomic_load(&st_failures); /* a child's own failures decide its status */
    if (p == 0) {
        before_and_after("child", shimmed);
        _exit(atomic_load(&st_failures) != failed_before ? 1 : 0);
    }
    int st = -1;
    pid_t w = p > 0 ? waitpid(p, &st, 0) : -1;
    CHECK(w == p && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the forked child's checks (status %#x, %s)", st,
          w == p ? "" : strerror(errno));

    /* A thread made from a handler, in a child (the parent is to be alone
     * for its own phases). */
    failed_before = atomic_load(&st_failures);
    p = fork();
    if (p == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr2;
        sigaction(SIGUSR2, &sa, NULL);
        raise(SIGUSR2);
        CHECK(pthread_join(from_handler, NULL) == 0 && atomic_load(&handler_thread_ran),
              "the thread made in a handler");
        CHECK(deep(512) == 512, "after the handler");
        _exit(atomic_load(&st_failures) != failed_before ? 1 : 0);
    }
    CHECK(p > 0 && waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "the handler child's checks (status %#x)", st);

    before_and_after("main", shimmed);

    /* pthread_exit from main: the process ends when the last thread does,
     * with status 0. */
    if (argc > 1 && strcmp(argv[1], "noexit") == 0) return 0;
    p = fork();
    if (p == 0) {
        pthread_t t;
        pthread_create(&t, NULL, last_one, NULL);
        pthread_exit(NULL);
    }
    CHECK(p > 0 && waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "pthread_exit from main, then the last thread (status %#x)", st);

    printf("single_thread: %ld checks, %ld failed\n", atomic_load(&st_checks), atomic_load(&st_failures));
    return atomic_load(&st_failures) ? 1 : 0;
}
