#include "libc_real.hpp"
#include "config.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <strings.h>
#include <sched.h>
#include <unistd.h>

#include "sys.hpp"

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
    // A digit first: strtoull also takes leading blanks and a sign, and
    // negates (" 2" was 2 workers, " -18446744073709486080" a 64k stack).
    if (*s < '0' || *s > '9') return false;
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

// The CPUs this process may run on, as Go's GOMAXPROCS: a program pinned
// with taskset (or a cpuset) gets that many workers, not one per CPU of
// the machine.  One system call, where sysconf reads sysfs.
static int default_procs() {
    cpu_set_t set;
    long n = sys_sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > kMaxProcs ? kMaxProcs : int(n);
}

static size_t page_round(size_t n) {
    size_t pg = size_t(sysconf(_SC_PAGESIZE));
    return (n + pg - 1) & ~(pg - 1);
}

// The environment's mistakes are told once per process, the first time it
// is read (at main's start under the shim, else at the runtime's).  Atomic:
// threads that start the runtime at once each read it before one wins.
static std::atomic<bool> env_told{false};
#define ENV_SAY(...) (env_told.load(std::memory_order_relaxed) ? (void)0 : say(__VA_ARGS__))

static void env_procs(Config *c) {
    const char *s = secure_getenv("NP_PROCS");
    if (!s) return;
    unsigned long long v;
    if (parse_size(s, &v) && v >= 1 && v <= kMaxProcs) {
        c->procs = int(v);
        return;
    }
    ENV_SAY("netpoll: NP_PROCS=\"%s\" is not a number from 1 to %d; using %d\n", s,
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
    ENV_SAY(
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
    ENV_SAY("netpoll: NP_POLLER=\"%s\" is not epoll, io_uring or poll; using epoll\n", s);
}

// Signals the dump cannot be taken on: those that cannot be caught, the
// faults (the handler returns to the faulting instruction) and glibc's
// own (32 and 33, below SIGRTMIN).
static bool dump_signal_ok(unsigned long long v) {
    if (v < 1 || v > (unsigned long long)SIGRTMAX) return false;
    if (v > 31 && v < (unsigned long long)SIGRTMIN) return false;
    switch (v) {
    case SIGKILL: case SIGSTOP: case SIGSEGV: case SIGBUS: case SIGFPE: case SIGILL:
    case SIGTRAP: case SIGSYS:
        return false;
    }
    return true;
}

int parse_dump_signal(const char *s) {
    unsigned long long v = 0;
    if (*s >= '0' && *s <= '9') {
        if (!parse_size(s, &v) || v > 64 || s[strlen(s) - 1] > '9') return 0;
    } else {
        const char *name = strncasecmp(s, "SIG", 3) == 0 ? s + 3 : s;
        for (int i = 1; i < 32 && !v; i++) {
            const char *abbrev = sigabbrev_np(i);
            if (abbrev && strcasecmp(name, abbrev) == 0) v = (unsigned long long)i;
        }
    }
    return dump_signal_ok(v) ? int(v) : 0;
}

static void env_dump_signal(Config *c) {
    const char *s = secure_getenv("NP_DUMP_SIGNAL");
    if (!s || !*s) return;
    if ((c->dump_signal = parse_dump_signal(s))) return;
    ENV_SAY(
            "netpoll: NP_DUMP_SIGNAL=\"%s\" is not a signal a dump can be taken on "
            "(a name such as QUIT or SIGUSR1, or a number; not KILL, STOP or a fault); "
            "no dump on a signal\n",
            s);
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
    env_dump_signal(&c);
    env_told.store(true, std::memory_order_relaxed);
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

// A trace may come from a green thread on a 2-6 KiB stack, where
// vsnprintf's frames (over 2 KiB in glibc) do not fit: this formats the few
// conversions the traces use (%d %i %u %x %#x %s %p, with l/ll/z) in a
// small frame.  Anything else prints as '?'.
static size_t put_num(char *out, size_t room, unsigned long long v, bool neg, unsigned base, bool alt) {
    char tmp[24];
    size_t n = 0, k = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    if (neg && k < room) out[k++] = '-';
    if (alt && k + 1 < room) {
        out[k++] = '0';
        out[k++] = 'x';
    }
    while (n && k < room) out[k++] = tmp[--n];
    return k;
}

void debug_print(const char *fmt, ...) {
    char buf[160];
    size_t room = sizeof buf - 1, n = 0; // one byte kept for the newline
    va_list ap;
    va_start(ap, fmt);
    for (const char *p = fmt; *p && n < room; p++) {
        if (*p != '%') {
            buf[n++] = *p;
            continue;
        }
        bool alt = false;
        int longs = 0;
        if (*++p == '#') alt = true, p++;
        while (*p == 'l' || *p == 'z') longs += *p == 'z' ? 2 : 1, p++;
        unsigned long long u = 0;
        long long d = 0;
        switch (*p) {
        case 'd':
        case 'i':
            d = longs >= 2 ? va_arg(ap, long long) : longs ? va_arg(ap, long) : va_arg(ap, int);
            n += put_num(buf + n, room - n, d < 0 ? 0ull - (unsigned long long)d : (unsigned long long)d, d < 0, 10, false);
            break;
        case 'u':
        case 'x':
            u = longs >= 2 ? va_arg(ap, unsigned long long) : longs ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
            n += put_num(buf + n, room - n, u, false, *p == 'x' ? 16 : 10, alt && u);
            break;
        case 'p':
            n += put_num(buf + n, room - n, uintptr_t(va_arg(ap, void *)), false, 16, true);
            break;
        case 's':
            for (const char *s = va_arg(ap, const char *); s && *s && n < room; s++) buf[n++] = *s;
            break;
        case '%':
            buf[n++] = '%';
            break;
        case 0:
            p--; // a lone '%' at the end
            [[fallthrough]];
        default:
            buf[n++] = '?';
        }
    }
    va_end(ap);
    buf[n++] = '\n';
    // One write per line so lines from several workers never interleave.
    ssize_t r = sys_write(2, buf, n);
    (void)r;
}

} // namespace np
