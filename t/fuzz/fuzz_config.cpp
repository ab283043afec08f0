// The runtime's configuration: np_config (any size, any field) and the
// environment (NP_PROCS, NP_STACK_SIZE, NP_POLLER, NPDEBUG), through
// config_resolve and debug_init (src/config.cpp), checked against a model
// written from netpoll(7) and np_init(3): np_config's fields win, bad ones
// are -EINVAL, a bad variable is reported and its default used, and a
// size is digits with an optional k, m or g.
#include <cerrno>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include "config.hpp"
#include "fuzz.hpp"

using fuzz::fail;
using fuzz::Input;

namespace {

// Digits, then at most one of k m g (either case); nothing else.
bool model_size(const char *s, unsigned long long *out) {
    if (!(*s >= '0' && *s <= '9')) return false;
    unsigned long long v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (~0ull - unsigned(*s - '0')) / 10) return false;
        v = v * 10 + unsigned(*s - '0');
    }
    unsigned shift = 0;
    if (*s == 'k' || *s == 'K') shift = 10;
    else if (*s == 'm' || *s == 'M') shift = 20;
    else if (*s == 'g' || *s == 'G') shift = 30;
    if (shift) s++;
    if (*s) return false;
    if (shift && v > (~0ull >> shift)) return false;
    *out = v << shift;
    return true;
}

bool model_poller(const char *s, np::PollerKind *k) {
    if (!strcmp(s, "epoll")) *k = np::PollerKind::epoll;
    else if (!strcmp(s, "io_uring")) *k = np::PollerKind::io_uring;
    else if (!strcmp(s, "poll")) *k = np::PollerKind::poll;
    else return false;
    return true;
}

size_t page_round(size_t n) {
    size_t pg = size_t(sysconf(_SC_PAGESIZE));
    return (n + pg - 1) / pg * pg;
}

int online() { // the default workers: CPUs of the affinity
    cpu_set_t set;
    long n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > np::kMaxProcs ? np::kMaxProcs : int(n);
}

