/* make soak: everything at once for a while, then the process must be back
 * where it was.  One poller per process (NP_POLLER; t/stress/soak.sh runs
 * each in turn for a slice of SOAK_SECONDS).
 *
 * Mixed, concurrently, until the slice ends:
 *   - spawn/exit churn: batches of detached, joinable and small-stack
 *     green threads;
 *   - connection waves: up to 10,000 TCP connections open at once to an
 *     echo server in a child process (so that this process holds one
 *     descriptor per connection), each exchanging checked messages, then
 *     closed -- by either end first;
 *   - deadlines that fire (a read on a silent connection) and deadlines
 *     moved on, pulled in, cleared while a reader waits;
 *   - close racing with I/O: np_close while another green thread is
 *     parked in, or about to start, a read or a large write.
 *
 * A warm-up runs the same mix (one full wave of 10,000) so that the pools
 * (stacks, descriptors, the allocator's arenas) reach their peak; then
 * the baseline is taken: RSS, open descriptors, mappings.  After the soak
 * and a settling time, descriptors must be back exactly, mappings within
 * SOAK_MAPS_TOL (default 16) and RSS within SOAK_RSS_TOL_KB (default 8192):
 * see t/stress/soak.sh for why those figures.  SOAK_DUMP=PATH writes
 * /proc/self/smaps at both points (PATH.base, PATH.end). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "netpoll.h"

#define NS 1000000000LL
#define MS 1000000LL
#define MAX_WAVE 10000
#define NDEST 16

static uint16_t port;
static int64_t phase_end;
static atomic_int live;                       /* green threads of the phase */
static atomic_long n_spawned, n_conns, n_fired, n_reset, n_races, n_race_badf, n_addr_retry;
static atomic_long errors;
static atomic_int max_open, cur_open, connecting;
static atomic_int wave_threads; /* so that a wave starts when the last one has ended */
enum { kConnecting = 256 };
static pthread_t watchdog_thread;
static atomic_int finished;

static uint64_t mix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t rnd(uint64_t *s) { return mix(*s += 0x632BE59BD9B4E019ull); }

/* A handle is reused once closed: a thread that has not yet entered its
 * call when np_close runs would use the next descriptor's.  Races hold
 * this while they close and until their threads are out; every np_open
 * takes it, so no handle is reused meanwhile. */
static np_mutex open_gate = NP_MUTEX_INITIALIZER;
static int gated_open(int fd, np_fd **out) {
    np_mutex_lock(&open_gate);
    int e = np_open(fd, out);
    np_mutex_unlock(&open_gate);
    return e;
}

static void fail(const char *what, long e) {
    atomic_fetch_add(&errors, 1);
    if (atomic_load(&errors) <= 20) fprintf(stderr, "soak: %s: %s\n", what, e < 0 ? strerror((int)-e) : "?");
}

