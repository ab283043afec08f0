/* nss_overlap: many threads look up users, groups, group lists, services
 * and host names at once against slow name services, and the lookups must
 * overlap: getpwnam_r, getpwuid_r, getgrnam_r, getgrgid_r, getgrouplist,
 * getservbyname_r, getservbyport_r, getaddrinfo_a(GAI_WAIT) and
 * gai_suspend from 16 threads each take about one round trip, not 16.  The
 * answers must be right (uid, name, home, group members, ports), the
 * non-reentrant forms (one static result per function in glibc) must give
 * the same, initgroups must set the groups, errors and errno must be what
 * they are with OS threads, a signal's handler must run during a lookup,
 * and getaddrinfo_a's notices (SIGEV_THREAD, SIGEV_SIGNAL), gai_suspend's
 * timeout and EAI_INTR, gai_error and gai_cancel must work.  glibc asks
 * nscd for users, groups and services, over a Unix socket, in calls made
 * from inside glibc that no interposer sees, as sssd's and LDAP's modules
 * wait on theirs; getaddrinfo_a's threads ask DNS.  Lookups of numbers
 * only (an address literal and a port) are answered in place: they start
 * no helper thread.
 *
 * The slow sources are one child process: a stand-in nscd on
 * /var/run/nscd/socket (it declines the shared-memory cache, so every
 * lookup asks it) and a DNS server on 127.0.0.1:53, both answering each
 * request after 200 ms.  A child unshares its mount and network namespaces
 * (single-threaded: under nprun the program is threaded from the start,
 * and a namespace is per thread), mounts a tmpfs of its own on /var/run,
 * binds a resolv.conf and an nsswitch.conf ("hosts: dns") of its own over
 * /etc's, brings lo up and execs this program again, which inherits them.
 * Where that is not allowed (not root, seccomp) it says SKIP and exits 0.
 *
 *   nss_overlap */
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <semaphore.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "shim_test.h"

enum { NTHREADS = 16, DELAY_MS = 200, SKIP = 77 };
/* 16 x 200 ms in a row would be 3200.  Overlapped they take one round trip
 * (200); the rest is room for a loaded machine. */
static const long bound_ms = 1600;

static const char sock_dir[] = "/var/run/nscd", sock_path[] = "/var/run/nscd/socket";

/* ---- the outer run: the namespace --------------------------------------- */

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

