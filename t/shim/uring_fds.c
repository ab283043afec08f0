/* uring_fds: the io_uring poller's rings are the engine's descriptors, as
 * the epoll poller's sets are.  The engine makes a ring through liburing,
 * whose system call the shim cannot see; the shim's io_uring_queue_init_params
 * notes the ring as the engine's and moves it above the program's numbers.
 * Once the engine loaded liburing itself (a hidden definition of that name
 * in the engine), its rings were made past the shim: each at the lowest free
 * number (the program's next open(2) got another one than without the
 * library), and not the engine's, so a daemon's close of every descriptor it
 * does not know (closefrom(3)) closed them under the running engine.
 *
 * The run.sh default is epoll: under the shim this program runs itself again
 * with NP_POLLER=io_uring (a kernel without io_uring falls back to epoll,
 * and the checks pass).  A thread is made (the engine's workers and rings
 * come with the first), then: open(2) gives the number that was the lowest
 * free before it; closefrom(3) leaves every anonymous-inode descriptor (the
 * program opened none: they are the runtime's); threads still pass bytes
 * through pipes and sleep. */
#include "shim_test.h"
#include <fcntl.h>

enum { ROUNDS = 200 };

static int lowest_free(void)
{
    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) return fd;
    return -1;
}

static int is_anon(int fd)
{
    char path[64], target[128];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n <= 0) return 0;
    target[n] = 0;
    return strncmp(target, "anon_inode:", 11) == 0;
}

static void *echo(void *arg)
{
    int *p = arg; /* p[0] read end in, p[3] write end back */
    char c;
    for (int i = 0; i < ROUNDS; i++) {
        if (read(p[0], &c, 1) != 1) return (void *)1;
        if (write(p[3], &c, 1) != 1) return (void *)2;
    }
    return NULL;
}

static void ping_pong(const char *when)
{
    int a[2], b[2];
    CHECK(pipe(a) == 0 && pipe(b) == 0, "pipes %s: %s", when, strerror(errno));
    int p[4] = {a[0], a[1], b[0], b[1]};
    pthread_t t = st_spawn(echo, p);
    int ok = 1;
    for (int i = 0; i < ROUNDS && ok; i++) {
        char c = (char)i, d = 0;
        if (i % 50 == 0) st_sleep_ms(2);
        ok = write(a[1], &c, 1) == 1 && read(b[0], &d, 1) == 1 && d == c;
    }
    void *r = (void *)3;
    pthread_join(t, &r);
    CHECK(ok && r == NULL, "%d bytes through a thread's pipes %s", ROUNDS, when);
    for (int i = 0; i < 4; i++) close(p[i]);
}

int main(int argc, char **argv)
{
    (void)argc;
    if (st_under_shim() && !getenv("NP_POLLER")) {
        setenv("NP_POLLER", "io_uring", 1);
        execv("/proc/self/exe", argv);
        fprintf(stderr, "uring_fds: exec: %s\n", strerror(errno));
        return 2;
    }
    st_watchdog(60);
    int want = lowest_free();
    st_threads_up();

    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(fd == want, "open(2) after the first thread gives the number free before it, %d (got %d)", want, fd);
    if (fd >= 0) close(fd);

    ping_pong("before closefrom(3)");
    unsigned char anon[1024 / 8] = {0};
    for (int i = 3; i < 1024; i++)
        if (is_anon(i)) anon[i / 8] |= (unsigned char)(1 << (i % 8));
    closefrom(3);
    for (int i = 3; i < 1024; i++)
        if ((anon[i / 8] >> (i % 8) & 1) && !is_anon(i))
            CHECK(0, "closefrom(3) closed the runtime's descriptor %d", i);
    ping_pong("after closefrom(3)");
    return st_finish("uring_fds");
}