static int count_dir(const char *d) {
    DIR *dp = opendir(d);
    int n = 0;
    if (!dp) return -1;
    while (readdir(dp)) n++;
    closedir(dp);
    return n - 3;
}
static int count_lines(const char *f) {
    FILE *fp = fopen(f, "r");
    int n = 0, c;
    if (!fp) return -1;
    while ((c = getc(fp)) != EOF) n += c == '\n';
    fclose(fp);
    return n;
}
static long rss_kb(void) {
    FILE *fp = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (fp) {
        if (fscanf(fp, "%ld %ld", &size, &res) != 2) res = 0;
        fclose(fp);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* ---- the echo server (child process) --------------------------------------- */

static int listen_fd, ctl_fd;

static void echo_conn(void *a) {
    np_fd *f = a;
    char buf[4096];
    ssize_t n;
    while ((n = np_read(f, buf, sizeof buf)) > 0)
        if (np_write(f, buf, (size_t)n) != n) break;
    np_close(f);
}

static void echo_accept(void *a) {
    np_fd *ls = a, *c;
    for (;;) {
        int e = np_accept(ls, &c, NULL, NULL);
        if (e == -EMFILE || e == -ENFILE || e == -ENOMEM || e == -ENOBUFS) {
            np_sleep(MS);
            continue;
        }
        if (e) break;
        if (np_go_stack(echo_conn, c, 16384)) np_close(c);
    }
}

static int server_main(void *a) {
    (void)a;
    np_fd *ls, *ctl;
    if (np_open(listen_fd, &ls) || np_open(ctl_fd, &ctl)) return 1;
    np_go(echo_accept, ls);
    char b;
    while (np_read(ctl, &b, 1) > 0) { /* until the parent goes */
    }
    return 0;
}

/* ---- the mix ------------------------------------------------------------------ */

static int over(void) { return np_now() >= phase_end; }

static void tiny(void *a) {
    (void)a;
    np_yield();
    atomic_fetch_sub(&live, 1);
}
static void *tiny_join(void *a) { return a; }

static void churn(void *a) {
    uint64_t r = (uintptr_t)a;
    while (!over()) {
        int n = 200 + (int)(rnd(&r) % 800);
        for (int i = 0; i < n; i++) {
            atomic_fetch_add(&live, 1);
            int e = i % 3 ? np_go(tiny, NULL) : np_go_stack(tiny, NULL, 4096 + 2048 * (i % 4));
            if (e) {
                atomic_fetch_sub(&live, 1);
                fail("np_go", e);
            }
        }
        np_thread *t[64];
        for (int i = 0; i < 64; i++)
            if (np_spawn(&t[i], tiny_join, NULL)) t[i] = NULL;
        for (int i = 0; i < 64; i++)
            if (t[i]) np_join(t[i], NULL);
        atomic_fetch_add(&n_spawned, n + 64);
        np_sleep((int64_t)(rnd(&r) % 5) * MS);
    }
    atomic_fetch_sub(&live, 1);
}

/* One connection of a wave: open, talk, wait for the wave to be all open,
 * play with deadlines, talk, close. */
struct wave {
    np_mutex mu;
    np_cond cv;
    int opened, want, go;
    atomic_int gone; /* threads done with it */
};

static int exchange(np_fd *f, uint64_t *r) {
    char out[2048], in[2048];
    np_set_deadline(f, np_now() + 30 * NS, NP_READ | NP_WRITE);
    size_t n = 1 + rnd(r) % sizeof out;
    for (size_t i = 0; i < n; i++) out[i] = (char)rnd(r);
    if (np_write(f, out, n) != (ssize_t)n) return -1;
    size_t got = 0;
    while (got < n) {
        ssize_t k = np_read(f, in + got, n - got);
        if (k <= 0) return k < 0 ? (int)k : -EPIPE;
        got += (size_t)k;
    }
    return memcmp(in, out, n) ? -EILSEQ : 0;
}

struct conn_arg {
    struct wave *w;
    int i;
};

static void wave_conn(void *a) {
    struct conn_arg *ca = a;
    struct wave *w = ca->w;
    uint64_t r = mix((uint64_t)ca->i * 7919 + (uint64_t)np_now());
    np_fd *f = NULL;
    int counted = 0;
    for (int tries = 0; tries < 50; tries++) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0) {
            fail("socket", -errno);
            break;
        }
        if (gated_open(s, &f)) {
            close(s);
            fail("np_open", -1);
            break;
        }
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
        sa.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(ca->i % NDEST));
        np_set_deadline(f, np_now() + 30 * NS, NP_READ | NP_WRITE);
        /* At most kConnecting handshakes at once: a burst past the listen
         * backlog has its SYNs dropped, and retried a second later. */
        while (atomic_fetch_add(&connecting, 1) >= kConnecting) {
            atomic_fetch_sub(&connecting, 1);
            np_sleep(MS);
        }
        int e = np_connect(f, (struct sockaddr *)&sa, sizeof sa);
        atomic_fetch_sub(&connecting, 1);
        if (e == 0) break;
        np_close(f);
        f = NULL;
        if (e == -EADDRNOTAVAIL || e == -EAGAIN) { /* ports in TIME_WAIT */
            atomic_fetch_add(&n_addr_retry, 1);
            np_sleep(100 * MS);
            continue;
        }
        fail("np_connect", e);
        break;
    }
    if (f) {
        counted = 1;
        int o = atomic_fetch_add(&cur_open, 1) + 1, m = atomic_load(&max_open);
        while (o > m && !atomic_compare_exchange_weak(&max_open, &m, o)) {
        }
        atomic_fetch_add(&n_conns, 1);
        int e = exchange(f, &r);
        if (e) fail("exchange", e);
        np_set_deadline(f, 0, NP_READ | NP_WRITE); /* idle till the wave is open */
    }
    np_mutex_lock(&w->mu);
    if (++w->opened == w->want) np_cond_broadcast(&w->cv);
    while (!w->go) np_cond_wait(&w->cv, &w->mu);
    np_mutex_unlock(&w->mu);
    atomic_fetch_add(&w->gone, 1); /* the last touch of w */
    if (f) {
        char b;
        switch (rnd(&r) % 4) {
        case 0: { /* a deadline that fires */
            np_set_deadline(f, np_now() + (int64_t)(1 + rnd(&r) % 20) * MS, NP_READ);
            ssize_t k = np_read(f, &b, 1);
            if (k != -ETIMEDOUT) fail("deadline did not fire", k);
            else atomic_fetch_add(&n_fired, 1);
            np_set_deadline(f, 0, NP_READ); /* cleared: usable again */
            break;
        }
        case 1: { /* far, then pulled in while nobody reads */
            np_set_deadline(f, np_now() + 10 * NS, NP_READ);
            np_set_deadline(f, np_now() + 2 * MS, NP_READ);
            ssize_t k = np_read(f, &b, 1);
            if (k != -ETIMEDOUT) fail("pulled-in deadline did not fire", k);
            else atomic_fetch_add(&n_fired, 1);
            np_set_deadline(f, np_now() + 30 * NS, NP_READ);
            atomic_fetch_add(&n_reset, 1);
            break;
        }
        case 2: /* moved on: must not fire */
            for (int i = 0; i < 3; i++) np_set_deadline(f, np_now() + (int64_t)(5 + i) * MS, NP_READ);
            np_set_deadline(f, np_now() + 30 * NS, NP_READ);
            atomic_fetch_add(&n_reset, 1);
            break;
        default: break;
        }
        int e = exchange(f, &r);
        if (e) fail("exchange after deadlines", e);
        if (rnd(&r) % 2) { /* the server closes first: no TIME_WAIT here */
            shutdown(np_fileno(f), SHUT_WR);
            ssize_t k = np_read(f, &b, 1);
            if (k != 0) fail("end of file", k);
        }
        if ((e = np_close(f))) fail("np_close", e);
        atomic_fetch_sub(&cur_open, 1);
    }
    (void)counted;
    free(ca);
    atomic_fetch_sub(&wave_threads, 1);
    atomic_fetch_sub(&live, 1);
}

