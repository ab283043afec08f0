// cxx_threads: the C++ runtime's per-thread state across blocking calls.
//
//   cxx_threads [connections, default 64] [exception threads, default 100]
//
// - a std::thread pool (std::mutex + std::condition_variable work queue)
//   serving connections from client std::threads; thread_local objects with
//   non-trivial constructors and destructors in both: each must be built and
//   destroyed exactly once per thread that touched it;
// - exceptions in many threads at once, each blocking in read(2) during
//   unwinding (in a destructor), inside its catch block, and inside a nested
//   catch, then rethrowing: std::current_exception, std::uncaught_exceptions,
//   the type and the message must be the thread's own throughout;
// - std::atomic<int>::wait / notify_one / notify_all (C++20);
// - std::this_thread::sleep_for / sleep_until, condition_variable::wait_for,
//   timed_mutex::try_lock_for timing out;
// - std::async with blocking work, and an exception carried through a future.
//
// Prints one line per part and exits 0 only when every check passed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

std::atomic<long> checks{0}, failures{0};
const char *volatile phase = "start";

void check(bool ok, const char *file, int line, const char *fmt, ...)
{
    checks.fetch_add(1);
    if (ok) return;
    if (failures.fetch_add(1) >= 50) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "FAILED %s:%d: %s\n", file, line, msg);
}
#define CHECK(cond, ...) check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

void watchdog_fired(int)
{
    char msg[256];
    int n = snprintf(msg, sizeof msg, "watchdog: still running after the time limit, phase: %s\n",
                     phase);
    if (n > 0) (void)!write(2, msg, (size_t)n);
    _exit(3);
}

double ms_since(steady::time_point t)
{
    return std::chrono::duration<double, std::milli>(steady::now() - t).count();
}

void check_elapsed(const char *what, double ms, double want)
{
    CHECK(ms >= want - 0.5 && ms <= want + 2000, "%s took %.1f ms, want %.0f ms", what, ms, want);
}

uint64_t next_rand(uint64_t &s)
{
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1DULL;
}

bool write_all(int fd, const void *p, size_t n)
{
    auto b = static_cast<const char *>(p);
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        b += w;
        n -= size_t(w);
    }
    return true;
}

bool read_full(int fd, void *p, size_t n)
{
    auto b = static_cast<char *>(p);
    while (n) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        b += r;
        n -= size_t(r);
    }
    return true;
}

struct socket_pair {
    int fd[2];
    socket_pair()
    {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, fd)) {
            perror("socketpair");
            exit(2);
        }
    }
    ~socket_pair()
    {
        close(fd[0]);
        close(fd[1]);
    }
};

// ---------------------------------------------------------------- pool --

// A thread_local with a constructor and destructor that count, and state the
// thread checks is its own.
std::atomic<int> tracker_built{0}, tracker_destroyed{0}, tracker_bad{0};
struct tracker {
    std::thread::id owner = std::this_thread::get_id();
    std::vector<int> served;   // heap-owning member: its destructor frees
    long bytes = 0;
    tracker() { tracker_built.fetch_add(1); }
    ~tracker()
    {
        if (owner != std::this_thread::get_id()) tracker_bad.fetch_add(1);
        tracker_destroyed.fetch_add(1);
    }
};
thread_local tracker tl_tracker;

struct work_queue {
    std::mutex m;
    std::condition_variable cv;
    std::deque<int> fds;
    bool closed = false;

    void push(int fd)
    {
        {
            std::lock_guard<std::mutex> g(m);
            fds.push_back(fd);
        }
        cv.notify_one();
    }
    void close_queue()
    {
        {
            std::lock_guard<std::mutex> g(m);
            closed = true;
        }
        cv.notify_all();
    }
    int pop()   // -1 when closed and empty
    {
        std::unique_lock<std::mutex> l(m);
        cv.wait(l, [&] { return closed || !fds.empty(); });
        if (fds.empty()) return -1;
        int fd = fds.front();
        fds.pop_front();
        return fd;
    }
};

