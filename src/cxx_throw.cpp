// The C++ runtime's throw helpers that the library's containers and locks
// name, defined here so that the static libstdc++ the library is linked
// with (Makefile: STATIC_CXXRT) adds only its exception core, not the
// error classes behind them, which bring std::string, locales and
// std::random_device, and with them calls to read, ioctl and pthread_once
// that a preload shim interposes (t/imports-check.sh).  None of these is
// caught in the library: each ends the process, as an uncaught throw would.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "libc_real.hpp"

namespace {
[[noreturn]] void fatal(const char *what, const char *detail) {
    np::say("netpoll: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}
} // namespace

namespace std {
[[noreturn]] void __throw_bad_alloc() { throw std::bad_alloc(); }
[[noreturn]] void __throw_bad_array_new_length() { throw std::bad_alloc(); }
[[noreturn]] void __throw_length_error(const char *s) { fatal("length error", s); }
[[noreturn]] void __throw_system_error(int e) { fatal("system error", strerror(e)); }
} // namespace std