static void waves(void *a) {
    uint64_t r = (uintptr_t)a;
    int first = 1;
    while (!over()) {
        struct wave w = {.want = first ? MAX_WAVE : 1000 + (int)(rnd(&r) % (MAX_WAVE - 999))};
        first = 0;
        np_mutex_init(&w.mu);
        np_cond_init(&w.cv);
        for (int i = 0; i < w.want; i++) {
            struct conn_arg *ca = malloc(sizeof *ca);
            ca->w = &w;
            ca->i = i;
            atomic_fetch_add(&live, 1);
            atomic_fetch_add(&wave_threads, 1);
            if (np_go_stack(wave_conn, ca, 16384)) {
                atomic_fetch_sub(&live, 1);
                atomic_fetch_sub(&wave_threads, 1);
                free(ca);
                np_mutex_lock(&w.mu);
                w.want--;
                np_mutex_unlock(&w.mu);
                fail("np_go_stack", -1);
            }
        }
        np_mutex_lock(&w.mu);
        int64_t until = np_now() + 60 * NS;
        while (w.opened < w.want && np_now() < until) np_cond_timedwait(&w.cv, &w.mu, until);
        w.go = 1;
        np_cond_broadcast(&w.cv);
        np_mutex_unlock(&w.mu);
        /* The wave's threads use w: wait for them (it lives on this stack). */
        while (atomic_load(&w.gone) < w.want) np_sleep(5 * MS);
        /* Not before they end: the peak stays that of the warm-up's wave. */
        while (atomic_load(&wave_threads) > 0) np_sleep(5 * MS);
        np_cond_destroy(&w.cv);
        np_mutex_destroy(&w.mu);
    }
    atomic_fetch_sub(&live, 1);
}

