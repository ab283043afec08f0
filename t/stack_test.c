/* Stacks: many parked threads stay small and within the VMA budget; an
 * overflow is reported, on guarded and on canary-checked stacks. */
#include <sys/resource.h>
#include <sys/wait.h>

#include "np_test.h"

static long status_kib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n)) v = atol(line + n);
    if (f) fclose(f);
    return v;
}

static long map_count(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    long n = 0;
    int c;
    while (f && (c = fgetc(f)) != EOF) n += c == '\n';
    if (f) fclose(f);
    return n;
}

static np_mutex mu = NP_MUTEX_INITIALIZER;
static np_cond cv = NP_COND_INITIALIZER;
static int release_all;
static atomic_int parked, left;

static void park_here(void *a) {
    (void)a;
    np_mutex_lock(&mu);
    atomic_fetch_add(&parked, 1);
    while (!release_all) np_cond_wait(&cv, &mu);
    np_mutex_unlock(&mu);
    atomic_fetch_add(&left, 1);
}

/* Wake every parked thread and wait until n have left. */
static void release_parked(int n, int64_t end) {
    np_mutex_lock(&mu);
    release_all = 1;
    np_cond_broadcast(&cv);
    np_mutex_unlock(&mu);
    while (atomic_load(&left) < n && np_now() < end) np_sleep(MS);
    cr_assert_eq(atomic_load(&left), n);
}

enum { PARKED = 100000 };

static int many_parked(void *x) {
    (void)x;
    long rss0 = status_kib("VmRSS:");
    for (int i = 0; i < PARKED; i++) cr_assert_eq(np_go(park_here, NULL), 0);
    int64_t end = np_now() + 60000 * MS;
    while (atomic_load(&parked) < PARKED && np_now() < end) np_sleep(MS);
    cr_assert_eq(atomic_load(&parked), PARKED);
    long rss = status_kib("VmRSS:") - rss0;
    long maps = map_count();
    np_stats s = {.size = sizeof s};
    np_stats_get(&s);
    cr_log_info("%d parked: %ld KiB RSS (%.2f KiB each), %ld mappings, %llu MiB reserved", PARKED, rss,
                (double)rss / PARKED, maps, (unsigned long long)(s.stack_bytes >> 20));
    /* Budget for 1M in 4 GiB: 4 KiB a thread, and far below 65530 VMAs. */
    cr_assert_lt(rss, PARKED * 5L, "%.2f KiB per parked thread", (double)rss / PARKED);
    cr_assert_lt(maps, 30000, "%ld mappings", maps);
    cr_assert_geq(s.parked, PARKED - 10);
    release_parked(PARKED, end);
    return 0;
}

Test(stack, hundred_thousand_parked_small_and_few_vmas, .timeout = 120) {
    SKIP_UNDER_ASAN();
    SKIP_UNDER_TSAN("a scale test");
    np_config c = {.size = sizeof c, .stack_size = 16384};
    cr_assert_eq(np_init(&c), 0);
    run_green(many_parked, NULL);
}

/* Deep but bounded recursion that overruns the stack, then switches: the
 * switch-out check reports it (the canary path beyond the guard budget). */
static int depth_then_yield(int n) {
    volatile char buf[512];
    buf[0] = (char)n;
    if (n > 0) return depth_then_yield(n - 1) + buf[0];
    np_yield();
    return buf[0];
}

static void overrun(void *a) {
    (void)a;
    depth_then_yield(80); /* ~45 KiB on a 16 KiB stack */
}

static int unguarded_overflow(void *x) {
    (void)x;
    /* Use up the guarded stacks: max_map_count / 8 of them. */
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    long maxmap = 65530;
    if (f) {
        if (fscanf(f, "%ld", &maxmap) != 1) maxmap = 65530;
        fclose(f);
    }
    long guarded = maxmap / 8 + 64;
    for (long i = 0; i < guarded; i++) np_go(park_here, NULL);
    while (atomic_load(&parked) < guarded) np_sleep(MS);
    np_go(overrun, NULL);
    np_sleep(5000 * MS);
    return 0;
}

#ifndef NP_UNDER_TSAN /* a scale test */
Test(stack, overflow_on_canary_stack_reported, .signal = SIGABRT, .init = cr_redirect_stderr,
     .timeout = 60) {
    np_config c = {.size = sizeof c, .stack_size = 16384, .procs = 1};
    cr_assert_eq(np_init(&c), 0);
    np_main(unguarded_overflow, NULL);
}
#endif

