// A FIFO of green threads behind a spin lock.  Per worker and global.
// Started threads are pinned to their worker (see scheduler.cpp), so a
// thief may only take the never-run ones: nfresh lets it skip cheaply.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "green_thread.hpp"
#include "spinlock.hpp"

namespace np {

struct RunQueue {
    SpinLock lock;
    GThread *head = nullptr;
    GThread *tail = nullptr;
    std::atomic<size_t> len{0};
    std::atomic<size_t> nfresh{0};

    // Under lock:
    void push(GThread *g) {
        g->next = nullptr;
        if (tail) tail->next = g;
        else head = g;
        tail = g;
        len.store(len.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        if (!g->started) nfresh.store(nfresh.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
    GThread *pop() {
        GThread *g = head;
        if (!g) return nullptr;
        head = g->next;
        if (!head) tail = nullptr;
        else warm_up(head);
        len.store(len.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
        if (!g->started) nfresh.store(nfresh.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
        return g;
    }
    // Unlink up to max threads that pass keep (scanning at most scan nodes).
    template <class Keep> GThread *take_if(size_t max, size_t scan, Keep keep) {
        GThread *out = nullptr, **outp = &out, *prev = nullptr;
        size_t taken = 0, fresh = 0;
        for (GThread *g = head; g && taken < max && scan--;) {
            GThread *nx = g->next;
            if (keep(g)) {
                if (prev) prev->next = nx;
                else head = nx;
                if (tail == g) tail = prev;
                g->next = nullptr;
                *outp = g;
                outp = &g->next;
                taken++;
                fresh += !g->started;
            } else {
                prev = g;
            }
            g = nx;
        }
        len.store(len.load(std::memory_order_relaxed) - taken, std::memory_order_relaxed);
        nfresh.store(nfresh.load(std::memory_order_relaxed) - fresh, std::memory_order_relaxed);
        return out;
    }
    // The first max, in order.
    GThread *take_head(size_t max) {
        return take_if(max, max, [](const GThread *) { return true; });
    }
    // Never-run threads: only they may move (stealing).
    GThread *take_fresh(size_t max, size_t scan) {
        return take_if(max, scan, [](const GThread *g) { return !g->started; });
    }
    // Started threads with a TCB of their own: they may run on any worker.
    GThread *take_movable(size_t max) {
        return take_if(max, SIZE_MAX, [](const GThread *g) { return g->started && movable(g); });
    }
    bool empty() const { return len.load(std::memory_order_relaxed) == 0; }
};

} // namespace np
