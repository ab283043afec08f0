/* np_dump: every state a green thread can wait in, with its stack walked
 * to the function that parked it (the parking functions are global and
 * noinline, and the test binary is linked with -rdynamic, so dladdr names
 * them); a thread running on another worker; dumps from an OS thread and
 * from a small stack; NP_DUMP_SIGNAL, bad values of it, and a program's
 * own handler winning over it. */
#include <pthread.h>
#include <sys/stat.h>

#include "np_test.h"

#define NOINLINE __attribute__((noinline))

static np_mutex dmu = NP_MUTEX_INITIALIZER;
static np_cond dcv = NP_COND_INITIALIZER;
static atomic_int stop_spin, spinning, after;

/* Each does something after its parking call, so it is not a tail call
 * and its frame is still on the stack. */
NOINLINE void dump_park_io(void *arg) {
    char c;
    np_fd *pd = arg;
    np_set_deadline(pd, np_now() + 30000 * MS, NP_READ);
    ssize_t r = np_read(pd, &c, 1);
    atomic_fetch_add(&after, (int)r);
}

NOINLINE void dump_park_sleep(void *arg) {
    (void)arg;
    np_sleep(30000 * MS);
    atomic_fetch_add(&after, 1);
}

NOINLINE void dump_park_mutex(void *arg) {
    (void)arg;
    np_mutex_lock(&dmu);
    np_mutex_unlock(&dmu);
    atomic_fetch_add(&after, 1);
}

NOINLINE void dump_park_cond(void *arg) {
    (void)arg;
    np_mutex_lock(&dmu);
    np_cond_wait(&dcv, &dmu);
    np_mutex_unlock(&dmu);
    atomic_fetch_add(&after, 1);
}

NOINLINE void *dump_joined(void *arg) {
    (void)arg;
    np_sleep(30000 * MS);
    atomic_fetch_add(&after, 1);
    return NULL;
}

NOINLINE void dump_park_join(void *arg) {
    (void)arg;
    np_thread *t;
    if (np_spawn(&t, dump_joined, NULL) == 0) np_join(t, NULL);
    atomic_fetch_add(&after, 1);
}

NOINLINE void dump_yielder(void *arg) {
    (void)arg;
    while (!atomic_load(&stop_spin)) np_yield();
    atomic_fetch_add(&after, 1);
}

NOINLINE void dump_never_started(void *arg) { (void)arg; }

/* Spins without a call into the library: it keeps its worker. */
NOINLINE void dump_spinner(void *arg) {
    (void)arg;
    atomic_store(&spinning, 1);
    while (!atomic_load(&stop_spin)) {
    }
}

/* The dump as a string (malloc'ed). */
static char *take_dump(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert(f);
    int r = np_dump(f);
    fclose(f);
    cr_assert_eq(r, 0, "np_dump: %s", strerror(-r));
    return buf;
}

/* The block of the thread whose stack has fn in it ("fn+0x"), from its
 * "thread N" line to the next; NULL if none.  Static scratch. */
static const char *block_with(const char *dump, const char *fn) {
    static char blk[8192];
    char want[128];
    snprintf(want, sizeof want, " %s+0x", fn);
    const char *at = strstr(dump, want);
    if (!at) return NULL;
    const char *start = at;
    while (start > dump && strncmp(start, "\nthread ", 8) != 0) start--;
    const char *end = strstr(at, "\nthread ");
    size_t n = end ? (size_t)(end - start) : strlen(start);
    if (n >= sizeof blk) n = sizeof blk - 1;
    memcpy(blk, start, n);
    blk[n] = 0;
    return blk;
}

static bool has(const char *dump, const char *fn, const char *state) {
    const char *b = block_with(dump, fn);
    return b && strstr(b, state);
}

