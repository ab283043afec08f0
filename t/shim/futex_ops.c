/* futex_ops: the futex operations besides FUTEX_WAIT and FUTEX_WAKE,
 * through syscall(SYS_futex), on threads parked in the library.
 *
 *   wake-op   FUTEX_WAKE_OP as Qt 5's QSemaphore::release makes it: the
 *             waiter on the first word is woken; the operation is made on
 *             the second word; a waiter there is woken when the comparison
 *             holds, and left waiting when it does not
 *   requeue   FUTEX_CMP_REQUEUE: one waiter woken, the rest moved to the
 *             second word and woken there (each returns); a value that no
 *             longer matches fails with EAGAIN
 *   shared    a word in MAP_SHARED memory (no FUTEX_PRIVATE_FLAG), 200
 *             round trips with a forked child, and between two forked
 *             children: a wake from the other process ends a wait at once,
 *             not at a periodic look */
#include <limits.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "shim_test.h"

static long futex(uint32_t *w, int op, uint32_t val, const struct timespec *ts, uint32_t *w2, uint32_t val3)
{
    return syscall(SYS_futex, w, op, val, ts, w2, val3);
}

struct fw {
    uint32_t *word;
    uint32_t until; /* waits while *word is not this */
    atomic_int in, woken;
};

/* Waits on *word while it is 0, up to 3 s; woken = 1 if it became nonzero. */
static void *fw_body(void *arg)
{
    struct fw *f = arg;
    int64_t end = st_mono_ns() + 3000000000LL;
    atomic_store(&f->in, 1);
    while (__atomic_load_n(f->word, __ATOMIC_ACQUIRE) == 0 && st_mono_ns() < end) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        futex(f->word, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
    }
    atomic_store(&f->woken, __atomic_load_n(f->word, __ATOMIC_ACQUIRE) != 0);
    return NULL;
}

/* ------------------------------------------------------------- wake-op -- */

static uint32_t wo[2];

static void test_wake_op(void)
{
    for (int holds = 1; holds >= 0; holds--) {
        wo[0] = 0;
        wo[1] = holds ? 0x80000000u : 0; /* the operation clears bit 31; NE 0 on the old value */
        struct fw a = {&wo[0], 0, 0, 0};
        pthread_t ta = st_spawn(fw_body, &a);
        while (!atomic_load(&a.in)) st_sleep_ms(1);
        st_sleep_ms(30);
        /* a waiter on the second word that waits for the first one's
         * value to change: woken only by the second wake */
        uint32_t before = wo[1];
        long t0 = st_mono_ms();
        __atomic_store_n(&wo[0], 1, __ATOMIC_RELEASE);
        long r = futex(&wo[0], FUTEX_WAKE_OP_PRIVATE, 1, (const struct timespec *)(long)INT_MAX, &wo[1],
                       FUTEX_OP((FUTEX_OP_ANDN | FUTEX_OP_OPARG_SHIFT), 31, FUTEX_OP_CMP_NE, 0));
        pthread_join(ta, NULL);
        CHECK(r >= 0, "FUTEX_WAKE_OP: %s", strerror(errno));
        CHECK(atomic_load(&a.woken) && st_mono_ms() - t0 < 150, "the waiter on the first word was %s",
              atomic_load(&a.woken) ? "woken late (at its own timeout)" : "never woken");
        CHECK(wo[1] == (before & ~0x80000000u), "the second word is %#x after ANDN of bit 31 on %#x", wo[1], before);
    }
    /* the second word's waiter: woken when the comparison holds */
    for (int holds = 1; holds >= 0; holds--) {
        wo[0] = 5;
        wo[1] = 0;
        uint32_t cmp_old = holds ? 0 : 7; /* EQ cmparg: the old value of wo[1] is 0 */
        struct fw b = {&wo[1], 0, 0, 0};
        pthread_t tb = st_spawn(fw_body, &b);
        while (!atomic_load(&b.in)) st_sleep_ms(1);
        st_sleep_ms(30);
        long t0 = st_mono_ms();
        /* SET wo[1] = 1, compare its old value EQ cmp_old */
        long r = futex(&wo[0], FUTEX_WAKE_OP_PRIVATE, 1, (const struct timespec *)(long)INT_MAX, &wo[1],
                       FUTEX_OP(FUTEX_OP_SET, 1, FUTEX_OP_CMP_EQ, (int)cmp_old));
        CHECK(r >= 0, "FUTEX_WAKE_OP: %s", strerror(errno));
        st_sleep_ms(50);
        long waited = st_mono_ms() - t0;
        int woken_soon = atomic_load(&b.woken);
        CHECK(holds ? woken_soon : !woken_soon, "comparison %s: the second word's waiter was %s within %ld ms",
              holds ? "holds" : "fails", woken_soon ? "woken" : "not woken", waited);
        pthread_join(tb, NULL); /* it sees 1 at its own 200 ms look when not woken */
    }
}

