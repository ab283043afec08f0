/*
 * switch_np.c - raw context switch cost of netpoll's switch primitive.
 *
 * Measures: ns per switch of a ping-pong between main and one context made
 * with np_ctx_make (src/arch/switch_*.S, linked in directly; no runtime,
 * no scheduler); each round trip is two np_ctx_switch calls.  Best of
 * several rounds.
 * Usage: switch_np [round_trips_per_round]   (default 5000000)
 * Output: one line "np_ctx_switch <ns_per_switch>".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* The primitive (see src/context.hpp). */
void *np_ctx_switch(void **from_sp, void *to_sp, void *arg);
void *np_ctx_make(void *stack_top, void (*entry)(void *));

static void *main_sp, *co_sp;

static void entry(void *arg) {
    (void)arg;
    for (;;) np_ctx_switch(&co_sp, main_sp, NULL);
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 5000000;
    if (n <= 0) n = 5000000;
    const int rounds = 5;
    static _Alignas(16) char stack[64 * 1024];
    co_sp = np_ctx_make(stack + sizeof stack, entry);
    np_ctx_switch(&main_sp, co_sp, NULL); /* warm up */
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        double t0 = now_ns();
        for (long i = 0; i < n; i++) np_ctx_switch(&main_sp, co_sp, NULL);
        double per = (now_ns() - t0) / (2.0 * n);
        if (per < best) best = per;
    }
    printf("np_ctx_switch %.2f\n", best);
    return 0;
}
