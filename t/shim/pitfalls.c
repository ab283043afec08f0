/* pitfalls: the known ways a green-thread shim goes wrong, one check each
 * (errno across a move between OS threads is migrate.c's; descriptors from
 * before start-up and O_NONBLOCK shared with a child are process_life.c's;
 * handlers on small stacks are signals.c's).
 *
 *   held-lock   a thread parks (read, sleep, condition wait) holding a
 *               mutex, a read-write lock or a semaphore the others need,
 *               and only a third thread can let it go on: with one worker,
 *               the threads waiting for the lock must not hold that worker
 *   fd-reuse    a descriptor closed while a thread waits on it is reused at
 *               once by a new socket: a read of the new one parks and
 *               wakes, the first reader never reads the new file (a reader
 *               known to be parked: EBADF at the close under the shim, as
 *               in Go; 0 at the old peer's close with OS threads), nobody
 *               is left waiting, over and over
 *   rcvtimeo    defaults: a fresh socket has no timeouts and its read waits
 *               as long as it takes; an accepted socket has its listener's;
 *               a timeout set to 0 again is none
 *   epoll       a program's own epoll: a regular file is refused (EPERM),
 *               a socket the shim already waits on is accepted, epoll_wait
 *               waits and sees it
 *   overflow    a thread that recurses without end (default stack, a small
 *               one, main) dies of SIGSEGV, not of silent corruption
 *   chardev     writes to character devices that are not terminals
 *               (/dev/random, whose poll never says POLLOUT, and /dev/null)
 *               go through at once
 *   own-stack   a thread runs on a stack of the program's own (ucontext, in
 *               .bss, below the thread stacks: pdns_recursor's queries run
 *               so, on boost.context) and there sleeps, waits for a
 *               contended mutex and reads a pipe another thread writes
 *               later: no overflow is seen in it, and it comes back
 *   link        threads created in a constructor of a library the program
 *               links with (pitfalls_lib.c, initialised before the preload
 *               shim) and of the program, before main; a thread
 *               created by libc's own pthread_create (looked up in libc's
 *               handle, as a library that binds late may), sharing a mutex
 *               and a condition variable with the others
 *
 * The processes that must die are this program again (/proc/self/exe)
 * with a mode argument. */
#include <dirent.h>
#include <dlfcn.h>
#include <ucontext.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "shim_test.h"

extern char **environ;

/* ------------------------------------------------------- held-lock -- */

enum { L_MUTEX, L_RWLOCK, L_SEM, L_N };
static const char *lock_name[] = {"mutex", "rwlock", "semaphore"};
static pthread_mutex_t hl_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t hl_rw = PTHREAD_RWLOCK_INITIALIZER;
static sem_t hl_sem;
static pthread_mutex_t hl_cm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hl_cv = PTHREAD_COND_INITIALIZER;
static int hl_go;
static atomic_int hl_held, hl_contenders_in, hl_got;

static void take(int kind)
{
    if (kind == L_MUTEX) pthread_mutex_lock(&hl_m);
    else if (kind == L_RWLOCK) pthread_rwlock_wrlock(&hl_rw);
    else while (sem_wait(&hl_sem) != 0 && errno == EINTR) {}
}
static void give(int kind)
{
    if (kind == L_MUTEX) pthread_mutex_unlock(&hl_m);
    else if (kind == L_RWLOCK) pthread_rwlock_unlock(&hl_rw);
    else sem_post(&hl_sem);
}

