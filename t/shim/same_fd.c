/* same_fd: several threads blocked on one descriptor in one direction, as
 * an accept pool on one listener, readers of one pipe, or polls of one
 * socket.  Each keeps what is its own, as the kernel keeps it: a signal
 * sent to one ends that one's call (EINTR) and leaves the others waiting
 * (no spurious return); each call's timeout (poll's, SO_RCVTIMEO) runs
 * out on time whoever else waits; a cancellation ends that one thread; a
 * readiness is taken once; and (under the shim, as in Go) a close wakes
 * them all with EBADF, but for poll(), which never fails so: it reports
 * the closed descriptor POLLNVAL, as the kernel's last look does. */
#include <fcntl.h>
#include <poll.h>

#include "shim_test.h"

#define N 4

static atomic_int handled;
static void on_usr1(int sig)
{
    (void)sig;
    atomic_fetch_add(&handled, 1);
}

/* C_POLL_RECV: a socket with a timeout as Python's: poll(), then the read
 * on the non-blocking file, again while that says EAGAIN; 0 when the poll
 * timed out. */
enum call { C_ACCEPT, C_READ, C_POLL, C_RECV, C_POLL_RECV };

struct waiter {
    pthread_t t;
    int fd;
    enum call call;
    int timeout_ms;       /* poll's */
    atomic_int returned;  /* how many times the call returned */
    atomic_int last, err; /* its last result and errno */
    atomic_int revents;   /* poll's */
    atomic_long took_ms;  /* how long the last call took */
    atomic_int stop;      /* end after this call returns */
};

static void *waiter_body(void *arg)
{
    struct waiter *w = arg;
    while (!atomic_load(&w->stop)) {
        long t0 = st_mono_ms();
        int r;
        char c;
        struct pollfd p = {w->fd, POLLIN, 0};
        switch (w->call) {
        case C_ACCEPT: r = accept(w->fd, NULL, NULL); break;
        case C_READ: r = (int)read(w->fd, &c, 1); break;
        case C_POLL: r = poll(&p, 1, w->timeout_ms); break;
        case C_POLL_RECV:
            do r = poll(&p, 1, w->timeout_ms) > 0 ? (int)recv(w->fd, &c, 1, 0) : 0;
            while (r < 0 && errno == EAGAIN);
            break;
        default: r = (int)recv(w->fd, &c, 1, 0); break;
        }
        int e = errno;
        atomic_store(&w->revents, p.revents);
        if (w->call == C_ACCEPT && r >= 0) close(r);
        atomic_store(&w->took_ms, st_mono_ms() - t0);
        atomic_store(&w->last, r);
        atomic_store(&w->err, r < 0 ? e : 0);
        atomic_fetch_add(&w->returned, 1);
        if (w->call == C_READ && r == 0) break; /* end of file */
    }
    return NULL;
}

static void start(struct waiter *w, int n, int fd, enum call call, int timeout_ms)
{
    for (int i = 0; i < n; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].fd = fd;
        w[i].call = call;
        w[i].timeout_ms = timeout_ms;
        w[i].t = st_spawn(waiter_body, &w[i]);
    }
    st_sleep_ms(100); /* all in their calls */
}

static int wait_returned(struct waiter *w, int want, long ms)
{
    long end = st_mono_ms() + ms;
    while (atomic_load(&w->returned) < want && st_mono_ms() < end) st_sleep_ms(2);
    return atomic_load(&w->returned) >= want;
}

static int total_returned(struct waiter *w, int n)
{
    int s = 0;
    for (int i = 0; i < n; i++) s += atomic_load(&w[i].returned);
    return s;
}

/* Signal each waiter in turn: its call (and only its) ends with EINTR. */
static void interrupt_each(const char *what, struct waiter *w, int n)
{
    for (int i = 0; i < n; i++) {
        int mine = atomic_load(&w[i].returned);
        int others = total_returned(w, n) - mine;
        atomic_store(&w[i].stop, 1);
        pthread_kill(w[i].t, SIGUSR1);
        CHECK(wait_returned(&w[i], mine + 1, 3000), "%s: waiter %d still in its call 3 s after its signal", what,
              i);
        CHECK(atomic_load(&w[i].last) == -1 && atomic_load(&w[i].err) == EINTR,
              "%s: waiter %d's call got %d (%s), want EINTR", what, i, atomic_load(&w[i].last),
              strerror(atomic_load(&w[i].err)));
        pthread_join(w[i].t, NULL);
        st_sleep_ms(30);
        int now = total_returned(w, n) - atomic_load(&w[i].returned);
        CHECK(now == others, "%s: a signal for waiter %d made %d other calls return", what, i, now - others);
    }
}

