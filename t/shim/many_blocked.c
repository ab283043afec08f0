/* many_blocked: more threads blocked in the kernel at once, in calls the
 * engine cannot see, than 64 beyond NP_PROCS.  libgomp's barriers wait so
 * (a futex(2) made with the syscall instruction inline, not through
 * syscall(3)): an OpenMP team of 70 threads or more, each waiting at the
 * team's barrier for the last to arrive.  Every thread must get to run:
 * under nprun the workers sysmon added stopped at 64 beyond NP_PROCS, all
 * of them asleep in the futex, while the threads that had not yet arrived
 * waited in the global queue for ever (OMP_NUM_THREADS=70 hung).
 *
 *   many_blocked [THREADS] */
#include <linux/futex.h>
#include <sys/syscall.h>

#include "shim_test.h"

/* The futex call made as libgomp makes it on x86-64: no libc entry. */
static long raw_futex(atomic_int *uaddr, int op, int val)
{
    long ret;
    register long r10 __asm__("r10") = 0; /* no timeout */
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"((long)SYS_futex), "D"(uaddr), "S"((long)op), "d"((long)val), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}

static int nthreads = 100;
static atomic_int arrived, gate;

/* A barrier as libgomp's: the last to arrive opens the gate and wakes the
 * others, who sleep in the kernel until then. */
static void *member(void *arg)
{
    (void)arg;
    if (atomic_fetch_add(&arrived, 1) + 1 == nthreads) {
        atomic_store(&gate, 1);
        raw_futex(&gate, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1 << 30);
        return NULL;
    }
    while (!atomic_load(&gate)) raw_futex(&gate, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1) nthreads = atoi(argv[1]);
    if (nthreads < 2 || nthreads > 1000) nthreads = 100;
    st_watchdog(60);
    st_phase = "barrier";
    int64_t t0 = st_mono_ns();
    pthread_t *t = calloc((size_t)nthreads, sizeof *t);
    CHECK(t != NULL, "calloc");
    for (int i = 0; i < nthreads; i++) t[i] = st_spawn(member, NULL);
    for (int i = 0; i < nthreads; i++) CHECK(pthread_join(t[i], NULL) == 0, "join %d", i);
    CHECK(atomic_load(&arrived) == nthreads, "arrived %d of %d", atomic_load(&arrived), nthreads);
    printf("many_blocked: %d threads through a kernel barrier in %.1f ms\n", nthreads,
           st_ms(st_mono_ns() - t0));
    free(t);
    return st_finish("many_blocked");
}