// One connection: 4-byte length, payload; the answer is the payload reversed.
void serve_connection(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::vector<char> buf;
    uint32_t len;
    while (read_full(fd, &len, sizeof len)) {
        if (len > (1u << 20)) break;
        buf.resize(sizeof len + len);   // the answer goes out in one write
        if (!read_full(fd, buf.data() + sizeof len, len)) break;
        memcpy(buf.data(), &len, sizeof len);
        std::reverse(buf.begin() + sizeof len, buf.end());
        if (!write_all(fd, buf.data(), buf.size())) break;
        tl_tracker.bytes += len;
        CHECK(tl_tracker.owner == std::this_thread::get_id(),
              "pool worker: thread_local tracker belongs to another thread");
    }
    tl_tracker.served.push_back(fd);
    close(fd);
}

void client_connection(uint16_t port, int id, int rounds, std::atomic<long> &verified)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a)) {
        CHECK(false, "client %d: connect: %s", id, strerror(errno));
        if (fd >= 0) close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint64_t rng = 0x9E3779B97F4A7C15ULL * uint64_t(id + 1);
    std::vector<char> out, in;
    for (int r = 0; r < rounds; r++) {
        uint32_t len = 1 + uint32_t(next_rand(rng) % 8192);
        out.resize(sizeof len + len);   // length and payload in one write
        memcpy(out.data(), &len, sizeof len);
        for (size_t k = sizeof len; k < out.size(); k++) out[k] = char(next_rand(rng) >> 56);
        uint32_t back = 0;
        if (!write_all(fd, out.data(), out.size()) ||
            !read_full(fd, &back, sizeof back) || back != len) {
            CHECK(false, "client %d round %d: exchange failed", id, r);
            break;
        }
        in.resize(len);
        if (!read_full(fd, in.data(), len)) {
            CHECK(false, "client %d round %d: short answer", id, r);
            break;
        }
        std::reverse(in.begin(), in.end());
        CHECK(memcmp(in.data(), out.data() + sizeof len, len) == 0,
              "client %d round %d: wrong answer", id, r);
        tl_tracker.bytes += len;
        verified.fetch_add(1);
    }
    CHECK(tl_tracker.owner == std::this_thread::get_id(),
          "client: thread_local tracker belongs to another thread");
    close(fd);
}

void test_pool(int nconn)
{
    phase = "thread pool";
    const int workers = 8, rounds = 50;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (ls < 0 || bind(ls, reinterpret_cast<sockaddr *>(&a), sizeof a) || listen(ls, 1024) ||
        getsockname(ls, reinterpret_cast<sockaddr *>(&a), &alen)) {
        perror("listen");
        exit(2);
    }
    uint16_t port = ntohs(a.sin_port);

    work_queue q;
    std::atomic<int> served{0};
    std::vector<std::thread> pool;
    for (int i = 0; i < workers; i++)
        pool.emplace_back([&] {
            for (int fd; (fd = q.pop()) >= 0;) {
                serve_connection(fd);
                served.fetch_add(1);
            }
        });
    std::thread acceptor([&] {
        for (int i = 0; i < nconn; i++) {
            int c = accept(ls, nullptr, nullptr);
            if (c < 0) {
                CHECK(false, "accept: %s", strerror(errno));
                break;
            }
            q.push(c);
        }
    });
    std::atomic<long> verified{0};
    std::vector<std::thread> clients;
    for (int i = 0; i < nconn; i++)
        clients.emplace_back(client_connection, port, i, rounds, std::ref(verified));
    for (auto &t : clients) t.join();
    acceptor.join();
    q.close_queue();
    for (auto &t : pool) t.join();
    close(ls);
    CHECK(served.load() == nconn, "pool served %d of %d connections", served.load(), nconn);
    CHECK(verified.load() == long(nconn) * rounds, "%ld of %ld answers verified", verified.load(),
          long(nconn) * rounds);
    int touched = workers + nconn;
    CHECK(tracker_built.load() == touched && tracker_destroyed.load() == touched &&
              tracker_bad.load() == 0,
          "thread_local tracker: built %d, destroyed %d, want %d each (%d on a foreign thread)",
          tracker_built.load(), tracker_destroyed.load(), touched, tracker_bad.load());
    printf("ok pool: %d workers (mutex + condition_variable queue) served %d connections x %d "
           "round trips; thread_local built and destroyed once in each of %d threads\n",
           workers, nconn, rounds, touched);
}