/* close racing with I/O on a socket pair */
struct race {
    np_fd *a, *b;
    atomic_int left, in;
};

static void race_reader(void *p) {
    struct race *rc = p;
    char buf[256];
    ssize_t k;
    atomic_fetch_add(&rc->in, 1);
    while ((k = np_read(rc->a, buf, sizeof buf)) > 0) {
    }
    if (k == -EBADF) atomic_fetch_add(&n_race_badf, 1);
    else if (k != 0 && k != -ECONNRESET) fail("race read", k);
    atomic_fetch_sub(&rc->left, 1);
    atomic_fetch_sub(&live, 1);
}

static void race_writer(void *p) {
    struct race *rc = p;
    static char big[1 << 18];
    atomic_fetch_add(&rc->in, 1);
    ssize_t k = np_write(rc->b, big, sizeof big);
    if (k < 0 && k != -EBADF && k != -EPIPE && k != -ECONNRESET) fail("race write", k);
    atomic_fetch_sub(&rc->left, 1);
    atomic_fetch_sub(&live, 1);
}

static void races(void *a) {
    uint64_t r = (uintptr_t)a;
    while (!over()) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
            fail("socketpair", -errno);
            np_sleep(10 * MS);
            continue;
        }
        struct race rc = {.left = 2};
        if (gated_open(sv[0], &rc.a) || gated_open(sv[1], &rc.b)) {
            fail("np_open pair", -1);
            break;
        }
        atomic_fetch_add(&live, 2);
        np_go(race_reader, &rc);
        np_go(race_writer, &rc);
        while (atomic_load(&rc.in) < 2) np_yield();
        unsigned how = (unsigned)(rnd(&r) % 4);
        if (how <= 1) np_sleep(50 * 1000);
        else np_sleep((int64_t)(50 + rnd(&r) % 500) * 1000);
        /* Close both while the reader waits or reads, and the writer is
         * blocked on a full buffer or runs. */
        np_mutex_lock(&open_gate); /* no handle reused till they are out */
        int e1 = np_close(rc.a), e2 = np_close(rc.b);
        if (e1 || e2) fail("race close", e1 ? e1 : e2);
        while (atomic_load(&rc.left) > 0) np_sleep(100 * 1000);
        np_mutex_unlock(&open_gate);
        atomic_fetch_add(&n_races, 1);
    }
    atomic_fetch_sub(&live, 1);
}

static void phase(int64_t ns, uint64_t seed) {
    phase_end = np_now() + ns;
    atomic_store(&live, 4);
    np_go(churn, (void *)(uintptr_t)mix(seed + 1));
    np_go(waves, (void *)(uintptr_t)mix(seed + 2));
    np_go(races, (void *)(uintptr_t)mix(seed + 3));
    np_go(races, (void *)(uintptr_t)mix(seed + 4));
    int64_t hard = phase_end + 120 * NS;
    while (atomic_load(&live) > 0 && np_now() < hard) np_sleep(10 * MS);
    if (atomic_load(&live) > 0) {
        fprintf(stderr, "soak: %d green threads of the phase still live 120 s after its end\n",
                atomic_load(&live));
        atomic_fetch_add(&errors, 1);
    }
}

