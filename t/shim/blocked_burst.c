/* blocked_burst: a burst of threads blocked in the kernel where the engine
 * cannot park them (a raw system call), as a database's threads block in
 * fsync.  Each must not hold up the others: the burst ends in about one
 * call's time, not the sum.  Once it is over, the OS threads added to
 * cover it must stop running the program's threads: connection pairs
 * started afterwards run on at most NP_PROCS OS threads, as before the
 * burst; the OS threads stay, asleep, and serve the next burst (which
 * takes no more OS threads than the first).  A thread still running on
 * an added OS thread when it is told to rest starts a thread: the new
 * one runs (it waited in the global queue with no worker woken for it,
 * and its creator's join never returned).
 *
 *   blocked_burst */
#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>

#include "shim_test.h"

#define SLEEPERS 8
#define SLEEP_MS 300
#define PAIRS 6
#define PINGS_MS 400

static void *sleeper(void *arg) {
    (void)arg;
    struct timespec ts = {0, SLEEP_MS * 1000000L};
    /* Not nanosleep(): libc's entry would park the thread. */
    CHECK(syscall(SYS_nanosleep, &ts, NULL) == 0, "raw nanosleep: %s", strerror(errno));
    return NULL;
}

/* A busy thread beside the sleepers: the workers are not idle. */
static atomic_int stop_busy;
static void *busy(void *arg) {
    (void)arg;
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    char c = 0;
    while (!atomic_load(&stop_busy)) {
        CHECK(write(p[1], &c, 1) == 1, "busy write");
        CHECK(read(p[0], &c, 1) == 1, "busy read");
    }
    close(p[0]);
    close(p[1]);
    return NULL;
}

/* One end of a ping-pong pair over a socketpair, for PINGS_MS. */
struct end {
    int fd, first;
    long rounds;
};
static void *pinger(void *arg) {
    struct end *e = arg;
    char c = 'p';
    int64_t until = st_mono_ns() + (int64_t)PINGS_MS * 1000000;
    if (e->first) CHECK(write(e->fd, &c, 1) == 1, "first ping");
    for (;;) {
        ssize_t n = read(e->fd, &c, 1);
        if (n != 1) break; /* the other end stopped */
        e->rounds++;
        if (st_mono_ns() > until) break;
        if (write(e->fd, &c, 1) != 1) break;
    }
    shutdown(e->fd, SHUT_RDWR);
    return NULL;
}

/* SLEEPERS threads blocked in the kernel at once beside a busy one: how
 * long until all are back, and the process's OS threads at the end. */
static int64_t burst(int *os_threads) {
    atomic_store(&stop_busy, 0);
    pthread_t b = st_spawn(busy, NULL);
    int64_t t0 = st_mono_ns();
    pthread_t s[SLEEPERS];
    for (int i = 0; i < SLEEPERS; i++) s[i] = st_spawn(sleeper, NULL);
    for (int i = 0; i < SLEEPERS; i++) pthread_join(s[i], NULL);
    int64_t took = st_mono_ns() - t0;
    *os_threads = st_os_threads();
    atomic_store(&stop_busy, 1);
    pthread_join(b, NULL);
    return took;
}

/* utime + stime of each of the process's OS threads, by tid (ticks). */
#define MAX_TASKS 512
struct cpu {
    int n;
    int tid[MAX_TASKS];
    long ticks[MAX_TASKS];
};
static void sample(struct cpu *c) {
    c->n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d)) && c->n < MAX_TASKS) {
        if (de->d_name[0] == '.') continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", de->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        ssize_t k = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (k <= 0) continue;
        buf[k] = 0;
        char *p = strrchr(buf, ')');
        unsigned long ut = 0, st = 0;
        /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt
         * majflt cmajflt utime stime */
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
            continue;
        c->tid[c->n] = atoi(de->d_name);
        c->ticks[c->n++] = (long)(ut + st);
    }
    closedir(d);
}

/* How many OS threads used at least min_ticks of CPU between a and b. */
static int busy_tasks(const struct cpu *a, const struct cpu *b, long min_ticks) {
    int k = 0;
    for (int i = 0; i < b->n; i++) {
        long before = 0;
        for (int j = 0; j < a->n; j++)
            if (a->tid[j] == b->tid[i]) before = a->ticks[j];
        if (b->ticks[i] - before >= min_ticks) k++;
    }
    return k;
}

