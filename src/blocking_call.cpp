// Calls that block in the kernel with no readiness to wait for (regular-file
// I/O) run on a small pool of helper threads while the green thread parks,
// so the worker keeps running the others.  Plain OS threads call directly.
#include <atomic>

#include "futex.hpp"
#include "libc_real.hpp"
#include "runtime.hpp"

namespace np {

namespace {

struct Job {
    long (*fn)(void *);
    void *arg;
    long result;
    Waiter *w;
    Job *next;
};

constexpr int kMaxHelpers = 4;

SpinLock jobs_lock;
Job *jobs_head, *jobs_tail;
std::atomic<uint32_t> jobs_seq{0};
int helpers, idle_helpers;

void *helper_main(void *) {
    for (;;) {
        uint32_t seq = jobs_seq.load(std::memory_order_acquire);
        jobs_lock.lock();
        Job *j = jobs_head;
        if (j) {
            jobs_head = j->next;
            if (!jobs_head) jobs_tail = nullptr;
        } else {
            idle_helpers++;
        }
        jobs_lock.unlock();
        if (!j) {
            futex_wait(&jobs_seq, seq);
            jobs_lock.lock();
            idle_helpers--;
            jobs_lock.unlock();
            continue;
        }
        j->result = j->fn(j->arg);
        j->w->wake();
    }
    return nullptr;
}

} // namespace

void blocking_after_fork() { // writing only what differs (a page written here is copied)
    jobs_lock.reset();
    if (jobs_head || jobs_tail) jobs_head = jobs_tail = nullptr;
    if (helpers || idle_helpers) helpers = idle_helpers = 0;
}

long blocking_call(long (*fn)(void *), void *arg) {
    if (!current_g()) return fn(arg);
    note_wait(WaitKind::syscall);
    Waiter w;
    Job j{fn, arg, 0, &w, nullptr};
    jobs_lock.lock();
    if (jobs_tail) jobs_tail->next = &j;
    else jobs_head = &j;
    jobs_tail = &j;
    bool spawn = idle_helpers == 0 && helpers < kMaxHelpers;
    if (spawn) helpers++;
    jobs_lock.unlock();
    if (spawn && start_os_thread(helper_main, nullptr) != 0) {
        jobs_lock.lock();
        helpers--;
        jobs_lock.unlock();
    }
    jobs_seq.fetch_add(1, std::memory_order_release);
    futex_wake(&jobs_seq, 1);
    w.wait();
    return j.result;
}

} // namespace np
