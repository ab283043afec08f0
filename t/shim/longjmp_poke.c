/* A handler that leaves by longjmp from a call the shim does not see.
 * GNU ed's SIGINT handler unblocks SIGINT and longjmps (no mask saved,
 * _setjmp) back to its command loop, which reads the terminal again from
 * inside stdio.  The shim runs such a handler from its poke, kPoke's own
 * kernel handler, which the kernel runs with kPoke blocked: the jump left
 * it blocked on the worker, no poke reached it after, and a second Ctrl-C
 * at ed's prompt waited for the next line.  Here a thread waits in a raw
 * read(2) of a pipe (syscall(2): unseen), and each of several SIGINTs sent
 * to the process must reach its handler within a second, while the pipe
 * stays empty. */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { kRounds = 5 };

static int pipefd[2];
static jmp_buf jump;
static atomic_int handled, reading, done;

static void on_int(int sig)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL); /* as ed does */
    atomic_fetch_add(&handled, 1);
    longjmp(jump, 1);
}

static void *reader(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    _setjmp(jump);
    while (!atomic_load(&done)) {
        char c;
        atomic_store(&reading, 1);
        syscall(SYS_read, pipefd[0], &c, 1); /* waits unseen by the shim */
    }
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (pipe(pipefd) != 0) return 1;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* SIGINT goes to the reader */
    struct sigaction sa = {0};
    sa.sa_handler = on_int;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    pthread_t t;
    pthread_create(&t, NULL, reader, NULL);
    int failed = 0;
    for (int i = 0; i < kRounds && !failed; i++) {
        while (!atomic_load(&reading)) usleep(1000);
        usleep(20000); /* in the read by now */
        atomic_store(&reading, 0);
        kill(getpid(), SIGINT);
        double t0 = now();
        while (atomic_load(&handled) <= i && now() - t0 < 1.0) usleep(1000);
        if (atomic_load(&handled) <= i) {
            printf("FAILED: SIGINT %d not handled within 1 s (handled %d)\n", i + 1, atomic_load(&handled));
            failed = 1;
        }
    }
    atomic_store(&done, 1);
    char c = 'x';
    if (write(pipefd[1], &c, 1) != 1) return 1;
    pthread_join(t, NULL);
    if (failed) return 1;
    printf("longjmp_poke: %d handled\n", atomic_load(&handled));
    return 0;
}