/* The pools keep what their peak needed (a stack pool per stack size,
 * each with its guard-page budget): the warm-up starts with a peak of
 * every size the mix uses, above what the mix reaches (churn batches are
 * at most 1,064 threads; waves get their own peak of 10,000). */
static np_mutex prime_mu = NP_MUTEX_INITIALIZER;
static np_cond prime_cv = NP_COND_INITIALIZER;
static int prime_go;
static atomic_int prime_live;
static void primed(void *a) {
    (void)a;
    np_mutex_lock(&prime_mu);
    while (!prime_go) np_cond_wait(&prime_cv, &prime_mu);
    np_mutex_unlock(&prime_mu);
    atomic_fetch_sub(&prime_live, 1);
}
static void prime(void) {
    static const size_t sizes[] = {0, 4096, 6144, 8192, 10240};
    prime_go = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (int i = 0; i < 2000; i++) {
            atomic_fetch_add(&prime_live, 1);
            if (sizes[k] ? np_go_stack(primed, NULL, sizes[k]) : np_go(primed, NULL)) atomic_fetch_sub(&prime_live, 1);
        }
    np_sleep(50 * MS);
    np_mutex_lock(&prime_mu);
    prime_go = 1;
    np_cond_broadcast(&prime_cv);
    np_mutex_unlock(&prime_mu);
    while (atomic_load(&prime_live) > 0) np_sleep(MS);
}

struct sample {
    long rss;
    int fds, maps;
    np_stats st;
};
static void take(struct sample *s) {
    s->st.size = sizeof s->st;
    np_stats_get(&s->st);
    s->rss = rss_kb();
    s->fds = count_dir("/proc/self/fd");
    s->maps = count_lines("/proc/self/maps");
}

/* Waits until RSS holds still (the scavenger returns idle stacks' pages
 * every half second, jemalloc its dirty pages on a ten-second decay):
 * four samples half a second apart within 512 KiB, at most 30 s. */
static void settle(struct sample *s) {
    long hist[4] = {0, 0, 0, 0};
    for (int i = 0; i < 60; i++) {
        np_sleep(500 * MS);
        take(s);
        hist[i % 4] = s->rss;
        if (i >= 3) {
            long lo = hist[0], hi = hist[0];
            for (int k = 1; k < 4; k++) {
                if (hist[k] < lo) lo = hist[k];
                if (hist[k] > hi) hi = hist[k];
            }
            if (hi - lo < 512) return;
        }
    }
}