void set(const char *name, Input &in, char *val, size_t cap) {
    switch (in.below(4)) {
    case 0: unsetenv(name); val[0] = 0; return;
    case 1: { // a number, maybe with a suffix
        static const char *const suf[] = {"", "k", "m", "g", "K", "x", "kk", " "};
        snprintf(val, cap, "%llu%s", (unsigned long long)(in.u64() >> in.below(64)), suf[in.below(8)]);
        break;
    }
    default: in.str(val, cap); break;
    }
    setenv(name, val, 1);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Input in{data, size};
    char procs_s[48], stack_s[48], poller_s[24], debug_s[64], cfg_poller[24];
    set("NP_PROCS", in, procs_s, sizeof procs_s);
    set("NP_STACK_SIZE", in, stack_s, sizeof stack_s);
    set("NP_POLLER", in, poller_s, sizeof poller_s);
    set("NPDEBUG", in, debug_s, sizeof debug_s);

    // np_config as a caller of any version may pass it: the struct is
    // copied into a buffer of exactly its declared size (when that is
    // smaller), so reading past it is caught.
    np_config full = {};
    static const size_t sizes[] = {0, 8, 12, 16, 23, 24, 31, 32, 36, 40, sizeof(np_config), 4096};
    full.size = in.below(4) ? sizeof full : sizes[in.below(sizeof sizes / sizeof *sizes)];
    full.procs = in.below(3) ? int(in.below(8)) : int(in.u32());
    full.stack_size = in.below(3) ? 0 : in.below(2) ? (size_t(in.u16()) << in.below(20)) : size_t(in.u64());
    if (in.flip()) {
        in.str(cfg_poller, sizeof cfg_poller);
        full.poller = cfg_poller;
    }
    full.flags = in.below(3) ? in.below(2) : in.u32();
    bool null_cfg = in.below(8) == 0;
    size_t copy = full.size < sizeof full ? full.size : sizeof full;
    if (copy < sizeof full.size) copy = sizeof full.size; // every caller's struct has its size
    auto *cfg = static_cast<np_config *>(malloc(copy));
    memcpy(cfg, &full, copy);

    // The model.
    auto has = [&](size_t end) { return !null_cfg && full.size >= end; };
    bool h_procs = has(offsetof(np_config, procs) + sizeof(int));
    bool h_stack = has(offsetof(np_config, stack_size) + sizeof(size_t));
    bool h_poller = has(offsetof(np_config, poller) + sizeof(char *));
    bool h_flags = has(offsetof(np_config, flags) + sizeof(unsigned));
    np::PollerKind pk = np::PollerKind::epoll;
    int want = 0;
    if (!null_cfg && !h_procs) want = -EINVAL;
    if (h_procs && (full.procs < 0 || full.procs > np::kMaxProcs)) want = -EINVAL;
    if (h_stack && full.stack_size && (full.stack_size < np::kMinStackSize || full.stack_size > np::kMaxStackSize))
        want = -EINVAL;
    if (h_poller && full.poller && !model_poller(full.poller, &pk)) want = -EINVAL;
    if (h_flags && (full.flags & ~NP_CONFIG_EMBEDDED)) want = -EINVAL;

    np::Config m;
    unsigned long long v;
    m.procs = online();
    if (getenv("NP_PROCS") && model_size(procs_s, &v) && v >= 1 && v <= unsigned(np::kMaxProcs)) m.procs = int(v);
    if (h_procs && full.procs) m.procs = full.procs;
    m.stack_size = np::kDefaultStackSize;
    if (getenv("NP_STACK_SIZE") && model_size(stack_s, &v) && v >= np::kMinStackSize && v <= np::kMaxStackSize)
        m.stack_size = page_round(size_t(v));
    if (h_stack && full.stack_size) m.stack_size = page_round(full.stack_size);
    if (h_poller && full.poller) {
        m.poller = pk;
    } else if (getenv("NP_POLLER") && model_poller(poller_s, &pk)) {
        m.poller = pk;
        m.poller_from_env = true;
    }
    m.embedded = h_flags && (full.flags & NP_CONFIG_EMBEDDED);

    // Bad variables are reported on stderr: not here, thousands of times.
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (!getenv("FUZZ_TRACE")) dup2(devnull, 2);
    np::Config got;
    got.procs = -12345;
    int r = np::config_resolve(null_cfg ? nullptr : cfg, &got);
    np::debug_netpoll = false;
    np::debug_init();
    dup2(saved, 2);
    close(saved);
    close(devnull);
    free(cfg);

    if (r != want) fail("config_resolve returned %d, not %d", r, want);
    if (r) {
        if (got.procs != -12345) fail("config_resolve wrote its result on failure");
        return 0;
    }
    if (got.procs != m.procs)
        fail("procs %d, not %d (NP_PROCS=\"%s\", cfg %d)", got.procs, m.procs, procs_s, full.procs);
    if (got.stack_size != m.stack_size)
        fail("stack_size %zu, not %zu (NP_STACK_SIZE=\"%s\", cfg %zu)", got.stack_size, m.stack_size, stack_s,
             full.stack_size);
    if (got.stack_size % size_t(sysconf(_SC_PAGESIZE)) || got.stack_size < np::kMinStackSize ||
        got.stack_size > np::kMaxStackSize)
        fail("stack_size %zu out of range", got.stack_size);
    if (got.poller != m.poller || got.poller_from_env != m.poller_from_env)
        fail("poller %s (env %d), not %s (env %d)", np::poller_name(got.poller), got.poller_from_env,
             np::poller_name(m.poller), m.poller_from_env);
    if (got.embedded != m.embedded) fail("embedded %d, not %d", got.embedded, m.embedded);

    // NPDEBUG: comma-separated key=value; netpoll=V turns tracing on unless V is 0.
    bool dbg = false;
    if (getenv("NPDEBUG"))
        for (const char *p = debug_s; *p;) {
            const char *e = strchr(p, ',');
            size_t n = e ? size_t(e - p) : strlen(p);
            if (n > 8 && !strncmp(p, "netpoll=", 8)) dbg = p[8] != '0';
            p += n + (e ? 1 : 0);
        }
    if (np::debug_netpoll != dbg) fail("NPDEBUG=\"%s\": tracing %d, not %d", debug_s, np::debug_netpoll, dbg);
    np::debug_netpoll = false;
    return 0;
}
