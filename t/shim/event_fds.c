/* event_fds: eventfd, timerfd and inotify descriptors read by blocking
 * threads.  With OS threads each reader just sleeps in read(); with green
 * threads the reader must park, so its worker keeps running the others:
 *   - ping-pong: two threads hand a token back and forth through two
 *     eventfds, 2000 times (blocking reads and writes);
 *   - semaphore: an EFD_SEMAPHORE eventfd shared by 4 readers and a writer,
 *     every unit taken exactly once: as many reads as units posted, none
 *     left, every reader ends;
 *   - timerfd: a reader blocked on a 20 ms periodic timer while another
 *     thread keeps counting: both progress, the expirations add up;
 *   - inotify: a reader blocked until a file is created;
 *   - a socket's number closed by a raw system call (as libuv closes) and
 *     reused by a file and by a new socket: each works as what it is now;
 *   - bad inputs as the kernel gives them: a 4-byte read of an eventfd or
 *     timerfd is EINVAL at once (not a wait), EFD_NONBLOCK gives EAGAIN,
 *     a read of an epoll descriptor is EINVAL.
 * Under nprun none of this may cost an OS thread (a worker blocked in the
 * kernel for 10 ms would get a new one beside it, which stays).
 *
 *   event_fds */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>

#include "shim_test.h"

enum { kRounds = 2000, kReaders = 4, kUnits = 4000 };

static int ping, pong;

static void *ponger(void *arg) {
    (void)arg;
    for (int i = 0; i < kRounds; i++) {
        uint64_t v = 0;
        if (read(ping, &v, sizeof v) != sizeof v || v != 1) {
            CHECK(0, "pong read %d: v=%llu %s", i, (unsigned long long)v, strerror(errno));
            return NULL;
        }
        v = 1;
        CHECK(write(pong, &v, sizeof v) == sizeof v, "pong write: %s", strerror(errno));
    }
    return NULL;
}

static void ping_pong(void) {
    st_phase = "ping-pong";
    ping = eventfd(0, EFD_CLOEXEC);
    pong = eventfd(0, EFD_CLOEXEC);
    CHECK(ping >= 0 && pong >= 0, "eventfd: %s", strerror(errno));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, ponger, NULL) == 0, "pthread_create");
    int64_t t0 = st_mono_ns();
    for (int i = 0; i < kRounds; i++) {
        uint64_t v = 1;
        CHECK(write(ping, &v, sizeof v) == sizeof v, "ping write: %s", strerror(errno));
        v = 0;
        if (read(pong, &v, sizeof v) != sizeof v || v != 1) {
            CHECK(0, "ping read %d: %s", i, strerror(errno));
            break;
        }
    }
    pthread_join(t, NULL);
    printf("ping-pong: %d round trips in %.1f ms\n", kRounds, st_ms(st_mono_ns() - t0));
    close(ping);
    close(pong);
}

static int sem_fd;
static atomic_int sem_reads, sem_ended;

/* Takes units one read at a time; the read that finds kUnits taken before
 * it took a stop unit (posted only once all kUnits were seen taken). */
static void *sem_reader(void *arg) {
    (void)arg;
    for (;;) {
        uint64_t v = 0;
        ssize_t n = read(sem_fd, &v, sizeof v);
        if (n != sizeof v || v != 1) {
            CHECK(0, "semaphore read: n=%zd v=%llu %s", n, (unsigned long long)v, strerror(errno));
            break;
        }
        if (atomic_fetch_add(&sem_reads, 1) >= kUnits) break;
    }
    atomic_fetch_add(&sem_ended, 1);
    return NULL;
}

/* Whether the semaphore holds no unit (a read now would wait). */
static int sem_empty(void) {
    struct pollfd p = {sem_fd, POLLIN, 0};
    return poll(&p, 1, 0) == 0;
}

static void sem_post_units(uint64_t v) {
    CHECK(write(sem_fd, &v, sizeof v) == sizeof v, "semaphore write: %s", strerror(errno));
}