static void test_accept_pool(void)
{
    uint16_t port;
    int l = st_listen(64, &port);
    struct waiter w[N];
    start(w, N, l, C_ACCEPT, 0);
    /* Each connection is taken once, by some waiter, promptly. */
    for (int k = 0; k < 12; k++) {
        int before = total_returned(w, N);
        int c = st_connect(port);
        long end = st_mono_ms() + 3000;
        while (total_returned(w, N) == before && st_mono_ms() < end) st_sleep_ms(1);
        CHECK(total_returned(w, N) == before + 1, "accept pool: connection %d: %d accepts, want 1", k,
              total_returned(w, N) - before);
        close(c);
    }
    interrupt_each("accept pool", w, N);
    close(l);
}

static void test_pipe_readers(void)
{
    int p[2];
    CHECK(pipe(p) == 0, "pipe: %s", strerror(errno));
    struct waiter w[N];
    start(w, N, p[0], C_READ, 0);
    /* One byte at a time: one reader each. */
    for (int k = 0; k < 8; k++) {
        int before = total_returned(w, N);
        CHECK(write(p[1], "x", 1) == 1, "pipe write");
        long end = st_mono_ms() + 3000;
        while (total_returned(w, N) == before && st_mono_ms() < end) st_sleep_ms(1);
        st_sleep_ms(10);
        CHECK(total_returned(w, N) == before + 1, "pipe readers: byte %d: %d reads returned, want 1", k,
              total_returned(w, N) - before);
    }
    /* A cancellation ends its reader only. */
    int others = total_returned(w, N) - atomic_load(&w[0].returned);
    pthread_cancel(w[0].t);
    void *res = NULL;
    pthread_join(w[0].t, &res);
    CHECK(res == PTHREAD_CANCELED, "pipe readers: the cancelled reader did not end cancelled");
    st_sleep_ms(30);
    CHECK(total_returned(w, N) - atomic_load(&w[0].returned) == others,
          "pipe readers: a cancellation made other reads return");
    interrupt_each("pipe readers", w + 1, N - 1);
    close(p[0]);
    close(p[1]);
}

/* poll(-1) beside poll with a timeout on the same socket: the timed one
 * ends on time, the other stays. */
