// switch_boost.cpp - raw context switch cost of Boost.Context.
//
// Measures: ns per switch of a ping-pong between the main context and one
// fcontext (boost::context::detail::jump_fcontext); each round trip is two
// switches.  Best of several rounds, to resist scheduler noise.
// Usage: switch_boost [round_trips_per_round]   (default 5000000)
// Output: one line "boost_fcontext <ns_per_switch>".
#include <boost/context/detail/fcontext.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace ctx = boost::context::detail;

static void entry(ctx::transfer_t t) {
    for (;;) t = ctx::jump_fcontext(t.fctx, nullptr);
}

int main(int argc, char **argv) {
    long n = argc > 1 ? std::atol(argv[1]) : 5000000;
    if (n <= 0) n = 5000000;
    const int rounds = 5;
    const std::size_t size = 64 * 1024;
    std::vector<char> stack(size);
    ctx::fcontext_t c = ctx::make_fcontext(stack.data() + size, size, entry);
    ctx::transfer_t t = ctx::jump_fcontext(c, nullptr);  // warm up
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        auto t0 = std::chrono::steady_clock::now();
        for (long i = 0; i < n; i++) t = ctx::jump_fcontext(t.fctx, nullptr);
        auto t1 = std::chrono::steady_clock::now();
        double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
        if (ns / (2.0 * n) < best) best = ns / (2.0 * n);
    }
    std::printf("boost_fcontext %.2f\n", best);
    return 0;
}