static void semaphore(void) {
    st_phase = "semaphore";
    sem_fd = eventfd(0, EFD_SEMAPHORE | EFD_CLOEXEC);
    CHECK(sem_fd >= 0, "eventfd semaphore: %s", strerror(errno));
    atomic_store(&sem_reads, 0);
    atomic_store(&sem_ended, 0);
    pthread_t t[kReaders];
    for (int i = 0; i < kReaders; i++) CHECK(pthread_create(&t[i], NULL, sem_reader, NULL) == 0, "pthread_create");
    for (int i = 0; i < kUnits; i += 100) {
        sem_post_units(100);
        if (i % 1000 == 0) sched_yield();
    }
    /* Every unit read once: kUnits reads, none more (a read that returned
     * a unit it did not take would show as one more read, or as a unit
     * left), none fewer (a reader stuck with units there). */
    st_wait_for(&sem_reads, kUnits, 15000);
    st_sleep_ms(20); /* time for a read beyond the posts to show */
    int reads = atomic_load(&sem_reads);
    CHECK(reads == kUnits, "semaphore: %d reads of %d units posted", reads, kUnits);
    CHECK(sem_empty(), "semaphore: units left after %d reads of %d posted", reads, kUnits);
    /* One more unit for each reader: each takes one and ends. */
    sem_post_units(kReaders);
    int ended = st_wait_for(&sem_ended, kReaders, 15000);
    CHECK(ended, "semaphore: %d of %d readers ended after the stop units (%d reads)", atomic_load(&sem_ended),
          kReaders, atomic_load(&sem_reads));
    if (!ended) { /* unstick them to report, or give up */
        sem_post_units(kReaders);
        if (!st_wait_for(&sem_ended, kReaders, 5000)) {
            fprintf(stderr, "FAILED semaphore: a reader is stuck for good\n");
            exit(1);
        }
    }
    for (int i = 0; i < kReaders; i++) pthread_join(t[i], NULL);
    if (ended) {
        CHECK(atomic_load(&sem_reads) == kUnits + kReaders, "semaphore: %d reads, want %d", atomic_load(&sem_reads),
              kUnits + kReaders);
        CHECK(sem_empty(), "semaphore: units left after all readers ended");
    }
    close(sem_fd);
}

static atomic_int counting, counted;

static void *counter(void *arg) {
    (void)arg;
    while (atomic_load(&counting)) {
        atomic_fetch_add(&counted, 1);
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void timer(void) {
    st_phase = "timerfd";
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    CHECK(tfd >= 0, "timerfd_create: %s", strerror(errno));
    struct itimerspec its = {{0, 20 * 1000 * 1000}, {0, 20 * 1000 * 1000}};
    CHECK(timerfd_settime(tfd, 0, &its, NULL) == 0, "timerfd_settime: %s", strerror(errno));
    atomic_store(&counting, 1);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, counter, NULL) == 0, "pthread_create");
    int64_t t0 = st_mono_ns();
    uint64_t total = 0;
    for (int i = 0; i < 10; i++) {
        uint64_t v = 0;
        CHECK(read(tfd, &v, sizeof v) == sizeof v && v >= 1, "timerfd read: %s", strerror(errno));
        total += v;
    }
    int64_t el = st_mono_ns() - t0;
    atomic_store(&counting, 0);
    pthread_join(t, NULL);
    /* 10 reads of a 20 ms timer: at least 180 ms; the counter ran meanwhile */
    CHECK(el >= 180 * 1000 * 1000, "timerfd: 10 reads in %.1f ms", st_ms(el));
    CHECK(total >= 10 && total <= (uint64_t)(el / 20000000 + 1), "timerfd: %llu expirations in %.1f ms",
          (unsigned long long)total, st_ms(el));
    CHECK(atomic_load(&counted) >= 10, "timerfd: the other thread counted %d times in %.1f ms",
          atomic_load(&counted), st_ms(el));
    uint32_t small;
    int64_t s0 = st_mono_ns();
    errno = 0;
    CHECK(read(tfd, &small, sizeof small) == -1 && errno == EINVAL, "timerfd 4-byte read: %s", strerror(errno));
    CHECK(st_mono_ns() - s0 < 15 * 1000 * 1000, "timerfd 4-byte read waited %.1f ms", st_ms(st_mono_ns() - s0));
    close(tfd);
}

static char dir[64];

static void *creator(void *arg) {
    (void)arg;
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
    char path[96];
    snprintf(path, sizeof path, "%s/made", dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    CHECK(fd >= 0, "create %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return NULL;
}

static void inotify(void) {
    st_phase = "inotify";
    snprintf(dir, sizeof dir, "/tmp/event_fds.XXXXXX");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    int in = inotify_init1(IN_CLOEXEC);
    CHECK(in >= 0, "inotify_init1: %s", strerror(errno));
    CHECK(inotify_add_watch(in, dir, IN_CREATE) >= 0, "inotify_add_watch: %s", strerror(errno));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, creator, NULL) == 0, "pthread_create");
    char buf[4096] __attribute__((aligned(8)));
    ssize_t n = read(in, buf, sizeof buf);
    CHECK(n >= (ssize_t)sizeof(struct inotify_event), "inotify read: %zd %s", n, strerror(errno));
    if (n >= (ssize_t)sizeof(struct inotify_event)) {
        struct inotify_event *ev = (struct inotify_event *)buf;
        CHECK((ev->mask & IN_CREATE) && ev->len && strcmp(ev->name, "made") == 0, "inotify event: mask %#x name %s",
              ev->mask, ev->len ? ev->name : "");
    }
    pthread_join(t, NULL);
    close(in);
    char path[96];
    snprintf(path, sizeof path, "%s/made", dir);
    unlink(path);
    rmdir(dir);
}

