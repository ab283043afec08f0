/* A program started with standard input and output closed (`prog <&- >&-`,
 * a daemon's children): the descriptors 0 and 1 stay free while it runs
 * threads, as without the library.  Writing to 1 fails with EBADF (not
 * into some internal descriptor), and the next open() gets 0, then 1, as a
 * daemon that reopens /dev/null there expects.  The parent re-executes
 * itself so with both closed, and the child reports through its status;
 * the child does it again after making threads that poll, sleep and wait
 * (whatever the runtime opens by then). */
#include "shim_test.h"
#include <fcntl.h>
#include <poll.h>

static void *sleeper(void *arg)
{
    (void)arg;
    int p[2];
    if (pipe(p) != 0) return NULL;
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    poll(&pf, 1, 20);
    usleep(10 * 1000);
    close(p[0]);
    close(p[1]);
    return NULL;
}

/* The child's checks: its status is the number of failures. */
static int child(void)
{
    int failed = 0;
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, sleeper, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    errno = 0;
    if (write(1, "x", 1) != -1 || errno != EBADF) {
        dprintf(2, "FAILED closed stdout: write(1) gave errno %d (%s), not EBADF\n", errno, strerror(errno));
        failed++;
    }
    errno = 0;
    char c;
    if (read(0, &c, 1) != -1 || errno != EBADF) {
        dprintf(2, "FAILED closed stdin: read(0) gave errno %d (%s), not EBADF\n", errno, strerror(errno));
        failed++;
    }
    int a = open("/dev/null", O_RDONLY), b = open("/dev/null", O_WRONLY);
    if (a != 0 || b != 1) {
        dprintf(2, "FAILED reopening /dev/null: got %d and %d, not 0 and 1\n", a, b);
        failed++;
    }
    /* Threads again with 0 and 1 the program's: still its own. */
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, sleeper, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    if (write(b, "x", 1) != 1) {
        dprintf(2, "FAILED writing the reopened /dev/null: %s\n", strerror(errno));
        failed++;
    }
    return failed;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0) return child();
    st_watchdog(60);
    pid_t p = fork();
    if (p == 0) {
        close(0);
        close(1);
        execl("/proc/self/exe", argv[0], "child", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    CHECK(p > 0 && waitpid(p, &st, 0) == p, "waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child with 0 and 1 closed: status %#x", st);
    printf("closed_stdio: %ld checks, %ld failed\n", atomic_load(&st_checks), atomic_load(&st_failures));
    return atomic_load(&st_failures) ? 1 : 0;
}
