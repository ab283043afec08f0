/* ignored_sigwait: a signal whose action is SIG_IGN but that the program's
 * threads block is kept pending, as the kernel keeps it, and sigwait takes
 * it.  A shell starts a job with & with SIGINT ignored; a server that blocks
 * SIGINT and SIGTERM and sigwaits for them on a thread of its own (the
 * usual graceful shutdown) never saw its SIGINT: the OS main thread that
 * takes the process's signals blocks none, so the kernel dropped it.
 *   1. ignored, then blocked: another thread's sigtimedwait takes a kill()
 *      to the process;  2. blocked, then ignored: the same in main;
 *   3. pthread_kill() and raise() of it to a thread that blocks it: pending
 *      for that thread, which takes it with sigtimedwait;
 *   4. ignored and let through: dropped, nothing pending, the process runs on;
 *   5. a program it spawns or executes finds it ignored, as it inherits an
 *      ignored signal (caught ones are reset by exec). */
#include <spawn.h>

#include "shim_test.h"

extern char **environ;

/* The spawned image: whether it finds SIGUSR1 ignored. */
static int mode_inherited(void)
{
    struct sigaction a;
    return sigaction(SIGUSR1, NULL, &a) == 0 && a.sa_handler == SIG_IGN ? 0 : 3;
}

static sigset_t usr1;
static atomic_int waiting, got;

static void *waiter(void *arg)
{
    (void)arg;
    struct timespec ts = {3, 0};
    atomic_store(&waiting, 1);
    atomic_store(&got, sigtimedwait(&usr1, NULL, &ts));
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "inherited") == 0) return mode_inherited();
    st_watchdog(30);
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);

    st_phase = "ignored, then blocked";
    signal(SIGUSR1, SIG_IGN);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL); /* every thread made from now blocks it */
    pthread_t t = st_spawn(waiter, NULL);
    st_wait_for(&waiting, 1, 5000);
    st_sleep_ms(50);
    kill(getpid(), SIGUSR1);
    pthread_join(t, NULL);
    CHECK(atomic_load(&got) == SIGUSR1, "ignored then blocked: sigtimedwait gave %d, want %d", atomic_load(&got),
          SIGUSR1);

    st_phase = "blocked, then ignored";
    signal(SIGUSR1, SIG_DFL);
    signal(SIGUSR1, SIG_IGN);
    kill(getpid(), SIGUSR1);
    sigset_t p;
    sigpending(&p);
    CHECK(sigismember(&p, SIGUSR1) == 1, "blocked then ignored: not pending after kill");
    struct timespec ts = {3, 0};
    int s = sigtimedwait(&usr1, NULL, &ts);
    CHECK(s == SIGUSR1, "blocked then ignored: sigtimedwait gave %d, want %d", s, SIGUSR1);

    st_phase = "pthread_kill, raise";
    atomic_store(&waiting, 0);
    atomic_store(&got, 0);
    t = st_spawn(waiter, NULL);
    st_wait_for(&waiting, 1, 5000);
    st_sleep_ms(50);
    pthread_kill(t, SIGUSR1);
    pthread_join(t, NULL);
    CHECK(atomic_load(&got) == SIGUSR1, "pthread_kill: sigtimedwait gave %d, want %d", atomic_load(&got), SIGUSR1);
    raise(SIGUSR1);
    s = sigtimedwait(&usr1, NULL, &ts);
    CHECK(s == SIGUSR1, "raise: sigtimedwait gave %d, want %d", s, SIGUSR1);

    st_phase = "spawned";
    char *args[] = {argv[0], "inherited", NULL};
    pid_t pid;
    CHECK(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, args, environ) == 0, "posix_spawn");
    int st = st_wait_status(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the spawned program did not find SIGUSR1 ignored: %s",
          st_status_str(st));
    pid = fork();
    if (pid == 0) {
        execve("/proc/self/exe", args, environ);
        _exit(4);
    }
    st = st_wait_status(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the program executed did not find SIGUSR1 ignored: %s",
          st_status_str(st));
    s = sigtimedwait(&usr1, NULL, &(struct timespec){0, 0});
    kill(getpid(), SIGUSR1);
    s = sigtimedwait(&usr1, NULL, &ts);
    CHECK(s == SIGUSR1, "after the spawns: sigtimedwait gave %d, want %d", s, SIGUSR1);

    st_phase = "ignored, let through";
    pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
    for (int i = 0; i < 5; i++) kill(getpid(), SIGUSR1);
    st_sleep_ms(50);
    sigpending(&p);
    CHECK(!sigismember(&p, SIGUSR1), "ignored and unblocked: still pending");
    return st_finish("ignored_sigwait");
}
