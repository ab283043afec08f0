/* thread_affinity: a thread's CPU affinity is its own.  libzmq pins its I/O
 * threads (ZMQ_THREAD_AFFINITY_CPU_ADD) with pthread_setaffinity_np; set on
 * the worker a green thread ran on, the pin bound every thread of that
 * worker and the processes they started (a child's nproc said 1).
 * Skipped on a machine (or under a mask) of one CPU.
 *
 *   own       4 threads each pin themselves to the process's first CPU
 *             (2 with pthread_setaffinity_np, 2 with sched_setaffinity(0))
 *             and park (a sleep) between looks: each reads back that one
 *             CPU, through both calls, every time
 *   others    meanwhile and after, main and a thread started by main
 *             still have every CPU of the process
 *   inherit   a thread started by a pinned thread has its one CPU
 *   children  a child forked by main, and one spawned by main
 *             (posix_spawn), have every CPU; a child forked by a pinned
 *             thread has its one CPU
 *   invalid   a set of no CPU the process may use fails with EINVAL */
#include <sched.h>
#include <spawn.h>

#include "shim_test.h"

static cpu_set_t all;
static int first_cpu, ncpu;
static atomic_int pinned_ready, finish;

static int count_self(void)
{
    cpu_set_t s;
    if (sched_getaffinity(0, sizeof s, &s) != 0) return -1;
    return CPU_COUNT(&s);
}

static int child_count_status(void)
{
    int n = count_self();
    return n < 0 ? 100 : n > 99 ? 99 : n;
}

static void *inherited(void *a)
{
    (void)a;
    cpu_set_t s;
    CPU_ZERO(&s);
    CHECK(pthread_getaffinity_np(pthread_self(), sizeof s, &s) == 0 && CPU_COUNT(&s) == 1 && CPU_ISSET(first_cpu, &s),
          "inherit: a thread started by a pinned one has %d CPUs, not its 1", CPU_COUNT(&s));
    return NULL;
}

static void *pinner(void *a)
{
    long k = (long)a;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first_cpu, &one);
    int e = k % 2 ? pthread_setaffinity_np(pthread_self(), sizeof one, &one)
                  : (sched_setaffinity(0, sizeof one, &one) == 0 ? 0 : errno);
    CHECK(e == 0, "own: pinning: %s", strerror(e));
    atomic_fetch_add(&pinned_ready, 1);
    for (int i = 0; i < 20; i++) {
        cpu_set_t s;
        CPU_ZERO(&s);
        CHECK(pthread_getaffinity_np(pthread_self(), sizeof s, &s) == 0 && CPU_EQUAL(&s, &one),
              "own: thread %ld reads back %d CPUs through pthread_getaffinity_np, not its 1", k, CPU_COUNT(&s));
        CHECK(sched_getaffinity(0, sizeof s, &s) == 0 && CPU_EQUAL(&s, &one),
              "own: thread %ld reads back %d CPUs through sched_getaffinity, not its 1", k, CPU_COUNT(&s));
        usleep(2000); /* parks: wakes on whichever worker */
    }
    if (k == 0) {
        pthread_t t;
        pthread_create(&t, NULL, inherited, NULL);
        pthread_join(t, NULL);
        pid_t pid = fork();
        if (pid == 0) _exit(child_count_status());
        int st = 0;
        waitpid(pid, &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1, "children: a child forked by a pinned thread has %d CPUs, not 1",
              WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
    while (!atomic_load(&finish)) usleep(1000);
    return NULL;
}

static void *plain_thread(void *a)
{
    (void)a;
    CHECK(count_self() == ncpu, "others: a thread started by main has %d CPUs, not %d", count_self(), ncpu);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "count") == 0) return child_count_status();
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    if (sched_getaffinity(0, sizeof all, &all) != 0 || (ncpu = CPU_COUNT(&all)) < 2) {
        printf("thread_affinity: one CPU, skipped\nthread_affinity: 0 checks, 0 failed\n");
        return 0;
    }
    for (first_cpu = 0; !CPU_ISSET(first_cpu, &all); first_cpu++) {}
    st_phase = "own";
    pthread_t p[4];
    for (long i = 0; i < 4; i++) pthread_create(&p[i], NULL, pinner, (void *)i);
    while (atomic_load(&pinned_ready) < 4) usleep(1000);
    for (int i = 0; i < 20; i++) {
        CHECK(count_self() == ncpu, "others: main has %d CPUs while others are pinned, not %d", count_self(), ncpu);
        usleep(2000);
    }
    st_phase = "others";
    pthread_t t;
    pthread_create(&t, NULL, plain_thread, NULL);
    pthread_join(t, NULL);
    st_phase = "children";
    pid_t pid = fork();
    if (pid == 0) _exit(child_count_status());
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == ncpu, "children: main's forked child has %d CPUs, not %d",
          WIFEXITED(st) ? WEXITSTATUS(st) : -1, ncpu);
    char *av[] = {"thread_affinity", "count", NULL};
    extern char **environ;
    int e = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, av, environ);
    CHECK(e == 0, "posix_spawn: %s", strerror(e));
    if (e == 0) {
        waitpid(pid, &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == ncpu, "children: main's spawned child has %d CPUs, not %d",
              WIFEXITED(st) ? WEXITSTATUS(st) : -1, ncpu);
    }
    st_phase = "invalid";
    cpu_set_t none;
    CPU_ZERO(&none);
    CHECK(pthread_setaffinity_np(pthread_self(), sizeof none, &none) == EINVAL, "invalid: an empty set is taken");
    CHECK(count_self() == ncpu, "invalid: main has %d CPUs after a refused set, not %d", count_self(), ncpu);
    atomic_store(&finish, 1);
    for (int i = 0; i < 4; i++) pthread_join(p[i], NULL);
    return st_finish("thread_affinity");
}