struct holder {
    int kind, how, fd; /* how: 0 read, 1 sleep, 2 condition wait */
};
/* Takes the lock, then parks until the releaser lets it go on. */
static void *holder_body(void *arg)
{
    struct holder *h = arg;
    take(h->kind);
    atomic_store(&hl_held, 1);
    if (h->how == 0) {
        char c;
        (void)!read(h->fd, &c, 1);
    } else if (h->how == 1) {
        st_sleep_ms(150);
    } else {
        pthread_mutex_lock(&hl_cm);
        while (!hl_go) pthread_cond_wait(&hl_cv, &hl_cm);
        pthread_mutex_unlock(&hl_cm);
    }
    give(h->kind);
    return NULL;
}
static void *contender(void *arg)
{
    int kind = (int)(intptr_t)arg;
    atomic_fetch_add(&hl_contenders_in, 1);
    take(kind);
    atomic_fetch_add(&hl_got, 1);
    give(kind);
    return NULL;
}
struct releaser {
    int how, fd;
};
/* Waits until the contenders wait for the lock, then lets the holder go. */
static void *releaser_body(void *arg)
{
    struct releaser *r = arg;
    st_wait_for(&hl_contenders_in, 4, 5000);
    st_sleep_ms(30); /* they are in the lock now */
    if (r->how == 0) (void)!write(r->fd, "g", 1);
    else if (r->how == 2) {
        pthread_mutex_lock(&hl_cm);
        hl_go = 1;
        pthread_cond_broadcast(&hl_cv);
        pthread_mutex_unlock(&hl_cm);
    }
    return NULL;
}

static void test_held_lock(void)
{
    st_phase = "held lock";
    sem_init(&hl_sem, 0, 1);
    for (int kind = 0; kind < L_N; kind++)
        for (int how = 0; how < 3; how++) {
            atomic_store(&hl_held, 0);
            atomic_store(&hl_contenders_in, 0);
            atomic_store(&hl_got, 0);
            hl_go = 0;
            int p[2];
            CHECK(pipe(p) == 0, "pipe");
            struct holder h = {kind, how, p[0]};
            struct releaser r = {how, p[1]};
            int64_t t0 = st_mono_ns();
            pthread_t th = st_spawn(holder_body, &h);
            st_wait_for(&hl_held, 1, 5000);
            pthread_t c[4];
            for (int i = 0; i < 4; i++) c[i] = st_spawn(contender, (void *)(intptr_t)kind);
            pthread_t rl = st_spawn(releaser_body, &r);
            CHECK(st_wait_for(&hl_got, 4, 5000), "%s held across a park (%s): %d of 4 waiting threads got it in 5 s",
                  lock_name[kind], how == 0 ? "read" : how == 1 ? "sleep" : "condition wait", atomic_load(&hl_got));
            if (atomic_load(&hl_got) < 4) { /* stuck: do not wait for them */
                fprintf(stderr, "held-lock: giving up\n");
                exit(1);
            }
            pthread_join(th, NULL);
            for (int i = 0; i < 4; i++) pthread_join(c[i], NULL);
            pthread_join(rl, NULL);
            CHECK(st_mono_ns() - t0 < 5000000000LL, "held lock: took %.0f ms", st_ms(st_mono_ns() - t0));
            close(p[0]);
            close(p[1]);
        }
    sem_destroy(&hl_sem);
}

/* -------------------------------------------------------- fd-reuse -- */

struct waiter {
    int fd;
    atomic_int in, done;
    ssize_t n;
    int err;
    char got;
    pid_t tid;
};
static void *fd_waiter(void *arg)
{
    struct waiter *w = arg;
    w->tid = st_os_tid();
    atomic_store(&w->in, 1);
    errno = 0;
    w->n = read(w->fd, &w->got, 1);
    w->err = errno;
    atomic_store(&w->done, 1);
    return NULL;
}

/* Wait for a waiter to be done; if it is not in ms, unstick it (close the
 * descriptor, and give up on the process if even that fails). */
static int finish_waiter(struct waiter *w, pthread_t t, int unstick_fd, int ms)
{
    int ok = st_wait_for(&w->done, 1, ms);
    if (!ok) {
        close(unstick_fd);
        if (!st_wait_for(&w->done, 1, 2000)) {
            fprintf(stderr, "FAILED fd-reuse: a reader is stuck for good\n");
            exit(1);
        }
    }
    pthread_join(t, NULL);
    return ok;
}

/* How a round knows its reader is parked in read() before the close. */
enum park_seen {
    SEEN_TASK,  /* an OS thread: procfs shows the task in read(fd) */
    SEEN_EPOLL, /* a green thread: the shim's epoll watches the file, which
                 * it registers only once the read found nothing to read */
    SEEN_NONE,  /* the shim on another poller: nothing shows it */
};