static void bad_inputs(void) {
    st_phase = "bad inputs";
    int e = eventfd(0, EFD_CLOEXEC);
    uint32_t small = 0;
    int64_t t0 = st_mono_ns();
    errno = 0;
    CHECK(read(e, &small, sizeof small) == -1 && errno == EINVAL, "eventfd 4-byte read: %s", strerror(errno));
    errno = 0;
    CHECK(write(e, &small, sizeof small) == -1 && errno == EINVAL, "eventfd 4-byte write: %s", strerror(errno));
    uint64_t v = UINT64_MAX;
    errno = 0;
    CHECK(write(e, &v, sizeof v) == -1 && errno == EINVAL, "eventfd write of UINT64_MAX: %s", strerror(errno));
    CHECK(st_mono_ns() - t0 < 15 * 1000 * 1000, "eventfd bad calls waited %.1f ms", st_ms(st_mono_ns() - t0));
    close(e);

    e = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    errno = 0;
    CHECK(read(e, &v, sizeof v) == -1 && errno == EAGAIN, "nonblocking eventfd read: %s", strerror(errno));
    close(e);

    e = eventfd(0, EFD_CLOEXEC); /* the program's own O_NONBLOCK, set later */
    CHECK(fcntl(e, F_SETFL, fcntl(e, F_GETFL) | O_NONBLOCK) == 0, "F_SETFL: %s", strerror(errno));
    errno = 0;
    CHECK(read(e, &v, sizeof v) == -1 && errno == EAGAIN, "eventfd read after F_SETFL: %s", strerror(errno));
    close(e);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    t0 = st_mono_ns();
    errno = 0;
    CHECK(read(ep, &v, sizeof v) == -1 && errno == EINVAL, "read of an epoll fd: %s", strerror(errno));
    CHECK(st_mono_ns() - t0 < 15 * 1000 * 1000, "read of an epoll fd waited %.1f ms", st_ms(st_mono_ns() - t0));
    close(ep);
}

/* A socket's number closed by a raw system call (as libuv closes), then
 * reused: by a regular file, whose read must read the file, and by a new
 * socket, whose blocking read must wake when data comes. */
static int reuse_fd;
static void *late_writer(void *arg) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    CHECK(write(*(int *)arg, "z", 1) == 1, "late write: %s", strerror(errno));
    return NULL;
}

static void reuse(void) {
    st_phase = "numbers reused";
    int sv[2];
    char c = 0;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair: %s", strerror(errno));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, late_writer, &sv[1]) == 0, "pthread_create");
    CHECK(read(sv[0], &c, 1) == 1 && c == 'z', "first read: %s", strerror(errno)); /* parked: registered */
    pthread_join(t, NULL);
    int n = sv[0];
    CHECK(syscall(SYS_close, n) == 0, "SYS_close: %s", strerror(errno));
    int f = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    CHECK(f == n, "open took %d, not the closed %d", f, n);
    char buf[64];
    ssize_t r = read(f, buf, sizeof buf);
    CHECK(r > 0, "read of a file at a socket's old number: %zd (%s)", r, strerror(errno));
    close(f);
    int s2[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s2) == 0, "socketpair: %s", strerror(errno));
    int back = s2[0] == n ? s2[0] : s2[1], other = back == s2[0] ? s2[1] : s2[0];
    CHECK(back == n, "the new socket took %d and %d, not %d", s2[0], s2[1], n);
    reuse_fd = other;
    CHECK(pthread_create(&t, NULL, late_writer, &reuse_fd) == 0, "pthread_create");
    c = 0;
    CHECK(read(back, &c, 1) == 1 && c == 'z', "read of the new socket: %s", strerror(errno));
    pthread_join(t, NULL);
    close(s2[0]);
    close(s2[1]);
    close(sv[1]);
}

/* Runs one phase; under the shim, counts the OS threads it added. */
static int added;
static void phase(void (*fn)(void), int counted) {
    int before = st_os_threads();
    fn();
    int after = st_os_threads();
    if (counted && after > before) added += after - before;
}

int main(void) {
    st_watchdog(60);
    const char *procs = getenv("NP_PROCS");
    int shim = st_under_shim();
    st_threads_up();
    phase(ping_pong, 1);
    /* Several readers of one eventfd on several workers: readiness first,
     * then the read, so two may see the same unit and one blocks in the
     * kernel (and its worker with it) until the next: not counted then. */
    phase(semaphore, !procs || atoi(procs) == 1);
    phase(timer, 1);
    phase(inotify, 1);
    phase(bad_inputs, 1);
    phase(reuse, 1);
    if (shim) CHECK(added == 0, "%d OS threads added: a blocked read cost a worker", added);
    printf("os_threads added: %d\n", added);
    printf("event_fds: %ld checks, %ld failed\n", atomic_load(&st_checks), atomic_load(&st_failures));
    return atomic_load(&st_failures) ? 1 : 0;
}