/* ------------------------------------------------------------- requeue -- */

static uint32_t rq[2];

static void test_requeue(void)
{
    struct fw f[4];
    pthread_t t[4];
    rq[0] = rq[1] = 0;
    for (int i = 0; i < 4; i++) {
        f[i] = (struct fw){&rq[0], 0, 0, 0};
        t[i] = st_spawn(fw_body, &f[i]);
    }
    for (int i = 0; i < 4; i++)
        while (!atomic_load(&f[i].in)) st_sleep_ms(1);
    st_sleep_ms(30);
    errno = 0;
    long bad = futex(&rq[0], FUTEX_CMP_REQUEUE_PRIVATE, 1, (const struct timespec *)(long)INT_MAX, &rq[1], 99);
    CHECK(bad == -1 && errno == EAGAIN, "FUTEX_CMP_REQUEUE with a stale value: %ld (%s), want EAGAIN", bad,
          strerror(errno));
    long t0 = st_mono_ms();
    __atomic_store_n(&rq[0], 1, __ATOMIC_RELEASE);
    long r = futex(&rq[0], FUTEX_CMP_REQUEUE_PRIVATE, 1, (const struct timespec *)(long)INT_MAX, &rq[1], 1);
    futex(&rq[1], FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    long took = st_mono_ms() - t0;
    int woken = 0;
    for (int i = 0; i < 4; i++) woken += atomic_load(&f[i].woken);
    CHECK(r >= 1 && woken == 4 && took < 150, "FUTEX_CMP_REQUEUE: returned %ld, %d of 4 waiters back in %ld ms "
          "(want all, before their own 200 ms look)", r, woken, took);
}

/* -------------------------------------------------------------- shared -- */

enum { kRounds = 200 };

static void wait_for(uint32_t *w, uint32_t want)
{
    uint32_t v;
    while ((v = __atomic_load_n(w, __ATOMIC_ACQUIRE)) != want) futex(w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void set_wake(uint32_t *w, uint32_t v)
{
    __atomic_store_n(w, v, __ATOMIC_RELEASE);
    futex(w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void play(uint32_t *w, uint32_t first)
{
    for (uint32_t i = first; i < 2 * kRounds; i += 2) {
        wait_for(w, i);
        set_wake(w, i + 1);
    }
}

static void test_shared(void)
{
    uint32_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(w != MAP_FAILED, "mmap: %s", strerror(errno));
    if (w == MAP_FAILED) return;
    for (int kids = 0; kids < 2; kids++) {
        *w = 0;
        long t0 = st_mono_ms();
        pid_t c = fork();
        if (c == 0) {
            alarm(30);
            play(w, 1);
            _exit(0);
        }
        pid_t d = kids ? fork() : 0;
        if (d == 0) {
            if (kids) alarm(30);
            play(w, 0);
            wait_for(w, 2 * kRounds);
            if (kids) _exit(0);
        }
        int st = st_wait_status(c);
        if (kids) st |= st_wait_status(d);
        long ms = st_mono_ms() - t0;
        CHECK(st == 0, "%s: a process failed", kids ? "two children" : "parent and child");
        /* plain: a few ms; waits that end only at a 10 ms look: 2 s */
        CHECK(ms < 1000, "%s: %d round trips through a shared futex took %ld ms", kids ? "two children"
              : "parent and child", kRounds, ms);
    }
    munmap(w, 4096);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(120);
    static const struct st_test tests[] = {
        {"wake-op", test_wake_op},
        {"requeue", test_requeue},
        {"shared", test_shared},
    };
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("futex_ops");
}
