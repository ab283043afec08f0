// A thread-pool echo server in C++20: an acceptor thread pushes accepted
// connections on a work queue (std::mutex + std::condition_variable); WORKERS
// std::threads take one each and echo on it until the peer closes.
//
//   pool_echo PORT WORKERS [LIFETIME_S]
//
// Prints "listening port=PORT" once it listens; on SIGTERM it stops
// accepting, lets the workers drain the queue, joins them and prints
// "served=N", exit 0.  Ends by itself after LIFETIME_S seconds (default 120).
// Nothing of netpoll.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace {

class WorkQueue {
public:
    void push(int fd)
    {
        {
            std::lock_guard lock(mu_);
            q_.push_back(fd);
        }
        cv_.notify_one();
    }
    void close()
    {
        {
            std::lock_guard lock(mu_);
            closed_ = true;
        }
        cv_.notify_all();
    }
    // -1 once closed and empty.
    int pop()
    {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return closed_ || !q_.empty(); });
        if (q_.empty())
            return -1;
        int fd = q_.front();
        q_.pop_front();
        return fd;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<int> q_;
    bool closed_ = false;
};

std::atomic<long> served{0};

void echo(int fd)
{
    char buf[16384];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, size_t(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                goto out;
            off += w;
        }
    }
out:
    ::close(fd);
    served.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

int main(int argc, char **argv)
{
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s PORT WORKERS [LIFETIME_S]\n", argv[0]);
        return 2;
    }
    int port = std::atoi(argv[1]);
    int nworkers = std::atoi(argv[2]);
    alarm(argc > 3 ? unsigned(std::atoi(argv[3])) : 120);
    signal(SIGPIPE, SIG_IGN);

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (ls < 0 || bind(ls, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 ||
        listen(ls, 4096) != 0) {
        std::perror("pool_echo: listen");
        return 1;
    }

    // SIGTERM is taken by a thread of its own (sigwait), blocked in the others.
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, nullptr);

    WorkQueue queue;
    std::vector<std::thread> workers;
    for (int i = 0; i < nworkers; i++)
        workers.emplace_back([&queue] {
            for (int fd; (fd = queue.pop()) >= 0;)
                echo(fd);
        });
    std::atomic<bool> stopping{false};
    std::thread acceptor([&] {
        for (;;) {
            int c = accept(ls, nullptr, nullptr);
            if (c < 0) {
                if (stopping.load())
                    return;
                if (errno == EINTR || errno == ECONNABORTED)
                    continue;
                std::perror("pool_echo: accept");
                std::exit(1);
            }
            queue.push(c);
        }
    });
    std::printf("listening port=%d\n", port);
    std::fflush(stdout);

    int sig = 0;
    sigwait(&term, &sig);
    stopping.store(true);
    shutdown(ls, SHUT_RDWR);   // wakes the acceptor out of accept
    acceptor.join();
    queue.close();
    for (auto &t : workers)
        t.join();
    std::printf("served=%ld\n", served.load());
    return 0;
}