static void enter_namespace(char **argv) {
    if (unshare(CLONE_NEWNS | CLONE_NEWNET) != 0) {
        printf("SKIP nss_overlap: cannot create a private mount and network namespace "
               "(unshare: %s; needs root and no seccomp filter)\n", strerror(errno));
        _exit(SKIP);
    }
    /* One DNS server, one try each: a failure shows at once. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", "/var/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755") != 0 ||
        (mkdir(sock_dir, 0755) != 0 && errno != EEXIST) ||
        write_file("/var/run/nscd/resolv.conf", "nameserver 127.0.0.1\noptions timeout:3 attempts:1\n") != 0 ||
        write_file("/var/run/nscd/nsswitch.conf", "passwd: files\ngroup: files\nservices: files\nhosts: dns\n") != 0 ||
        mount("/var/run/nscd/resolv.conf", "/etc/resolv.conf", NULL, MS_BIND, NULL) != 0 ||
        mount("/var/run/nscd/nsswitch.conf", "/etc/nsswitch.conf", NULL, MS_BIND, NULL) != 0) {
        printf("SKIP nss_overlap: cannot mount a tmpfs on /var/run and files over /etc's in a private mount "
               "namespace (%s)\n", strerror(errno));
        _exit(SKIP);
    }
    if (st_lo_up() != 0) {
        printf("SKIP nss_overlap: cannot bring up lo in a private network namespace (%s)\n", strerror(errno));
        _exit(SKIP);
    }
    setenv("NSS_OVERLAP_INNER", "1", 1);
    execv("/proc/self/exe", argv);
    printf("FAILED exec /proc/self/exe: %s\n", strerror(errno));
    _exit(1);
}

static int outer(char **argv) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) enter_namespace(argv);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) {
        printf("FAILED fork/waitpid: %s\n", strerror(errno));
        return 1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == SKIP) return 0; /* the child said why */
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- the slow nscd (a child process) ------------------------------------ */

/* The protocol of glibc's nscd client (nscd/nscd-client.h), version 2. */
enum {
    GETPWBYNAME, GETPWBYUID, GETGRBYNAME, GETGRBYGID, GETHOSTBYNAME, GETHOSTBYNAMEv6, GETHOSTBYADDR,
    GETHOSTBYADDRv6, SHUTDOWN, GETSTAT, INVALIDATE, GETFDPW, GETFDGR, GETFDHST, GETAI, INITGROUPS,
    GETSERVBYNAME, GETSERVBYPORT, GETFDSERV
};

/* The data: user npuK (K 1..250) uid 40000+K, group npgK gid 50000+K with
 * members npuK and npx, every npuK also in group 60000; service npsK/tcp
 * port 4000+K alias npaK; host hK.np.test 10.53.0.K.  Anything else is not
 * found. */
static int num(const char *key, const char *prefix, const char *suffix) {
    size_t pl = strlen(prefix), sl = strlen(suffix), kl = strlen(key);
    if (kl <= pl + sl || strncmp(key, prefix, pl) != 0 || strcmp(key + kl - sl, suffix) != 0) return -1;
    int k = 0;
    for (size_t i = pl; i < kl - sl; i++) {
        if (key[i] < '0' || key[i] > '9' || k > 100000) return -1;
        k = k * 10 + (key[i] - '0');
    }
    return k;
}

struct out {
    unsigned char b[1024];
    size_t n;
};
static void put(struct out *o, const void *p, size_t n) {
    if (o->n + n <= sizeof o->b) memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void put32(struct out *o, int32_t v) { put(o, &v, 4); }
static void putstr(struct out *o, const char *s) { put(o, s, strlen(s) + 1); }

/* The answer to one request, or 0 bytes to hang up (the cache's
 * descriptor, and whatever else a stand-in does not do). */
static void respond(int type, const char *key, struct out *o) {
    o->n = 0;
    char s[5][64];
    int k;
    switch (type) {
    case GETPWBYNAME:
    case GETPWBYUID:
        k = type == GETPWBYNAME ? num(key, "npu", "") : num(key, "", "") - 40000;
        if (k < 1 || k > 250) {
            int32_t h[9] = {2, 0};
            put(o, h, sizeof h);
            return;
        }
        snprintf(s[0], 64, "npu%d", k);
        snprintf(s[1], 64, "x");
        snprintf(s[2], 64, "NP user %d", k);
        snprintf(s[3], 64, "/home/npu%d", k);
        snprintf(s[4], 64, "/bin/sh");
        int32_t pw[9] = {2, 1, (int32_t)strlen(s[0]) + 1, (int32_t)strlen(s[1]) + 1, 40000 + k, 50000 + k,
                         (int32_t)strlen(s[2]) + 1, (int32_t)strlen(s[3]) + 1, (int32_t)strlen(s[4]) + 1};
        put(o, pw, sizeof pw);
        for (int i = 0; i < 5; i++) putstr(o, s[i]);
        return;
    case GETGRBYNAME:
    case GETGRBYGID:
        k = type == GETGRBYNAME ? num(key, "npg", "") : num(key, "", "") - 50000;
        if (k < 1 || k > 250) {
            int32_t h[6] = {2, 0};
            put(o, h, sizeof h);
            return;
        }
        snprintf(s[0], 64, "npg%d", k);
        snprintf(s[1], 64, "x");
        snprintf(s[2], 64, "npu%d", k);
        snprintf(s[3], 64, "npx");
        int32_t gr[6] = {2, 1, (int32_t)strlen(s[0]) + 1, (int32_t)strlen(s[1]) + 1, 50000 + k, 2};
        put(o, gr, sizeof gr);
        put32(o, (int32_t)strlen(s[2]) + 1);
        put32(o, (int32_t)strlen(s[3]) + 1);
        for (int i = 0; i < 4; i++) putstr(o, s[i]);
        return;
    case INITGROUPS:
        k = num(key, "npu", "");
        if (k < 1 || k > 250) {
            int32_t h[3] = {2, 0, 0};
            put(o, h, sizeof h);
            return;
        }
        int32_t ig[5] = {2, 1, 2, 50000 + k, 60000};
        put(o, ig, sizeof ig);
        return;
    case GETSERVBYNAME:
    case GETSERVBYPORT:
        /* "name/proto", or the port (in network order) in decimal. */
        k = type == GETSERVBYNAME ? num(key, "nps", "/tcp") : num(key, "", "/tcp");
        if (type == GETSERVBYPORT && k >= 0) k = ntohs((uint16_t)k) - 4000;
        if (k < 1 || k > 250) {
            int32_t h[6] = {2, 0};
            put(o, h, sizeof h);
            return;
        }
        snprintf(s[0], 64, "nps%d", k);
        snprintf(s[1], 64, "tcp");
        snprintf(s[2], 64, "npa%d", k);
        int32_t sv[6] = {2, 1, (int32_t)strlen(s[0]) + 1, (int32_t)strlen(s[1]) + 1, 1,
                         (int32_t)htons((uint16_t)(4000 + k))};
        put(o, sv, sizeof sv);
        putstr(o, s[0]);
        putstr(o, s[1]);
        put32(o, (int32_t)strlen(s[2]) + 1);
        putstr(o, s[2]);
        return;
    default:
        return;
    }
}

/* The answer to DNS query q: hK.np.test A 10.53.0.K (K 1..250), anything
 * else NXDOMAIN.  Returns its length, 0 for no answer. */
static size_t dns_answer(const unsigned char *q, size_t qlen, unsigned char *r) {
    if (qlen < 12 + 5 || qlen > 512) return 0;
    char name[256];
    size_t n = 0, p = 12;
    while (p < qlen && q[p]) {
        unsigned len = q[p++];
        if (len > 63 || p + len > qlen || n + len + 2 > sizeof name) return 0;
        if (n) name[n++] = '.';
        for (unsigned i = 0; i < len; i++) name[n++] = (char)(q[p + i] | 0x20);
        p += len;
    }
    name[n] = 0;
    if (p + 5 > qlen) return 0;
    int qtype = q[p + 1] << 8 | q[p + 2];
    size_t qend = p + 5;
    memcpy(r, q, qend);
    r[2] = (unsigned char)(0x84 | (q[2] & 0x79)); /* QR, AA, the opcode and RD asked */
    r[3] = 0x80;                                  /* RA, NOERROR */
    r[4] = 0, r[5] = 1;                           /* one question */
    memset(r + 6, 0, 6);
    int k = num(name, "h", ".np.test");
    if (k < 1 || k > 250) {
        r[3] = 0x83; /* NXDOMAIN */
        return qend;
    }
    if (qtype != 1) return qend;
    unsigned char rr[16] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 53, 0, (unsigned char)k};
    memcpy(r + qend, rr, sizeof rr);
    r[7] = 1; /* one answer */
    return qend + sizeof rr;
}

struct conn {
    int fd;
    long due;
    struct out o;
};

/* Reads a request header and key; -1 on anything unexpected. */
static int read_request(int fd, int *type, char *key, size_t cap) {
    int32_t h[3];
    if (recv(fd, h, sizeof h, MSG_WAITALL) != (ssize_t)sizeof h || h[0] != 2 || h[2] < 1 || (size_t)h[2] > cap)
        return -1;
    if (recv(fd, key, (size_t)h[2], MSG_WAITALL) != h[2]) return -1;
    key[h[2] - 1] = 0;
    *type = h[1];
    return 0;
}

struct datagram {
    long due;
    struct sockaddr_in peer;
    size_t len;
    unsigned char buf[512];
};

/* Answers every nscd request and DNS query DELAY_MS after it came, many at
 * once; ends when the parent closes its end of the pipe.  A connection
 * whose request has not come yet (its client not run since its connect,
 * on a loaded machine) waits in the poll set, never in a read that would
 * hold up the others. */
static void server(int ls, int us, int quit) {
    static struct conn c[256]; /* due 0: its request not read yet */
    static struct datagram d[256];
    static struct pollfd p[3 + 256];
    int n = 0, nd = 0;
    fcntl(us, F_SETFL, O_NONBLOCK);
    for (;;) {
        long t = st_mono_ms(), wait = -1;
        for (int i = 0; i < n;) {
            if (c[i].due && c[i].due <= t) {
                (void)!write(c[i].fd, c[i].o.b, c[i].o.n);
                close(c[i].fd);
                c[i] = c[--n];
                continue;
            }
            if (c[i].due && (wait < 0 || c[i].due - t < wait)) wait = c[i].due - t;
            i++;
        }
        for (int i = 0; i < nd;) {
            if (d[i].due <= t) {
                (void)!sendto(us, d[i].buf, d[i].len, 0, (struct sockaddr *)&d[i].peer, sizeof d[i].peer);
                d[i] = d[--nd];
                continue;
            }
            if (wait < 0 || d[i].due - t < wait) wait = d[i].due - t;
            i++;
        }
        p[0] = (struct pollfd){ls, n < 256 ? POLLIN : 0, 0};
        p[1] = (struct pollfd){us, POLLIN, 0};
        p[2] = (struct pollfd){quit, POLLIN, 0};
        for (int i = 0; i < n; i++) p[3 + i] = (struct pollfd){c[i].due ? -1 : c[i].fd, POLLIN, 0};
        if (poll(p, (nfds_t)(3 + n), (int)wait) < 0 && errno != EINTR) _exit(1);
        if (p[2].revents) _exit(0);
        for (;;) {
            unsigned char buf[512];
            struct sockaddr_in peer;
            socklen_t plen = sizeof peer;
            ssize_t r = recvfrom(us, buf, sizeof buf, 0, (struct sockaddr *)&peer, &plen);
            if (r < 0) break;
            if (nd == 256) continue;
            size_t len = dns_answer(buf, (size_t)r, d[nd].buf);
            if (!len) continue;
            d[nd].len = len;
            d[nd].peer = peer;
            d[nd].due = st_mono_ms() + DELAY_MS;
            nd++;
        }
        /* Requests come: the client sends its whole request at once. */
        for (int i = n - 1; i >= 0; i--) {
            if (c[i].due || !p[3 + i].revents) continue;
            int type;
            char key[1024];
            if (read_request(c[i].fd, &type, key, sizeof key) == 0) respond(type, key, &c[i].o);
            else c[i].o.n = 0;
            if (c[i].o.n == 0 || c[i].o.n > sizeof c[i].o.b) {
                close(c[i].fd);
                c[i] = c[--n];
                continue;
            }
            c[i].due = st_mono_ms() + DELAY_MS;
        }
        if (!(p[0].revents & POLLIN)) continue;
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        struct timeval tv = {1, 0}; /* a request cut short ends its connection */
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        c[n].fd = fd;
        c[n].due = 0;
        n++;
    }
}

/* ---- the lookups ------------------------------------------------------- */

static struct st_gate gate = ST_GATE_INIT;

static void wait_go(void) { st_gate_wait(&gate); }

static int check_pw(const struct passwd *pw, int k) {
    char name[32], dir[32];
    snprintf(name, sizeof name, "npu%d", k);
    snprintf(dir, sizeof dir, "/home/npu%d", k);
    return pw && pw->pw_uid == (uid_t)(40000 + k) && pw->pw_gid == (gid_t)(50000 + k) && strcmp(pw->pw_name, name) == 0 &&
           strcmp(pw->pw_dir, dir) == 0 && strcmp(pw->pw_shell, "/bin/sh") == 0;
}

static int check_gr(const struct group *gr, int k) {
    char name[32], mem[32];
    snprintf(name, sizeof name, "npg%d", k);
    snprintf(mem, sizeof mem, "npu%d", k);
    return gr && gr->gr_gid == (gid_t)(50000 + k) && strcmp(gr->gr_name, name) == 0 && gr->gr_mem[0] &&
           strcmp(gr->gr_mem[0], mem) == 0 && gr->gr_mem[1] && strcmp(gr->gr_mem[1], "npx") == 0 && !gr->gr_mem[2];
}

static int check_se(const struct servent *se, int k) {
    char name[32], alias[32];
    snprintf(name, sizeof name, "nps%d", k);
    snprintf(alias, sizeof alias, "npa%d", k);
    return se && se->s_port == htons((uint16_t)(4000 + k)) && strcmp(se->s_name, name) == 0 &&
           strcmp(se->s_proto, "tcp") == 0 && se->s_aliases[0] && strcmp(se->s_aliases[0], alias) == 0 &&
           !se->s_aliases[1];
}

static int check_ai(const struct addrinfo *ai, int k) {
    const struct sockaddr_in *sin = ai && ai->ai_family == AF_INET ? (const struct sockaddr_in *)ai->ai_addr : NULL;
    return sin && ntohl(sin->sin_addr.s_addr) == (10u << 24 | 53u << 16 | (unsigned)k);
}

static void *by_getpwnam_r(void *arg) {
    int k = (int)(intptr_t)arg;
    char name[32], buf[1024];
    snprintf(name, sizeof name, "npu%d", k);
    wait_go();
    struct passwd pw, *r = NULL;
    int e = getpwnam_r(name, &pw, buf, sizeof buf, &r);
    CHECK(e == 0 && r == &pw && check_pw(r, k), "getpwnam_r %s: %d, %s", name, e, r ? r->pw_name : "(none)");
    return NULL;
}

static void *by_getpwuid_r(void *arg) {
    int k = (int)(intptr_t)arg;
    char buf[1024];
    wait_go();
    struct passwd pw, *r = NULL;
    int e = getpwuid_r((uid_t)(40000 + k), &pw, buf, sizeof buf, &r);
    CHECK(e == 0 && r == &pw && check_pw(r, k), "getpwuid_r %d: %d, %s", 40000 + k, e, r ? r->pw_name : "(none)");
    return NULL;
}

static void *by_getgrnam_r(void *arg) {
    int k = (int)(intptr_t)arg;
    char name[32], buf[1024];
    snprintf(name, sizeof name, "npg%d", k);
    wait_go();
    struct group gr, *r = NULL;
    int e = getgrnam_r(name, &gr, buf, sizeof buf, &r);
    CHECK(e == 0 && r == &gr && check_gr(r, k), "getgrnam_r %s: %d, %s", name, e, r ? r->gr_name : "(none)");
    return NULL;
}

static void *by_getgrgid_r(void *arg) {
    int k = (int)(intptr_t)arg;
    char buf[1024];
    wait_go();
    struct group gr, *r = NULL;
    int e = getgrgid_r((gid_t)(50000 + k), &gr, buf, sizeof buf, &r);
    CHECK(e == 0 && r == &gr && check_gr(r, k), "getgrgid_r %d: %d, %s", 50000 + k, e, r ? r->gr_name : "(none)");
    return NULL;
}

static int has_gid(const gid_t *g, int n, gid_t want) {
    for (int i = 0; i < n; i++)
        if (g[i] == want) return 1;
    return 0;
}

static void *by_getgrouplist(void *arg) {
    int k = (int)(intptr_t)arg;
    char name[32];
    snprintf(name, sizeof name, "npu%d", k);
    wait_go();
    gid_t g[16];
    int n = 16;
    int r = getgrouplist(name, 100, g, &n);
    CHECK(r == 3 && n == 3 && has_gid(g, n, 100) && has_gid(g, n, (gid_t)(50000 + k)) && has_gid(g, n, 60000),
          "getgrouplist %s: %d, %d groups", name, r, n);
    return NULL;
}

static void *by_getservbyname_r(void *arg) {
    int k = (int)(intptr_t)arg;
    char name[32], buf[1024];
    snprintf(name, sizeof name, "nps%d", k);
    wait_go();
    struct servent se, *r = NULL;
    int e = getservbyname_r(name, "tcp", &se, buf, sizeof buf, &r);
    CHECK(e == 0 && r == &se && check_se(r, k), "getservbyname_r %s: %d, %s", name, e, r ? r->s_name : "(none)");
    return NULL;
}

static void *by_getservbyport_r(void *arg) {
    int k = (int)(intptr_t)arg;
    char buf[1024];
    wait_go();
    struct servent se, *r = NULL;
    int e = getservbyport_r(htons((uint16_t)(4000 + k)), "tcp", &se, buf, sizeof buf, &r);
    CHECK(e == 0 && r == &se && check_se(r, k), "getservbyport_r %d: %d, %s", 4000 + k, e, r ? r->s_name : "(none)");
    return NULL;
}

static void *by_getaddrinfo_a(void *arg) {
    int k = (int)(intptr_t)arg;
    char name[32];
    snprintf(name, sizeof name, "h%d.np.test", k);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct gaicb cb = {.ar_name = name, .ar_request = &hints}, *list[1] = {&cb};
    wait_go();
    int e = getaddrinfo_a(GAI_WAIT, list, 1, NULL);
    CHECK(e == 0 && gai_error(&cb) == 0 && check_ai(cb.ar_result, k), "getaddrinfo_a(GAI_WAIT) %s: %d, %s", name, e,
          gai_strerror(gai_error(&cb)));
    if (gai_error(&cb) == 0) freeaddrinfo(cb.ar_result);
    return NULL;
}

static void *by_gai_suspend(void *arg) {
    int k = (int)(intptr_t)arg;
    char name[32];
    snprintf(name, sizeof name, "h%d.np.test", k);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct gaicb cb = {.ar_name = name, .ar_request = &hints}, *list[1] = {&cb};
    wait_go();
    int e = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
    CHECK(e == 0, "getaddrinfo_a(GAI_NOWAIT) %s: %d", name, e);
    const struct gaicb *wl[1] = {&cb};
    struct timespec sec = {5, 0};
    e = gai_suspend(wl, 1, &sec);
    CHECK(e == 0 || e == EAI_ALLDONE, "gai_suspend %s: %d %s", name, e, gai_strerror(e));
    CHECK(gai_error(&cb) == 0 && check_ai(cb.ar_result, k), "gai_suspend %s: %s", name, gai_strerror(gai_error(&cb)));
    if (gai_error(&cb) == 0) freeaddrinfo(cb.ar_result);
    return NULL;
}

/* Each non-reentrant form has its own static result (and lock) in glibc:
 * six different ones overlap with OS threads. */
static void *non_reentrant(void *arg) {
    int i = (int)(intptr_t)arg, k = 100 + i;
    char name[32];
    wait_go();
    switch (i % 6) {
    case 0:
        snprintf(name, sizeof name, "npu%d", k);
        CHECK(check_pw(getpwnam(name), k), "getpwnam %s", name);
        break;
    case 1:
        CHECK(check_pw(getpwuid((uid_t)(40000 + k)), k), "getpwuid %d", 40000 + k);
        break;
    case 2:
        snprintf(name, sizeof name, "npg%d", k);
        CHECK(check_gr(getgrnam(name), k), "getgrnam %s", name);
        break;
    case 3:
        CHECK(check_gr(getgrgid((gid_t)(50000 + k)), k), "getgrgid %d", 50000 + k);
        break;
    case 4:
        snprintf(name, sizeof name, "nps%d", k);
        CHECK(check_se(getservbyname(name, "tcp"), k), "getservbyname %s", name);
        break;
    default:
        CHECK(check_se(getservbyport(htons((uint16_t)(4000 + k)), "tcp"), k), "getservbyport %d", 4000 + k);
        break;
    }
    return NULL;
}

static atomic_int max_threads;

static void *ticker(void *arg) {
    atomic_int *ticks = arg;
    wait_go();
    long end = st_mono_ms() + DELAY_MS;
    while (st_mono_ms() < end) {
        if (atomic_load(ticks) % 20 == 10) {
            int n = st_os_threads();
            if (n > atomic_load(&max_threads)) atomic_store(&max_threads, n);
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        atomic_fetch_add(ticks, 1);
    }
    return NULL;
}

/* n threads each do one lookup, all released at once; returns the wall
 * time until all are done.  A thread sleeping 1 ms at a time alongside
 * counts its wake-ups: the other threads must go on meanwhile.  One after
 * the other the lookups would take n round trips: they must take well
 * under that. */
static long wave(const char *what, void *(*fn)(void *), int n) {
    st_phase = what;
    pthread_t t[NTHREADS], tk;
    atomic_int ticks = 0;
    st_gate_reset(&gate);
    atomic_store(&max_threads, 0);
    for (int i = 0; i < n; i++)
        CHECK(pthread_create(&t[i], NULL, fn, (void *)(intptr_t)(i + 1)) == 0, "pthread_create");
    CHECK(pthread_create(&tk, NULL, ticker, &ticks) == 0, "pthread_create");
    st_gate_open(&gate, n + 1);
    long t0 = st_mono_ms();
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    long ms = st_mono_ms() - t0;
    pthread_join(tk, NULL);
    long bound = n >= 3 && n * DELAY_MS * 2 / 3 < bound_ms ? n * DELAY_MS * 2 / 3 : bound_ms;
    printf("%s: %d lookups in %ld ms (one takes %d ms); ticker woke %d times in %d ms; os_threads up to %d\n", what,
           n, ms, DELAY_MS, atomic_load(&ticks), DELAY_MS, atomic_load(&max_threads));
    CHECK(ms >= DELAY_MS - 20 && ms < bound, "%s: %d lookups took %ld ms, want < %ld (they must overlap)", what, n, ms,
          bound);
    /* 1 ms sleeps for 200 ms: ~180 wake-ups on an idle machine, and far
     * fewer on a loaded one; one, late, if a lookup held the only worker
     * for the whole round trip. */
    CHECK(atomic_load(&ticks) >= 2, "%s: the ticker woke only %d times", what, atomic_load(&ticks));
    return ms;
}

/* initgroups sets the groups of the process (every thread's), from the
 * group list the service gives. */
static void *by_initgroups(void *arg) {
    (void)arg;
    wait_go();
    CHECK(initgroups("npu9", 100) == 0, "initgroups npu9: %s", strerror(errno));
    return NULL;
}

static void initgroups_check(void) {
    gid_t g[64];
    int n = getgroups(64, g);
    CHECK(n == 3 && has_gid(g, n, 100) && has_gid(g, n, 50009) && has_gid(g, n, 60000),
          "getgroups after initgroups: %d groups", n);
    CHECK(setgroups(0, NULL) == 0, "setgroups: %s", strerror(errno));
}

static void *errors(void *arg) {
    (void)arg;
    char buf[1024];
    struct passwd pw, *r = &pw;
    int e = getpwnam_r("nosuch", &pw, buf, sizeof buf, &r);
    CHECK(e == 0 && r == NULL, "getpwnam_r nosuch: %d, %p", e, (void *)r);
    CHECK(getpwuid(49999) == NULL, "getpwuid 49999");
    struct group gr, *g = &gr;
    e = getgrgid_r(59999, &gr, buf, sizeof buf, &g);
    CHECK(e == 0 && g == NULL, "getgrgid_r 59999: %d, %p", e, (void *)g);
    /* errno from the lookup is the caller's. */
    errno = 0;
    e = getpwnam_r("npu3", &pw, buf, 8, &r);
    CHECK(e == ERANGE && r == NULL && errno == ERANGE, "getpwnam_r into 8 bytes: %d, errno %d", e, errno);
    CHECK(getservbyname("nosuch", "tcp") == NULL, "getservbyname nosuch");
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    e = getaddrinfo("nx.np.test", NULL, &hints, &res);
    CHECK(e == EAI_NONAME, "getaddrinfo nx.np.test: %d %s, want EAI_NONAME", e, gai_strerror(e));
    e = getaddrinfo("h4.np.test", "80", &hints, &res);
    CHECK(e == 0 && check_ai(res, 4), "getaddrinfo h4.np.test: %s", gai_strerror(e));
    if (e == 0) freeaddrinfo(res);
    return NULL;
}

/* A signal for a thread in a lookup runs its handler during the lookup, as
 * it interrupts glibc's wait with OS threads, and the lookup goes on. */
static atomic_long handled_at, handled;
static void on_usr1(int sig) {
    (void)sig;
    atomic_store(&handled_at, st_mono_ms());
    atomic_fetch_add(&handled, 1);
}

static void *signalled(void *arg) {
    long *end = arg;
    char buf[1024];
    struct passwd pw, *r = NULL;
    int e = getpwnam_r("npu5", &pw, buf, sizeof buf, &r);
    *end = st_mono_ms();
    CHECK(e == 0 && check_pw(r, 5), "getpwnam_r with a signal: %d", e);
    return NULL;
}

static void signal_during_lookup(void) {
    st_phase = "signal";
    atomic_store(&handled_at, 0);
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

/* ---- getaddrinfo_a's notices, timeouts, errors --------------------------- */

static sem_t notified;
static atomic_int notify_value;
static void on_notify(union sigval v) {
    atomic_store(&notify_value, v.sival_int);
    sem_post(&notified);
}

static atomic_int sig_value, sig_code;
static void on_usr2(int sig, siginfo_t *si, void *uc) {
    (void)sig, (void)uc;
    atomic_store(&sig_code, si->si_code);
    atomic_store(&sig_value, si->si_value.sival_int);
}

enum { NREQ = 4 };
struct batch {
    char name[NREQ][32];
    struct addrinfo hints;
    struct gaicb cb[NREQ], *list[NREQ];
};

static void batch_init(struct batch *b, int first) {
    memset(b, 0, sizeof *b);
    b->hints.ai_family = AF_INET;
    b->hints.ai_socktype = SOCK_STREAM;
    for (int i = 0; i < NREQ; i++) {
        snprintf(b->name[i], sizeof b->name[i], "h%d.np.test", first + i);
        b->cb[i].ar_name = b->name[i];
        b->cb[i].ar_request = &b->hints;
        b->list[i] = &b->cb[i];
    }
}

static void batch_check(struct batch *b, int first, const char *what) {
    for (int i = 0; i < NREQ; i++) {
        int e = gai_error(&b->cb[i]);
        CHECK(e == 0 && check_ai(b->cb[i].ar_result, first + i), "%s %s: %s", what, b->name[i], gai_strerror(e));
        if (e == 0) freeaddrinfo(b->cb[i].ar_result);
    }
}

static void *gai_notices(void *arg) {
    (void)arg;
    struct batch b;
    /* SIGEV_THREAD: the function runs once all are done. */
    st_phase = "gai SIGEV_THREAD";
    batch_init(&b, 20);
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD;
    sev.sigev_notify_function = on_notify;
    sev.sigev_value.sival_int = 41;
    long t0 = st_mono_ms();
    int e = getaddrinfo_a(GAI_NOWAIT, b.list, NREQ, &sev);
    long queued = st_mono_ms() - t0;
    CHECK(e == 0 && queued < DELAY_MS / 2, "getaddrinfo_a(GAI_NOWAIT, SIGEV_THREAD): %d in %ld ms", e, queued);
    CHECK(gai_error(&b.cb[0]) == EAI_INPROGRESS, "gai_error right after: %d", gai_error(&b.cb[0]));
    struct timespec dl = st_deadline(CLOCK_REALTIME, 5000);
    CHECK(sem_timedwait(&notified, &dl) == 0, "SIGEV_THREAD notice: %s", strerror(errno));
    long took = st_mono_ms() - t0;
    CHECK(atomic_load(&notify_value) == 41 && took >= DELAY_MS - 20 && took < bound_ms,
          "SIGEV_THREAD notice: value %d after %ld ms", atomic_load(&notify_value), took);
    batch_check(&b, 20, "SIGEV_THREAD");

    /* SIGEV_SIGNAL: the signal, with the value, once all are done. */
    st_phase = "gai SIGEV_SIGNAL";
    batch_init(&b, 30);
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR2;
    sev.sigev_value.sival_int = 42;
    t0 = st_mono_ms();
    e = getaddrinfo_a(GAI_NOWAIT, b.list, NREQ, &sev);
    CHECK(e == 0, "getaddrinfo_a(GAI_NOWAIT, SIGEV_SIGNAL): %d", e);
    while (atomic_load(&sig_value) == 0 && st_mono_ms() - t0 < 5000) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    took = st_mono_ms() - t0;
    CHECK(atomic_load(&sig_value) == 42 && atomic_load(&sig_code) == SI_ASYNCNL && took < bound_ms,
          "SIGEV_SIGNAL notice: value %d, si_code %d, after %ld ms", atomic_load(&sig_value),
          atomic_load(&sig_code), took);
    batch_check(&b, 30, "SIGEV_SIGNAL");

    /* GAI_WAIT with several requests: all done when it returns. */
    st_phase = "gai GAI_WAIT batch";
    batch_init(&b, 40);
    t0 = st_mono_ms();
    e = getaddrinfo_a(GAI_WAIT, b.list, NREQ, NULL);
    took = st_mono_ms() - t0;
    CHECK(e == 0 && took >= DELAY_MS - 20 && took < bound_ms, "getaddrinfo_a(GAI_WAIT) x%d: %d in %ld ms", NREQ, e,
          took);
    batch_check(&b, 40, "GAI_WAIT");

    /* gai_suspend: a timeout before the answer, then the answer; once
     * done, at once. */
    st_phase = "gai_suspend timeout";
    batch_init(&b, 50);
    e = getaddrinfo_a(GAI_NOWAIT, b.list, 1, NULL);
    CHECK(e == 0, "getaddrinfo_a(GAI_NOWAIT): %d", e);
    const struct gaicb *wl[1] = {&b.cb[0]};
    struct timespec rel = {0, 50 * 1000 * 1000};
    t0 = st_mono_ms();
    e = gai_suspend(wl, 1, &rel);
    took = st_mono_ms() - t0;
    /* glibc 2.36 says EAI_SYSTEM for a timeout (its wait's EAGAIN). */
    CHECK((e == EAI_AGAIN || e == EAI_SYSTEM) && took >= 45 && took < DELAY_MS,
          "gai_suspend 50 ms: %d %s after %ld ms", e, gai_strerror(e), took);
    rel.tv_sec = 5;
    rel.tv_nsec = 0;
    e = gai_suspend(wl, 1, &rel);
    CHECK((e == 0 || e == EAI_ALLDONE) && gai_error(&b.cb[0]) == 0 && check_ai(b.cb[0].ar_result, 50),
          "gai_suspend 5 s: %d %s", e, gai_strerror(e));
    t0 = st_mono_ms();
    e = gai_suspend(wl, 1, NULL);
    CHECK(e == EAI_ALLDONE && st_mono_ms() - t0 < DELAY_MS / 2, "gai_suspend once done: %d %s", e, gai_strerror(e));
    if (gai_error(&b.cb[0]) == 0) freeaddrinfo(b.cb[0].ar_result);

    /* A name that does not exist: its error, through gai_error. */
    st_phase = "gai error";
    batch_init(&b, 60);
    strcpy(b.name[0], "nx.np.test");
    e = getaddrinfo_a(GAI_WAIT, b.list, 1, NULL);
    CHECK(e == 0 && gai_error(&b.cb[0]) == EAI_NONAME, "getaddrinfo_a nx.np.test: %d, gai_error %d", e,
          gai_error(&b.cb[0]));

    /* gai_cancel answers at once (glibc 2.36 may leave a cancelled
     * request's gai_error at EAI_INPROGRESS, or finish it anyway: its
     * memory stays). */
    st_phase = "gai_cancel";
    static struct batch cb;
    batch_init(&cb, 70);
    e = getaddrinfo_a(GAI_NOWAIT, cb.list, NREQ, NULL);
    CHECK(e == 0, "getaddrinfo_a(GAI_NOWAIT): %d", e);
    for (int i = 0; i < NREQ; i++) {
        int c = gai_cancel(&cb.cb[i]), err = gai_error(&cb.cb[i]);
        CHECK((c == EAI_CANCELED || c == EAI_NOTCANCELED || c == EAI_ALLDONE) &&
                  (err == EAI_INPROGRESS || err == EAI_CANCELED || err == 0),
              "gai_cancel %d: %d, gai_error %d", i, c, err);
    }
    return NULL;
}

/* gai_suspend interrupted by a signal's handler: EAI_INTR, as glibc's wait
 * gives with OS threads. */
static void *suspended(void *arg) {
    struct batch *b = arg;
    const struct gaicb *wl[1] = {&b->cb[0]};
    struct timespec rel = {5, 0};
    long t0 = st_mono_ms();
    int e = gai_suspend(wl, 1, &rel);
    long took = st_mono_ms() - t0;
    CHECK(e == EAI_INTR && took < DELAY_MS, "gai_suspend with a signal: %d %s after %ld ms", e, gai_strerror(e),
          took);
    rel.tv_sec = 1;
    for (int w = 0; gai_error(&b->cb[0]) == EAI_INPROGRESS && w < 5; w++) gai_suspend(wl, 1, &rel);
    CHECK(gai_error(&b->cb[0]) == 0 && check_ai(b->cb[0].ar_result, 80), "gai_suspend with a signal: %s",
          gai_strerror(gai_error(&b->cb[0])));
    if (gai_error(&b->cb[0]) == 0) freeaddrinfo(b->cb[0].ar_result);
    return NULL;
}

static void gai_suspend_signal(void) {
    st_phase = "gai_suspend signal";
    static struct batch b;
    batch_init(&b, 80);
    CHECK(getaddrinfo_a(GAI_NOWAIT, b.list, 1, NULL) == 0, "getaddrinfo_a(GAI_NOWAIT)");
    long before = atomic_load(&handled);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, suspended, &b) == 0, "pthread_create");
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    pthread_kill(t, SIGUSR1);
    pthread_join(t, NULL);
    CHECK(atomic_load(&handled) == before + 1, "the handler ran %ld times", atomic_load(&handled) - before);
}

/* Numbers only: an address literal and a port number have nothing to ask
 * of any source, so the lookups are answered in place -- no helper thread
 * is started for them (the process has as many OS threads after as
 * before), and the answers are the numbers. */
static atomic_int numeric_bad;
static void *numeric_body(void *arg) {
    (void)arg;
    for (int i = 0; i < 200; i++) {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
        const char *node = i & 1 ? "::1" : "127.0.0.1";
        if (getaddrinfo(node, "8080", &hints, &ai) != 0 || !ai) {
            atomic_fetch_add(&numeric_bad, 1);
            continue;
        }
        char host[64], serv[16];
        int r = getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof host, serv, sizeof serv,
                            NI_NUMERICHOST | NI_NUMERICSERV);
        if (r != 0 || strcmp(host, node) != 0 || strcmp(serv, "8080") != 0) atomic_fetch_add(&numeric_bad, 1);
        freeaddrinfo(ai);
    }
    return NULL;
}

