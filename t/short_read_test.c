/* A short read does not mean the descriptor is empty: the kernel stops a
 * read early with data still queued at the boundary of a unix-socket
 * message that carries descriptors, at a change of sending process under
 * SO_PASSCRED, at TCP's urgent mark, and after each packet of a packet-mode
 * pipe.  No new edge announces what is left, so the next read must try the
 * system call first (as Go does), not wait for readiness.  Each case runs
 * on every port, under a deadline, and must get the queued data at once. */
#include <pthread.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "np_test.h"

#define GREEN(fn) run_green(fn, NULL)

/* The poller sees the data arrive (and its readiness is consumed by the
 * first read) before that read: no pending edge is left to save the second. */
static void settle_poller(void) { np_sleep(5 * MS); }

/* The next read, bounded: it must return at once, with the data queued. */
static ssize_t read_bounded(np_fd *pd, char *buf, size_t n, int64_t *took) {
    np_set_deadline(pd, np_now() + 2000 * MS, NP_READ);
    int64_t t0 = np_now();
    ssize_t r = np_read(pd, buf, n);
    *took = np_now() - t0;
    np_set_deadline(pd, 0, NP_READ);
    return r;
}

static void assert_prompt(int64_t took, const char *what) {
    cr_assert_lt(took, 500 * MS, "%s: the queued data took %lld ms", what, (long long)(took / MS));
}

/* A message carrying a descriptor (SCM_RIGHTS), then plain data: read(2)
 * stops at the end of the message that carries descriptors. */
static int scm_rights_then_data(void *x) {
    (void)x;
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    np_fd *pd = must_open(sv[0]);
    int passed = dup(2);
    cr_assert_geq(passed, 0);
    char ctl[CMSG_SPACE(sizeof(int))];
    memset(ctl, 0, sizeof ctl);
    struct iovec iov = {"ab", 2};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl;
    m.msg_controllen = sizeof ctl;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &passed, sizeof(int));
    cr_assert_eq(sendmsg(sv[1], &m, 0), 2);
    close(passed);
    cr_assert_eq(write(sv[1], "cdef", 4), 4);
    settle_poller();
    char buf[4096];
    int64_t took;
    ssize_t r = np_read(pd, buf, sizeof buf);
    cr_assert_eq(r, 2, "the read stops at the message with descriptors: %zd", r);
    cr_assert_eq(memcmp(buf, "ab", 2), 0);
    r = read_bounded(pd, buf, sizeof buf, &took);
    cr_assert_eq(r, 4, "the plain data after it: %zd", r);
    cr_assert_eq(memcmp(buf, "cdef", 4), 0);
    assert_prompt(took, "SCM_RIGHTS");
    np_close(pd);
    close(sv[1]);
    return 0;
}
PORT_TEST(shortread, scm_rights_then_data, .timeout = 30) { GREEN(scm_rights_then_data); }

/* SO_PASSCRED: the kernel never glues the data of two sending processes. */
static int passcred_two_senders(void *x) {
    (void)x;
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int one = 1;
    cr_assert_eq(setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof one), 0);
    np_fd *pd = must_open(sv[0]);
    cr_assert_eq(write(sv[1], "ab", 2), 2);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) _exit(write(sv[1], "cdef", 4) == 4 ? 0 : 1);
    int st = -1;
    cr_assert_eq(waitpid(child, &st, 0), child);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    settle_poller();
    char buf[4096];
    int64_t took;
    ssize_t r = np_read(pd, buf, sizeof buf);
    cr_assert_eq(r, 2, "the read stops where the sender changes: %zd", r);
    r = read_bounded(pd, buf, sizeof buf, &took);
    cr_assert_eq(r, 4, "the second sender's data: %zd", r);
    cr_assert_eq(memcmp(buf, "cdef", 4), 0);
    assert_prompt(took, "SO_PASSCRED");
    np_close(pd);
    close(sv[1]);
    return 0;
}
PORT_TEST(shortread, passcred_two_senders, .timeout = 30) {
    SKIP_UNDER_TSAN("fork of a threaded process");
    GREEN(passcred_two_senders);
}

/* A packet-mode pipe (O_DIRECT): each read returns one write's packet. */
static int packet_pipe(void *x) {
    (void)x;
    int pp[2];
    if (pipe2(pp, O_DIRECT | O_CLOEXEC) < 0) cr_skip_test("pipe2(O_DIRECT): %s", strerror(errno));
    np_fd *pd = must_open(pp[0]);
    cr_assert_eq(write(pp[1], "aaaa", 4), 4);
    cr_assert_eq(write(pp[1], "bbbbbb", 6), 6);
    settle_poller();
    char buf[4096];
    int64_t took;
    ssize_t r = np_read(pd, buf, sizeof buf);
    cr_assert_eq(r, 4, "one packet per read: %zd", r);
    r = read_bounded(pd, buf, sizeof buf, &took);
    cr_assert_eq(r, 6, "the second packet: %zd", r);
    cr_assert_eq(memcmp(buf, "bbbbbb", 6), 0);
    assert_prompt(took, "O_DIRECT pipe");
    np_close(pd);
    close(pp[1]);
    return 0;
}
PORT_TEST(shortread, packet_pipe, .timeout = 30) { GREEN(packet_pipe); }

/* TCP's urgent mark: a read stops before the urgent byte. */
static int tcp_urgent(void *x) {
    (void)x;
    int a, b;
    tcp_pair(&a, &b);
    np_fd *pd = must_open(a);
    cr_assert_eq(write(b, "ab", 2), 2);
    cr_assert_eq(send(b, "!", 1, MSG_OOB), 1);
    cr_assert_eq(write(b, "cdef", 4), 4);
    settle_poller();
    char buf[4096];
    int64_t took;
    ssize_t r = np_read(pd, buf, sizeof buf);
    cr_assert_eq(r, 2, "the read stops at the urgent mark: %zd", r);
    /* The urgent byte is out of band: the stream goes on after it. */
    r = read_bounded(pd, buf, sizeof buf, &took);
    cr_assert_eq(r, 4, "the data after the mark: %zd", r);
    cr_assert_eq(memcmp(buf, "cdef", 4), 0);
    assert_prompt(took, "urgent mark");
    np_close(pd);
    close(b);
    return 0;
}
PORT_TEST(shortread, tcp_urgent, .timeout = 30) { GREEN(tcp_urgent); }

/* np_readv with no buffers reads nothing and returns 0 at once, after a
 * short read too. */
static int readv_empty_after_short(void *x) {
    (void)x;
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    np_fd *pd = must_open(sv[0]);
    cr_assert_eq(write(sv[1], "abc", 3), 3);
    settle_poller();
    char buf[4096];
    cr_assert_eq(np_read(pd, buf, sizeof buf), 3);
    np_set_deadline(pd, np_now() + 2000 * MS, NP_READ);
    int64_t t0 = np_now();
    ssize_t r = np_readv(pd, NULL, 0);
    int64_t took = np_now() - t0;
    cr_assert_eq(r, 0, "np_readv(iovcnt 0): %zd", r);
    assert_prompt(took, "readv of no buffers");
    /* And data sent later is still read. */
    cr_assert_eq(write(sv[1], "de", 2), 2);
    r = read_bounded(pd, buf, sizeof buf, &took);
    cr_assert_eq(r, 2, "%zd", r);
    np_close(pd);
    close(sv[1]);
    return 0;
}
PORT_TEST(shortread, readv_empty_after_short, .timeout = 30) { GREEN(readv_empty_after_short); }
