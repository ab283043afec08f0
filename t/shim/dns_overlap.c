/* dns_overlap: many threads resolve names at once against a slow DNS server
 * (a child process on 127.0.0.1:53 that answers each query after 200 ms),
 * and the lookups must overlap: getaddrinfo, getnameinfo, gethostbyname_r
 * and res_query from 16 threads each take about one round trip, not 16,
 * and a thread sleeping 1 ms at a time goes on meanwhile, about as often
 * as alone and (under the shim) on the workers only, none held or added.
 * The answers must be right, a name that does not exist (or whose server
 * fails) must give the error it gives with OS threads, h_errno must be the
 * caller's, a signal's handler must run during a lookup, and a thread that
 * set its own resolver state (res_init) must still resolve.  glibc's
 * resolver waits in its own poll(), which no interposer sees.
 *
 * The server is made the resolver's by a private mount and network
 * namespace: a child unshares them (single-threaded: under nprun the
 * program is threaded from the start, and a namespace is per thread), binds
 * a resolv.conf and an nsswitch.conf ("hosts: dns") of its own over
 * /etc's, brings lo up and execs this program again, which inherits them.
 * Where that is not allowed (not root, seccomp) it says SKIP and exits 0.
 *
 *   dns_overlap */
#include <fcntl.h>
#include <net/if.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <resolv.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "shim_test.h"

enum { NTHREADS = 16, DELAY_MS = 200, SKIP = 77 };
/* 16 x 200 ms in a row would be 3200.  Overlapped they take one round trip
 * (200); the rest is room for a loaded machine. */
static const long bound_ms = 1600;

/* ---- the outer run: the namespace --------------------------------------- */

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

static int bind_over(const char *src, const char *dst) {
    return mount(src, dst, NULL, MS_BIND, NULL);
}

/* In the child: the namespaces, then this program again.  Exits SKIP when
 * they cannot be had. */
static void enter_namespace(char **argv, const char *dir) {
    if (unshare(CLONE_NEWNS | CLONE_NEWNET) != 0) {
        printf("SKIP dns_overlap: cannot create a private mount and network namespace "
               "(unshare: %s; needs root and no seccomp filter)\n", strerror(errno));
        _exit(SKIP);
    }
    char resolv[256], nss[256];
    snprintf(resolv, sizeof resolv, "%s/resolv.conf", dir);
    snprintf(nss, sizeof nss, "%s/nsswitch.conf", dir);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 || bind_over(resolv, "/etc/resolv.conf") != 0 ||
        bind_over(nss, "/etc/nsswitch.conf") != 0) {
        printf("SKIP dns_overlap: cannot bind a resolv.conf over /etc/resolv.conf in a private "
               "mount namespace (%s)\n", strerror(errno));
        _exit(SKIP);
    }
    if (st_lo_up() != 0) {
        printf("SKIP dns_overlap: cannot bring up lo in a private network namespace (%s)\n", strerror(errno));
        _exit(SKIP);
    }
    setenv("DNS_OVERLAP_INNER", "1", 1);
    execv("/proc/self/exe", argv);
    printf("FAILED exec /proc/self/exe: %s\n", strerror(errno));
    _exit(1);
}

