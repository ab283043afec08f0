// Runtime configuration: np_config fields, then the environment, then the
// defaults.  Bad environment values are reported once and ignored.
#pragma once
#include <cstddef>
#include "netpoll.h"

namespace np {

enum class PollerKind { epoll, io_uring, poll };

struct Config {
    int procs = 0;
    size_t stack_size = 0;
    PollerKind poller = PollerKind::epoll;
    bool poller_from_env = false; // env choice falls back to epoll, saying so
    bool embedded = false;
    int dump_signal = 0;          // NP_DUMP_SIGNAL: np_dump on this signal (0 none)
};

constexpr size_t kDefaultStackSize = 64 * 1024;
constexpr size_t kMinStackSize = 16 * 1024;
constexpr size_t kMinSmallStack = 2 * 1024; // np_go_stack: small handlers only
constexpr size_t kMaxStackSize = size_t(1) << 30;
constexpr int kMaxProcs = 256;

// Fills out from cfg (may be null) and the environment; -EINVAL on bad cfg.
int config_resolve(const np_config *cfg, Config *out);
bool parse_poller(const char *s, PollerKind *out);
// QUIT, SIGQUIT, quit or 3: a signal a dump can be taken on, else 0.
int parse_dump_signal(const char *s);
const char *poller_name(PollerKind k);

// NPDEBUG=netpoll=1: trace the poller to stderr.
extern bool debug_netpoll;
void debug_init();
void debug_print(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

} // namespace np

#define NP_TRACE(...)                                                          \
    do {                                                                       \
        if (__builtin_expect(::np::debug_netpoll, 0)) ::np::debug_print(__VA_ARGS__); \
    } while (0)
