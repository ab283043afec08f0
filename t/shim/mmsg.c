/* mmsg: recvmmsg(2) and sendmmsg(2) on green threads.
 *
 *   signal   a thread in recvmmsg on a UDP socket with SO_RCVTIMEO, sent a
 *            signal by another (gdnsd stops its UDP threads so): the call
 *            ends with EINTR and the handler runs once, at once; the
 *            thread then stops.  Also through syscall(SYS_recvmmsg), a call
 *            no library can interpose: the signal's handler runs where
 *            the kernel ends the call with EINTR
 *   fill     a blocking recvmmsg of 4 waits until 4 datagrams came, one
 *            at a time; with MSG_WAITFORONE it returns with the first ones
 *   others   while one thread waits in recvmmsg, another thread on the
 *            same worker keeps running
 *   stream   sendmmsg of 3 messages of 300 KB each on a TCP socket whose
 *            reader is slow: all 3 go whole, in order */
#include <sys/syscall.h>
#include <sys/uio.h>

#include "shim_test.h"

static int udp_bound(struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof *a;
    if (fd < 0 || bind(fd, (struct sockaddr *)a, sizeof *a) != 0 || getsockname(fd, (struct sockaddr *)a, &len)) {
        perror("udp socket");
        exit(2);
    }
    return fd;
}

/* ------------------------------------------------------------- signal -- */

static __thread volatile sig_atomic_t sg_stop;
static atomic_int sg_handled, sg_eintr, sg_in, sg_raw;
static void on_usr2(int sig)
{
    (void)sig;
    sg_stop = 1;
    atomic_fetch_add(&sg_handled, 1);
}

static void *sg_body(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[512];
    struct iovec iov = {buf, sizeof buf};
    struct mmsghdr m = {.msg_hdr = {.msg_iov = &iov, .msg_iovlen = 1}};
    atomic_store(&sg_in, 1);
    long t0 = st_mono_ms();
    while (!sg_stop && st_mono_ms() - t0 < 10000) {
        int r = atomic_load(&sg_raw) ? (int)syscall(SYS_recvmmsg, fd, &m, 1, MSG_WAITFORONE, NULL)
                                     : recvmmsg(fd, &m, 1, MSG_WAITFORONE, NULL);
        if (r < 0 && errno == EINTR) atomic_fetch_add(&sg_eintr, 1);
    }
    return NULL;
}

static void test_signal(void)
{
    struct sigaction sa = {.sa_handler = on_usr2};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
    struct sockaddr_in a;
    int fd = udp_bound(&a);
    struct timeval tv = {0, 257000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int round = 0; round < 6; round++) {
        atomic_store(&sg_raw, round & 1);
        atomic_store(&sg_handled, 0);
        atomic_store(&sg_eintr, 0);
        atomic_store(&sg_in, 0);
        pthread_t t = st_spawn(sg_body, (void *)(intptr_t)fd);
        while (!atomic_load(&sg_in)) st_sleep_ms(1);
        st_sleep_ms(60);
        long t0 = st_mono_ms();
        pthread_kill(t, SIGUSR2);
        pthread_join(t, NULL);
        long took = st_mono_ms() - t0;
        CHECK(atomic_load(&sg_handled) == 1 && atomic_load(&sg_eintr) <= 1 && took < 2000,
              "round %d%s: stopped after %ld ms, %d handler runs, %d EINTRs (want at once, 1, at most 1)", round,
              round & 1 ? " (the system call)" : "", took, atomic_load(&sg_handled), atomic_load(&sg_eintr));
    }
    close(fd);
    signal(SIGUSR2, SIG_DFL);
}

/* --------------------------------------------------------------- fill -- */

struct sender {
    struct sockaddr_in to;
    int count, gap_ms;
};

static void *send_body(void *arg)
{
    struct sender *s = arg;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    for (int i = 0; i < s->count; i++) {
        st_sleep_ms(s->gap_ms);
        char c = (char)('a' + i);
        sendto(fd, &c, 1, 0, (struct sockaddr *)&s->to, sizeof s->to);
    }
    close(fd);
    return NULL;
}

