/* yield_spread: threads that call sched_yield() in loops, with naps,
 * on more workers than they keep busy.  A thread's yield found its worker's
 * own queue non-empty, then switched to the head of that queue; sysmon,
 * which hands a busy worker's own queue to an idle worker, could empty it
 * in between, and the thread then switched to itself and spun for ever
 * (a program of spinning threads hung, about one run in ten under
 * NP_PROCS=3).
 *
 * Each round is a fresh process of 16 such threads for one second, under 3
 * or 4 workers (NP_PROCS in its environment); every round must end, and
 * every thread must have made progress. */
#include <spawn.h>

#include "shim_test.h"

extern char **environ;

#define THREADS 16

static int64_t end_ns;

static void *yielder(void *arg)
{
    (void)arg;
    long rounds = 0;
    while (st_mono_ns() < end_ns) {
        for (int k = 0; k < 100; k++) sched_yield();
        usleep(100);
        rounds++;
    }
    return (void *)rounds;
}

static int mode_round(void)
{
    alarm(30);
    end_ns = st_mono_ns() + 1000000000LL;
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) t[i] = st_spawn(yielder, NULL);
    int idle = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        if ((long)r == 0) idle++;
    }
    return idle ? 10 + idle : 0;
}

static void test_rounds(void)
{
    /* the environment with NP_PROCS replaced */
    size_t n = 0;
    while (environ[n]) n++;
    char **env = calloc(n + 2, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "NP_PROCS=", 9) != 0) env[k++] = environ[i];
    for (int round = 0; round < 6; round++) {
        char procs[32];
        snprintf(procs, sizeof procs, "NP_PROCS=%d", 3 + round % 2);
        env[k] = procs;
        env[k + 1] = NULL;
        char *argv[] = {"yield_spread", "round", NULL};
        pid_t pid;
        int e = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, env);
        CHECK(e == 0, "posix_spawn: %s", strerror(e));
        if (e) break;
        int st = st_wait_status_within(pid, 20000);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "round %d (%s): %s (killed after 20 s: a hang; 11-26: threads that never looped)",
              round, procs, st_status_str(st));
    }
    free(env);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "round") == 0) return mode_round();
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(200);
    static const struct st_test tests[] = {{"rounds", test_rounds}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("yield_spread");
}
