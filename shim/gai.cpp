// getaddrinfo_a's waits.  glibc resolves each request on threads of its
// own (plain OS threads, which may block), but getaddrinfo_a(GAI_WAIT) and
// gai_suspend wait for them on a futex inside glibc, which no interposer
// sees: the green thread would hold its worker until the answers came.
// GAI_WAIT runs on the helper pool (helpers.cpp) while the thread parks.
// GAI_NOWAIT only queues the requests and returns; its notices
// (SIGEV_SIGNAL to the process, SIGEV_THREAD on a thread glibc starts)
// reach the program as they do without the shim; gai_error and gai_cancel
// do not wait.
#include <algorithm>
#include <netdb.h>

#include "helpers.hpp"

using namespace shim;

namespace {

// gai_suspend looks at the requests this often, doubling from the first.
constexpr int64_t kFirstLook = 1'000'000, kLookEvery = 5'000'000;

// gai_suspend's answer when its wait timed out: EAI_AGAIN, or EAI_SYSTEM
// from glibc versions that turn their wait's timeout into that.
bool timed_out(int r) { return r == EAI_AGAIN || r == EAI_SYSTEM; }

int in_progress(const struct gaicb *const list[], int n) {
    int k = 0;
    for (int i = 0; i < n; i++)
        if (list[i] && __atomic_load_n(&list[i]->__return, __ATOMIC_ACQUIRE) == EAI_INPROGRESS) k++;
    return k;
}

} // namespace

extern "C" {

int getaddrinfo_a(int mode, struct gaicb *list[], int n, struct sigevent *sevp) {
    static auto fn = next_fn<decltype(&getaddrinfo_a)>("getaddrinfo_a");
    if (mode != GAI_WAIT) return fn(mode, list, n, sevp);
    // glibc waits on through signals here, as a helper call does.
    return offload([&] { return fn(mode, list, n, sevp); });
}

// The green thread parks and looks at the requests' state now and then
// (what gai_error reads), so that a signal's handler can end the wait with
// EAI_INTR as it ends glibc's.  Not glibc's wait on a helper: the waiter
// glibc links into a request lives on the waiting thread's stack, and one
// that times out just as its request ends stays linked after it returned.
int gai_suspend(const struct gaicb *const list[], int n, const struct timespec *timeout) {
    static auto fn = next_fn<decltype(&gai_suspend)>("gai_suspend");
    Thread *t = green() ? self() : nullptr;
    if (!t || n <= 0) return fn(list, n, timeout);
    // glibc's answer now (done already, nothing to wait for), and how it
    // says "timed out".
    const struct timespec zero = {0, 0};
    int r = fn(list, n, &zero);
    if (!timed_out(r) || (timeout && timeout->tv_sec <= 0 && timeout->tv_nsec <= 0)) return r;
    int64_t deadline = timeout ? deadline_from_rel(timeout) : 0;
    int busy = in_progress(list, n);
    uint32_t word = 0;
    for (int64_t look = kFirstLook;; look = std::min(look * 2, kLookEvery)) {
        t->wait_word.store(&word, std::memory_order_seq_cst);
        if (sig_pending(t)) {
            t->wait_word.store(nullptr, std::memory_order_relaxed);
            // A handler interrupts glibc's timed futex wait whatever its
            // flags, an untimed one only without SA_RESTART.
            int s = sig_deliver(t);
            if (s < 0 || (s > 0 && timeout)) return EAI_INTR;
            continue;
        }
        int64_t wake = np_now() + look;
        npshim_futex_wait(&word, 0, deadline && deadline < wake ? deadline : wake);
        t->wait_word.store(nullptr, std::memory_order_relaxed);
        if (in_progress(list, n) < busy) return 0; // one it waited for is done
        if (deadline && np_now() >= deadline) return r;
    }
}

} // extern "C"