static int outer(char **argv) {
    char dir[] = "/tmp/np-dns.XXXXXX";
    if (!mkdtemp(dir)) {
        printf("FAILED mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    char resolv[256], nss[256];
    snprintf(resolv, sizeof resolv, "%s/resolv.conf", dir);
    snprintf(nss, sizeof nss, "%s/nsswitch.conf", dir);
    /* One server, one try each: a failure shows at once. */
    int ok = write_file(resolv, "nameserver 127.0.0.1\noptions timeout:3 attempts:1\n") == 0 &&
             write_file(nss, "hosts: dns\n") == 0;
    int rc = 1;
    if (!ok) {
        printf("FAILED writing %s: %s\n", dir, strerror(errno));
    } else {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) enter_namespace(argv, dir);
        int status = 0;
        if (pid < 0 || waitpid(pid, &status, 0) != pid) {
            printf("FAILED fork/waitpid: %s\n", strerror(errno));
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == SKIP) {
            rc = 0; /* the child said why */
        } else {
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
    }
    unlink(resolv);
    unlink(nss);
    rmdir(dir);
    return rc;
}

/* ---- the slow DNS server (a child process) ------------------------------- */

/* A dotted name from the question at q (labels, no compression); returns
 * the byte after it, or NULL. */
static const unsigned char *read_name(const unsigned char *q, const unsigned char *end, char *out, size_t cap) {
    size_t n = 0;
    while (q < end && *q) {
        unsigned len = *q++;
        if (len > 63 || q + len > end || n + len + 2 > cap) return NULL;
        if (n) out[n++] = '.';
        for (unsigned i = 0; i < len; i++) {
            char c = (char)q[i];
            out[n++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        q += len;
    }
    if (q >= end) return NULL;
    out[n] = 0;
    return q + 1;
}

static size_t put_name(unsigned char *p, const char *name) {
    size_t n = 0;
    while (*name) {
        const char *dot = strchr(name, '.');
        size_t len = dot ? (size_t)(dot - name) : strlen(name);
        p[n++] = (unsigned char)len;
        memcpy(p + n, name, len);
        n += len;
        name += len + (dot ? 1 : 0);
    }
    p[n++] = 0;
    return n;
}

/* The answer to query q: hK.np.test A 10.53.0.K (K 1..250), the PTR back,
 * sf.np.test SERVFAIL, anything else NXDOMAIN.  Returns its length. */
static size_t answer(const unsigned char *q, size_t qlen, unsigned char *r) {
    if (qlen < 12 + 5) return 0;
    char name[256];
    const unsigned char *end = q + qlen, *p = read_name(q + 12, end, name, sizeof name);
    if (!p || p + 4 > end) return 0;
    int qtype = p[0] << 8 | p[1];
    size_t qend = (size_t)(p + 4 - q);
    memcpy(r, q, qend);
    r[2] = (unsigned char)(0x84 | (q[2] & 0x79)); /* QR, AA, the opcode and RD asked */
    r[3] = 0x80;                                  /* RA, NOERROR */
    r[4] = 0, r[5] = 1;                           /* one question */
    memset(r + 6, 0, 6);
    int k = 0, a, b, c, used = 0;
    unsigned char rdata[256];
    size_t rdlen = 0;
    if (sscanf(name, "h%d.np.test%n", &k, &used) == 1 && name[used] == 0 && k >= 1 && k <= 250) {
        if (qtype == 1) {
            unsigned char ip[4] = {10, 53, 0, (unsigned char)k};
            memcpy(rdata, ip, 4);
            rdlen = 4;
        }
    } else if (sscanf(name, "%d.%d.%d.%d.in-addr.arpa%n", &k, &a, &b, &c, &used) == 4 && name[used] == 0 &&
               a == 0 && b == 53 && c == 10 && k >= 1 && k <= 250) {
        if (qtype == 12) {
            char host[32];
            snprintf(host, sizeof host, "h%d.np.test", k);
            rdlen = put_name(rdata, host);
        }
    } else if (strcmp(name, "sf.np.test") == 0) {
        r[3] = 0x82;
    } else {
        r[3] = 0x83;
    }
    size_t n = qend;
    if (rdlen) {
        unsigned char rr[12] = {0xc0, 12, (unsigned char)(qtype >> 8), (unsigned char)qtype, 0, 1, 0, 0, 0, 60,
                                0, (unsigned char)rdlen};
        memcpy(r + n, rr, sizeof rr);
        memcpy(r + n + sizeof rr, rdata, rdlen);
        n += sizeof rr + rdlen;
        r[7] = 1; /* one answer */
    }
    return n;
}

struct pending {
    long due;
    struct sockaddr_in peer;
    size_t len;
    unsigned char buf[512];
};

/* Answers every query DELAY_MS after it came, many at once; ends when the
 * parent closes its end of the pipe. */
static void server(int s, int quit) {
    static struct pending q[512];
    int n = 0;
    fcntl(s, F_SETFL, O_NONBLOCK);
    for (;;) {
        long t = st_mono_ms(), wait = -1;
        for (int i = 0; i < n;) {
            if (q[i].due <= t) {
                (void)!sendto(s, q[i].buf, q[i].len, 0, (struct sockaddr *)&q[i].peer, sizeof q[i].peer);
                q[i] = q[--n];
                continue;
            }
            if (wait < 0 || q[i].due - t < wait) wait = q[i].due - t;
            i++;
        }
        struct pollfd p[2] = {{s, POLLIN, 0}, {quit, POLLIN, 0}};
        if (poll(p, 2, (int)wait) < 0 && errno != EINTR) _exit(1);
        if (p[1].revents) _exit(0);
        for (;;) {
            unsigned char buf[512];
            struct sockaddr_in peer;
            socklen_t plen = sizeof peer;
            ssize_t r = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&peer, &plen);
            if (r < 0) break;
            if (n == 512) continue;
            size_t len = answer(buf, (size_t)r, q[n].buf);
            if (!len) continue;
            q[n].len = len;
            q[n].peer = peer;
            q[n].due = st_mono_ms() + DELAY_MS;
            n++;
        }
    }
}

/* ---- the lookups ----------------------------------------------------------- */

static struct st_gate gate = ST_GATE_INIT;

static void wait_go(void) { st_gate_wait(&gate); }

/* The OS thread each lookup thread was on as its call began and as it
 * returned (its workers, under the shim). */
static pid_t ran_on[NTHREADS][2];
static void note_os_thread(int k, int end) { ran_on[k - 1][end] = st_os_tid(); }

static int check_ip(const struct in_addr *a, int k) {
    return ntohl(a->s_addr) == (10u << 24 | 53u << 16 | (unsigned)k);
}

static void *by_getaddrinfo(void *arg) {
    int k = (int)(intptr_t)arg;
    char name[32];
    snprintf(name, sizeof name, "h%d.np.test", k);
    wait_go();
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    note_os_thread(k, 0);
    int e = getaddrinfo(name, "80", &hints, &res);
    note_os_thread(k, 1);
    CHECK(e == 0, "getaddrinfo %s: %s", name, gai_strerror(e));
    if (e == 0) {
        struct sockaddr_in *sin = (struct sockaddr_in *)res->ai_addr;
        CHECK(res->ai_family == AF_INET && check_ip(&sin->sin_addr, k) && ntohs(sin->sin_port) == 80,
              "getaddrinfo %s: got %s", name, inet_ntoa(sin->sin_addr));
        freeaddrinfo(res);
    }
    return NULL;
}

static void *by_getnameinfo(void *arg) {
    int k = (int)(intptr_t)arg;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
    sin.sin_addr.s_addr = htonl(10u << 24 | 53u << 16 | (unsigned)k);
    wait_go();
    char host[NI_MAXHOST], want[32];
    note_os_thread(k, 0);
    int e = getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host, NULL, 0, NI_NAMEREQD);
    note_os_thread(k, 1);
    snprintf(want, sizeof want, "h%d.np.test", k);
    CHECK(e == 0 && strcmp(host, want) == 0, "getnameinfo 10.53.0.%d: %s (%s)", k, e ? gai_strerror(e) : host, want);
    return NULL;
}

static void *by_gethostbyname_r(void *arg) {
    int k = (int)(intptr_t)arg;
    char name[32], buf[2048];
    snprintf(name, sizeof name, "h%d.np.test", k);
    wait_go();
    struct hostent he, *r = NULL;
    int herr = 0;
    note_os_thread(k, 0);
    int e = gethostbyname_r(name, &he, buf, sizeof buf, &r, &herr);
    note_os_thread(k, 1);
    CHECK(e == 0 && r == &he && he.h_addrtype == AF_INET && check_ip((struct in_addr *)he.h_addr_list[0], k),
          "gethostbyname_r %s: %d, h_errno %d", name, e, herr);
    return NULL;
}

static void *by_res_query(void *arg) {
    int k = (int)(intptr_t)arg;
    char name[32];
    unsigned char ans[512];
    snprintf(name, sizeof name, "h%d.np.test", k);
    wait_go();
    note_os_thread(k, 0);
    int n = res_query(name, C_IN, T_A, ans, sizeof ans);
    note_os_thread(k, 1);
    /* One answer, and its last four bytes are the address. */
    CHECK(n > 16 && ans[7] == 1 && ans[n - 4] == 10 && ans[n - 3] == 53 && ans[n - 1] == k,
          "res_query %s: %d (h_errno %d)", name, n, h_errno);
    return NULL;
}

static atomic_int max_threads;

/* Adds tid to the set of n OS threads in set (room for cap); returns n. */
static int add_tid(pid_t *set, int n, int cap, pid_t tid) {
    if (!tid) return n;
    for (int i = 0; i < n; i++)
        if (set[i] == tid) return n;
    if (n < cap) set[n++] = tid;
    return n;
}

/* What a thread sleeping 1 ms at a time saw: its wake-ups, and the OS
 * threads it ran on (its workers, under the shim). */
enum { MAX_TIDS = 8 };
struct ticks {
    int n, ntids;
    pid_t tids[MAX_TIDS];
};

/* Sleeps 1 ms at a time until *stop or for ms, and counts its wake-ups;
 * every 20th, notes the process's OS threads. */
static void tick_for(struct ticks *r, atomic_int *stop, int ms) {
    memset(r, 0, sizeof *r);
    long end = st_mono_ms() + ms;
    while (st_mono_ms() < end && !(stop && atomic_load(stop))) {
        r->ntids = add_tid(r->tids, r->ntids, MAX_TIDS, st_os_tid());
        if (r->n % 20 == 10) {
            int n = st_os_threads();
            if (n > atomic_load(&max_threads)) atomic_store(&max_threads, n);
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        r->n++;
    }
}

/* Ticks from the go until the lookups are done (10 s at most). */
static atomic_int lookups_done;
static void *ticker(void *arg) {
    wait_go();
    tick_for(arg, &lookups_done, 10000);
    return NULL;
}

static void *ticker_alone(void *arg) {
    tick_for(arg, NULL, DELAY_MS);
    return NULL;
}

/* How often a thread sleeping 1 ms at a time wakes in DELAY_MS with
 * nothing else going on, as busy as the machine is now. */
static int ticks_alone(void) {
    struct ticks r;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, ticker_alone, &r) == 0, "pthread_create");
    pthread_join(t, NULL);
    return r.n;
}

/* The shim's workers: NP_PROCS (nprun -p), else one per CPU. */
static int workers(void) {
    const char *p = getenv("NP_PROCS");
    cpu_set_t set;
    int n = p ? atoi(p) : sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    return n > 0 ? n : 1;
}

/* NTHREADS threads each do one lookup, all released at once; returns the
 * wall time until all are done.  A thread sleeping 1 ms at a time alongside
 * must go on as if they were not there. */
static long wave(const char *what, void *(*fn)(void *)) {
    st_phase = what;
    pthread_t t[NTHREADS], tk;
    struct ticks tick;
    int before = ticks_alone();
    st_gate_reset(&gate);
    atomic_store(&max_threads, 0);
    memset(ran_on, 0, sizeof ran_on);
    atomic_store(&lookups_done, 0);
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_create(&t[i], NULL, fn, (void *)(intptr_t)(i + 1)) == 0, "pthread_create");
    CHECK(pthread_create(&tk, NULL, ticker, &tick) == 0, "pthread_create");
    st_gate_open(&gate, NTHREADS + 1);
    long t0 = st_mono_ms();
    for (int i = 0; i < NTHREADS; i++) pthread_join(t[i], NULL);
    long ms = st_mono_ms() - t0;
    atomic_store(&lookups_done, 1);
    pthread_join(tk, NULL);
    int maxt = atomic_load(&max_threads);
    int after = ticks_alone();
    enum { CAP = 2 * NTHREADS + MAX_TIDS };
    pid_t seen[CAP];
    int nseen = 0;
    for (int i = 0; i < NTHREADS; i++)
        for (int end = 0; end < 2; end++) nseen = add_tid(seen, nseen, CAP, ran_on[i][end]);
    for (int i = 0; i < tick.ntids; i++) nseen = add_tid(seen, nseen, CAP, tick.tids[i]);
    printf("%s: %d lookups in %ld ms (one takes %d ms); meanwhile the ticker woke %d times (alone: %d before, %d "
           "after, in %d ms); the threads ran on %d OS threads; os_threads up to %d\n",
           what, NTHREADS, ms, DELAY_MS, tick.n, before, after, DELAY_MS, nseen, maxt);
    CHECK(ms >= DELAY_MS - 20 && ms < bound_ms, "%s: %d lookups took %ld ms, want < %ld (they must overlap)", what,
          NTHREADS, ms, bound_ms);
    /* A lookup that held its worker would stop the ticker there (a wake-up
     * or two in the round trip), or sysmon would move the threads queued
     * there to a worker added for the stall, one more per held worker:
     * under the shim the lookup threads and the ticker run on the workers
     * only, and the ticker wakes about as often as alone (~180 times in
     * 200 ms on an idle machine), for as long as the lookups take.  Alone
     * is measured just before and after and the lower count taken (a
     * machine busy for a while slows both), and a 20th of it asked: a
     * burst of load during the wave only has cut it to a 7th, a held
     * worker cuts it to a wake-up per round trip (a 100th or less). */
    if (st_under_shim())
        CHECK(nseen <= workers(), "%s: the lookup threads and the ticker ran on %d OS threads, with %d workers: a "
              "lookup held its worker", what, nseen, workers());
    long alone = (long)(before < after ? before : after) * ms / DELAY_MS;
    CHECK(tick.n * 20L >= alone, "%s: the ticker woke %d times in the %ld ms the lookups took, %ld alone: a lookup "
          "held its worker", what, tick.n, ms, alone);
    return ms;
}

