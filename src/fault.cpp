// Fault injection (src/fault.hpp): only in a build with -DNP_FAULTS.
#ifdef NP_FAULTS
#include "fault.hpp"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/socket.h>
#include <sys/stat.h>

#include "sys.hpp"

namespace np {

bool fd_claimed(int fd); // fd_claim.cpp

namespace {

enum : unsigned {
    kEintr = 1, kEagain = 2, kShort = 4, kReset = 8, kEmfile = 16, kEnomem = 32, kUring = 64,
    kAll = 127,
};
const char *const kKindNames[] = {"eintr", "eagain", "short", "reset", "emfile", "enomem", "uring"};
constexpr int kKinds = 7;

std::atomic<int> state{0}; // 0 unread, 1 reading, 2 ready
uint64_t seed = 1;
uint64_t threshold = 0;    // a draw below it injects (out of 2^32)
unsigned kinds = kAll;
bool quiet = false;
std::atomic<bool> level{false};
std::atomic<uint64_t> counter{0};
std::atomic<uint64_t> injected[kKinds];

void load() {
    int s = state.load(std::memory_order_acquire);
    if (s == 2) return;
    s = 0;
    if (!state.compare_exchange_strong(s, 1, std::memory_order_acq_rel)) {
        while (state.load(std::memory_order_acquire) != 2) {
        }
        return;
    }
    if (const char *v = secure_getenv("NP_FAULT_SEED")) seed = strtoull(v, nullptr, 0);
    if (const char *v = secure_getenv("NP_FAULT_RATE")) {
        double r = strtod(v, nullptr);
        if (r > 0) threshold = r >= 1 ? (uint64_t(1) << 32) : uint64_t(r * double(uint64_t(1) << 32));
    }
    if (const char *v = secure_getenv("NP_FAULT_KINDS")) {
        kinds = 0;
        for (int i = 0; i < kKinds; i++) {
            const char *p = strstr(v, kKindNames[i]);
            if (p && (p == v || p[-1] == ',') && (p[strlen(kKindNames[i])] == ',' || !p[strlen(kKindNames[i])]))
                kinds |= 1u << i;
        }
    }
    if (const char *v = secure_getenv("NP_FAULT_QUIET")) quiet = *v == '1';
    state.store(2, std::memory_order_release);
}

uint64_t draw() {
    uint64_t z = seed + counter.fetch_add(1, std::memory_order_relaxed) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// One draw: whether to inject (low 32 bits) and which (high bits).
bool hit(uint64_t *pick) {
    load();
    if (!threshold) return false;
    uint64_t z = draw();
    *pick = z >> 32;
    return (z & 0xffffffffu) < threshold;
}

int count(unsigned kind, int e) {
    for (int i = 0; i < kKinds; i++)
        if (kind == 1u << i) injected[i].fetch_add(1, std::memory_order_relaxed);
    return e;
}

// Stream socket (2), other stream (1: pipe, FIFO, tty), else 0.
int stream_kind(int fd) {
    struct stat st;
    if (raw_syscall3(SYS_fstat, fd, long(&st), 0) < 0) return 0;
    if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) return 1;
    if (!S_ISSOCK(st.st_mode)) return 0;
    int type = 0;
    socklen_t len = sizeof type;
    if (raw_syscall6(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, long(&type), long(&len), 0) < 0) return 0;
    return type == SOCK_STREAM ? 2 : 0;
}

struct Report {
    ~Report() {
        if (state.load() != 2 || !threshold || quiet) return;
        char buf[256];
        int n = snprintf(buf, sizeof buf, "netpoll faults (seed %llu):", (unsigned long long)seed);
        for (int i = 0; i < kKinds && n < int(sizeof buf); i++)
            n += snprintf(buf + n, sizeof buf - size_t(n), " %s=%llu", kKindNames[i],
                          (unsigned long long)injected[i].load());
        if (n < int(sizeof buf) - 1) buf[n++] = '\n';
        sys_write(2, buf, size_t(n));
    }
} report;

} // namespace

int fault_io(FaultOp op, int fd, size_t *n) {
    uint64_t pick;
    if (!hit(&pick) || fd < 0 || !fd_claimed(fd)) return 0;
    // The kinds this call may meet.
    unsigned can = kEintr;
    if (level.load(std::memory_order_relaxed)) can |= kEagain;
    if (op == kFaultAccept) {
        can |= kEmfile | kEnomem;
    } else {
        int sk = stream_kind(fd);
        if (sk && *n > 1) can |= kShort;
        if (sk == 2) can |= kReset;
        if (op == kFaultRecv || op == kFaultSend) can |= kEnomem;
    }
    can &= kinds;
    if (!can) return 0;
    unsigned choice[kKinds], k = 0;
    for (int i = 0; i < kKinds; i++)
        if (can & (1u << i)) choice[k++] = 1u << i;
    unsigned kind = choice[pick % k];
    switch (kind) {
    case kEintr: return count(kind, EINTR);
    case kEagain: return count(kind, EAGAIN);
    case kShort: *n = 1 + (pick >> 8) % (*n - 1); return count(kind, 0);
    case kEmfile: return count(kind, EMFILE);
    case kEnomem: return count(kind, op == kFaultSend && (pick & 0x80) ? ENOBUFS : ENOMEM);
    case kReset:
        raw_syscall3(SYS_shutdown, fd, SHUT_RDWR, 0); // sticky, and the peer sees it
        return count(kind, ECONNRESET);
    }
    return 0;
}

bool fault_connect(int fd) {
    uint64_t pick;
    return hit(&pick) && (kinds & kEintr) && fd_claimed(fd) && count(kEintr, 1);
}

bool fault_wait() {
    uint64_t pick;
    return hit(&pick) && (kinds & kEintr) && count(kEintr, 1);
}

bool fault_close() { return fault_wait(); }

int fault_submit() {
    uint64_t pick;
    if (!hit(&pick) || !(kinds & kUring)) return 0;
    return count(kUring, pick & 1 ? -EAGAIN : -EBUSY);
}

void fault_level_triggered() { level.store(true, std::memory_order_relaxed); }

size_t fault_iov_len(const struct iovec *iov, int cnt) {
    size_t t = 0;
    for (int i = 0; i < cnt; i++) t += iov[i].iov_len;
    return t;
}

int fault_clip_iov(const struct iovec *iov, int cnt, size_t n, struct iovec *tmp) {
    int k = 0;
    for (int i = 0; i < cnt && n && k < kFaultIov; i++) {
        if (!iov[i].iov_len) continue;
        tmp[k] = iov[i];
        if (tmp[k].iov_len > n) tmp[k].iov_len = n;
        n -= tmp[k++].iov_len;
    }
    return k;
}

} // namespace np
#endif
