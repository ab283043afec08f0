// The trace formatter (small-stack, no vsnprintf) against snprintf, for the
// conversions it supports, and its behaviour on the rest.
#include <criterion/criterion.h>

#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <unistd.h>

#include "config.hpp"

// Run one debug_print with stderr captured through a pipe.
template <class... A> static std::string traced(const char *fmt, A... a) {
    int p[2];
    cr_assert_eq(pipe(p), 0);
    int saved = dup(2);
    dup2(p[1], 2);
    np::debug_print(fmt, a...);
    dup2(saved, 2);
    close(saved);
    close(p[1]);
    char buf[512];
    ssize_t n = read(p[0], buf, sizeof buf);
    close(p[0]);
    cr_assert_gt(n, 0);
    return std::string(buf, size_t(n));
}

template <class... A> static void same_as_printf(const char *fmt, A... a) {
    char want[512];
    int n = snprintf(want, sizeof want, fmt, a...);
    std::string got = traced(fmt, a...);
    cr_assert_eq(got, std::string(want, size_t(n)) + "\n", "format \"%s\": got \"%s\" want \"%s\"", fmt,
                 got.c_str(), want);
}

#pragma GCC diagnostic ignored "-Wformat-security"
Test(debug_print, matches_printf) {
    same_as_printf("netpoll: epfd=%d init", 3);
    same_as_printf("netpoll: fd=%d ev=%#x add", 5, 0x80002005u);
    same_as_printf("netpoll: fd=%d ev=%#x ready", 5, 0u);
    same_as_printf("%d %d %d", 0, -1, INT_MIN);
    same_as_printf("%u %x %#x", UINT_MAX, 0xdeadbeefu, 1u);
    same_as_printf("%ld %lu %lld %llu", LONG_MIN, ULONG_MAX, LLONG_MIN, ULLONG_MAX);
    same_as_printf("%zu %i", size_t(12345), -7);
    same_as_printf("%s|%s|%%", "worker", "");
    same_as_printf("%p", reinterpret_cast<void *>(uintptr_t(0x7f00dead1000)));
}

Test(debug_print, long_lines_are_cut_and_unknown_conversions_marked) {
    std::string s = traced("%s", std::string(1000, 'a').c_str());
    cr_assert_leq(s.size(), 200u);
    cr_assert_eq(s.back(), '\n');
    cr_assert_eq(traced("a %f b", 1.5), "a ? b\n");
    cr_assert_eq(traced("end %"), "end ?\n");
}