static void *errors(void *arg) {
    (void)arg;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int e = getaddrinfo("nx.np.test", NULL, &hints, &res);
    CHECK(e == EAI_NONAME, "getaddrinfo nx.np.test: %d %s, want EAI_NONAME", e, gai_strerror(e));
    e = getaddrinfo("sf.np.test", NULL, &hints, &res);
    CHECK(e == EAI_AGAIN, "getaddrinfo sf.np.test (SERVFAIL): %d %s, want EAI_AGAIN", e, gai_strerror(e));
    /* h_errno is the calling thread's. */
    h_errno = 0;
    struct hostent *h = gethostbyname("nx.np.test");
    CHECK(h == NULL && h_errno == HOST_NOT_FOUND, "gethostbyname nx.np.test: %p, h_errno %d", (void *)h, h_errno);
    h = gethostbyname("h7.np.test");
    CHECK(h && check_ip((struct in_addr *)h->h_addr_list[0], 7), "gethostbyname h7.np.test: %p, h_errno %d",
          (void *)h, h_errno);
    char buf[1024];
    struct hostent he, *r = &he;
    int herr = 0;
    e = gethostbyname_r("nx.np.test", &he, buf, sizeof buf, &r, &herr);
    CHECK(e == 0 && r == NULL && herr == HOST_NOT_FOUND, "gethostbyname_r nx.np.test: %d, %p, h_errno %d", e,
          (void *)r, herr);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(10u << 24 | 53u << 16 | 9u);
    char host[NI_MAXHOST];
    e = getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host, NULL, 0, NI_NAMEREQD);
    CHECK(e == 0 && strcmp(host, "h9.np.test") == 0, "getnameinfo 10.53.0.9: %d", e);
    sin.sin_addr.s_addr = htonl(10u << 24 | 53u << 16 | 251u);
    e = getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host, NULL, 0, NI_NAMEREQD);
    CHECK(e == EAI_NONAME, "getnameinfo 10.53.0.251 (NXDOMAIN): %d %s, want EAI_NONAME", e, gai_strerror(e));
    return NULL;
}