static void numeric_check(void) {
    st_phase = "numeric";
    st_threads_up();
    int before = st_os_threads();
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) t[i] = st_spawn(numeric_body, NULL);
    for (int i = 0; i < NTHREADS; i++) pthread_join(t[i], NULL);
    int after = st_os_threads();
    CHECK(atomic_load(&numeric_bad) == 0, "numeric lookups: %d wrong answers", atomic_load(&numeric_bad));
    CHECK(after <= before, "numeric lookups started OS threads: %d before, %d after", before, after);
}

static int inner(void) {
    st_watchdog(60);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART */
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = NULL;
    sa.sa_sigaction = on_usr2;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR2, &sa, NULL);
    sem_init(&notified, 0, 0);

    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    strcpy(sun.sun_path, sock_path);
    unlink(sock_path);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sun, sizeof sun) != 0 || listen(ls, 256) != 0) {
        printf("FAILED listen on %s: %s\n", sock_path, strerror(errno));
        return 1;
    }
    int us = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(53)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (us < 0 || bind(us, (struct sockaddr *)&sin, sizeof sin) != 0) {
        printf("FAILED bind 127.0.0.1:53: %s\n", strerror(errno));
        return 1;
    }
    int quit[2];
    CHECK(pipe(quit) == 0, "pipe");
    fflush(stdout);
    pid_t srv = fork();
    if (srv == 0) {
        close(quit[1]);
        server(ls, us, quit[0]);
    }
    close(quit[0]);
    close(ls);
    close(us);

    numeric_check(); /* first: no helper has been started yet */
    wave("getpwnam_r", by_getpwnam_r, NTHREADS);
    wave("getpwuid_r", by_getpwuid_r, NTHREADS);
    wave("getgrnam_r", by_getgrnam_r, NTHREADS);
    wave("getgrgid_r", by_getgrgid_r, NTHREADS);
    wave("getgrouplist", by_getgrouplist, NTHREADS);
    wave("getservbyname_r", by_getservbyname_r, NTHREADS);
    wave("getservbyport_r", by_getservbyport_r, NTHREADS);
    wave("non-reentrant", non_reentrant, 6);
    wave("getaddrinfo_a GAI_WAIT", by_getaddrinfo_a, NTHREADS);
    wave("gai_suspend", by_gai_suspend, NTHREADS);
    wave("initgroups", by_initgroups, 1);
    initgroups_check();

    st_phase = "errors";
    pthread_t t;
    CHECK(pthread_create(&t, NULL, errors, NULL) == 0, "pthread_create");
    pthread_join(t, NULL);
    signal_during_lookup();
    /* On this thread: no other thread is left to take the SIGEV_SIGNAL
     * notice, and this one waits for it. */
    gai_notices(NULL);
    gai_suspend_signal();

    close(quit[1]);
    int status;
    waitpid(srv, &status, 0);
    return st_finish("nss_overlap");
}

int main(int argc, char **argv) {
    (void)argc;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!getenv("NSS_OVERLAP_INNER")) return outer(argv);
    return inner();
}
