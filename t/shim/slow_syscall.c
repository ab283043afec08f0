/* A thread that loops on a slow system call made with syscall(2), as
 * stress-ng's membarrier stressor does (membarrier(2) waits for an RCU
 * grace period, milliseconds, and no signal interrupts it), must take its
 * signals: the kernel runs the handler as each call returns.  Under the
 * shim a poke finds such a thread inside libc's syscall() nearly every
 * time, where it runs no handler, so the handler never ran and the loop
 * never ended (stress-ng's timeout is a SIGALRM handler).
 *
 *   process   kill(2) of the process, which main() takes, looping
 *   thread    pthread_kill(3) of a thread looping the same way
 *
 * Each handler must run within 3 s (plain: within one call).  Skipped
 * where the kernel has no MEMBARRIER_CMD_GLOBAL. */
#include "shim_test.h"
#include <linux/membarrier.h>
#include <sys/syscall.h>

static atomic_int got;

static void on_usr1(int sig)
{
    (void)sig;
    atomic_store(&got, 1);
}

/* Loops on membarrier until the handler ran, or 3 s: 1 if it ran. */
static int slow_loop(void)
{
    int64_t end = st_mono_ns() + 3000000000LL;
    while (!atomic_load(&got) && st_mono_ns() < end) syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0);
    return atomic_load(&got);
}

static void *sender(void *arg)
{
    pthread_t *to = arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, NULL); /* a kill of the process goes to main */
    usleep(200000);
    if (to) pthread_kill(*to, SIGUSR1);
    else kill(getpid(), SIGUSR1);
    return NULL;
}

static void test_process(void)
{
    atomic_store(&got, 0);
    pthread_t s;
    pthread_create(&s, NULL, sender, NULL);
    CHECK(slow_loop(), "main looping on membarrier: the process's SIGUSR1 handler did not run in 3 s");
    pthread_join(s, NULL);
}

static void *looper(void *arg)
{
    (void)arg;
    CHECK(slow_loop(), "a thread looping on membarrier: its SIGUSR1 handler did not run in 3 s");
    return NULL;
}

static void test_thread(void)
{
    atomic_store(&got, 0);
    pthread_t l, s;
    pthread_create(&l, NULL, looper, NULL);
    pthread_create(&s, NULL, sender, &l);
    pthread_join(s, NULL);
    pthread_join(l, NULL);
}

int main(void)
{
    st_watchdog(30);
    long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (q < 0 || !(q & MEMBARRIER_CMD_GLOBAL)) {
        printf("SKIP no membarrier MEMBARRIER_CMD_GLOBAL\n");
        return st_finish("slow_syscall");
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    const struct st_test tests[] = {{"process", test_process}, {"thread", test_thread}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("slow_syscall");
}
