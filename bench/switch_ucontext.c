/*
 * switch_ucontext.c - raw context switch cost of glibc swapcontext().
 *
 * Measures: ns per switch of a ping-pong between main and one ucontext;
 * each round trip is two swapcontext() calls (each also saves/restores the
 * signal mask with a system call, which is what glibc does).  Best of
 * several rounds.
 * Usage: switch_ucontext [round_trips_per_round]   (default 1000000)
 * Output: one line "ucontext <ns_per_switch>".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <ucontext.h>

static ucontext_t main_uc, co_uc;
static long n; /* global: kept across swapcontext */

static void entry(void) {
    for (;;) swapcontext(&co_uc, &main_uc);
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    n = argc > 1 ? atol(argv[1]) : 1000000;
    if (n <= 0) n = 1000000;
    const int rounds = 5;
    static char stack[64 * 1024];
    getcontext(&co_uc);
    co_uc.uc_stack.ss_sp = stack;
    co_uc.uc_stack.ss_size = sizeof stack;
    co_uc.uc_link = NULL;
    makecontext(&co_uc, entry, 0);
    swapcontext(&main_uc, &co_uc); /* warm up */
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        double t0 = now_ns();
        for (long i = 0; i < n; i++) swapcontext(&main_uc, &co_uc);
        double per = (now_ns() - t0) / (2.0 * n);
        if (per < best) best = per;
    }
    printf("ucontext %.2f\n", best);
    return 0;
}
