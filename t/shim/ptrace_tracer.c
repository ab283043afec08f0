/* A tracer is an OS thread: the kernel takes ptrace requests only from the
 * thread that attached, or from the parent of a child that asked to be
 * traced (PTRACE_TRACEME), the OS thread that forked it.  gdb forks the
 * program it debugs from its main thread and then reads symbols for a
 * while; a green thread moved to another worker meanwhile and its next
 * PTRACE_GETREGS failed with ESRCH ("Couldn't get registers: No such
 * process").  Here a thread forks a child that asks to be traced, and one
 * it attaches to; blockers then hold their OS threads in calls the shim
 * cannot see (a raw nanosleep), as in migrate.c, while the tracer waits on
 * a pipe between its requests, where it would be moved to another worker.
 * Each request must succeed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "os_tid.h"

enum { kBlockers = 4, kRounds = 5, kReads = kBlockers * kRounds };

static int pipefd[2];
static atomic_int failures;

#define CHECK(c, ...) do { if (!(c)) { atomic_fetch_add(&failures, 1); printf("FAILED %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

static void *blocker(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 30 * 1000 * 1000};
    for (int i = 0; i < kRounds; i++) {
        syscall(SYS_nanosleep, &ts, NULL); /* blocks the OS thread, unseen */
        char c = 'x';
        if (write(pipefd[1], &c, 1) != 1) atomic_fetch_add(&failures, 1);
    }
    return NULL;
}

static long peek_ip(pid_t pid)
{
    errno = 0;
    long v = ptrace(PTRACE_PEEKUSER, pid, (void *)offsetof(struct user_regs_struct,
#if defined(__x86_64__)
                                                            rip
#elif defined(__aarch64__)
                                                            pc
#endif
                                                            ), NULL);
    return errno ? -1 : v;
}

static void *tracer(void *arg)
{
    (void)arg;
    /* A child that asks to be traced: its tracer is the OS thread that forked it. */
    pid_t traced = fork();
    if (traced == 0) {
        ptrace(PTRACE_TRACEME, 0, NULL, NULL);
        raise(SIGSTOP);
        _exit(7);
    }
    /* One attached to. */
    pid_t attached = fork();
    if (attached == 0) {
        for (;;) pause();
    }
    int st;
    CHECK(waitpid(traced, &st, __WALL) == traced && WIFSTOPPED(st), "traced child did not stop: %#x", st);
    CHECK(ptrace(PTRACE_ATTACH, attached, NULL, NULL) == 0, "PTRACE_ATTACH: %s", strerror(errno));
    CHECK(waitpid(attached, &st, __WALL) == attached && WIFSTOPPED(st), "attached child did not stop: %#x", st);

    pthread_t b[kBlockers];
    for (int i = 0; i < kBlockers; i++) pthread_create(&b[i], NULL, blocker, NULL);
    int moves = 0, bad = 0;
    for (int i = 0; i < kReads; i++) {
        pid_t before = st_os_tid();
        char c;
        CHECK(read(pipefd[0], &c, 1) == 1, "read");
        if (st_os_tid() != before) moves++;
        if (peek_ip(traced) == -1 || peek_ip(attached) == -1) {
            if (!bad++) printf("FAILED: PTRACE_PEEKUSER after %d reads, %d moves: %s\n", i + 1, moves, strerror(errno));
        }
    }
    if (bad) atomic_fetch_add(&failures, 1);
    for (int i = 0; i < kBlockers; i++) pthread_join(b[i], NULL);

    /* Where a request failed, the children are killed rather than waited
     * for: they would stay stopped. */
    int cont = ptrace(PTRACE_CONT, traced, NULL, NULL) == 0;
    CHECK(cont, "PTRACE_CONT: %s", strerror(errno));
    if (!cont) kill(traced, SIGKILL);
    CHECK(waitpid(traced, &st, __WALL) == traced && (!cont || (WIFEXITED(st) && WEXITSTATUS(st) == 7)),
          "traced child: %#x", st);
    CHECK(ptrace(PTRACE_DETACH, attached, NULL, NULL) == 0, "PTRACE_DETACH: %s", strerror(errno));
    kill(attached, SIGKILL);
    CHECK(waitpid(attached, &st, __WALL) == attached && WIFSIGNALED(st), "attached child: %#x", st);
    printf("ptrace_tracer: %d requests failed, thread moved %d times\n", bad, moves);
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (pipe(pipefd) != 0) return 1;
    pthread_t t;
    pthread_create(&t, NULL, tracer, NULL);
    pthread_join(t, NULL);
    if (atomic_load(&failures)) return 1;
    printf("ptrace_tracer: ok\n");
    return 0;
}
