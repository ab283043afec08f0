/* A green thread that stops in a known function, for the gdb backtrace
 * check: bt inside a green thread must end cleanly at its entry. */
#include <netpoll.h>

__attribute__((noinline)) void np_test_breakpoint_here(int depth) {
    __asm__ volatile("" ::: "memory");
    (void)depth;
}

__attribute__((noinline)) static void nested(int n) {
    if (n > 0) nested(n - 1);
    else np_test_breakpoint_here(n);
    __asm__ volatile("" ::: "memory");
}

static int run(void *arg) {
    (void)arg;
    np_yield();
    nested(3);
    return 0;
}

int main(void) { return np_main(run, 0); }