Test(stack, overflow_message_names_thread) {
    SKIP_UNDER_TSAN("fork of a threaded process");
    /* The report itself, checked from a child's stderr. */
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 2);
        np_config c = {.size = sizeof c, .stack_size = 16384, .procs = 1};
        np_init(&c);
        np_main(unguarded_overflow, NULL);
        _exit(0);
    }
    close(pfd[1]);
    char buf[512] = {0};
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf - 1 && (n = read(pfd[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)n;
    int st;
    waitpid(pid, &st, 0);
    cr_assert(strstr(buf, "overflowed its 16384-byte stack"), "stderr: %s", buf);
}

/* Small packed stacks: handlers that fit run, share pages, and bad sizes
 * are refused. */
static atomic_int small_done;
static void small_handler(void *a) {
    np_fd *c = a;
    char buf[4096];
    ssize_t n;
    while ((n = np_read(c, buf, sizeof buf)) > 0)
        if (np_write(c, buf, (size_t)n) != n) break;
    np_close(c);
    atomic_fetch_add(&small_done, 1);
}

enum { SMALL = 2000 };

static int small_stacks(void *x) {
    (void)x;
    static np_fd *peer[SMALL];
    long rss0 = status_kib("VmRSS:");
    for (int i = 0; i < SMALL; i++) {
        int sv[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        np_fd *c = must_open(sv[0]);
        peer[i] = must_open(sv[1]);
        cr_assert_eq(np_go_stack(small_handler, c, 6 * 1024 + NP_ASAN_STACK_EXTRA), 0);
    }
    char msg[512], back[512];
    memset(msg, 'q', sizeof msg);
    for (int i = 0; i < SMALL; i++) { /* one round trip each: buffers touched */
        cr_assert_eq(np_write(peer[i], msg, sizeof msg), (ssize_t)sizeof msg);
        size_t got = 0;
        while (got < sizeof back) got += (size_t)np_read(peer[i], back + got, sizeof back - got);
        cr_assert_eq(memcmp(msg, back, sizeof msg), 0);
    }
    long per = (status_kib("VmRSS:") - rss0) * 1024 / SMALL;
    cr_log_info("%d small-stack handlers: %ld bytes each (both ends)", SMALL, per);
    /* 6 KiB stack, two descriptors, socket buffers aside: well under the
     * 8 KiB + that page-granular stacks with a 4 KiB buffer would cost.
     * (Not under ASan: its shadow and fake stacks are RSS too.) */
#ifndef NP_UNDER_ASAN
    cr_assert_lt(per, 7800, "%ld bytes per handler", per);
#endif
    for (int i = 0; i < SMALL; i++) np_close(peer[i]);
    int64_t end = np_now() + 10000 * MS;
    while (atomic_load(&small_done) < SMALL && np_now() < end) np_sleep(MS);
    cr_assert_eq(atomic_load(&small_done), SMALL);
    cr_assert_eq(np_go_stack(small_handler, NULL, 1024), -EINVAL);
    cr_assert_eq(np_go_stack(NULL, NULL, 8192), -EINVAL);
    cr_assert_eq(np_go_stack(small_handler, NULL, (size_t)2 << 30), -EINVAL);
    return 0;
}

Test(stack, small_packed_stacks, .timeout = 60) {
    SKIP_UNDER_TSAN("small stacks");
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    run_green(small_stacks, NULL);
}

/* Idle stacks give their pages back: threads that used most of their stacks
 * exit, and within a few seconds (sysmon scavenges twice a second, paced)
 * the process's RSS falls back by most of what those stacks held. */
enum { DEEP = 2000, DEEP_KIB = 12 };
static void deep_thread(void *a) {
    volatile char buf[DEEP_KIB * 1024];
    for (size_t i = 0; i < sizeof buf; i += 512) buf[i] = (char)i;
    park_here(a);
}

static int stacks_scavenged(void *x) {
    (void)x;
    long rss0 = status_kib("VmRSS:");
    for (int i = 0; i < DEEP; i++) cr_assert_eq(np_go(deep_thread, NULL), 0);
    int64_t end = np_now() + 30000 * MS;
    while (atomic_load(&parked) < DEEP && np_now() < end) np_sleep(MS);
    cr_assert_eq(atomic_load(&parked), DEEP);
    long grown = status_kib("VmRSS:") - rss0;
    cr_assert_gt(grown, DEEP * DEEP_KIB / 2, "the stacks were not committed (%ld KiB)", grown);
    release_parked(DEEP, end);
    /* A warm reserve (a few hundred stacks) stays committed. */
    long now = status_kib("VmRSS:") - rss0;
    int64_t give_up = np_now() + 10000 * MS;
    while (now > grown / 2 && np_now() < give_up) {
        np_sleep(50 * MS);
        now = status_kib("VmRSS:") - rss0;
    }
    cr_log_info("%d deep threads: +%ld KiB, %ld KiB after they ended", DEEP, grown, now);
    cr_assert_leq(now, grown / 2, "idle stacks kept %ld of %ld KiB", now, grown);
    return 0;
}

Test(stack, idle_stacks_give_pages_back, .timeout = 60) {
    SKIP_UNDER_ASAN();
    np_test_init("epoll", 2);
    run_green(stacks_scavenged, NULL);
}
