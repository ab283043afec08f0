// A FIFO of green threads behind a spin lock.  Per worker and global.
// Started threads are pinned to their worker (see scheduler.cpp), so a
// thief may only take the never-run ones: nfresh lets it skip cheaply.
#pragma once
#include <atomic>
#include <cstddef>

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
        len.store(len.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
        if (!g->started) nfresh.store(nfresh.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
        return g;
    }
    // Unlink up to max never-run threads (scanning at most scan nodes).
    GThread *take_fresh(size_t max, size_t scan) {
        GThread *out = nullptr, **outp = &out, *prev = nullptr;
        size_t taken = 0;
        for (GThread *g = head; g && taken < max && scan--; ) {
            GThread *nx = g->next;
            if (!g->started) {
                if (prev) prev->next = nx;
                else head = nx;
                if (tail == g) tail = prev;
                g->next = nullptr;
                *outp = g;
                outp = &g->next;
                taken++;
            } else {
                prev = g;
            }
            g = nx;
        }
        len.store(len.load(std::memory_order_relaxed) - taken, std::memory_order_relaxed);
        nfresh.store(nfresh.load(std::memory_order_relaxed) - taken, std::memory_order_relaxed);
        return out;
    }
    // Unlink the started threads that have a TCB of their own (they may
    // run on any worker), up to max.
    GThread *take_movable(size_t max) {
        GThread *out = nullptr, **outp = &out, *prev = nullptr;
        size_t taken = 0;
        for (GThread *g = head; g && taken < max;) {
            GThread *nx = g->next;
            if (g->started && g->tls) {
                if (prev) prev->next = nx;
                else head = nx;
                if (tail == g) tail = prev;
                g->next = nullptr;
                *outp = g;
                outp = &g->next;
                taken++;
            } else {
                prev = g;
            }
            g = nx;
        }
        len.store(len.load(std::memory_order_relaxed) - taken, std::memory_order_relaxed);
        return out;
    }
    bool empty() const { return len.load(std::memory_order_relaxed) == 0; }
};

} // namespace np
