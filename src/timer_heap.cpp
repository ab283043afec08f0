#include "timer_heap.hpp"

namespace np {

void TimerHeap::up(size_t i) {
    Timer *t = h[i];
    while (i > 0) {
        size_t p = (i - 1) / 4;
        if (h[p]->when <= t->when) break;
        set(i, h[p]);
        i = p;
    }
    set(i, t);
}

void TimerHeap::down(size_t i) {
    Timer *t = h[i];
    size_t n = h.size();
    for (;;) {
        size_t c = 4 * i + 1;
        if (c >= n) break;
        size_t best = c;
        size_t end = c + 4 < n ? c + 4 : n;
        for (size_t k = c + 1; k < end; k++)
            if (h[k]->when < h[best]->when) best = k;
        if (t->when <= h[best]->when) break;
        set(i, h[best]);
        i = best;
    }
    set(i, t);
}

void TimerHeap::push(Timer *t) {
    t->heap = this;
    h.push_back(t);
    t->idx = int32_t(h.size() - 1);
    up(h.size() - 1);
    publish();
}

void TimerHeap::remove(Timer *t) {
    size_t i = size_t(t->idx);
    size_t last = h.size() - 1;
    t->idx = -1;
    if (i != last) {
        Timer *m = h[last];
        set(i, m);
        h.pop_back();
        up(i);
        down(size_t(m->idx));
    } else {
        h.pop_back();
    }
    publish();
}

void TimerHeap::fix(Timer *t) {
    up(size_t(t->idx));
    down(size_t(t->idx));
    publish();
}

} // namespace np
