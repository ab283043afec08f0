/* The switch keeps each green thread's FP control state and callee-saved
 * registers: threads on one worker change rounding modes and interleave. */
#include <fenv.h>
#include <math.h>

#include "np_test.h"

static atomic_int bad;

static void *fp_thread(void *a) {
    int mode = (int)(intptr_t)a;
    fesetround(mode);
    volatile double one = 1.0, three = 3.0;
    double first = one / three;
    for (int i = 0; i < 1000; i++) {
        np_yield();
        if (fegetround() != mode) atomic_fetch_add(&bad, 1);
        /* Callee-saved registers carry `first` and `mode` across yields. */
        if (one / three != first) atomic_fetch_add(&bad, 1);
    }
    return NULL;
}

static int fp_modes(void *a) {
    (void)a;
    int modes[] = {FE_TONEAREST, FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};
    np_thread *t[4];
    for (int i = 0; i < 4; i++) np_spawn(&t[i], fp_thread, (void *)(intptr_t)modes[i]);
    for (int i = 0; i < 4; i++) np_join(t[i], NULL);
    cr_assert_eq(atomic_load(&bad), 0, "FP state leaked between green threads");
    cr_assert_eq(fegetround(), FE_TONEAREST, "main's mode changed");
    return 0;
}

Test(context, fp_control_per_thread) {
    np_test_init("epoll", 1);
    run_green(fp_modes, NULL);
}

static long fib(long n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

static void *compute(void *a) {
    long n = (long)(intptr_t)a, acc = 0;
    for (int i = 0; i < 200; i++) {
        acc += fib(n);
        np_yield();
    }
    return (void *)(intptr_t)(acc / 200);
}

static int interleaved(void *a) {
    (void)a;
    np_thread *t[16];
    for (int i = 0; i < 16; i++) np_spawn(&t[i], compute, (void *)(intptr_t)(10 + i % 8));
    for (int i = 0; i < 16; i++) {
        void *r;
        np_join(t[i], &r);
        cr_assert_eq((long)(intptr_t)r, fib(10 + i % 8));
    }
    return 0;
}

Test(context, registers_survive_interleaving) { run_green(interleaved, NULL); }
