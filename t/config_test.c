/* The environment's numbers (src/config.cpp), beyond runtime_test.c's:
 * inputs the fuzzer (t/fuzz/fuzz_config.cpp) found taken for numbers. */
#include "np_test.h"

/* strtoull skips leading blanks and takes a sign: " 3" was 3 workers and
 * " -18446744073709486080" (2^64 - that) a 64 KiB stack.  A number starts
 * with a digit; anything else is reported and the default used. */
Test(config, env_number_with_blank_or_sign_is_garbage, .init = cr_redirect_stderr) {
    long online = np_test_cpus();
    char procs[32];
    snprintf(procs, sizeof procs, "\n\n%ld", online + 1);
    setenv("NP_PROCS", procs, 1);
    setenv("NP_STACK_SIZE", " -18446744073709486080", 1);
    cr_assert_eq(np_init(NULL), 0);
    np_stats s = {.size = sizeof s};
    cr_assert_eq(np_stats_get(&s), 0);
    cr_assert_eq(s.workers, (uint64_t)online);
    char buf[2048];
    captured_stderr(buf, sizeof buf);
    cr_assert(strstr(buf, "NP_PROCS="), "stderr: %s", buf);
    cr_assert(strstr(buf, "NP_STACK_SIZE=\" -18446744073709486080\""), "stderr: %s", buf);
}

Test(config, env_number_with_plus_is_garbage, .init = cr_redirect_stderr) {
    setenv("NP_STACK_SIZE", "+128k", 1);
    setenv("NP_PROCS", " +1", 1);
    cr_assert_eq(np_init(NULL), 0);
    char buf[2048];
    captured_stderr(buf, sizeof buf);
    cr_assert(strstr(buf, "NP_STACK_SIZE=\"+128k\""), "stderr: %s", buf);
    cr_assert(strstr(buf, "NP_PROCS=\" +1\""), "stderr: %s", buf);
}
