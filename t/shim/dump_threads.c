/* Legacy threads blocked in the calls a dump must name, for
 * t/shim/dump-check.sh: it runs this under `nprun --dump-on QUIT`, sends
 * SIGQUIT once "ready" is printed, and reads the dump on stderr.  A thread
 * reads stdin, one waits for a mutex, one for a condition variable, one
 * sleeps, and main joins the reader; each names itself.  Exits 0 once a
 * byte arrives on stdin.  Plain C and pthreads; built with -rdynamic so
 * the dump can name the functions below. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER, held = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static volatile int done;

__attribute__((noinline)) void *legacy_reader(void *arg) {
    char c;
    ssize_t n = read(0, &c, 1);
    done = 1;
    return n == 1 ? arg : NULL;
}

__attribute__((noinline)) void *legacy_locker(void *arg) {
    pthread_mutex_lock(&held);
    pthread_mutex_unlock(&held);
    return arg;
}

__attribute__((noinline)) void *legacy_waiter(void *arg) {
    pthread_mutex_lock(&mu);
    while (!done) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return arg;
}

__attribute__((noinline)) void *legacy_sleeper(void *arg) {
    while (!done) sleep(100);
    return arg;
}

/* "self": the program sends the dump signal itself, with raise(3) and
 * kill(getpid()) from main, a green thread by then; "early": raise(3)
 * first thing, before any thread.  Either way the dump comes and the
 * program goes on, as on a SIGQUIT from outside. */
static int self_sent(const char *how) {
    if (how[0] == 'e') {
        raise(SIGQUIT);
        usleep(500000); /* the dump thread writes */
        printf("done\n");
        return 0;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, legacy_sleeper, NULL) != 0) return 1;
    raise(SIGQUIT);
    usleep(300000);
    kill(getpid(), SIGQUIT);
    usleep(300000);
    printf("done\n");
    return 0; /* the sleeper ends with the process */
}

int main(int argc, char **argv) {
    if (argc > 1) return self_sent(argv[1]);
    static const struct { const char *name; void *(*fn)(void *); } kinds[] = {
        {"reader", legacy_reader}, {"locker", legacy_locker},
        {"waiter", legacy_waiter}, {"sleeper", legacy_sleeper},
    };
    pthread_t th[4];
    /* What the program would see without the dump: the default. */
    struct sigaction quit;
    sigaction(SIGQUIT, NULL, &quit);
    printf("quit action=%s\n", quit.sa_handler == SIG_DFL && !(quit.sa_flags & SA_SIGINFO) ? "default" : "other");
    pthread_mutex_lock(&held);
    for (int i = 0; i < 4; i++) {
        if (pthread_create(&th[i], NULL, kinds[i].fn, &th[i]) != 0) return 1;
        pthread_setname_np(th[i], kinds[i].name);
    }
    usleep(200000); /* they block */
    printf("ready pid=%d\n", (int)getpid());
    fflush(stdout);
    void *r;
    pthread_join(th[0], &r);
    printf("done\n");
    return r == &th[0] ? 0 : 1;
}
