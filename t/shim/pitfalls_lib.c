/* pitfalls_lib: a shared library pitfalls links with, whose constructor
 * starts a thread: it runs before the program's own constructors and, by
 * the order the dynamic loader initialises libraries in, may run before
 * the preload shim's.  The thread parks (a pipe read a second thread
 * answers, a sleep) and keeps __thread state; pitfalls_lib_result() joins
 * it: 0 when all went as it should. */
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

static pthread_t worker, answerer;
static int pipefd[2] = {-1, -1};
static int started = -1;
static __thread int lib_tls = 5;

static void *answer(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
    return (void *)(long)(write(pipefd[1], "a", 1) == 1 ? 0 : 1);
}

static void *work(void *arg)
{
    (void)arg;
    lib_tls = 9;
    char c = 0;
    ssize_t n;
    while ((n = read(pipefd[0], &c, 1)) < 0 && errno == EINTR) {}
    struct timespec ts = {0, 5 * 1000000};
    nanosleep(&ts, NULL);
    return (void *)(long)(n == 1 && c == 'a' && lib_tls == 9 ? 0 : 2);
}

__attribute__((constructor)) static void lib_start(void)
{
    if (pipe(pipefd) != 0) return;
    started = pthread_create(&worker, NULL, work, NULL) == 0 && pthread_create(&answerer, NULL, answer, NULL) == 0;
}

int pitfalls_lib_result(void)
{
    if (started != 1) return 10;
    void *a = (void *)1, *w = (void *)1;
    if (pthread_join(answerer, &a) != 0 || pthread_join(worker, &w) != 0) return 11;
    if (lib_tls != 5) return 12;
    return (int)(long)a * 100 + (int)(long)w;
}