/* PAIRS ping-pong pairs for PINGS_MS: how many OS threads did the work. */
static int run_pairs(long *rounds) {
    struct end ends[2 * PAIRS];
    pthread_t t[2 * PAIRS];
    struct cpu a, b;
    sample(&a);
    for (int i = 0; i < PAIRS; i++) {
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
        ends[2 * i] = (struct end){sv[0], 1, 0};
        ends[2 * i + 1] = (struct end){sv[1], 0, 0};
    }
    for (int i = 0; i < 2 * PAIRS; i++) t[i] = st_spawn(pinger, &ends[i]);
    *rounds = 0;
    for (int i = 0; i < 2 * PAIRS; i++) {
        pthread_join(t[i], NULL);
        *rounds += ends[i].rounds;
        close(ends[i].fd);
    }
    sample(&b);
    /* A tenth of the run: an OS thread that took part, not one that
     * merely woke now and then. */
    long tick = sysconf(_SC_CLK_TCK);
    return busy_tasks(&a, &b, PINGS_MS * tick / 10000);
}

/* Moves the caller onto an OS thread added for a blocked call, computes
 * there until that one is told to rest (sysmon: more free workers than
 * NP_PROCS for 100 ms), then starts a thread and joins it.  Whether the
 * caller moved (under nprun -p 1 it does: its own worker is blocked when
 * its sleep ends). */
static int hold[2];
static void *holder(void *arg) {
    (void)arg;
    char c;
    /* Not read(): the shim would park the thread. */
    CHECK(syscall(SYS_read, hold[0], &c, 1) == 1, "raw read: %s", strerror(errno));
    return NULL;
}
static atomic_int started_late;
static void *late(void *arg) {
    atomic_store(&started_late, 1);
    return arg;
}
static int spawn_after_rest(void) {
    st_sleep_ms(300); /* the OS threads the bursts added rest first: ours is one of NP_PROCS */
    CHECK(pipe(hold) == 0, "pipe");
    pid_t os = st_os_tid();
    pthread_t h = st_spawn(holder, NULL);
    st_sleep_ms(50);
    int moved = st_os_tid() != os;
    CHECK(write(hold[1], "x", 1) == 1, "write");
    int64_t until = st_mono_ns() + 400 * 1000000LL; /* busy, not parked: this OS thread goes on running us */
    while (st_mono_ns() < until) {}
    pthread_t t = st_spawn(late, NULL);
    pthread_join(t, NULL);
    CHECK(atomic_load(&started_late), "the thread started last did not run");
    pthread_join(h, NULL);
    close(hold[0]);
    close(hold[1]);
    return moved;
}

int main(void) {
    st_watchdog(60);
    int shim = st_under_shim();
    const char *pe = getenv("NP_PROCS");
    int procs = shim && pe ? atoi(pe) : 0;

    st_phase = "pairs before the burst";
    long rounds;
    int before = run_pairs(&rounds);
    CHECK(rounds > 0, "no ping-pong before the burst");

    st_phase = "the burst";
    int peak;
    int64_t took = burst(&peak);
    /* One after another would take SLEEPERS * SLEEP_MS. */
    CHECK(took < (int64_t)SLEEPERS * SLEEP_MS * 1000000 * 3 / 4, "%d blocked threads took %.0f ms (%d ms each)",
          SLEEPERS, st_ms(took), SLEEP_MS);

    st_phase = "settling";
    st_sleep_ms(500);

    st_phase = "pairs after the burst";
    int after = run_pairs(&rounds);
    CHECK(rounds > 0, "no ping-pong after the burst");
    int left = st_os_threads();

    /* The same burst again: the workers the first one added serve it, so
     * the process has about as many OS threads at its peak as the first
     * time (a sleeper that blocks before sysmon revives a dormant worker
     * may get a new one: 2 of slack; with no reuse it is 7 or 8 more). */
    st_phase = "the second burst";
    int peak2;
    int64_t took2 = burst(&peak2);
    CHECK(took2 < (int64_t)SLEEPERS * SLEEP_MS * 1000000 * 3 / 4, "again: %d blocked threads took %.0f ms",
          SLEEPERS, st_ms(took2));

    st_phase = "a thread started on an OS thread told to rest";
    int moved = spawn_after_rest();
    printf("blocked_burst: %d sleepers in %.0f ms, then %.0f ms; OS threads at the peaks %d and %d, between %d; "
           "OS threads busy with %d pairs: %d before the burst, %d after; moved to another OS thread for the late "
           "start: %s\n",
           SLEEPERS, st_ms(took), st_ms(took2), peak, peak2, left, PAIRS, before, after, moved ? "yes" : "no");
    if (procs > 0) {
        CHECK(before <= procs, "%d OS threads ran the pairs before the burst (NP_PROCS=%d)", before, procs);
        CHECK(after <= procs, "%d OS threads ran the pairs after the burst (NP_PROCS=%d)", after, procs);
        CHECK(peak2 <= peak + 2, "the second burst took %d OS threads, the first %d: the dormant workers were not used",
              peak2, peak);
    }
    return st_finish("blocked_burst");
}