// ----------------------------------------------------------- exceptions --

struct thread_error : std::runtime_error {
    int id;
    thread_error(int i, const std::string &m) : std::runtime_error(m), id(i) {}
};

std::atomic<int> unwinding_reads{0};

// Blocks in read(2) from its destructor, i.e. in the middle of unwinding.
struct blocks_while_unwinding {
    int fd, id;
    ~blocks_while_unwinding()
    {
        CHECK(std::uncaught_exceptions() == 1, "thread %d: %d uncaught exceptions while unwinding",
              id, std::uncaught_exceptions());
        char c = 0;
        CHECK(read(fd, &c, 1) == 1 && c == 1, "thread %d: read during unwinding", id);
        CHECK(std::uncaught_exceptions() == 1,
              "thread %d: %d uncaught exceptions after blocking while unwinding", id,
              std::uncaught_exceptions());
        unwinding_reads.fetch_add(1);
    }
};

std::string message_of(int id) { return "error from thread " + std::to_string(id); }

void exception_thread(int id, int fd, std::latch &start, std::atomic<int> &done)
{
    start.arrive_and_wait();
    bool caught_outer = false;
    try {
        try {
            blocks_while_unwinding b{fd, id};
            throw thread_error(id, message_of(id));
        } catch (const thread_error &e) {
            std::exception_ptr ep = std::current_exception();
            CHECK(ep != nullptr, "thread %d: no current exception in catch", id);
            char c = 0;
            CHECK(read(fd, &c, 1) == 1 && c == 2, "thread %d: read in catch", id);
            CHECK(std::current_exception() == ep, "thread %d: current_exception changed across a "
                                                  "blocking read", id);
            CHECK(e.id == id && e.what() == message_of(id), "thread %d: caught '%s' (id %d)", id,
                  e.what(), e.id);
            try {
                throw std::logic_error("inner " + std::to_string(id));
            } catch (const std::logic_error &inner) {
                CHECK(read(fd, &c, 1) == 1 && c == 3, "thread %d: read in nested catch", id);
                CHECK(inner.what() == "inner " + std::to_string(id),
                      "thread %d: inner exception says '%s'", id, inner.what());
                CHECK(std::current_exception() != ep, "thread %d: nested current_exception", id);
            }
            CHECK(std::current_exception() == ep,
                  "thread %d: current_exception not restored after the nested catch", id);
            CHECK(std::uncaught_exceptions() == 0, "thread %d: uncaught_exceptions %d in catch",
                  id, std::uncaught_exceptions());
            throw;   // rethrow the thread's own exception
        }
    } catch (const std::runtime_error &e) {
        auto te = dynamic_cast<const thread_error *>(&e);
        CHECK(te && te->id == id && e.what() == message_of(id),
              "thread %d: rethrown exception is '%s'", id, e.what());
        caught_outer = true;
    } catch (...) {
        CHECK(false, "thread %d: rethrown exception of an unexpected type", id);
    }
    CHECK(caught_outer, "thread %d: the rethrow was not caught", id);
    CHECK(std::current_exception() == nullptr && std::uncaught_exceptions() == 0,
          "thread %d: exception state left over after the catch", id);
    done.fetch_add(1);
}