/* A signal for a thread in a lookup runs its handler during the lookup, as
 * it interrupts glibc's poll() with OS threads, and the lookup goes on. */
static atomic_long handled_at;
static void on_usr1(int sig) {
    (void)sig;
    atomic_store(&handled_at, st_mono_ms());
}

static void *signalled(void *arg) {
    long *end = arg;
    struct addrinfo hints = {.ai_family = AF_INET}, *res = NULL;
    int e = getaddrinfo("h5.np.test", NULL, &hints, &res);
    *end = st_mono_ms();
    CHECK(e == 0 && check_ip(&((struct sockaddr_in *)res->ai_addr)->sin_addr, 5),
          "getaddrinfo with a signal: %s", gai_strerror(e));
    if (e == 0) freeaddrinfo(res);
    return NULL;
}

static void signal_during_lookup(void) {
    st_phase = "signal";
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    long end = 0, t0 = st_mono_ms();
    pthread_t t;
    CHECK(pthread_create(&t, NULL, signalled, &end) == 0, "pthread_create");
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    pthread_kill(t, SIGUSR1);
    pthread_join(t, NULL);
    long at = atomic_load(&handled_at);
    CHECK(at && at < end - DELAY_MS / 4, "the handler ran %ld ms in, the lookup ended %ld ms in", at ? at - t0 : -1,
          end - t0);
}