static void test_timeouts(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    struct waiter forever[2];
    start(forever, 2, sv[0], C_POLL, -1);
    struct waiter timed[2];
    start(timed, 2, sv[0], C_POLL, 200);
    long end = st_mono_ms() + 3000;
    while ((atomic_load(&timed[0].returned) < 2 || atomic_load(&timed[1].returned) < 2) && st_mono_ms() < end)
        st_sleep_ms(5);
    for (int i = 0; i < 2; i++) {
        CHECK(atomic_load(&timed[i].returned) >= 2, "timeouts: poll(200 ms) %d returned %d times in 3 s", i,
              atomic_load(&timed[i].returned));
        long took = atomic_load(&timed[i].took_ms);
        CHECK(atomic_load(&timed[i].last) == 0 && took >= 150 && took < 2000,
              "timeouts: poll(200 ms) %d gave %d after %ld ms", i, atomic_load(&timed[i].last), took);
        atomic_store(&timed[i].stop, 1);
    }
    CHECK(total_returned(forever, 2) == 0, "timeouts: poll(-1) returned %d times with nothing to read",
          total_returned(forever, 2));
    /* SO_RCVTIMEO: both readers of the other end give EAGAIN on time. */
    struct timeval tv = {0, 200000};
    CHECK(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
    struct waiter rcv[2];
    start(rcv, 2, sv[1], C_RECV, 0);
    for (int i = 0; i < 2; i++) {
        atomic_store(&rcv[i].stop, 1);
        CHECK(wait_returned(&rcv[i], 1, 3000), "timeouts: recv with SO_RCVTIMEO %d still waits after 3 s", i);
        CHECK(atomic_load(&rcv[i].err) == EAGAIN, "timeouts: recv with SO_RCVTIMEO %d: %s, want EAGAIN", i,
              strerror(atomic_load(&rcv[i].err)));
        pthread_join(rcv[i].t, NULL);
    }
    /* One byte: the poll(-1)s see it. */
    for (int i = 0; i < 2; i++) atomic_store(&forever[i].stop, 1);
    CHECK(write(sv[1], "y", 1) == 1, "write");
    for (int i = 0; i < 2; i++) {
        CHECK(wait_returned(&forever[i], 1, 3000), "timeouts: poll(-1) %d missed the byte", i);
        CHECK(atomic_load(&forever[i].last) == 1, "timeouts: poll(-1) %d gave %d, want 1", i,
              atomic_load(&forever[i].last));
        pthread_join(forever[i].t, NULL);
    }
    for (int i = 0; i < 2; i++) pthread_join(timed[i].t, NULL);
    close(sv[0]);
    close(sv[1]);
}

/* Under the shim a close wakes every thread blocked on the descriptor
 * (Go's rule, and the only way the number is not reused under them);
 * Linux leaves them blocked, so plain runs end them with shutdown. */
static void test_close(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    struct waiter w[N];
    start(w, N, sv[0], C_RECV, 0);
    for (int i = 0; i < N; i++) atomic_store(&w[i].stop, 1);
    if (st_under_shim()) close(sv[0]);
    else shutdown(sv[0], SHUT_RDWR);
    for (int i = 0; i < N; i++) {
        CHECK(wait_returned(&w[i], 1, 3000), "close: reader %d still blocked 3 s after the close", i);
        if (st_under_shim())
            CHECK(atomic_load(&w[i].last) == -1 && atomic_load(&w[i].err) == EBADF,
                  "close: reader %d got %d (%s), want EBADF", i, atomic_load(&w[i].last),
                  strerror(atomic_load(&w[i].err)));
        pthread_join(w[i].t, NULL);
    }
    if (!st_under_shim()) close(sv[0]);
    close(sv[1]);
}

static void *close_later(void *arg)
{
    st_sleep_ms(100);
    close(*(int *)arg);
    return NULL;
}

/* poll() on a descriptor another thread closes: Linux waits out the
 * timeout, then its last look finds the number closed (POLLNVAL, a count
 * of 1); the shim wakes the polls at the close, with that same answer.
 * poll(2) has no EBADF: the shim's poll returned -1 EBADF here, which
 * Python's select.poll() raised, in the thread of a poll on a pipe. */
static void test_close_poll(void)
{
    for (int kind = 0; kind < 2; kind++) {
        const char *what = kind ? "pipe" : "socket";
        int sv[2];
        CHECK((kind ? pipe(sv) : socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) == 0, "%s: %s", what, strerror(errno));
        struct waiter w[N];
        start(w, N, sv[0], C_POLL, 500);
        for (int i = 0; i < N; i++) atomic_store(&w[i].stop, 1);
        close(sv[0]);
        for (int i = 0; i < N; i++) {
            CHECK(wait_returned(&w[i], 1, 3000), "close-poll: %s: poll %d still blocked 3 s after the close", what,
                  i);
            CHECK(atomic_load(&w[i].last) == 1 && atomic_load(&w[i].revents) == POLLNVAL,
                  "close-poll: %s: poll %d got %d (%s) revents %#x, want 1 and POLLNVAL", what, i,
                  atomic_load(&w[i].last), strerror(atomic_load(&w[i].err)), (unsigned)atomic_load(&w[i].revents));
            pthread_join(w[i].t, NULL);
        }
        close(sv[1]);
    }
    /* A poll of two descriptors, one closed meanwhile: when the timeout
     * runs out, the last look reports it POLLNVAL, as the kernel's does
     * (the shim's wait on an epoll set, which the close left, said 0). */
    {
        int a[2], b[2];
        CHECK(pipe(a) == 0 && pipe(b) == 0, "pipe: %s", strerror(errno));
        struct pollfd two[2] = {{a[0], POLLIN, 0}, {b[0], POLLIN, 0}};
        pthread_t t = st_spawn(close_later, &a[0]);
        int r = poll(two, 2, 300);
        pthread_join(t, NULL);
        CHECK(r == 1 && two[0].revents == POLLNVAL && two[1].revents == 0,
              "close-poll: poll of two, one closed: %d, revents %#x %#x, want 1, POLLNVAL and 0", r,
              (unsigned)two[0].revents, (unsigned)two[1].revents);
        close(a[1]);
        close(b[0]);
        close(b[1]);
    }
    /* A call the close ended returns once the number is closed: the read
     * after the poll's POLLNVAL fails (EBADF), as after the kernel's poll.
     * It was made on the file still open (the closer waited for the woken
     * calls to leave before its kernel close), said EAGAIN, and the poll
     * after it waited out its timeout. */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    CHECK(fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK) == 0, "O_NONBLOCK: %s", strerror(errno));
    struct waiter w[N];
    start(w, N, sv[0], C_POLL_RECV, 1000);
    for (int i = 0; i < N; i++) atomic_store(&w[i].stop, 1);
    close(sv[0]);
    for (int i = 0; i < N; i++) {
        CHECK(wait_returned(&w[i], 1, 3000), "close-poll: poll and read %d still blocked 3 s after the close", i);
        CHECK(atomic_load(&w[i].last) == -1 && atomic_load(&w[i].err) == EBADF,
              "close-poll: poll and read %d got %d (%s), want EBADF", i, atomic_load(&w[i].last),
              strerror(atomic_load(&w[i].err)));
        pthread_join(w[i].t, NULL);
    }
    close(sv[1]);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART: the call ends with EINTR */
    sigaction(SIGUSR1, &sa, NULL);
    static const struct st_test tests[] = {
        {"accept-pool", test_accept_pool},
        {"pipe-readers", test_pipe_readers},
        {"timeouts", test_timeouts},
        {"close", test_close},
        {"close-poll", test_close_poll},
    };
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("same_fd");
}
