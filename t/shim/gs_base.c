/* The x86-64 gs base is the program's, per thread: where the kernel lets user
 * space write it (FSGSBASE, AT_HWCAP2 bit 1), code such as wasm2c's "segue"
 * (Firefox's RLBox-sandboxed libraries) points it at a sandbox's linear
 * memory with wrgsbase and reads %gs:offset from then on, across calls that
 * block.  Each thread sets a base of its own, then parks in sleeps, pipe
 * reads and condvar waits between the other threads' turns, and must find
 * its base (and the memory under it) unchanged afterwards; a new thread
 * starts with its creator's base, as clone(2) gives it.  Elsewhere (no
 * FSGSBASE, other architectures) the program only reports that it skipped. */
#include "shim_test.h"
#include <sys/auxv.h>

#if defined(__x86_64__)
static int have_fsgsbase(void) { return (getauxval(AT_HWCAP2) & 2) != 0; }
static uintptr_t gs_get(void)
{
    uintptr_t v;
    __asm__ volatile("rdgsbase %0" : "=r"(v));
    return v;
}
static void gs_set(uintptr_t v) { __asm__ volatile("wrgsbase %0" ::"r"(v) : "memory"); }
static long gs_load0(void) /* what the base points at, read through %gs */
{
    long v;
    __asm__ volatile("mov %%gs:0, %0" : "=r"(v));
    return v;
}
#endif

enum { kThreads = 4, kRounds = 30 };

static struct {
    long id;      /* read as %gs:0 */
    char pad[56];
} mem[kThreads + 1];
static int pipes[kThreads][2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long turn;

#if defined(__x86_64__)
static void check_mine(long id, const char *after)
{
    uintptr_t want = (uintptr_t)&mem[id];
    uintptr_t got = gs_get();
    CHECK(got == want, "thread %ld after %s: gs base %#lx, want %#lx", id, after, (unsigned long)got,
          (unsigned long)want);
    if (got == want) CHECK(gs_load0() == id, "thread %ld after %s: %%gs:0 = %ld", id, after, gs_load0());
}

static void *worker(void *arg)
{
    long id = (long)(intptr_t)arg;
    gs_set((uintptr_t)&mem[id]);
    for (int r = 0; r < kRounds; r++) {
        usleep(200 + 100 * (unsigned)id);
        check_mine(id, "usleep");
        char c = 'x';
        /* a ring: thread id reads pipes[id - 1], written by thread id - 1 */
        if (write(pipes[id % kThreads][1], &c, 1) != 1) CHECK(0, "write: %s", strerror(errno));
        if (read(pipes[id - 1][0], &c, 1) != 1) CHECK(0, "read: %s", strerror(errno));
        check_mine(id, "pipe read");
        pthread_mutex_lock(&mu);
        while (turn % kThreads != id - 1) pthread_cond_wait(&cv, &mu);
        turn++;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        check_mine(id, "condvar wait");
        sched_yield();
        check_mine(id, "sched_yield");
    }
    return NULL;
}

static void test_park(void)
{
    pthread_t t[kThreads];
    for (int i = 0; i < kThreads; i++) {
        mem[i + 1].id = i + 1;
        if (pipe(pipes[i]) != 0) CHECK(0, "pipe: %s", strerror(errno));
    }
    for (long i = 0; i < kThreads; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)(i + 1)) == 0, "pthread_create");
    for (int i = 0; i < kThreads; i++) pthread_join(t[i], NULL);
}

static void *report_base(void *arg)
{
    *(uintptr_t *)arg = gs_get();
    return NULL;
}

static void test_inherit(void)
{
    uintptr_t old = gs_get(), seen = 0;
    mem[0].id = 0;
    gs_set((uintptr_t)&mem[0]);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, report_base, &seen) == 0, "pthread_create");
    pthread_join(t, NULL);
    CHECK(gs_get() == (uintptr_t)&mem[0], "main's gs base changed across pthread_join");
    gs_set(old);
    CHECK(seen == (uintptr_t)&mem[0], "a new thread's gs base %#lx, want its creator's %#lx", (unsigned long)seen,
          (unsigned long)&mem[0]);
}
#endif

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
#if defined(__x86_64__)
    if (have_fsgsbase()) {
        static const struct st_test tests[] = {{"park", test_park}, {"inherit", test_inherit}};
        st_run_tests(tests, sizeof tests / sizeof tests[0]);
        return st_finish("gs_base");
    }
#endif
    printf("gs_base: skipped, no user-space wrgsbase here\n");
    return st_finish("gs_base");
}
