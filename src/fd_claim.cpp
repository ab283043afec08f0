// Which descriptor numbers are registered with a port, process-wide: one bit
// per number, so that registering a number twice fails with -EEXIST on
// every port (epoll would say so only within one epoll set, io_uring and
// poll(2) not at all) and whichever worker's port each registration went
// to.  Chunks of 32768 numbers (4 KiB) are allocated when first used and
// kept; the table of chunks covers every int (512 KiB of zero pages until
// touched).
#include <atomic>
#include <cerrno>
#include <cstdint>

#include "alloc.hpp"
#include "port.hpp"

namespace np {
namespace {

constexpr unsigned kChunkShift = 15;
constexpr size_t kChunkFds = size_t(1) << kChunkShift;
constexpr size_t kChunkWords = kChunkFds / 64;
constexpr size_t kChunks = (size_t(1) << 31) >> kChunkShift;

std::atomic<std::atomic<uint64_t> *> chunks[kChunks];
// One past the highest chunk made: a forked child clears no further (the
// table's pages above stay untouched).
std::atomic<size_t> chunks_used{0};

std::atomic<uint64_t> *chunk(int fd, bool create) {
    std::atomic<uint64_t> *c = chunks[size_t(fd) >> kChunkShift].load(std::memory_order_acquire);
    if (c || !create) return c;
    auto *fresh = static_cast<std::atomic<uint64_t> *>(mem_zalloc(kChunkWords * sizeof(uint64_t)));
    if (!fresh) return nullptr;
    size_t i = size_t(fd) >> kChunkShift;
    for (size_t u = chunks_used.load(std::memory_order_relaxed);
         u <= i && !chunks_used.compare_exchange_weak(u, i + 1, std::memory_order_acq_rel);) {
    }
    if (chunks[i].compare_exchange_strong(c, fresh, std::memory_order_acq_rel)) return fresh;
    mem_free(fresh); // another thread made it first
    return c;
}

} // namespace

int fd_claim(int fd) {
    if (fd < 0) return -EBADF;
    std::atomic<uint64_t> *c = chunk(fd, true);
    if (!c) return -ENOMEM;
    size_t bit = size_t(fd) & (kChunkFds - 1);
    uint64_t m = uint64_t(1) << (bit & 63);
    return c[bit >> 6].fetch_or(m, std::memory_order_acq_rel) & m ? -EEXIST : 0;
}

void fd_claims_forget() {
    size_t n = chunks_used.load(std::memory_order_relaxed);
    for (size_t i = 0; i < n; i++) chunks[i].store(nullptr, std::memory_order_relaxed); // the parent's, leaked
    chunks_used.store(0, std::memory_order_relaxed);
}

#ifdef NP_FAULTS
bool fd_claimed(int fd) { // src/fault.cpp: faults for registered descriptors only
    std::atomic<uint64_t> *c = fd < 0 ? nullptr : chunk(fd, false);
    size_t bit = size_t(fd) & (kChunkFds - 1);
    return c && (c[bit >> 6].load(std::memory_order_relaxed) >> (bit & 63) & 1);
}
#endif

void fd_release(int fd) {
    if (fd < 0) return;
    std::atomic<uint64_t> *c = chunk(fd, false);
    if (!c) return;
    size_t bit = size_t(fd) & (kChunkFds - 1);
    c[bit >> 6].fetch_and(~(uint64_t(1) << (bit & 63)), std::memory_order_acq_rel);
}

} // namespace np
