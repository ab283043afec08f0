/* Choosing a poller: io_uring refused by the kernel (a seccomp policy here)
 * fails np_init with a clear error, while the environment path says so once
 * and falls back to epoll. */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "np_test.h"

static void refuse_io_uring(void) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof *f, f};
    cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
}

static int returns_9(void *a) {
    (void)a;
    return 9;
}

Test(poller_choice, io_uring_refused_is_an_error) {
    refuse_io_uring();
    np_config c = {.size = sizeof c, .poller = "io_uring"};
    cr_assert_eq(np_init(&c), -EPERM);
    /* Nothing half-started: another poller still works. */
    c.poller = "epoll";
    cr_assert_eq(np_init(&c), 0);
    cr_assert_eq(np_main(returns_9, NULL), 9);
}

Test(poller_choice, io_uring_refused_env_falls_back, .init = cr_redirect_stderr) {
    refuse_io_uring();
    setenv("NP_POLLER", "io_uring", 1);
    cr_assert_eq(np_init(NULL), 0);
    cr_assert_eq(np_main(returns_9, NULL), 9);
    char buf[1024];
    captured_stderr(buf, sizeof buf);
    cr_assert(strstr(buf, "NP_POLLER=io_uring unavailable"), "stderr: %s", buf);
    cr_assert(strstr(buf, "using epoll"), "stderr: %s", buf);
}

Test(poller_choice, env_selects_poll) {
    setenv("NP_POLLER", "poll", 1);
    cr_assert_eq(np_init(NULL), 0);
    np_config c = {.size = sizeof c, .poller = "poll"};
    cr_assert_eq(np_init(&c), 0, "same config as running");
    c.poller = "epoll";
    cr_assert_eq(np_init(&c), -EBUSY);
}

/* ---- steady state: no allocation per read/write --------------------------- */

static void echo(void *a) {
    np_fd *pd = a;
    char buf[512];
    ssize_t n;
    while ((n = np_read(pd, buf, sizeof buf)) > 0) np_write(pd, buf, (size_t)n);
}

static int zero_alloc(void *x) {
    (void)x;
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    np_fd *a = must_open(sv[0]), *b = must_open(sv[1]);
    np_go(echo, b);
    char buf[512] = {0};
    for (int i = 0; i < 100; i++) { /* warm up */
        np_set_deadline(a, np_now() + 1000 * MS, NP_READ);
        np_write(a, buf, sizeof buf);
        np_read(a, buf, sizeof buf);
    }
    np_stats s0 = {.size = sizeof s0}, s1 = {.size = sizeof s1};
    np_stats_get(&s0);
    for (int i = 0; i < 10000; i++) {
        np_set_deadline(a, np_now() + 1000 * MS, NP_READ);
        cr_assert_eq(np_write(a, buf, sizeof buf), (ssize_t)sizeof buf);
        size_t got = 0;
        while (got < sizeof buf) got += (size_t)np_read(a, buf + got, sizeof buf - got);
    }
    np_stats_get(&s1);
    cr_assert_eq(s1.alloc_count - s0.alloc_count, 0, "%llu allocations in 10000 round trips",
                 (unsigned long long)(s1.alloc_count - s0.alloc_count));
    np_close(a);
    np_close(b);
    return 0;
}

PORT_TEST(steady, zero_allocations_per_io) { run_green(zero_alloc, NULL); }

/* ---- one call moves at most 1 GiB ----------------------------------------- */

static int capped(void *x) {
    (void)x;
    int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    np_fd *z = must_open(fd);
    size_t n = (size_t)3 << 29; /* 1.5 GiB */
    void *buf = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    cr_assert_neq(buf, MAP_FAILED);
    ssize_t r = np_read(z, buf, n);
    cr_assert_eq(r, (ssize_t)1 << 30, "one read returned %zd", r);
    munmap(buf, n);
    np_close(z);
    return 0;
}

Test(io, read_capped_at_1gib, .timeout = 60) { run_green(capped, NULL); }
