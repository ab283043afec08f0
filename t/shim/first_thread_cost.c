/* The first thread a process makes starts the shim's runtime: its workers
 * and sysmon.  A forked child that then makes threads pays that each time
 * (stress-ng's exit-group stressor forks one that starts 16 threads and
 * ends, over and over; make and shells fork such programs all day).  The
 * runtime registered for membarrier(2) after starting its first OS thread,
 * and the kernel made that wait for an RCU grace period, some 10 ms: the
 * children took 16 ms each against 2 ms plain.
 *
 *   child    20 forked children each time their first pthread_create and
 *            pthread_join, then (threads running) a registration that
 *            makes the kernel wait for a grace period, for scale: the
 *            median first thread must take less than half the median
 *            grace period plus 2 ms (plain: 0.1 ms; under the shim now
 *            about 1 ms, against 12 ms for the grace period).  On a
 *            kernel whose grace period is under 2 ms there is nothing to
 *            tell apart: no check. */
#include <linux/membarrier.h>
#include <sys/syscall.h>

#include "shim_test.h"

#define KIDS 20

static void *nothing(void *arg) { return arg; }

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_child(void)
{
    double ms[KIDS], grace[KIDS];
    int n = 0, g = 0;
    for (int i = 0; i < KIDS; i++) {
        int p[2];
        if (pipe(p) != 0) break;
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            int64_t t0 = st_mono_ns();
            pthread_t t;
            if (pthread_create(&t, NULL, nothing, NULL) == 0) pthread_join(t, NULL);
            double d[2] = {st_ms(st_mono_ns() - t0), -1};
            t0 = st_mono_ns();
            if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0) == 0)
                d[1] = st_ms(st_mono_ns() - t0);
            (void)!write(p[1], d, sizeof d);
            _exit(0);
        }
        close(p[1]);
        double d[2];
        if (pid > 0 && read(p[0], d, sizeof d) == (ssize_t)sizeof d) {
            ms[n++] = d[0];
            if (d[1] >= 0) grace[g++] = d[1];
        }
        close(p[0]);
        if (pid > 0) waitpid(pid, NULL, 0);
    }
    CHECK(n == KIDS, "%d of %d children reported", n, KIDS);
    if (n == 0) return;
    qsort(ms, (size_t)n, sizeof ms[0], cmp);
    qsort(grace, (size_t)g, sizeof grace[0], cmp);
    double gp = g ? grace[g / 2] : 0;
    printf("first thread in a child: median %.2f ms, max %.2f ms; grace period %.2f ms\n", ms[n / 2], ms[n - 1], gp);
    if (gp >= 2.0)
        CHECK(ms[n / 2] < gp / 2 + 2.0, "a child's first thread took %.2f ms (median), a grace period %.2f ms",
              ms[n / 2], gp);
}

int main(void)
{
    st_watchdog(60);
    const struct st_test tests[] = {{"child", test_child}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("first_thread_cost");
}