static int soak(void *a) {
    (void)a;
    const char *e = getenv("SOAK_SECONDS");
    int64_t total = (e ? atoll(e) : 40) * NS;
    long rss_tol = getenv("SOAK_RSS_TOL_KB") ? atol(getenv("SOAK_RSS_TOL_KB")) : 8192;
    int maps_tol = getenv("SOAK_MAPS_TOL") ? atoi(getenv("SOAK_MAPS_TOL")) : 16;
    const char *poller = getenv("NP_POLLER") ? getenv("NP_POLLER") : "epoll";
    struct sample s0, s1, s2;
    take(&s0);
    int64_t warm = total / 4 < 3 * NS ? 3 * NS : total / 4;
    int64_t t0 = np_now();
    prime();
    phase(warm, 1);
    settle(&s1);
    if (getenv("SOAK_DUMP")) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "cp /proc/%d/smaps %s.base", (int)getpid(), getenv("SOAK_DUMP"));
        if (system(cmd)) fprintf(stderr, "soak: SOAK_DUMP failed\n");
    }
    printf("soak %s: start rss %ld KiB fds %d maps %d; after warm-up (%.1f s) rss %ld KiB fds %d maps %d\n",
           poller, s0.rss, s0.fds, s0.maps, (double)(np_now() - t0) / 1e9, s1.rss, s1.fds, s1.maps);
    fflush(stdout);
    long c0 = atomic_load(&n_conns), sp0 = atomic_load(&n_spawned);
    int64_t t1 = np_now();
    phase(total - warm > NS ? total - warm : NS, 2);
    double secs = (double)(np_now() - t1) / 1e9;
    settle(&s2);
    int bad = atomic_load(&errors) > 0;
    if (getenv("SOAK_DUMP")) { /* the mappings at both ends, to compare */
        char cmd[512];
        snprintf(cmd, sizeof cmd, "cp /proc/%d/smaps %s.end", (int)getpid(), getenv("SOAK_DUMP"));
        if (system(cmd)) fprintf(stderr, "soak: SOAK_DUMP failed\n");
    }
    printf("soak %s: %.1f s: %ld connections (at most %d open at once), %ld green threads spawned, "
           "%ld deadlines fired, %ld moved, %ld close/I-O races (%ld readers woken by close), %ld "
           "connect retries; errors %ld\n",
           poller, secs, atomic_load(&n_conns) - c0, atomic_load(&max_open), atomic_load(&n_spawned) - sp0,
           atomic_load(&n_fired), atomic_load(&n_reset), atomic_load(&n_races), atomic_load(&n_race_badf),
           atomic_load(&n_addr_retry), atomic_load(&errors));
    printf("soak %s: end rss %ld KiB (%+ld, tolerance %ld), fds %d (%+d, exact), maps %d (%+d, tolerance %d), "
           "green threads %llu (baseline %llu), descriptors %llu (baseline %llu), engine heap %llu KiB "
           "(baseline %llu)\n",
           poller, s2.rss, s2.rss - s1.rss, rss_tol, s2.fds, s2.fds - s1.fds, s2.maps, s2.maps - s1.maps,
           maps_tol, (unsigned long long)s2.st.threads, (unsigned long long)s1.st.threads,
           (unsigned long long)s2.st.descriptors, (unsigned long long)s1.st.descriptors,
           (unsigned long long)s2.st.alloc_bytes / 1024, (unsigned long long)s1.st.alloc_bytes / 1024);
    if (s2.rss > s1.rss + rss_tol) bad = 1, fprintf(stderr, "soak: RSS did not come back\n");
    if (s2.fds != s1.fds) bad = 1, fprintf(stderr, "soak: descriptors leaked\n");
    if (s2.maps > s1.maps + maps_tol) bad = 1, fprintf(stderr, "soak: mappings did not come back\n");
    if (s2.st.threads > s1.st.threads || s2.st.descriptors != s1.st.descriptors)
        bad = 1, fprintf(stderr, "soak: green threads or descriptors left\n");
    fflush(stdout);
    return bad;
}

static void *watchdog(void *a) {
    long secs = (long)(intptr_t)a;
    for (long i = 0; i < secs * 10 && !atomic_load(&finished); i++) usleep(100000);
    if (atomic_load(&finished)) return NULL;
    np_stats st = {.size = sizeof st};
    np_stats_get(&st);
    fprintf(stderr, "soak: WATCHDOG after %ld s: live %d, open %d, threads %llu, parked %llu, descriptors %llu\n",
            secs, atomic_load(&live), atomic_load(&cur_open), (unsigned long long)st.threads,
            (unsigned long long)st.parked, (unsigned long long)st.descriptors);
    _exit(3);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    socklen_t sl = sizeof sa;
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) || listen(listen_fd, 4096) ||
        getsockname(listen_fd, (struct sockaddr *)&sa, &sl)) {
        perror("soak: listen");
        return 1;
    }
    port = ntohs(sa.sin_port);
    int p[2];
    if (pipe2(p, O_CLOEXEC)) return 1;
    pid_t child = fork();
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(p[1]);
        ctl_fd = p[0];
        _exit(np_main(server_main, NULL));
    }
    close(p[0]);
    close(listen_fd);
    const char *e = getenv("SOAK_SECONDS");
    long secs = (e ? atol(e) : 40) + 200;
    pthread_create(&watchdog_thread, NULL, watchdog, (void *)(intptr_t)secs);
    int rc = np_main(soak, NULL);
    atomic_store(&finished, 1);
    close(p[1]); /* the server ends */
    int st;
    waitpid(child, &st, 0);
    pthread_join(watchdog_thread, NULL);
    return rc;
}