/* Whether OS thread tid sleeps in read(fd), inside the kernel (past the
 * point where the kernel took the file). */
static int task_in_read(pid_t tid, int fd)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long nr = -1;
    unsigned long arg0 = 0;
    int got = fscanf(f, "%ld 0x%lx", &nr, &arg0);
    fclose(f);
    return got == 2 && nr == SYS_read && arg0 == (unsigned long)fd;
}

/* Whether one of the process's epoll instances watches fd as the file with
 * inode ino (/proc/self/fdinfo of an epoll descriptor lists its targets). */
static int epoll_watches(int fd, unsigned long ino)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return 0;
    int found = 0;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        char path[300], link[64];
        snprintf(path, sizeof path, "/proc/self/fd/%s", de->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n <= 0) continue;
        link[n] = 0;
        if (strcmp(link, "anon_inode:[eventpoll]") != 0) continue;
        snprintf(path, sizeof path, "/proc/self/fdinfo/%s", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        char line[256];
        while (!found && fgets(line, sizeof line, f)) {
            int tfd;
            unsigned long i;
            found = sscanf(line, "tfd: %d events: %*x data: %*x pos:%*d ino:%lx", &tfd, &i) == 2 && tfd == fd &&
                    i == ino;
        }
        fclose(f);
    }
    closedir(d);
    return found;
}

/* Wait (up to 10 s) until w is parked in its read; whether it was seen. */
static int wait_parked(struct waiter *w, enum park_seen how)
{
    struct stat st;
    if (fstat(w->fd, &st) != 0) return 0;
    st_wait_for(&w->in, 1, 5000);
    if (how == SEEN_NONE) {
        st_sleep_ms(100);
        return 0;
    }
    for (int i = 0; i < 10000; i++) {
        if (how == SEEN_TASK ? task_in_read(w->tid, w->fd) : epoll_watches(w->fd, (unsigned long)st.st_ino)) return 1;
        st_sleep_ms(1);
    }
    return 0;
}

/* One round: a thread waits in read() on a socket's number N, another
 * closes N and a new socket takes N at once; a read of the new socket parks
 * and wakes, and the first reader returns without touching the new file.
 * parked: the close comes once the first reader is known to be in its
 * read (else it races with the read's start).  Under the shim the close
 * wakes a parked reader with EBADF (as Go's close does); with OS threads
 * the kernel keeps the old file for the reader, which reads its end (0)
 * once the old peer closes. */
