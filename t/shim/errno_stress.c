/* errno_stress: errno is per thread, under load.
 *
 *   errno_stress [threads, default 500] [seconds, default 3]
 *
 * Every thread loops for a bounded time (and a bounded count). Before each
 * call it sets errno to a value of its own (1000 + its index, no real errno
 * has it); after the call errno must be exactly what that call sets: unchanged
 * on success, EAGAIN from a read on its empty non-blocking socket, EBADF from
 * a read on fd -1, EINTR or EAGAIN from a blocking read with SO_RCVTIMEO that
 * a signal interrupted or that timed out. Between calls it yields and sleeps,
 * so other threads run on the same OS thread in between. A killer thread
 * sends SIGUSR1 (no SA_RESTART) to threads that are about to block; the
 * handler itself changes errno (a failing close) and restores it, as a
 * careful handler does. At least one read must have been interrupted. */
#include "shim_test.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>

enum { MAX_ITERS = 200000 };

struct worker {
    pthread_t tid;
    int id;
    int nb[2];          /* nb[0]: non-blocking, always empty */
    int tm[2];          /* tm[0]: blocking, SO_RCVTIMEO 50 ms, never written */
    atomic_int blocking;   /* about to block in read(tm[0]) */
    long iters, eagain, ebadf, eintr, timeouts, unchanged;
    long bad;
};

static struct worker *workers;
static int nthreads = 500;
static atomic_int stop, ready;
static atomic_long signals_sent, handler_runs;
static __thread long tls_iters;   /* per thread, compared with a local count */

static void on_usr1(int sig)
{
    (void)sig;
    int saved = errno;
    close(-1);   /* sets errno to EBADF in whichever thread runs the handler */
    atomic_fetch_add(&handler_runs, 1);
    errno = saved;
}

/* One failed check: count it, and report the first few. */
static void wrong(struct worker *w, const char *call, ssize_t ret, int got, const char *want)
{
    w->bad++;
    CHECK(0, "thread %d iteration %ld: %s returned %zd with errno %d, want %s", w->id, w->iters,
          call, ret, got, want);
}

static void *work(void *arg)
{
    struct worker *w = arg;
    const int mine = 1000 + w->id;
    uint64_t rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(w->id + 1);
    char c;
    long local_iters = 0;
    atomic_fetch_add(&ready, 1);
    while (!atomic_load(&stop) && local_iters < MAX_ITERS) {
        ssize_t r;
        int e;
        switch (st_rand(&rng) % 6) {
        case 0:   /* EAGAIN from an empty non-blocking socket, kept across a yield */
            errno = mine;
            r = read(w->nb[0], &c, 1);
            e = errno;
            if (r != -1 || e != EAGAIN) wrong(w, "read(non-blocking, empty)", r, e, "-1 EAGAIN");
            sched_yield();
            if (errno != EAGAIN) wrong(w, "sched_yield after EAGAIN", 0, errno, "EAGAIN kept");
            w->eagain++;
            break;
        case 1:   /* success leaves errno alone, across a sleep */
            errno = mine;
            r = write(w->nb[1], "x", 1);
            e = errno;
            if (r != 1 || e != mine) wrong(w, "write(1 byte)", r, e, "1, errno unchanged");
            r = read(w->nb[0], &c, 1);
            e = errno;
            if (r != 1 || e != mine) wrong(w, "read(1 byte ready)", r, e, "1, errno unchanged");
            r = usleep((useconds_t)(st_rand(&rng) % 300));
            e = errno;
            if (r == 0 ? e != mine : e != EINTR)
                wrong(w, "usleep", r, e, r == 0 ? "errno unchanged" : "EINTR");
            else w->unchanged++;
            break;
        case 2:   /* EBADF */
            errno = mine;
            r = read(-1, &c, 1);
            e = errno;
            if (r != -1 || e != EBADF) wrong(w, "read(-1)", r, e, "-1 EBADF");
            usleep(50);
            if (errno != EBADF && errno != EINTR)
                wrong(w, "usleep after EBADF", 0, errno, "EBADF kept");
            w->ebadf++;
            break;
        case 3:   /* a blocking read: interrupted (EINTR) or timed out (EAGAIN) */
            errno = mine;
            atomic_store(&w->blocking, 1);
            r = read(w->tm[0], &c, 1);
            e = errno;
            atomic_store(&w->blocking, 0);
            if (r == -1 && e == EINTR) w->eintr++;
            else if (r == -1 && e == EAGAIN) w->timeouts++;
            else wrong(w, "read(SO_RCVTIMEO 50 ms)", r, e, "-1 EINTR or -1 EAGAIN");
            break;
        case 4: { /* poll with nothing ready: 0, errno unchanged (or EINTR) */
            struct pollfd p = {.fd = w->nb[0], .events = POLLIN};
            errno = mine;
            r = poll(&p, 1, (int)(st_rand(&rng) % 3));
            e = errno;
            if (r == 0 ? e != mine : !(r == -1 && e == EINTR))
                wrong(w, "poll(empty, 0..2 ms)", r, e, "0 with errno unchanged, or -1 EINTR");
            break;
        }
        default: { /* a short nanosleep: 0 and errno unchanged, or -1 EINTR */
            struct timespec ts = {0, (long)(st_rand(&rng) % 200000)};
            errno = mine;
            r = nanosleep(&ts, NULL);
            e = errno;
            if (r == 0 ? e != mine : !(r == -1 && e == EINTR))
                wrong(w, "nanosleep", r, e, "0 with errno unchanged, or -1 EINTR");
            break;
        }
        }
        local_iters++;
        tls_iters++;
        w->iters = local_iters;
    }
    CHECK(tls_iters == local_iters, "thread %d: __thread count %ld, local %ld", w->id, tls_iters,
          local_iters);
    return NULL;
}