/* A thread that set its own resolver state (res_init) still resolves. */
static void *own_res(void *arg) {
    (void)arg;
    CHECK(res_init() == 0, "res_init");
    struct addrinfo hints = {.ai_family = AF_INET}, *res = NULL;
    int e = getaddrinfo("h3.np.test", NULL, &hints, &res);
    CHECK(e == 0 && check_ip(&((struct sockaddr_in *)res->ai_addr)->sin_addr, 3), "getaddrinfo after res_init: %s",
          gai_strerror(e));
    if (e == 0) freeaddrinfo(res);
    return NULL;
}

static int inner(void) {
    st_watchdog(60);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(53)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || bind(s, (struct sockaddr *)&sin, sizeof sin) != 0) {
        printf("FAILED bind 127.0.0.1:53: %s\n", strerror(errno));
        return 1;
    }
    int quit[2];
    CHECK(pipe(quit) == 0, "pipe");
    fflush(stdout);
    pid_t srv = fork();
    if (srv == 0) {
        close(quit[1]);
        server(s, quit[0]);
    }
    close(quit[0]);
    close(s);

    wave("getaddrinfo", by_getaddrinfo);
    wave("getnameinfo", by_getnameinfo);
    wave("gethostbyname_r", by_gethostbyname_r);
    wave("res_query", by_res_query);
    st_phase = "errors";
    pthread_t t;
    CHECK(pthread_create(&t, NULL, errors, NULL) == 0, "pthread_create");
    pthread_join(t, NULL);
    signal_during_lookup();
    st_phase = "own _res";
    CHECK(pthread_create(&t, NULL, own_res, NULL) == 0, "pthread_create");
    pthread_join(t, NULL);

    close(quit[1]);
    int status;
    waitpid(srv, &status, 0);
    long fails = atomic_load(&st_failures);
    printf("dns_overlap: %ld checks, %ld failed\n", atomic_load(&st_checks), fails);
    return fails ? 1 : 0;
}

int main(int argc, char **argv) {
    (void)argc;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!getenv("DNS_OVERLAP_INNER")) return outer(argv);
    return inner();
}