static int fd_reuse_round(int round, int parked, int shim, enum park_seen how)
{
    int a[2], b[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, a) == 0, "socketpair");
    struct waiter w;
    memset(&w, 0, sizeof w);
    w.fd = a[0];
    pthread_t t = st_spawn(fd_waiter, &w);
    int seen = 0;
    if (parked) {
        seen = wait_parked(&w, how);
        CHECK(seen || how == SEEN_NONE, "round %d: the reader of %d never showed parked in its read (%s)", round, a[0],
              how == SEEN_TASK ? "procfs syscall" : "the shim's epoll registration");
    } else {
        st_wait_for(&w.in, 1, 5000);
        if (round % 4 == 3) st_sleep_ms(20); /* in its read by now, most likely */
    }
    int old = a[0];
    close(a[0]);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, b) == 0, "socketpair");
    int fresh = b[1] == old ? b[1] : b[0];
    int peer = fresh == b[0] ? b[1] : b[0];
    CHECK(fresh == old, "round %d: the new socket took %d and %d, not the closed %d", round, b[0], b[1], old);
    if (seen && shim) {
        /* the close alone wakes it: nothing else happens to the old file */
        int woke = st_wait_for(&w.done, 1, 5000);
        CHECK(woke, "round %d: the read parked on %d did not return when %d was closed", round, old, old);
        CHECK(!woke || (w.n == -1 && w.err == EBADF),
              "round %d: the reader parked on %d when it was closed got %zd (errno %d, byte %#x), want -1 EBADF",
              round, old, w.n, w.err, (unsigned char)w.got);
    }
    /* a reader of the new socket under the old number */
    struct waiter w2;
    memset(&w2, 0, sizeof w2);
    w2.fd = fresh;
    pthread_t t2 = st_spawn(fd_waiter, &w2);
    st_wait_for(&w2.in, 1, 5000);
    st_sleep_ms(2);
    /* one byte each, should a racing first reader have come to its read
     * after the number changed hands (then it reads the new file, with or
     * without the shim) */
    (void)!write(peer, "NM", 2);
    int ok2 = finish_waiter(&w2, t2, peer, 3000);
    CHECK(ok2, "round %d: a read on the reused descriptor %d did not wake", round, fresh);
    CHECK(w2.n == 1 && (w2.got == 'N' || (!seen && w2.got == 'M')),
          "round %d: the reused descriptor read %zd (errno %d, byte %#x)", round, w2.n, w2.err, (unsigned char)w2.got);
    close(a[1]);
    close(peer);
    int ok = finish_waiter(&w, t, fresh, 3000);
    CHECK(ok, "round %d: the reader of the closed descriptor did not return", round);
    if (seen && !shim)
        CHECK(w.n == 0, "round %d: the reader blocked on %d when it was closed got %zd (errno %d, byte %#x), want 0 "
              "(the old file's end)", round, old, w.n, w.err, (unsigned char)w.got);
    else if (!seen)
        CHECK(w.n == 0 || (w.n == 1 && (w.got == 'N' || w.got == 'M')) || (w.n == -1 && w.err == EBADF),
              "round %d: the reader of the closed descriptor got %zd errno %d, want 0, EBADF (or a byte of the "
              "new file)",
              round, w.n, w.err);
    close(fresh);
    return seen;
}

static void test_fd_reuse(void)
{
    st_phase = "fd reuse";
    int shim = st_under_shim();
    const char *poller = getenv("NP_POLLER");
    enum park_seen how = !shim ? SEEN_TASK : !poller || !*poller || strcmp(poller, "epoll") == 0 ? SEEN_EPOLL
                                                                                                   : SEEN_NONE;
    if (how == SEEN_NONE)
        printf("fd-reuse: NP_POLLER=%s: a parked reader cannot be seen, only what any timing allows is checked\n",
               poller);
    int seen = 0;
    for (int round = 0; round < 40; round++) {
        long failed = atomic_load(&st_failures);
        seen += fd_reuse_round(round, round % 2 == 0, shim, how);
        if (atomic_load(&st_failures) != failed) break; /* each failed wait costs seconds: one round tells */
    }
    printf("fd-reuse: %d rounds closed a reader known to be parked (%s)\n", seen,
           how == SEEN_TASK ? "procfs" : how == SEEN_EPOLL ? "the shim's epoll" : "none");
}

/* -------------------------------------------------------- rcvtimeo -- */