NOINLINE int dump_every_state_main(void *arg) {
    (void)arg;
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    np_fd *rd = must_open(p[0]);
    np_go(dump_park_io, rd);
    np_go(dump_park_sleep, NULL);
    np_go(dump_park_join, NULL);
    np_go(dump_yielder, NULL);
    np_go(dump_park_cond, NULL);
    np_sleep(20 * MS);
    np_mutex_lock(&dmu); /* dump_park_cond has let go of it in np_cond_wait */
    np_go(dump_park_mutex, NULL);
    np_sleep(20 * MS);
    np_go(dump_never_started, NULL); /* one worker, busy with us: not started */

    char io_state[64];
    snprintf(io_state, sizeof io_state, "[IO wait fd %d read, deadline in ", p[0]);
    char *d = NULL;
    bool all = false;
    for (int tries = 0; tries < 100 && !all; tries++) {
        free(d);
        d = take_dump();
        all = has(d, "dump_park_io", io_state) && has(d, "dump_park_sleep", "[sleep, deadline in ") &&
              has(d, "dump_park_mutex", "[mutex 0x") && has(d, "dump_park_cond", "[cond 0x") &&
              has(d, "dump_park_join", "[join thread ") && has(d, "dump_joined", "[sleep") &&
              has(d, "dump_yielder", "[runnable") &&
              has(d, "dump_every_state_main", "[running (it called np_dump)]");
        if (!all) np_sleep(20 * MS);
    }
    cr_assert(all, "a state is missing from the dump:\n%s", d);
    /* Each waiting state says for how long; the stack reaches the library's
     * exported call (np_read) and the test's own function. */
    cr_assert(has(d, "dump_park_io", ", for "), "%s", d);
    cr_assert(has(d, "dump_park_io", " np_read+0x"), "%s", d);
    /* The runtime's own functions, named from the library's .symtab. */
    cr_assert(has(d, "dump_park_io", " np::pd_wait(np::PollDesc*, int)+0x"), "%s", d);
    cr_assert(has(d, "dump_park_mutex", " np_mutex_lock+0x"), "%s", d);
    cr_assert(strstr(d, "[runnable, not started]"), "%s", d);
    cr_assert(strstr(d, "  entry dump_never_started ("), "%s", d);
    cr_assert(strstr(d, "netpoll: 9 green threads, 1 workers"), "%s", d);
    cr_assert(strstr(d, "worker 0 (tid "), "%s", d);
    cr_assert(strstr(d, "netpoll: end of dump (9 threads)"), "%s", d);
    free(d);

    atomic_store(&stop_spin, 1);
    np_mutex_unlock(&dmu);
    np_close(rd);
    close(p[1]);
    return 0;
}

Test(dump, every_state, .timeout = 60) {
    np_test_init("epoll", 1);
    run_green(dump_every_state_main, NULL);
}

/* A thread running on another worker is reported as running there, with
 * no stack (it changes while we would read it). */
static int running_elsewhere_main(void *arg) {
    (void)arg;
    np_go(dump_spinner, NULL);
    /* Busy here (no park), so the idle worker takes the new thread. */
    int64_t end = np_now() + 10000 * MS;
    while (!atomic_load(&spinning) && np_now() < end) {
    }
    cr_assert(atomic_load(&spinning), "the spinner never started");
    char *d = take_dump();
    const char *at = strstr(d, "  entry dump_spinner (");
    cr_assert(at, "%s", d);
    const char *start = at;
    while (start > d && strncmp(start, "\nthread ", 8) != 0) start--;
    /* On whichever worker is not running us. */
    cr_assert(!strncmp(strstr(start, " ["), " [running on worker ", 20), "%s", d);
    cr_assert(strstr(start, "]:\n    (no stack: it runs on another OS thread)\n"), "%s", d);
    cr_assert(strstr(d, "worker 1 (tid "), "%s", d);
    free(d);
    atomic_store(&stop_spin, 1);
    return 0;
}

Test(dump, running_elsewhere, .timeout = 60) {
    np_test_init("epoll", 2);
    run_green(running_elsewhere_main, NULL);
}

/* From a plain OS thread, and from a 4 KiB green stack (the dump runs on
 * the worker's own stack). */
static char *os_dump;

static void *dump_from_os(void *arg) {
    (void)arg;
    os_dump = take_dump();
    return NULL;
}

static atomic_int small_ok;

static void dump_from_small_stack(void *arg) {
    (void)arg;
    char *d = take_dump();
    atomic_store(&small_ok, strstr(d, "[running (it called np_dump)]") && strstr(d, "dump_park_sleep+0x") ? 1 : -1);
    free(d);
}

static int callers_main(void *arg) {
    (void)arg;
    np_go(dump_park_sleep, NULL);
    np_sleep(20 * MS);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, dump_from_os, NULL), 0);
    pthread_join(th, NULL);
    cr_assert(os_dump && strstr(os_dump, "dump_park_sleep+0x"), "%s", os_dump);
    cr_assert(!strstr(os_dump, "(it called np_dump)"), "%s", os_dump);
    free(os_dump);
    cr_assert_eq(np_go_stack(dump_from_small_stack, NULL, 4096 + NP_ASAN_STACK_EXTRA), 0);
    int64_t end = np_now() + 10000 * MS;
    while (!atomic_load(&small_ok) && np_now() < end) np_sleep(MS);
    cr_assert_eq(atomic_load(&small_ok), 1);
    cr_assert_eq(np_dump(NULL), -EINVAL);
    return 0;
}

Test(dump, from_os_thread_and_small_stack, .timeout = 60) {
    np_test_init("epoll", 2);
    run_green(callers_main, NULL);
}

/* ---- NP_DUMP_SIGNAL ------------------------------------------------------ */

/* Standard error into a file of our own, read back as it grows. */
static char err_path[64];