static void test_fill(void)
{
    struct sockaddr_in a;
    int fd = udp_bound(&a);
    for (int waitforone = 0; waitforone < 2; waitforone++) {
        struct sender s = {a, 4, 20};
        pthread_t t = st_spawn(send_body, &s);
        char buf[4][8];
        struct iovec iov[4];
        struct mmsghdr m[4];
        memset(m, 0, sizeof m);
        for (int i = 0; i < 4; i++) {
            iov[i] = (struct iovec){buf[i], sizeof buf[i]};
            m[i].msg_hdr.msg_iov = &iov[i];
            m[i].msg_hdr.msg_iovlen = 1;
        }
        int got = 0;
        while (got < 4) {
            int r = recvmmsg(fd, m + got, 4u - (unsigned)got, waitforone ? MSG_WAITFORONE : 0, NULL);
            CHECK(r > 0, "recvmmsg: %d (%s)", r, strerror(errno));
            if (r <= 0) break;
            if (!waitforone) CHECK(r == 4, "a blocking recvmmsg of 4 returned %d", r);
            got += r;
        }
        pthread_join(t, NULL);
        for (int i = 0; i < got; i++)
            CHECK(m[i].msg_len == 1 && buf[i][0] == 'a' + i, "message %d: %u bytes, '%c'", i, m[i].msg_len, buf[i][0]);
    }
    close(fd);
}

/* ------------------------------------------------------------- others -- */

static atomic_int ot_stop;
static atomic_long ot_ticks;
static void *ticker(void *arg)
{
    (void)arg;
    while (!atomic_load(&ot_stop)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        atomic_fetch_add(&ot_ticks, 1);
    }
    return NULL;
}

static void *mm_waiter(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[8];
    struct iovec iov = {buf, sizeof buf};
    struct mmsghdr m = {.msg_hdr = {.msg_iov = &iov, .msg_iovlen = 1}};
    return (void *)(intptr_t)recvmmsg(fd, &m, 1, 0, NULL);
}

static void test_others(void)
{
    struct sockaddr_in a;
    int fd = udp_bound(&a);
    atomic_store(&ot_stop, 0);
    pthread_t w = st_spawn(mm_waiter, (void *)(intptr_t)fd);
    pthread_t tk = st_spawn(ticker, NULL);
    st_sleep_ms(50);
    long before = atomic_load(&ot_ticks);
    st_sleep_ms(300);
    long during = atomic_load(&ot_ticks) - before;
    struct sender s = {a, 1, 0};
    send_body(&s);
    void *r;
    pthread_join(w, &r);
    atomic_store(&ot_stop, 1);
    pthread_join(tk, NULL);
    CHECK((intptr_t)r == 1, "recvmmsg returned %ld", (long)(intptr_t)r);
    CHECK(during >= 30, "a thread sleeping 1 ms at a time ticked %ld times in 300 ms while another waited in "
          "recvmmsg", during);
    close(fd);
}

/* ------------------------------------------------------------- stream -- */

enum { kMsg = 300 * 1024 };

static void *slow_reader(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static char buf[3 * kMsg];
    size_t got = 0;
    while (got < sizeof buf) {
        st_sleep_ms(2);
        ssize_t r = read(fd, buf + got, 16384);
        if (r <= 0) break;
        got += (size_t)r;
    }
    for (size_t i = 0; i < got; i++)
        if (buf[i] != (char)('A' + i / kMsg)) return (void *)-1;
    return (void *)(intptr_t)got;
}

static void test_stream(void)
{
    uint16_t port;
    int l = st_listen(4, &port);
    int c = st_connect(port);
    int s = accept(l, NULL, NULL);
    CHECK(c >= 0 && s >= 0, "tcp pair");
    pthread_t r = st_spawn(slow_reader, (void *)(intptr_t)s);
    static char msg[3][kMsg];
    struct iovec iov[3];
    struct mmsghdr m[3];
    memset(m, 0, sizeof m);
    for (int i = 0; i < 3; i++) {
        memset(msg[i], 'A' + i, kMsg);
        iov[i] = (struct iovec){msg[i], kMsg};
        m[i].msg_hdr.msg_iov = &iov[i];
        m[i].msg_hdr.msg_iovlen = 1;
    }
    int n = sendmmsg(c, m, 3, 0);
    CHECK(n == 3, "sendmmsg returned %d (%s)", n, n < 0 ? strerror(errno) : "");
    for (int i = 0; i < 3 && i < n; i++) CHECK(m[i].msg_len == kMsg, "message %d: %u bytes sent", i, m[i].msg_len);
    void *got;
    pthread_join(r, &got);
    CHECK((intptr_t)got == 3 * kMsg, "the reader got %ld bytes (-1: out of order), want %d", (long)(intptr_t)got,
          3 * kMsg);
    close(c);
    close(s);
    close(l);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(120);
    signal(SIGPIPE, SIG_IGN);
    static const struct st_test tests[] = {
        {"signal", test_signal}, {"fill", test_fill}, {"others", test_others}, {"stream", test_stream},
    };
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("mmsg");
}