static void *late_write(void *arg)
{
    st_sleep_ms(300);
    (void)!write((int)(intptr_t)arg, "x", 1);
    return NULL;
}
static int64_t timeo_ms(int fd, int opt)
{
    struct timeval tv = {-1, -1};
    socklen_t len = sizeof tv;
    if (getsockopt(fd, SOL_SOCKET, opt, &tv, &len) != 0) return -1;
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void test_rcvtimeo(void)
{
    st_phase = "rcvtimeo";
    uint16_t port;
    int ls = st_listen(8, &port);
    int c = st_connect(port);
    int s = accept(ls, NULL, NULL);
    CHECK(c >= 0 && s >= 0, "connect/accept");
    CHECK(timeo_ms(s, SO_RCVTIMEO) == 0 && timeo_ms(s, SO_SNDTIMEO) == 0, "a fresh socket's timeouts: %lld %lld ms",
          (long long)timeo_ms(s, SO_RCVTIMEO), (long long)timeo_ms(s, SO_SNDTIMEO));
    struct st_timed t = {.fd = s};
    pthread_t w = st_spawn(late_write, (void *)(intptr_t)c);
    st_timed_read(&t);
    pthread_join(w, NULL);
    CHECK(t.n == 1 && t.ns >= 280 * 1000000LL, "no timeout: read gave %zd (errno %d) after %.0f ms, want 1 after 300",
          t.n, t.err, st_ms(t.ns));
    close(s);
    close(c);
    /* the listener's timeout passes to the sockets it accepts */
    struct timeval tv = {0, 100000};
    CHECK(setsockopt(ls, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "setsockopt");
    c = st_connect(port);
    s = accept(ls, NULL, NULL);
    int64_t got = timeo_ms(s, SO_RCVTIMEO);
    CHECK(got == 100, "the accepted socket's SO_RCVTIMEO: %lld ms, want the listener's 100", (long long)got);
    memset(&t, 0, sizeof t);
    t.fd = s;
    w = st_spawn(st_timed_read, &t);
    pthread_join(w, NULL);
    CHECK(t.n == -1 && t.err == EAGAIN && t.ns >= 95 * 1000000LL && t.ns < 3000 * 1000000LL,
          "an accepted socket with its listener's 100 ms: read gave %zd errno %d after %.0f ms", t.n, t.err,
          st_ms(t.ns));
    /* set to 0 again: no timeout */
    struct timeval zero = {0, 0};
    CHECK(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &zero, sizeof zero) == 0, "setsockopt 0");
    memset(&t, 0, sizeof t);
    t.fd = s;
    w = st_spawn(late_write, (void *)(intptr_t)c);
    st_timed_read(&t);
    pthread_join(w, NULL);
    CHECK(t.n == 1 && t.ns >= 280 * 1000000LL, "timeout cleared: read gave %zd (errno %d) after %.0f ms", t.n, t.err,
          st_ms(t.ns));
    close(s);
    close(c);
    close(ls);
}

/* ----------------------------------------------------------- epoll -- */

static void test_epoll(void)
{
    st_phase = "epoll";
    int ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0, "epoll_create1: %s", strerror(errno));
    char path[] = "/tmp/np-pitfalls-XXXXXX";
    int f = mkstemp(path);
    CHECK(f >= 0, "mkstemp");
    unlink(path);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = f};
    errno = 0;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, f, &ev) == -1 && errno == EPERM,
          "epoll_ctl ADD of a regular file: want -1 EPERM, got errno %d", errno);
    /* a socket a thread has already waited on (the shim registered it) */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    struct st_timed t = {.fd = sv[0]};
    pthread_t w = st_spawn(late_write, (void *)(intptr_t)sv[1]);
    st_timed_read(&t);
    pthread_join(w, NULL);
    CHECK(t.n == 1, "read: %zd", t.n);
    ev.data.fd = sv[0];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev) == 0, "epoll_ctl ADD of a socket already waited on: %s",
          strerror(errno));
    struct epoll_event out[4];
    int64_t s = st_mono_ns();
    int n = epoll_wait(ep, out, 4, 100);
    CHECK(n == 0 && st_mono_ns() - s >= 95 * 1000000LL, "epoll_wait on nothing ready: %d after %.0f ms", n,
          st_ms(st_mono_ns() - s));
    w = st_spawn(late_write, (void *)(intptr_t)sv[1]);
    n = epoll_wait(ep, out, 4, 5000);
    CHECK(n == 1 && out[0].data.fd == sv[0] && (out[0].events & EPOLLIN), "epoll_wait: %d", n);
    pthread_join(w, NULL);
    char c;
    CHECK(read(sv[0], &c, 1) == 1, "read after epoll_wait");
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, sv[0], NULL) == 0, "EPOLL_CTL_DEL");
    close(sv[0]);
    close(sv[1]);
    close(f);
    close(ep);
}

/* -------------------------------------------------------- overflow -- */

static volatile long overflow_depth = -1; /* never reached: -1 is no limit */
__attribute__((noinline)) static int recurse_forever(volatile char *prev, long depth)
{
    volatile char frame[512];
    frame[0] = prev ? prev[0] + 1 : 0;
    frame[511] = frame[0];
    if (depth == overflow_depth) return 0;
    return recurse_forever(frame, depth + 1) + frame[511]; /* not a tail call */
}
static void *overflow_thread(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)recurse_forever(NULL, 0);
}

