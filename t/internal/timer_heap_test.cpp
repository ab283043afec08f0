// The 4-ary timer heap against a sorted reference: add, delete, modify,
// and a million pending timers.
#include <criterion/criterion.h>

#include <algorithm>
#include <random>
#include <vector>

#include "timer_heap.hpp"

using np::Timer;
using np::TimerHeap;

static void check_heap(TimerHeap &h) {
    for (size_t i = 1; i < h.h.size(); i++) {
        cr_assert_geq(h.h[i]->when, h.h[(i - 1) / 4]->when, "heap order broken at %zu", i);
        cr_assert_eq(size_t(h.h[i]->idx), i);
    }
}

Test(timer_heap, ordered_pop_with_deletes_and_modifies) {
    TimerHeap h;
    std::mt19937_64 rng(42);
    std::vector<Timer> ts(5000);
    for (auto &t : ts) {
        t.when = int64_t(rng() % 1000000);
        h.push(&t);
    }
    check_heap(h);
    for (size_t i = 0; i < ts.size(); i += 3) h.remove(&ts[i]);
    for (size_t i = 1; i < ts.size(); i += 3) {
        ts[i].when = int64_t(rng() % 1000000);
        h.fix(&ts[i]);
    }
    check_heap(h);
    std::vector<int64_t> want;
    for (size_t i = 0; i < ts.size(); i++)
        if (i % 3 != 0) want.push_back(ts[i].when);
    std::sort(want.begin(), want.end());
    std::vector<int64_t> got;
    while (Timer *t = h.top()) {
        got.push_back(t->when);
        h.remove(t);
        cr_assert_eq(t->idx, -1);
    }
    cr_assert(got == want, "pop order differs from sorted order");
    cr_assert_eq(h.next_when.load(), INT64_MAX);
}

Test(timer_heap, one_million_pending, .timeout = 60) {
    TimerHeap h;
    std::vector<Timer> ts(1000000);
    std::mt19937_64 rng(7);
    for (auto &t : ts) {
        t.when = int64_t(rng() >> 1);
        h.push(&t);
    }
    cr_assert_eq(h.h.size(), 1000000u);
    int64_t last = -1;
    for (int i = 0; i < 1000; i++) {
        Timer *t = h.top();
        cr_assert_geq(t->when, last);
        last = t->when;
        h.remove(t);
    }
    cr_assert_eq(h.next_when.load(), h.top()->when);
}
