/* signal_partial: a signal that comes while a blocking stream send is
 * moving a large buffer ends the call with a short count, as the kernel
 * does once something was sent, handler with or without SA_RESTART.  The
 * shim sends such a buffer in several non-blocking steps, parking between
 * them; a signal that came while a step ran had its handler run before the
 * next step, and the send then went on, until a second signal came while
 * it was parked (CPython's test_socketserver SocketWriterTest signals once
 * and waits a second for the short write, and was late about one run in
 * two under -p 2).
 *
 * Each round: main sends 16 MiB to a client thread with send(), writev()
 * or sendmsg() in turn; the client reads 100 bytes, signals main once, and
 * waits up to 2 s for main to say its call returned (short) and the
 * handler ran. */
#include <semaphore.h>
#include <sys/uio.h>

#include "shim_test.h"

#define BIG (16 << 20)
#define ROUNDS 24

static volatile sig_atomic_t tripped;
static sem_t returned;
static pthread_t main_thread;
static uint16_t port;
static atomic_int late;

static void on_usr1(int sig)
{
    (void)sig;
    tripped = 1;
}

static void *client(void *arg)
{
    (void)arg;
    int c = st_connect(port);
    CHECK(c >= 0, "connect: %s", strerror(errno));
    static __thread char buf[65536];
    CHECK(st_read_full(c, buf, 100) == 100, "read the first 100 bytes");
    pthread_kill(main_thread, SIGUSR1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 2;
    int r;
    while ((r = sem_timedwait(&returned, &ts)) != 0 && errno == EINTR) {}
    if (r != 0) atomic_fetch_add(&late, 1); /* then all is read, so that the round ends */
    while (read(c, buf, sizeof buf) > 0) {}
    close(c);
    if (r != 0)
        while (sem_wait(&returned) != 0) {}
    return NULL;
}

static ssize_t send_how(int s, const char *p, size_t n, int how)
{
    if (how == 0) return send(s, p, n, 0);
    struct iovec v[2] = {{(void *)p, n / 2}, {(void *)(p + n / 2), n - n / 2}};
    if (how == 1) return writev(s, v, 2);
    struct msghdr m = {.msg_iov = v, .msg_iovlen = 2};
    return sendmsg(s, &m, 0);
}

static void rounds(int flags)
{
    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = flags};
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    char *data = calloc(1, BIG);
    atomic_store(&late, 0);
    for (int i = 0; i < ROUNDS; i++) {
        int l = st_listen(1, &port);
        pthread_t t = st_spawn(client, NULL);
        int a = accept(l, NULL, NULL);
        CHECK(a >= 0, "accept: %s", strerror(errno));
        size_t off = 0;
        int shorts = 0;
        tripped = 0;
        while (off < BIG) {
            ssize_t n = send_how(a, data + off, BIG - off, i % 3);
            if (n < 0 && errno == EINTR) {
                CHECK(!(flags & SA_RESTART) || off == 0, "EINTR after %zu bytes with SA_RESTART", off);
            } else {
                CHECK(n > 0, "send: %s", strerror(errno));
                if (n <= 0) break;
                off += (size_t)n;
                if (off < BIG) shorts++;
            }
            if (tripped) {
                tripped = 0;
                sem_post(&returned);
            }
        }
        CHECK(shorts <= 2, "%d short sends in one round with one signal (two at most: a late round's)", shorts);
        close(a);
        pthread_join(t, NULL);
        close(l);
    }
    CHECK(atomic_load(&late) == 0, "%d of %d blocking sends went on after the handler of a signal that came "
          "while they ran (SA_RESTART %s)", atomic_load(&late), ROUNDS, flags & SA_RESTART ? "on" : "off");
    free(data);
}

static void test_no_restart(void) { rounds(0); }
static void test_restart(void) { rounds(SA_RESTART); }

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(120);
    sem_init(&returned, 0, 0);
    main_thread = pthread_self();
    static const struct st_test tests[] = {{"no_restart", test_no_restart}, {"restart", test_restart}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("signal_partial");
}