/* "overflow default|small|main": recurse without end. */
static int mode_overflow(const char *how)
{
    alarm(20);
    struct rlimit core = {0, 0};
    setrlimit(RLIMIT_CORE, &core);
    if (strcmp(how, "main") == 0) return recurse_forever(NULL, 0);
    pthread_attr_t a;
    pthread_attr_init(&a);
    if (strcmp(how, "small") == 0) pthread_attr_setstacksize(&a, 64 * 1024);
    pthread_t t;
    if (pthread_create(&t, &a, overflow_thread, NULL) != 0) return 70;
    pthread_join(t, NULL);
    return 71;
}

static void test_overflow(void)
{
    st_phase = "overflow";
    const char *hows[] = {"default", "small", "main"};
    for (int i = 0; i < 3; i++) {
        char *argv[] = {"pitfalls", "overflow", (char *)hows[i], NULL};
        pid_t pid;
        CHECK(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ) == 0, "posix_spawn");
        int st = st_wait_status(pid);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "a thread (%s stack) recursing without end: %s, want signal %d",
              hows[i], st_status_str(st), SIGSEGV);
    }
}

/* ------------------------------------------------------------ link -- */

static pthread_t ctor_thread;
static atomic_int ctor_ran, ctor_created;
static __thread int ctor_tls = 7;
static void *ctor_body(void *arg)
{
    (void)arg;
    ctor_tls = 42;
    st_sleep_ms(20); /* park before main joins */
    atomic_store(&ctor_ran, ctor_tls == 42 ? 1 : 2);
    return (void *)(intptr_t)0x5a;
}
__attribute__((constructor)) static void start_early(void)
{
    if (pthread_create(&ctor_thread, NULL, ctor_body, NULL) == 0) atomic_store(&ctor_created, 1);
}

static pthread_mutex_t lk_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t lk_c = PTHREAD_COND_INITIALIZER;
static int lk_turn, lk_rounds_done;
/* Two threads take turns through a mutex and a condition variable. */
static void *turns(void *arg)
{
    int me = (int)(intptr_t)arg;
    for (int i = 0; i < 50; i++) {
        pthread_mutex_lock(&lk_m);
        while (lk_turn != me) pthread_cond_wait(&lk_c, &lk_m);
        lk_turn = !me;
        lk_rounds_done++;
        pthread_cond_broadcast(&lk_c);
        pthread_mutex_unlock(&lk_m);
    }
    return (void *)(intptr_t)(me + 100);
}

int pitfalls_lib_result(void); /* pitfalls_lib.c */

static void test_link(void)
{
    st_phase = "link";
    int lib = pitfalls_lib_result();
    CHECK(lib == 0, "the thread a library's constructor started: %d (pitfalls_lib.c)", lib);
    CHECK(atomic_load(&ctor_created), "pthread_create in a constructor failed");
    if (atomic_load(&ctor_created)) {
        void *r = NULL;
        CHECK(pthread_join(ctor_thread, &r) == 0 && r == (void *)(intptr_t)0x5a, "joining the constructor's thread");
        CHECK(atomic_load(&ctor_ran) == 1, "the constructor's thread: ran %d", atomic_load(&ctor_ran));
        CHECK(ctor_tls == 7, "main's __thread value changed by another thread: %d", ctor_tls);
    }
    /* libc's own pthread_create, past any interposer */
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    CHECK(libc != NULL, "dlopen libc.so.6: %s", dlerror());
    if (!libc) return;
    typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    create_fn libc_create = (create_fn)dlsym(libc, "pthread_create");
    CHECK(libc_create != NULL, "dlsym pthread_create in libc");
    if (libc_create) {
        lk_turn = 0;
        lk_rounds_done = 0;
        pthread_t a, b;
        CHECK(libc_create(&a, NULL, turns, (void *)0) == 0, "libc's pthread_create");
        b = st_spawn(turns, (void *)1);
        void *ra = NULL, *rb = NULL;
        CHECK(pthread_join(a, &ra) == 0 && ra == (void *)100, "join of libc's thread: %p", ra);
        pthread_join(b, &rb);
        CHECK(rb == (void *)101 && lk_rounds_done == 100, "turns: %d of 100", lk_rounds_done);
    }
    dlclose(libc);
}

