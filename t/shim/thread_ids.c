/* thread_ids: two threads alive at once never have the same thread ID,
 * through gettid() or syscall(SYS_gettid), even on one worker.
 *
 *   distinct  main and 8 threads, all alive (each parked in a read of a
 *             pipe between its two looks): 9 different IDs, each the same
 *             through gettid() and syscall(SYS_gettid), and the same
 *             before and after the park; sched_getaffinity(2) given
 *             its own ID works; set_tid_address(2), which returns the
 *             caller's ID, returns that one (stress-ng's pthread stressor
 *             sets the address prctl(PR_GET_TID_ADDRESS) reports back so)
 *   tgkill    syscall(SYS_tgkill, getpid(), id, SIGUSR1) with the ID of
 *             the calling thread (not main), then of another thread parked
 *             in a read:
 *             the handler runs on that thread (pthread_self() is its), and
 *             the read fails with EINTR
 *   guard     libc++abi's guard of a C++ function-local static, as
 *             Chromium and programs built with clang's libc++ use it: the
 *             first thread parks inside the initialiser while a second
 *             reaches it; the second must wait, not abort with
 *             "recursive initialization" (libc++abi keeps the ID of the
 *             thread that initialises; skipped without libc++abi.so.1) */
#include <dlfcn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "shim_test.h"

#define NT 8

static int gate[2];
static pid_t ids[NT + 1][3];

static void look(int i, int at)
{
    ids[i][at] = gettid();
    pid_t s = (pid_t)syscall(SYS_gettid);
    CHECK(s == ids[i][at], "thread %d: gettid() %d, syscall(SYS_gettid) %d", i, ids[i][at], s);
}

static void *one(void *arg)
{
    int i = (int)(intptr_t)arg;
    look(i, 0);
    char c;
    CHECK(read(gate[0], &c, 1) == 1, "read: %s", strerror(errno)); /* parks: the others run on */
    look(i, 1);
    CHECK(ids[i][0] == ids[i][1], "thread %d: ID %d, then %d after a park", i, ids[i][0], ids[i][1]);
    /* GLib reads a thread's scheduling settings by its ID this way */
    unsigned char set[128];
    CHECK(syscall(SYS_sched_getaffinity, ids[i][1], sizeof set, set) > 0, "sched_getaffinity of its own ID: %s", strerror(errno));
    unsigned long addr = 0;
    if (prctl(PR_GET_TID_ADDRESS, &addr, 0, 0, 0) == 0 && addr) {
        (void)syscall(SYS_set_tid_address, NULL);
        pid_t r = (pid_t)syscall(SYS_set_tid_address, addr);
        CHECK(r == ids[i][1], "thread %d: set_tid_address returned %d, gettid() %d", i, r, ids[i][1]);
    }
    return NULL;
}

static void distinct(void)
{
    st_phase = "distinct";
    CHECK(pipe(gate) == 0, "pipe");
    pthread_t th[NT];
    look(NT, 0);
    for (int i = 0; i < NT; i++) pthread_create(&th[i], NULL, one, (void *)(intptr_t)i);
    /* every thread has looked once and parks in its read */
    for (int i = 0; i < NT; i++)
        while (!__atomic_load_n(&ids[i][0], __ATOMIC_ACQUIRE)) usleep(1000);
    usleep(20000);
    for (int i = 0; i <= NT; i++)
        for (int j = i + 1; j <= NT; j++)
            CHECK(ids[i][0] != ids[j][0], "threads %d and %d, both alive, have one ID %d", i, j, ids[i][0]);
    CHECK(write(gate[1], "xxxxxxxx", NT) == NT, "write");
    for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
    close(gate[0]);
    close(gate[1]);
}

static pthread_t usr1_on;
static void on_usr1(int sig)
{
    (void)sig;
    usr1_on = pthread_self();
}

static atomic_int target_id;
static void *target(void *arg)
{
    (void)arg;
    atomic_store(&target_id, (int)gettid());
    char c;
    ssize_t n = read(gate[0], &c, 1);
    CHECK(n == -1 && errno == EINTR, "the signal did not interrupt the read: %zd, %s", n, strerror(errno));
    return NULL;
}

static void *to_itself(void *arg)
{
    (void)arg;
    CHECK(syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR1) == 0, "tgkill to itself: %s", strerror(errno));
    CHECK(pthread_equal(usr1_on, pthread_self()), "the handler did not run on the caller");
    return NULL;
}

static void to_ids(void)
{
    st_phase = "tgkill";
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART: the read is interrupted */
    sigaction(SIGUSR1, &sa, NULL);
    CHECK(pipe(gate) == 0, "pipe");
    pthread_t t;
    usr1_on = 0;
    pthread_create(&t, NULL, to_itself, NULL);
    pthread_join(t, NULL);
    usr1_on = 0;
    pthread_create(&t, NULL, target, NULL);
    while (!atomic_load(&target_id)) usleep(1000);
    usleep(20000); /* it parks in its read */
    CHECK(syscall(SYS_tgkill, getpid(), atomic_load(&target_id), SIGUSR1) == 0, "tgkill: %s", strerror(errno));
    pthread_join(t, NULL);
    CHECK(pthread_equal(usr1_on, t), "the handler did not run on the thread the ID names");
    close(gate[0]);
    close(gate[1]);
}

static int (*guard_acquire)(uint64_t *);
static void (*guard_release)(uint64_t *);
static uint64_t guard_word;
static atomic_int second_done;

static void *second(void *arg)
{
    (void)arg;
    if (guard_acquire(&guard_word)) guard_release(&guard_word); /* waits for the first */
    atomic_store(&second_done, 1);
    return NULL;
}

static void guard(void)
{
    st_phase = "guard";
    void *h = dlopen("libc++abi.so.1", RTLD_NOW);
    if (!h) {
        printf("SKIP guard: no libc++abi.so.1\n");
        return;
    }
    guard_acquire = (int (*)(uint64_t *))dlsym(h, "__cxa_guard_acquire");
    guard_release = (void (*)(uint64_t *))dlsym(h, "__cxa_guard_release");
    CHECK(guard_acquire && guard_release, "libc++abi without __cxa_guard_acquire");
    if (!guard_acquire || !guard_release) return;
    CHECK(guard_acquire(&guard_word) == 1, "the first thread does not initialise");
    pthread_t t;
    pthread_create(&t, NULL, second, NULL);
    usleep(100000); /* the initialiser parks; the second thread reaches the static */
    CHECK(!atomic_load(&second_done), "the second thread did not wait for the initialiser");
    guard_release(&guard_word);
    pthread_join(t, NULL);
    CHECK(atomic_load(&second_done), "the second thread did not finish");
}

int main(void)
{
    st_watchdog(60);
    distinct();
    to_ids();
    guard();
    printf("thread_ids: %ld checks, %ld failures\n", atomic_load(&st_checks), atomic_load(&st_failures));
    return atomic_load(&st_failures) ? 1 : 0;
}
