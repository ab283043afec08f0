#include "config.hpp"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace np {

bool debug_netpoll = false;

bool parse_poller(const char *s, PollerKind *out) {
    if (!strcmp(s, "epoll")) *out = PollerKind::epoll;
    else if (!strcmp(s, "io_uring")) *out = PollerKind::io_uring;
    else if (!strcmp(s, "poll")) *out = PollerKind::poll;
    else return false;
    return true;
}

const char *poller_name(PollerKind k) {
    switch (k) {
    case PollerKind::epoll: return "epoll";
    case PollerKind::io_uring: return "io_uring";
    case PollerKind::poll: return "poll";
    }
    return "?";
}

// Whole-string unsigned number with an optional k/m/g suffix.
static bool parse_size(const char *s, unsigned long long *out) {
    if (!*s || *s == '-' || *s == '+') return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return false;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: break;
    }
    if (*end) return false;
    if (shift && v > (~0ull >> shift)) return false;
    *out = v << shift;
    return true;
}

static int default_procs() {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > kMaxProcs ? kMaxProcs : int(n);
}

static size_t page_round(size_t n) {
    size_t pg = size_t(sysconf(_SC_PAGESIZE));
    return (n + pg - 1) & ~(pg - 1);
}

static void env_procs(Config *c) {
    const char *s = secure_getenv("NP_PROCS");
    if (!s) return;
    unsigned long long v;
    if (parse_size(s, &v) && v >= 1 && v <= kMaxProcs) {
        c->procs = int(v);
        return;
    }
    fprintf(stderr, "netpoll: NP_PROCS=\"%s\" is not a number from 1 to %d; using %d\n", s,
            kMaxProcs, default_procs());
}

static void env_stack(Config *c) {
    const char *s = secure_getenv("NP_STACK_SIZE");
    if (!s) return;
    unsigned long long v;
    if (parse_size(s, &v) && v >= kMinStackSize && v <= kMaxStackSize) {
        c->stack_size = page_round(size_t(v));
        return;
    }
    fprintf(stderr,
            "netpoll: NP_STACK_SIZE=\"%s\" is not a size from %zuk to 1g "
            "(bytes, k/m/g suffix); using %zuk\n",
            s, kMinStackSize >> 10, kDefaultStackSize >> 10);
}

static void env_poller(Config *c) {
    const char *s = secure_getenv("NP_POLLER");
    if (!s) return;
    if (parse_poller(s, &c->poller)) {
        c->poller_from_env = true;
        return;
    }
    fprintf(stderr, "netpoll: NP_POLLER=\"%s\" is not epoll, io_uring or poll; using epoll\n", s);
}

int config_resolve(const np_config *cfg, Config *out) {
    Config c;
    size_t have = 0;
    if (cfg) {
        // The caller's struct may be older (smaller) than ours: read only
        // the fields it has.  Less than the size field plus procs is bad.
        have = cfg->size;
        if (have < offsetof(np_config, procs) + sizeof(int)) return -EINVAL;
    }
#define HAS(f) (cfg && have >= offsetof(np_config, f) + sizeof(cfg->f))
    if (HAS(procs) && cfg->procs < 0) return -EINVAL;
    if (HAS(procs) && cfg->procs > kMaxProcs) return -EINVAL;
    if (HAS(stack_size) && cfg->stack_size &&
        (cfg->stack_size < kMinStackSize || cfg->stack_size > kMaxStackSize))
        return -EINVAL;
    if (HAS(poller) && cfg->poller && !parse_poller(cfg->poller, &c.poller)) return -EINVAL;
    if (HAS(flags) && (cfg->flags & ~NP_CONFIG_EMBEDDED)) return -EINVAL;

    env_procs(&c);
    env_stack(&c);
    if (!(HAS(poller) && cfg->poller)) env_poller(&c);
    if (HAS(procs) && cfg->procs) c.procs = cfg->procs;
    if (HAS(stack_size) && cfg->stack_size) c.stack_size = page_round(cfg->stack_size);
    if (HAS(flags)) c.embedded = cfg->flags & NP_CONFIG_EMBEDDED;
#undef HAS
    if (!c.procs) c.procs = default_procs();
    if (!c.stack_size) c.stack_size = kDefaultStackSize;
    *out = c;
    return 0;
}

void debug_init() {
    const char *s = secure_getenv("NPDEBUG");
    if (!s) return;
    // Comma-separated key=value, as GODEBUG.
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? size_t(e - p) : strlen(p);
        if (n > 8 && !strncmp(p, "netpoll=", 8)) debug_netpoll = p[8] != '0';
        p += n;
        if (*p == ',') p++;
    }
}

void debug_print(const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (size_t(n) > sizeof buf - 2) n = sizeof buf - 2;
    buf[n++] = '\n';
    // One write per line so lines from several workers never interleave.
    ssize_t r = write(2, buf, size_t(n));
    (void)r;
}

} // namespace np