/* ------------------------------------------------------------- main -- */

/* -------------------------------------------------------------- chardev -- */

static atomic_int cd_done;
static void *cd_writer(void *arg)
{
    (void)arg;
    int fd = open("/dev/random", O_WRONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? write(fd, "seedseed", 8) : -2;
    int z = open("/dev/null", O_WRONLY | O_CLOEXEC);
    struct iovec v[2] = {{"ab", 2}, {"cd", 2}};
    ssize_t m = z >= 0 ? writev(z, v, 2) : -2;
    if (fd >= 0) close(fd);
    if (z >= 0) close(z);
    atomic_store(&cd_done, n == 8 && m == 4 ? 1 : -1);
    return NULL;
}

static void test_chardev(void)
{
    st_phase = "chardev";
    pthread_t th = st_spawn(cd_writer, NULL);
    for (int i = 0; i < 500 && !atomic_load(&cd_done); i++) st_sleep_ms(10);
    CHECK(atomic_load(&cd_done) == 1, "a write to /dev/random and a writev to /dev/null: %s",
          atomic_load(&cd_done) ? "wrong counts" : "still waiting after 5 s (its poll never says POLLOUT)");
    if (atomic_load(&cd_done)) pthread_join(th, NULL);
    else pthread_detach(th);
}

/* ------------------------------------------------------------ own-stack -- */

static char os_stack[256 * 1024] __attribute__((aligned(64)));
static ucontext_t os_main, os_co;
static pthread_mutex_t os_m = PTHREAD_MUTEX_INITIALIZER;
static int os_pipe[2], os_steps;

static void os_body(void)
{
    struct timespec ts = {0, 5 * 1000 * 1000};
    if (nanosleep(&ts, NULL) == 0) os_steps++;
    pthread_mutex_lock(&os_m); /* held by the other thread for a while */
    os_steps++;
    pthread_mutex_unlock(&os_m);
    char c;
    if (read(os_pipe[0], &c, 1) == 1 && c == 'x') os_steps++;
    swapcontext(&os_co, &os_main);
}

static void *os_holder(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&os_m);
    st_sleep_ms(30);
    pthread_mutex_unlock(&os_m);
    st_sleep_ms(30);
    (void)!write(os_pipe[1], "x", 1);
    return NULL;
}

static void *os_runner(void *arg)
{
    (void)arg;
    getcontext(&os_co);
    os_co.uc_stack.ss_sp = os_stack;
    os_co.uc_stack.ss_size = sizeof os_stack;
    os_co.uc_link = &os_main;
    makecontext(&os_co, os_body, 0);
    pthread_t h = st_spawn(os_holder, NULL);
    st_sleep_ms(5); /* the holder has the mutex */
    swapcontext(&os_main, &os_co);
    pthread_join(h, NULL);
    return NULL;
}

static void test_own_stack(void)
{
    st_phase = "own stack";
    CHECK(pipe(os_pipe) == 0, "pipe");
    pthread_join(st_spawn(os_runner, NULL), NULL);
    CHECK(os_steps == 3, "on its own stack the thread got through %d of its 3 waits", os_steps);
    close(os_pipe[0]);
    close(os_pipe[1]);
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "overflow") == 0) return mode_overflow(argv[2]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    signal(SIGPIPE, SIG_IGN);
    static const struct st_test tests[] = {
        {"link", test_link},         {"held-lock", test_held_lock}, {"fd-reuse", test_fd_reuse},
        {"rcvtimeo", test_rcvtimeo}, {"epoll", test_epoll},         {"overflow", test_overflow},
        {"own-stack", test_own_stack}, {"chardev", test_chardev},
    };
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("pitfalls");
}
