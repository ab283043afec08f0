// A spin lock held for a few instructions, with every signal blocked on the
// OS thread while it is held: a handler that lands on the holder and takes
// the same lock (sigaction, kill and pthread_kill are async-signal-safe,
// and programs call them from handlers) would otherwise spin for good on a
// lock its own thread holds.
#pragma once
#include <atomic>
#include <csignal>

#include "cpu_relax.hpp"
#include "real.hpp"

namespace shim {

class QuietLock {
    std::atomic_flag held_ = ATOMIC_FLAG_INIT;

public:
    sigset_t take() {
        sigset_t all, was;
        sigfillset(&all);
        real.pthread_sigmask(SIG_BLOCK, &all, &was);
        while (held_.test_and_set(std::memory_order_acquire)) cpu_relax();
        return was;
    }
    void give(const sigset_t &was) {
        held_.clear(std::memory_order_release);
        real.pthread_sigmask(SIG_SETMASK, &was, nullptr);
    }
    // A forked child's: the holder, if any, is not there. Written only
    // when set, so that the child does not copy the page for nothing.
    void after_fork() {
        if (held_.test()) held_.clear();
    }
};

// Held for a scope.
class QuietHold {
    QuietLock &lock_;
    sigset_t was_;

public:
    explicit QuietHold(QuietLock &l) : lock_(l), was_(l.take()) {}
    ~QuietHold() { lock_.give(was_); }
    QuietHold(const QuietHold &) = delete;
    QuietHold &operator=(const QuietHold &) = delete;
};

} // namespace shim