static void *killer(void *arg)
{
    (void)arg;
    uint64_t rng = 12345;
    while (!atomic_load(&stop)) {
        for (int k = 0; k < 20; k++) {
            struct worker *w = &workers[st_rand(&rng) % (uint64_t)nthreads];
            if (atomic_load(&w->blocking) && pthread_kill(w->tid, SIGUSR1) == 0)
                atomic_fetch_add(&signals_sent, 1);
        }
        usleep(500);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1) nthreads = atoi(argv[1]);
    double seconds = argc > 2 ? atof(argv[2]) : 3;
    if (nthreads < 1 || seconds <= 0 || seconds > 30) {
        fprintf(stderr, "usage: errno_stress [threads] [seconds <= 30]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    st_raise_nofile();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;   /* no SA_RESTART: a blocked read returns EINTR */
    sigaction(SIGUSR1, &sa, NULL);

    workers = calloc((size_t)nthreads, sizeof *workers);
    if (!workers) return 2;
    struct timeval tv = {0, 50000};
    for (int i = 0; i < nthreads; i++) {
        struct worker *w = &workers[i];
        w->id = i;
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, w->nb) ||
            socketpair(AF_UNIX, SOCK_STREAM, 0, w->tm) ||
            fcntl(w->nb[0], F_SETFL, fcntl(w->nb[0], F_GETFL) | O_NONBLOCK) ||
            setsockopt(w->tm[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv)) {
            perror("socket setup");
            return 2;
        }
    }
    st_phase = "starting threads";
    for (int i = 0; i < nthreads; i++) {
        int e = pthread_create(&workers[i].tid, NULL, work, &workers[i]);
        if (e) {
            fprintf(stderr, "pthread_create %d: %s\n", i, strerror(e));
            return 2;
        }
    }
    pthread_t k;
    pthread_create(&k, NULL, killer, NULL);
    int64_t t0 = st_mono_ns();
    st_phase = "running";
    while (st_mono_ns() - t0 < (int64_t)(seconds * 1e9)) usleep(10000);
    atomic_store(&stop, 1);
    st_phase = "joining";
    pthread_join(k, NULL);
    for (int i = 0; i < nthreads; i++) pthread_join(workers[i].tid, NULL);
    int64_t t1 = st_mono_ns();

    long iters = 0, eagain = 0, ebadf = 0, eintr = 0, timeouts = 0, unchanged = 0, bad = 0;
    int idle = 0;
    for (int i = 0; i < nthreads; i++) {
        struct worker *w = &workers[i];
        iters += w->iters;
        eagain += w->eagain;
        ebadf += w->ebadf;
        eintr += w->eintr;
        timeouts += w->timeouts;
        unchanged += w->unchanged;
        bad += w->bad;
        if (w->iters == 0) idle++;
        close(w->nb[0]);
        close(w->nb[1]);
        close(w->tm[0]);
        close(w->tm[1]);
    }
    atomic_fetch_add(&st_checks, iters);   /* each iteration checked one or two calls */
    CHECK(idle == 0, "%d threads never ran an iteration", idle);
    CHECK(eintr > 0, "no read was interrupted (%ld signals sent, %ld handler runs)",
          atomic_load(&signals_sent), atomic_load(&handler_runs));
    CHECK(atomic_load(&ready) == nthreads, "%d of %d threads started", atomic_load(&ready),
          nthreads);
    printf("errno_stress: %d threads, %.1f s, %ld calls checked (%ld EAGAIN, %ld EBADF, %ld "
           "unchanged after success, %ld EINTR from %ld signals, %ld SO_RCVTIMEO timeouts), %ld "
           "wrong\n",
           nthreads, st_ms(t1 - t0) / 1000, iters, eagain, ebadf, unchanged, eintr,
           atomic_load(&signals_sent), timeouts, bad);
    free(workers);
    return st_finish("errno_stress");
}
