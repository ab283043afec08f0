/* Shared helpers for the Criterion suites.  Each test runs in its own
 * process (Criterion forks), so every test starts the runtime afresh. */
#ifndef NP_TEST_H
#define NP_TEST_H

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netpoll.h"

/* AddressSanitizer commits shadow memory beside every page touched and
 * moves address-taken locals to fake stacks of its own (use-after-return):
 * the tests of memory use (RSS) measure something else under it, so they
 * step aside.  Small stacks run there like everywhere else. */
#if defined(__SANITIZE_ADDRESS__)
#define NP_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NP_UNDER_ASAN 1
#endif
#endif
#ifdef NP_UNDER_ASAN
#define SKIP_UNDER_ASAN() cr_skip_test("RSS differs under AddressSanitizer")
#else
#define SKIP_UNDER_ASAN() ((void)0)
#endif
/* ThreadSanitizer keeps a shadow of every thread (a few thousand at most),
 * slows code tenfold, needs deep stacks for its own runtime and does not
 * follow a threaded process into fork: scale, timing, small-stack and fork
 * tests step aside under it (check-tsan is for races). */
#if defined(__SANITIZE_THREAD__)
#define NP_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NP_UNDER_TSAN 1
#endif
#endif
#ifdef NP_UNDER_TSAN
#define SKIP_UNDER_TSAN(why) cr_skip_test("not under ThreadSanitizer: " why)
#else
#define SKIP_UNDER_TSAN(why) ((void)0)
#endif
/* Its instrumented frames still take their whole size (locals plus
 * redzones) on the real stack even when use-after-return moves the locals
 * to a fake stack, and its runtime (fake-stack allocation, interceptors)
 * runs there too: a small stack sized to its buffer (6 KiB for a 4 KiB one)
 * gets this much more under ASan, and stays a size that is not a page
 * multiple (packed slots). */
#ifdef NP_UNDER_ASAN
#define NP_ASAN_STACK_EXTRA (16 * 1024)
#else
#define NP_ASAN_STACK_EXTRA 0
#endif

/* Scale tests (a hundred thousand threads, each stack registered with
 * memcheck) are not what valgrind is for: they step aside under it. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define SKIP_UNDER_VALGRIND() \
    do { \
        if (RUNNING_ON_VALGRIND) cr_skip_test("a scale test: not run under valgrind"); \
    } while (0)
#endif
#endif
#ifndef SKIP_UNDER_VALGRIND
#define SKIP_UNDER_VALGRIND() ((void)0)
#endif

#define MS (INT64_C(1000000))
#define US (INT64_C(1000))

static inline void np_test_init(const char *poller, int procs) {
    np_config c;
    memset(&c, 0, sizeof c);
    c.size = sizeof c;
    c.procs = procs;
    c.poller = poller;
    int r = np_init(&c);
    if (r == -ENOSYS || r == -EPERM)
        cr_skip_test("poller %s refused by this kernel (%s)", poller, strerror(-r));
    cr_assert_eq(r, 0, "np_init(%s): %s", poller, strerror(-r));
}

static inline void np_test_init_embedded(const char *poller) {
    np_config c;
    memset(&c, 0, sizeof c);
    c.size = sizeof c;
    c.poller = poller;
    c.flags = NP_CONFIG_EMBEDDED;
    int r = np_init(&c);
    if (r == -ENOSYS || r == -EPERM)
        cr_skip_test("poller %s refused by this kernel (%s)", poller, strerror(-r));
    cr_assert_eq(r, 0, "np_init(%s, embedded): %s", poller, strerror(-r));
}

/* What the test wrote to stderr so far (with .init = cr_redirect_stderr). */
static inline const char *captured_stderr(char *buf, size_t n) {
    fflush(stderr);
    size_t got = fread(buf, 1, n - 1, cr_get_redirected_stderr());
    buf[got] = 0;
    return buf;
}

/* Run fn as the test's main green thread; assert it returned 0. */
static inline void run_green(int (*fn)(void *), void *arg) {
    int r = np_main(fn, arg);
    cr_assert_eq(r, 0, "green main returned %d", r);
}

/* A connected TCP pair over loopback: *a is the client, *b the server side. */
static inline void tcp_pair(int *a, int *b) {
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(ls, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(ls, 8), 0);
    socklen_t l = sizeof sa;
    getsockname(ls, (struct sockaddr *)&sa, &l);
    *a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(*a, (struct sockaddr *)&sa, sizeof sa), 0);
    *b = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    cr_assert_geq(*b, 0);
    close(ls);
}

static inline int listener(struct sockaddr_in *out) {
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(ls, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(ls, 1024), 0);
    socklen_t l = sizeof sa;
    getsockname(ls, (struct sockaddr *)&sa, &l);
    if (out) *out = sa;
    return ls;
}

static inline np_fd *must_open(int fd) {
    np_fd *p = NULL;
    int r = np_open(fd, &p);
    cr_assert_eq(r, 0, "np_open(%d): %s", fd, strerror(-r));
    return p;
}

/* The same test body against every port. */
#define PORT_TEST(suite, name, ...)                                                   \
    static void suite##_##name##_body(void);                                          \
    Test(suite##_epoll, name, .disabled = 0, ##__VA_ARGS__) {                                          \
        np_test_init("epoll", 0);                                                     \
        suite##_##name##_body();                                                      \
    }                                                                                 \
    Test(suite##_io_uring, name, .disabled = 0, ##__VA_ARGS__) {                                       \
        np_test_init("io_uring", 0);                                                  \
        suite##_##name##_body();                                                      \
    }                                                                                 \
    Test(suite##_poll, name, .disabled = 0, ##__VA_ARGS__) {                                           \
        np_test_init("poll", 0);                                                      \
        suite##_##name##_body();                                                      \
    }                                                                                 \
    static void suite##_##name##_body(void)

/* The workers np_init starts by default: one per CPU the process may run
 * on (its affinity). */
static inline long np_test_cpus(void)
{
    cpu_set_t set;
    return sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
}

#endif