void test_exceptions(int nthreads)
{
    phase = "exceptions";
    std::vector<std::unique_ptr<socket_pair>> sp;
    for (int i = 0; i < nthreads; i++) sp.push_back(std::make_unique<socket_pair>());
    std::latch start(nthreads + 1);
    std::atomic<int> done{0};
    std::vector<std::thread> ts;
    for (int i = 0; i < nthreads; i++)
        ts.emplace_back(exception_thread, i, sp[size_t(i)]->fd[0], std::ref(start),
                        std::ref(done));
    start.arrive_and_wait();
    // three rounds of wake-ups, each in reverse order, while every thread is
    // parked somewhere inside exception handling
    for (char k = 1; k <= 3; k++) {
        std::this_thread::sleep_for(20ms);
        for (int i = nthreads - 1; i >= 0; i--)
            CHECK(write_all(sp[size_t(i)]->fd[1], &k, 1), "write round %d", k);
    }
    for (auto &t : ts) t.join();
    CHECK(done.load() == nthreads && unwinding_reads.load() == nthreads,
          "%d of %d threads finished their exception checks", done.load(), nthreads);
    printf("ok exceptions: %d threads each blocked in read while unwinding, in its catch and in "
           "a nested catch, then rethrew: current_exception, uncaught_exceptions, type and "
           "message their own throughout\n",
           nthreads);
}

// ----------------------------------------------------- atomic wait etc. --

void test_atomic_wait()
{
    phase = "atomic wait";
    std::atomic<int> turn{0};
    const int rounds = 2000;
    std::thread other([&] {
        for (int i = 0; i < rounds; i++) {
            turn.wait(2 * i);   // until the main thread moves it to 2i+1
            CHECK(turn.load() == 2 * i + 1, "atomic wait woke at %d, want %d", turn.load(),
                  2 * i + 1);
            turn.store(2 * i + 2);
            turn.notify_one();
        }
    });
    for (int i = 0; i < rounds; i++) {
        turn.store(2 * i + 1);
        turn.notify_one();
        turn.wait(2 * i + 1);
    }
    other.join();
    CHECK(turn.load() == 2 * rounds, "ping-pong ended at %d", turn.load());

    std::atomic<int> gate{0}, woke{0};
    std::vector<std::thread> waiters;
    for (int i = 0; i < 10; i++)
        waiters.emplace_back([&] {
            gate.wait(0);
            woke.fetch_add(1);
        });
    std::this_thread::sleep_for(50ms);
    CHECK(woke.load() == 0, "%d waiters passed a closed gate", woke.load());
    gate.store(1);
    gate.notify_all();
    for (auto &t : waiters) t.join();
    CHECK(woke.load() == 10, "notify_all woke %d of 10", woke.load());
    printf("ok atomic wait: %d notify_one ping-pongs between two threads; notify_all to 10 "
           "waiters\n",
           rounds);
}

void test_timing()
{
    phase = "timing";
    auto t = steady::now();
    std::this_thread::sleep_for(100ms);
    double slept = ms_since(t);
    check_elapsed("sleep_for(100ms)", slept, 100);

    t = steady::now();
    std::this_thread::sleep_until(t + 120ms);
    CHECK(steady::now() >= t + 120ms, "sleep_until woke early");
    check_elapsed("sleep_until(+120ms)", ms_since(t), 120);

    std::mutex m;
    std::condition_variable cv;
    std::unique_lock<std::mutex> l(m);
    t = steady::now();
    auto st = cv.wait_for(l, 150ms);
    while (st == std::cv_status::no_timeout && steady::now() < t + 150ms)
        st = cv.wait_until(l, t + 150ms);   // spurious wakeups
    check_elapsed("condition_variable::wait_for(150ms)", ms_since(t), 150);
    CHECK(st == std::cv_status::timeout, "wait_for did not time out");
    l.unlock();

    std::timed_mutex tm;
    std::atomic<int> held{0}, release{0};
    std::thread holder([&] {
        std::lock_guard<std::timed_mutex> g(tm);
        held.store(1);
        for (int i = 0; i < 5000 && !release.load(); i++) std::this_thread::sleep_for(1ms);
    });
    while (!held.load()) std::this_thread::sleep_for(1ms);
    t = steady::now();
    bool got = tm.try_lock_for(100ms);
    check_elapsed("timed_mutex::try_lock_for(100ms)", ms_since(t), 100);
    CHECK(!got, "try_lock_for acquired a held mutex");
    if (got) tm.unlock();
    release.store(1);
    holder.join();
    CHECK(tm.try_lock_for(1s), "try_lock_for after release");
    tm.unlock();

    // 20 threads sleeping 200 ms at once overlap
    t = steady::now();
    std::vector<std::thread> ss;
    for (int i = 0; i < 20; i++) ss.emplace_back([] { std::this_thread::sleep_for(200ms); });
    for (auto &s : ss) s.join();
    double all = ms_since(t);
    CHECK(all >= 199.5 && all < 2000, "20 concurrent 200 ms sleeps took %.0f ms", all);
    printf("ok timing: sleep_for %.0f ms, sleep_until, condition_variable::wait_for timeout, "
           "timed_mutex::try_lock_for timeout; 20 threads' 200 ms sleeps overlap (%.0f ms)\n",
           slept, all);
}