static void stderr_to_file(void) {
    snprintf(err_path, sizeof err_path, "/tmp/np-dump-test.XXXXXX");
    int fd = mkstemp(err_path);
    cr_assert(fd >= 0);
    fflush(stderr);
    dup2(fd, 2);
    close(fd);
}

static char *read_err(void) {
    static char buf[65536];
    FILE *f = fopen(err_path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    return buf;
}

static int signal_main(void *arg) {
    (void)arg;
    np_go(dump_park_sleep, NULL);
    np_sleep(20 * MS);
    /* To the process: a thread that does not block it takes it (workers
     * block every signal); only our own thread writes the dump. */
    kill(getpid(), SIGUSR1);
    const char *e = "";
    int64_t end = np_now() + 10000 * MS;
    while (np_now() < end && !strstr(e = read_err(), "netpoll: end of dump")) np_sleep(5 * MS);
    cr_assert(strstr(e, "netpoll: end of dump"), "no dump on stderr: %s", e);
    cr_assert(has(e, "dump_park_sleep", "[sleep, deadline in "), "%s", e);
    /* And again: the handler stays. */
    kill(getpid(), SIGUSR1);
    end = np_now() + 10000 * MS;
    const char *second = NULL;
    while (np_now() < end && !(second = strstr(strstr(read_err(), "end of dump") + 1, "end of dump")))
        np_sleep(5 * MS);
    cr_assert(second, "no second dump: %s", read_err());
    return 0;
}

Test(dump, on_signal, .timeout = 60) {
    /* TSan runs a handler only when the thread it interrupted enters a call
     * it intercepts: the engine's waits are direct system calls. */
    SKIP_UNDER_TSAN("handlers deferred to an intercepted call");
    stderr_to_file();
    setenv("NP_DUMP_SIGNAL", "SIGUSR1", 1);
    np_test_init("epoll", 2);
    run_green(signal_main, NULL);
    unlink(err_path);
}

Test(dump, bad_signal_value, .timeout = 30) {
    stderr_to_file();
    setenv("NP_DUMP_SIGNAL", "SIGKILLME", 1);
    np_test_init("epoll", 1);
    const char *e = read_err();
    cr_assert(strstr(e, "netpoll: NP_DUMP_SIGNAL=\"SIGKILLME\" is not a signal"), "%s", e);
    cr_assert_eq(strchr(e, '\n'), e + strlen(e) - 1, "one line: %s", e);
    unlink(err_path);
}

Test(dump, uncatchable_and_fault_signals_refused, .timeout = 30) {
    stderr_to_file();
    setenv("NP_DUMP_SIGNAL", "11", 1); /* SIGSEGV */
    np_test_init("epoll", 1);
    cr_assert(strstr(read_err(), "netpoll: NP_DUMP_SIGNAL=\"11\" is not a signal"), "%s", read_err());
    unlink(err_path);
}

static void own_handler(int sig) { (void)sig; }

/* The program's handler wins: kept, and said so. */
Test(dump, program_handler_wins, .timeout = 30) {
    stderr_to_file();
    signal(SIGUSR2, own_handler);
    setenv("NP_DUMP_SIGNAL", "usr2", 1);
    np_test_init("epoll", 1);
    struct sigaction sa;
    sigaction(SIGUSR2, NULL, &sa);
    cr_assert_eq(sa.sa_handler, own_handler);
    cr_assert(strstr(read_err(), "the program handles signal 12 (SIGUSR2) itself; no dump on it"), "%s",
              read_err());
    unlink(err_path);
}

/* Dumps while threads start, park, wake and end on both workers: each
 * dump completes, and nothing it reads has gone. */
static atomic_int churn_stop, churned;

static void churn_one(void *arg) {
    if ((uintptr_t)arg % 3 == 0) np_sleep(((int64_t)(uintptr_t)arg % 7) * 100 * US);
    else np_yield();
    atomic_fetch_add(&churned, 1);
}

static void churn(void *arg) {
    (void)arg;
    for (uintptr_t i = 0; !atomic_load(&churn_stop); i++) {
        if (np_go(churn_one, (void *)i) != 0 || i % 64 == 0) np_sleep(100 * US);
    }
}

static int churn_main(void *arg) {
    (void)arg;
    np_go(churn, NULL);
    np_go(churn, NULL);
    FILE *null = fopen("/dev/null", "w");
    cr_assert(null);
    int64_t end = np_now() + 500 * MS;
    for (int i = 0; i < 200 || np_now() < end; i++) {
        cr_assert_eq(np_dump(null), 0);
        if (i % 2) np_yield();
    }
    fclose(null);
    atomic_store(&churn_stop, 1);
    cr_assert(atomic_load(&churned) > 0);
    return 0;
}

Test(dump, while_threads_come_and_go, .timeout = 120) {
    np_test_init("epoll", 2);
    run_green(churn_main, NULL);
}