void test_async()
{
    phase = "async";
    const int n = 20;
    std::vector<std::unique_ptr<socket_pair>> sp;
    for (int i = 0; i < n; i++) sp.push_back(std::make_unique<socket_pair>());
    std::vector<std::future<long>> readers;
    for (int i = 0; i < n; i++)
        readers.push_back(std::async(std::launch::async, [fd = sp[size_t(i)]->fd[0]] {
            long sum = 0;
            unsigned char buf[256];
            for (long got = 0; got < 4096;) {
                ssize_t r = read(fd, buf, sizeof buf);
                if (r <= 0) return -1L;
                for (ssize_t k = 0; k < r; k++) sum += buf[k];
                got += r;
            }
            return sum;
        }));
    auto writer = std::async(std::launch::async, [&] {
        unsigned char chunk[64];
        for (int round = 0; round < 64; round++) {
            for (int i = 0; i < n; i++) {
                memset(chunk, i + 1, sizeof chunk);
                if (!write_all(sp[size_t(i)]->fd[1], chunk, sizeof chunk)) return false;
            }
            if (round % 16 == 0) std::this_thread::sleep_for(5ms);
        }
        return true;
    });
    CHECK(writer.get(), "async writer failed");
    for (int i = 0; i < n; i++) {
        long got = readers[size_t(i)].get();
        CHECK(got == 4096L * (i + 1), "async reader %d summed %ld, want %ld", i, got,
              4096L * (i + 1));
    }
    auto thrower = std::async(std::launch::async, [] {
        std::this_thread::sleep_for(10ms);
        throw thread_error(-7, "from std::async");
        return 0;
    });
    bool caught = false;
    try {
        thrower.get();
    } catch (const thread_error &e) {
        caught = e.id == -7 && std::string(e.what()) == "from std::async";
    }
    CHECK(caught, "the exception thrown in std::async did not arrive through get()");
    printf("ok async: %d std::async readers blocked in read fed by another std::async; an "
           "exception carried through a future\n",
           n);
}

}   // namespace

int main(int argc, char **argv)
{
    int nconn = argc > 1 ? atoi(argv[1]) : 64;
    int nexc = argc > 2 ? atoi(argv[2]) : 100;
    if (nconn < 1 || nexc < 1) {
        fprintf(stderr, "usage: cxx_threads [connections] [exception threads]\n");
        return 2;
    }
    setvbuf(stdout, nullptr, _IOLBF, 0);
    struct sigaction sa{};
    sa.sa_handler = watchdog_fired;
    sigaction(SIGALRM, &sa, nullptr);
    alarm(60);
    signal(SIGPIPE, SIG_IGN);

    test_pool(nconn);
    test_exceptions(nexc);
    test_atomic_wait();
    test_timing();
    test_async();
    printf("cxx_threads: %ld checks, %ld failed\n", checks.load(), failures.load());
    return failures.load() ? 1 : 0;
}
