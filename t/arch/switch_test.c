/*
 * Self-contained test of the context-switch primitive in src/arch/.
 * Link it directly with the assembly file for the target, e.g.
 *
 *   gcc -std=c11 -O2 t/arch/switch_test.c \
 *       src/arch/switch_x86_64_sysv_elf_gas.S -o switch_test
 *   aarch64-linux-gnu-gcc -std=c11 -O2 -static t/arch/switch_test.c \
 *       src/arch/switch_aarch64_aapcs_elf_gas.S -o switch_test
 *
 * Checks: values passed through switches, ping-pong between main and two
 * contexts, callee-saved registers (integer and, on aarch64, d8-d15) across
 * a switch to a context that clobbers them, per-context FP control state
 * (FPCR on aarch64, MXCSR and the x87 control word on x86-64) including
 * inheritance at creation, 16-byte stack alignment at entry for any
 * stack_top, no writes above stack_top, and unwinding from inside a context
 * stopping cleanly at the trampoline.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unwind.h>

#if !defined(__aarch64__) && !defined(__x86_64__)
#error "switch_test.c: unsupported architecture"
#endif

#define HIDDEN __attribute__((visibility("hidden")))

HIDDEN void *np_ctx_switch(void **from_sp, void *to_sp, void *arg);
HIDDEN void *np_ctx_make(void *stack_top, void (*entry)(void *));
HIDDEN void np_ctx_trampoline(void);
HIDDEN void np_ctx_call_on(void *sp, void (*fn)(void *), void *arg);

/* ------------------------------------------------------------------ */
/* Test bookkeeping                                                    */

static int n_passed, n_failed, cur_errors;

#define EXPECT(cond, ...)                                               \
    do {                                                                \
        if (!(cond)) {                                                  \
            if (cur_errors++ < 8) {                                     \
                fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);       \
                fprintf(stderr, __VA_ARGS__);                           \
                fputc('\n', stderr);                                    \
            }                                                           \
        }                                                               \
    } while (0)

static void run(const char *name, void (*fn)(void))
{
    cur_errors = 0;
    fn();
    if (cur_errors == 0) {
        n_passed++;
        printf("ok   %s\n", name);
    } else {
        n_failed++;
        printf("FAIL %s (%d errors)\n", name, cur_errors);
    }
    fflush(stdout);
}

#define STACK_SIZE (128 * 1024)
static unsigned char stacks[3][STACK_SIZE] __attribute__((aligned(64)));
#define STACK_TOP(i) ((void *)(stacks[i] + STACK_SIZE - 256))

static void *main_sp, *a_sp, *b_sp;

/* ------------------------------------------------------------------ */
/* Per-architecture helpers                                            */

/*
 * void *t_keep_switch(void **from, void *to, void *arg, uint64_t *out,
 *                     uint64_t seed)
 *   Loads known values derived from seed into every callee-saved register,
 *   calls np_ctx_switch(from, to, arg), then stores what the registers hold
 *   afterwards into out[] and returns the switch result.
 *
 * void *t_clobber_switch(void **from, void *to, void *arg)
 *   Like np_ctx_switch, but overwrites every callee-saved register with
 *   junk first (and restores its own caller's values afterwards).
 *
 * t_entry_probe: context entry that records the sp it starts with in
 *   g_entry_sp and tail-calls align_entry.
 */
HIDDEN void *t_keep_switch(void **from, void *to, void *arg, uint64_t *out,
                           uint64_t seed);
HIDDEN void *t_clobber_switch(void **from, void *to, void *arg);
HIDDEN void t_entry_probe(void *arg);
HIDDEN extern uintptr_t g_entry_sp;
HIDDEN void align_entry(void *arg);

#if defined(__aarch64__)

/* out[0..9] x19-x28, out[10..17] d8-d15, out[18] fp, out[19] sp after,
 * out[20] sp before */
#define KEEP_WORDS 21
#define N_INT_REGS 10
#define N_FP_REGS 8

__asm__(
    "        .text\n"
    "        .globl  t_keep_switch\n"
    "        .hidden t_keep_switch\n"
    "        .type   t_keep_switch,%function\n"
    "        .p2align 4\n"
    "t_keep_switch:\n"
    "        stp     x29, x30, [sp, #-176]!\n"
    "        mov     x29, sp\n"
    "        stp     x19, x20, [sp, #16]\n"
    "        stp     x21, x22, [sp, #32]\n"
    "        stp     x23, x24, [sp, #48]\n"
    "        stp     x25, x26, [sp, #64]\n"
    "        stp     x27, x28, [sp, #80]\n"
    "        stp     d8,  d9,  [sp, #96]\n"
    "        stp     d10, d11, [sp, #112]\n"
    "        stp     d12, d13, [sp, #128]\n"
    "        stp     d14, d15, [sp, #144]\n"
    "        str     x3, [sp, #160]\n"
    "        mov     x9, sp\n"
    "        str     x9, [x3, #160]\n"
    "        add     x19, x4, #1\n"
    "        add     x20, x4, #2\n"
    "        add     x21, x4, #3\n"
    "        add     x22, x4, #4\n"
    "        add     x23, x4, #5\n"
    "        add     x24, x4, #6\n"
    "        add     x25, x4, #7\n"
    "        add     x26, x4, #8\n"
    "        add     x27, x4, #9\n"
    "        add     x28, x4, #10\n"
    "        add     x9, x4, #11\n"
    "        fmov    d8, x9\n"
    "        add     x9, x4, #12\n"
    "        fmov    d9, x9\n"
    "        add     x9, x4, #13\n"
    "        fmov    d10, x9\n"
    "        add     x9, x4, #14\n"
    "        fmov    d11, x9\n"
    "        add     x9, x4, #15\n"
    "        fmov    d12, x9\n"
    "        add     x9, x4, #16\n"
    "        fmov    d13, x9\n"
    "        add     x9, x4, #17\n"
    "        fmov    d14, x9\n"
    "        add     x9, x4, #18\n"
    "        fmov    d15, x9\n"
    "        bl      np_ctx_switch\n"
    "        ldr     x9, [sp, #160]\n"
    "        stp     x19, x20, [x9, #0]\n"
    "        stp     x21, x22, [x9, #16]\n"
    "        stp     x23, x24, [x9, #32]\n"
    "        stp     x25, x26, [x9, #48]\n"
    "        stp     x27, x28, [x9, #64]\n"
    "        stp     d8,  d9,  [x9, #80]\n"
    "        stp     d10, d11, [x9, #96]\n"
    "        stp     d12, d13, [x9, #112]\n"
    "        stp     d14, d15, [x9, #128]\n"
    "        mov     x10, sp\n"
    "        stp     x29, x10, [x9, #144]\n"
    "        ldp     x19, x20, [sp, #16]\n"
    "        ldp     x21, x22, [sp, #32]\n"
    "        ldp     x23, x24, [sp, #48]\n"
    "        ldp     x25, x26, [sp, #64]\n"
    "        ldp     x27, x28, [sp, #80]\n"
    "        ldp     d8,  d9,  [sp, #96]\n"
    "        ldp     d10, d11, [sp, #112]\n"
    "        ldp     d12, d13, [sp, #128]\n"
    "        ldp     d14, d15, [sp, #144]\n"
    "        ldp     x29, x30, [sp], #176\n"
    "        ret\n"
    "        .size   t_keep_switch,.-t_keep_switch\n"
    "\n"
    "        .globl  t_clobber_switch\n"
    "        .hidden t_clobber_switch\n"
    "        .type   t_clobber_switch,%function\n"
    "        .p2align 4\n"
    "t_clobber_switch:\n"
    "        stp     x29, x30, [sp, #-160]!\n"
    "        mov     x29, sp\n"
    "        stp     x19, x20, [sp, #16]\n"
    "        stp     x21, x22, [sp, #32]\n"
    "        stp     x23, x24, [sp, #48]\n"
    "        stp     x25, x26, [sp, #64]\n"
    "        stp     x27, x28, [sp, #80]\n"
    "        stp     d8,  d9,  [sp, #96]\n"
    "        stp     d10, d11, [sp, #112]\n"
    "        stp     d12, d13, [sp, #128]\n"
    "        stp     d14, d15, [sp, #144]\n"
    "        mov     x19, #-1\n"
    "        mov     x20, #-2\n"
    "        mov     x21, #-3\n"
    "        mov     x22, #-4\n"
    "        mov     x23, #-5\n"
    "        mov     x24, #-6\n"
    "        mov     x25, #-7\n"
    "        mov     x26, #-8\n"
    "        mov     x27, #-9\n"
    "        mov     x28, #-10\n"
    "        fmov    d8,  x19\n"
    "        fmov    d9,  x20\n"
    "        fmov    d10, x21\n"
    "        fmov    d11, x22\n"
    "        fmov    d12, x23\n"
    "        fmov    d13, x24\n"
    "        fmov    d14, x25\n"
    "        fmov    d15, x26\n"
    "        mov     x29, #-11\n"
    "        bl      np_ctx_switch\n"
    "        ldp     x19, x20, [sp, #16]\n"
    "        ldp     x21, x22, [sp, #32]\n"
    "        ldp     x23, x24, [sp, #48]\n"
    "        ldp     x25, x26, [sp, #64]\n"
    "        ldp     x27, x28, [sp, #80]\n"
    "        ldp     d8,  d9,  [sp, #96]\n"
    "        ldp     d10, d11, [sp, #112]\n"
    "        ldp     d12, d13, [sp, #128]\n"
    "        ldp     d14, d15, [sp, #144]\n"
    "        ldp     x29, x30, [sp], #160\n"
    "        ret\n"
    "        .size   t_clobber_switch,.-t_clobber_switch\n"
    "\n"
    "        .globl  t_entry_probe\n"
    "        .hidden t_entry_probe\n"
    "        .type   t_entry_probe,%function\n"
    "        .p2align 4\n"
    "t_entry_probe:\n"
    "        mov     x9, sp\n"
    "        adrp    x10, g_entry_sp\n"
    "        str     x9, [x10, #:lo12:g_entry_sp]\n"
    "        b       align_entry\n"
    "        .size   t_entry_probe,.-t_entry_probe\n");

/* FP control state: FPCR.  RMode is bits 22-23 (0 nearest, 1 +inf,
 * 2 -inf, 3 zero), FZ bit 24, DN bit 25. */
static uint64_t fpctl_get(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    return v;
}

static void fpctl_set(uint64_t v)
{
    __asm__ volatile("msr fpcr, %0" : : "r"(v));
}

#define FPCTL_MASK (~(uint64_t)0)

/* mode k: 0 nearest, 1 upward, 2 downward, 3 toward zero, plus flag bits
 * that differ from mode to mode. */
static uint64_t fpctl_mode(uint64_t base, int k)
{
    uint64_t v = base & ~((UINT64_C(3) << 22) | (UINT64_C(1) << 24) |
                          (UINT64_C(1) << 25));
    v |= (uint64_t)k << 22;
    if (k & 1)
        v |= UINT64_C(1) << 24;
    if (k & 2)
        v |= UINT64_C(1) << 25;
    return v;
}

/* sp at entry to a function must be 16-byte aligned */
#define ENTRY_SP_OK(sp) (((sp) & 15) == 0)

#elif defined(__x86_64__)

/* out[0..5] rbx rbp r12-r15, out[6] sp before, out[7] sp after */
#define KEEP_WORDS 8
#define N_INT_REGS 6
#define N_FP_REGS 0

__asm__(
    "        .text\n"
    "        .globl  t_keep_switch\n"
    "        .hidden t_keep_switch\n"
    "        .type   t_keep_switch,@function\n"
    "        .p2align 4\n"
    "t_keep_switch:\n"
    "        pushq   %rbp\n"
    "        pushq   %rbx\n"
    "        pushq   %r12\n"
    "        pushq   %r13\n"
    "        pushq   %r14\n"
    "        pushq   %r15\n"
    "        pushq   %rcx\n"
    "        movq    %rsp, 48(%rcx)\n"
    "        leaq    1(%r8), %rbx\n"
    "        leaq    2(%r8), %rbp\n"
    "        leaq    3(%r8), %r12\n"
    "        leaq    4(%r8), %r13\n"
    "        leaq    5(%r8), %r14\n"
    "        leaq    6(%r8), %r15\n"
    "        call    np_ctx_switch\n"
    "        movq    (%rsp), %rcx\n"
    "        movq    %rbx, 0(%rcx)\n"
    "        movq    %rbp, 8(%rcx)\n"
    "        movq    %r12, 16(%rcx)\n"
    "        movq    %r13, 24(%rcx)\n"
    "        movq    %r14, 32(%rcx)\n"
    "        movq    %r15, 40(%rcx)\n"
    "        movq    %rsp, 56(%rcx)\n"
    "        popq    %rcx\n"
    "        popq    %r15\n"
    "        popq    %r14\n"
    "        popq    %r13\n"
    "        popq    %r12\n"
    "        popq    %rbx\n"
    "        popq    %rbp\n"
    "        ret\n"
    "        .size   t_keep_switch,.-t_keep_switch\n"
    "\n"
    "        .globl  t_clobber_switch\n"
    "        .hidden t_clobber_switch\n"
    "        .type   t_clobber_switch,@function\n"
    "        .p2align 4\n"
    "t_clobber_switch:\n"
    "        pushq   %rbp\n"
    "        pushq   %rbx\n"
    "        pushq   %r12\n"
    "        pushq   %r13\n"
    "        pushq   %r14\n"
    "        pushq   %r15\n"
    "        subq    $8, %rsp\n"
    "        movq    $-1, %rbx\n"
    "        movq    $-2, %rbp\n"
    "        movq    $-3, %r12\n"
    "        movq    $-4, %r13\n"
    "        movq    $-5, %r14\n"
    "        movq    $-6, %r15\n"
    "        call    np_ctx_switch\n"
    "        addq    $8, %rsp\n"
    "        popq    %r15\n"
    "        popq    %r14\n"
    "        popq    %r13\n"
    "        popq    %r12\n"
    "        popq    %rbx\n"
    "        popq    %rbp\n"
    "        ret\n"
    "        .size   t_clobber_switch,.-t_clobber_switch\n"
    "\n"
    "        .globl  t_entry_probe\n"
    "        .hidden t_entry_probe\n"
    "        .type   t_entry_probe,@function\n"
    "        .p2align 4\n"
    "t_entry_probe:\n"
    "        movq    %rsp, g_entry_sp(%rip)\n"
    "        jmp     align_entry\n"
    "        .size   t_entry_probe,.-t_entry_probe\n");

/* FP control state: MXCSR in the low 32 bits, x87 control word above.
 * MXCSR: RC bits 13-14 (0 nearest, 1 down, 2 up, 3 zero), FTZ bit 15,
 * DAZ bit 6, status flags bits 0-5.  x87 CW: RC bits 10-11 (same
 * encoding), precision control bits 8-9. */
static uint64_t fpctl_get(void)
{
    uint32_t mxcsr;
    uint16_t cw;
    __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(cw));
    return mxcsr | ((uint64_t)cw << 32);
}

static void fpctl_set(uint64_t v)
{
    uint32_t mxcsr = (uint32_t)v;
    uint16_t cw = (uint16_t)(v >> 32);
    __asm__ volatile("ldmxcsr %0\n\tfldcw %1" : : "m"(mxcsr), "m"(cw));
}

/* MXCSR status flags change as a side effect of arithmetic. */
#define FPCTL_MASK (~(uint64_t)0x3f)

static uint64_t fpctl_mode(uint64_t base, int k)
{
    static const unsigned rc[4] = {0, 2, 1, 3};  /* near, up, down, zero */
    static const unsigned pc[4] = {3, 2, 0, 3};  /* ext, double, single */
    uint32_t mxcsr = (uint32_t)base;
    uint16_t cw = (uint16_t)(base >> 32);

    mxcsr &= ~((3u << 13) | (1u << 15) | (1u << 6));
    mxcsr |= rc[k] << 13;
    if (k & 1)
        mxcsr |= 1u << 15;
    if (k & 2)
        mxcsr |= 1u << 6;
    cw &= (uint16_t)~((3u << 10) | (3u << 8));
    cw |= (uint16_t)((rc[k] << 10) | (pc[k] << 8));
    return mxcsr | ((uint64_t)cw << 32);
}

/* sp at entry to a function is 8 past a 16-byte boundary (return address) */
#define ENTRY_SP_OK(sp) ((((sp) + 8) & 15) == 0)

#endif

/* ------------------------------------------------------------------ */
/* 1. First switch delivers arg to entry; values round-trip.           */

static void *first_arg_seen;

static void first_entry(void *arg)
{
    first_arg_seen = arg;
    void *v = np_ctx_switch(&a_sp, main_sp, (void *)0x1234);
    for (;;)
        v = np_ctx_switch(&a_sp, main_sp, (void *)((uintptr_t)v + 1));
}

static void test_first_switch(void)
{
    static int token;
    a_sp = np_ctx_make(STACK_TOP(0), first_entry);
    void *r = np_ctx_switch(&main_sp, a_sp, &token);
    EXPECT(first_arg_seen == &token, "entry got %p, expected %p",
           first_arg_seen, (void *)&token);
    EXPECT(r == (void *)0x1234, "main got %p, expected 0x1234", r);
    for (uintptr_t i = 0; i < 1000; i++) {
        r = np_ctx_switch(&main_sp, a_sp, (void *)i);
        EXPECT((uintptr_t)r == i + 1, "round trip %lu gave %lu",
               (unsigned long)i, (unsigned long)(uintptr_t)r);
    }
}

/* ------------------------------------------------------------------ */
/* 2. Ping-pong main -> A -> B -> main, with state kept in locals.     */

#define PINGPONG_ROUNDS 100000

static void pp_a(void *arg)
{
    uintptr_t expect = 0, local = 0;
    uintptr_t v = (uintptr_t)arg;
    for (;;) {
        EXPECT(v == expect, "A got %lu, expected %lu", (unsigned long)v,
               (unsigned long)expect);
        local += v;
        expect = v + 1;
        v = (uintptr_t)np_ctx_switch(&a_sp, b_sp, (void *)(v + 1));
        EXPECT(local == v * (v - 1) / 2, "A local state lost at %lu",
               (unsigned long)v);
    }
}

static void pp_b(void *arg)
{
    uintptr_t v = (uintptr_t)arg, rounds = 0;
    for (;;) {
        rounds++;
        EXPECT(v == rounds, "B got %lu, expected %lu", (unsigned long)v,
               (unsigned long)rounds);
        v = (uintptr_t)np_ctx_switch(&b_sp, main_sp, (void *)(v * 2));
    }
}

static void test_pingpong(void)
{
    a_sp = np_ctx_make(STACK_TOP(0), pp_a);
    b_sp = np_ctx_make(STACK_TOP(1), pp_b);
    for (uintptr_t i = 0; i < PINGPONG_ROUNDS; i++) {
        uintptr_t r = (uintptr_t)np_ctx_switch(&main_sp, a_sp, (void *)i);
        EXPECT(r == (i + 1) * 2, "round %lu: main got %lu",
               (unsigned long)i, (unsigned long)r);
    }
}

/* ------------------------------------------------------------------ */
/* 3. Callee-saved registers survive a switch to a clobbering context. */

#define REG_ROUNDS 1000

static int reg_mode;          /* 0: context clobbers, 1: context keeps */
static uint64_t ctx_seed;

static void check_keep(const uint64_t *out, uint64_t seed, const char *who)
{
    for (int i = 0; i < N_INT_REGS + N_FP_REGS; i++)
        EXPECT(out[i] == seed + 1 + (uint64_t)i,
               "%s: callee-saved %s register %d is %#llx, expected %#llx",
               who, i < N_INT_REGS ? "integer" : "fp",
               i < N_INT_REGS ? i : i - N_INT_REGS,
               (unsigned long long)out[i],
               (unsigned long long)(seed + 1 + (uint64_t)i));
#if defined(__aarch64__)
    EXPECT(out[18] == out[20], "%s: fp %#llx, expected %#llx", who,
           (unsigned long long)out[18], (unsigned long long)out[20]);
    EXPECT(out[19] == out[20], "%s: sp %#llx, expected %#llx", who,
           (unsigned long long)out[19], (unsigned long long)out[20]);
#else
    EXPECT(out[6] == out[7], "%s: sp %#llx, expected %#llx", who,
           (unsigned long long)out[7], (unsigned long long)out[6]);
#endif
}

static void reg_entry(void *arg)
{
    (void)arg;
    for (;;) {
        if (reg_mode == 0) {
            t_clobber_switch(&a_sp, main_sp, NULL);
        } else {
            uint64_t out[KEEP_WORDS];
            uint64_t seed = ctx_seed += 0x1000;
            t_keep_switch(&a_sp, main_sp, NULL, out, seed);
            check_keep(out, seed, "context");
        }
    }
}

static void test_callee_saved(void)
{
    uint64_t out[KEEP_WORDS];
    reg_mode = 0;
    a_sp = np_ctx_make(STACK_TOP(0), reg_entry);
    for (int i = 0; i < REG_ROUNDS; i++) {
        uint64_t seed = UINT64_C(0x5eed000000000000) + (uint64_t)i * 0x100;
        void *r = t_keep_switch(&main_sp, a_sp, (void *)(uintptr_t)i, out,
                                seed);
        EXPECT(r == NULL, "main got %p from the clobbering side", r);
        check_keep(out, seed, "main");
    }
    /* Now the context keeps values while main clobbers. */
    reg_mode = 1;
    ctx_seed = UINT64_C(0xc0de000000000000);
    for (int i = 0; i < REG_ROUNDS + 1; i++)
        t_clobber_switch(&main_sp, a_sp, NULL);
}

/* ------------------------------------------------------------------ */
/* 4. FP control state is per context and inherited at creation.       */

#define FP_ROUNDS 1000

static uint64_t fp_base;
static uint64_t fp_expect[3];        /* per party: main, A, B */
static double fp_ref[4];             /* 1/3 in each rounding mode */

static double __attribute__((noinline)) third(void)
{
    volatile double one = 1.0, three = 3.0;
    double r = one / three;
    volatile double keep = r;
    return keep;
}

static void fp_check(int party, int round, const char *when)
{
    static const char *names[3] = {"main", "A", "B"};
    uint64_t got = fpctl_get();
    EXPECT((got & FPCTL_MASK) == (fp_expect[party] & FPCTL_MASK),
           "%s, round %d, %s: FP control %#llx, expected %#llx",
           names[party], round, when, (unsigned long long)got,
           (unsigned long long)fp_expect[party]);
    for (int k = 0; k < 4; k++) {
        if ((fp_expect[party] & FPCTL_MASK) ==
            (fpctl_mode(fp_base, k) & FPCTL_MASK)) {
            double r = third();
            EXPECT(r == fp_ref[k], "%s, round %d, %s: 1/3 = %a, expected %a",
                   names[party], round, when, r, fp_ref[k]);
        }
    }
}

/* Each party checks its own mode survived, then picks a new one that
 * differs from what the other two are using this round. */
static void fp_step(int party, int round)
{
    fp_check(party, round, "resumed");
    fp_expect[party] = fpctl_mode(fp_base, (round + party) % 4);
    fpctl_set(fp_expect[party]);
    fp_check(party, round, "after set");
}

static void fp_a(void *arg)
{
    (void)arg;
    fp_check(1, -1, "at entry (inherited)");
    for (int round = 0;; round++) {
        fp_step(1, round);
        np_ctx_switch(&a_sp, b_sp, NULL);
    }
}

static void fp_b(void *arg)
{
    (void)arg;
    fp_check(2, -1, "at entry (inherited)");
    for (int round = 0;; round++) {
        fp_step(2, round);
        np_ctx_switch(&b_sp, main_sp, NULL);
    }
}

static void test_fp_control(void)
{
    fp_base = fpctl_get();
    for (int k = 0; k < 4; k++) {
        fpctl_set(fpctl_mode(fp_base, k));
        fp_ref[k] = third();
        fpctl_set(fp_base);
    }
    EXPECT(fp_ref[1] > fp_ref[2], "upward 1/3 %a not above downward %a",
           fp_ref[1], fp_ref[2]);

    /* A is created in upward mode, B in downward mode. */
    fp_expect[1] = fpctl_mode(fp_base, 1);
    fpctl_set(fp_expect[1]);
    a_sp = np_ctx_make(STACK_TOP(0), fp_a);
    fp_expect[2] = fpctl_mode(fp_base, 2);
    fpctl_set(fp_expect[2]);
    b_sp = np_ctx_make(STACK_TOP(1), fp_b);
    fp_expect[0] = fp_base;
    fpctl_set(fp_base);

    for (int round = 0; round < FP_ROUNDS; round++) {
        fp_step(0, round);
        np_ctx_switch(&main_sp, a_sp, NULL);
    }
    fp_check(0, FP_ROUNDS, "at end");
    fpctl_set(fp_base);
}

/* ------------------------------------------------------------------ */
/* 5. Entry sp is ABI-aligned for any stack_top; nothing written above. */

HIDDEN uintptr_t g_entry_sp;

HIDDEN void align_entry(void *arg)
{
    for (;;)
        arg = np_ctx_switch(&a_sp, main_sp, arg);
}

static void test_alignment(void)
{
    unsigned char *base = (unsigned char *)STACK_TOP(2);
    for (int off = 0; off < 32; off++) {
        unsigned char *top = base - off;
        memset(top - 512, 0, 512);
        memset(top, 0xa5, 64);
        g_entry_sp = 0;
        void *sp = np_ctx_make(top, t_entry_probe);
        EXPECT((uintptr_t)sp < (uintptr_t)top,
               "off %d: np_ctx_make returned %p above top %p", off, sp,
               (void *)top);
        EXPECT(((uintptr_t)sp & 15) == 0, "off %d: saved sp %p unaligned",
               off, sp);
        a_sp = sp;
        void *r = np_ctx_switch(&main_sp, a_sp, (void *)(uintptr_t)off);
        EXPECT(r == (void *)(uintptr_t)off, "off %d: got %p back", off, r);
        EXPECT(ENTRY_SP_OK(g_entry_sp), "off %d: entry sp %#lx misaligned",
               off, (unsigned long)g_entry_sp);
        EXPECT(g_entry_sp <= (uintptr_t)top &&
                   (uintptr_t)top - g_entry_sp <= 32,
               "off %d: entry sp %#lx not just below top %p", off,
               (unsigned long)g_entry_sp, (void *)top);
        for (int i = 0; i < 64; i++)
            if (top[i] != 0xa5) {
                EXPECT(0, "off %d: byte %d above stack_top overwritten", off,
                       i);
                break;
            }
    }
}

/* ------------------------------------------------------------------ */
/* 6. Unwinding from inside a context ends at the trampoline.          */

struct unwind_state {
    int frames;
    uintptr_t last_ip;
};

static _Unwind_Reason_Code unwind_cb(struct _Unwind_Context *ctx, void *p)
{
    struct unwind_state *st = p;
    uintptr_t ip = (uintptr_t)_Unwind_GetIP(ctx);
    if (ip != 0) {
        st->frames++;
        st->last_ip = ip;
    }
    return st->frames > 64 ? _URC_END_OF_STACK : _URC_NO_REASON;
}

static _Unwind_Reason_Code unwind_rc;
static struct unwind_state unwind_st;

static void __attribute__((noinline)) unwind_probe(void)
{
    unwind_rc = _Unwind_Backtrace(unwind_cb, &unwind_st);
    __asm__ volatile("" ::: "memory");
}

static void unwind_entry(void *arg)
{
    (void)arg;
    unwind_probe();
    for (;;)
        np_ctx_switch(&a_sp, main_sp, NULL);
}

static void test_unwind(void)
{
    /* Junk above stack_top, so that an unwinder that does not stop at the
     * trampoline finds a bogus return address there rather than zero. */
    memset(STACK_TOP(0), 0x41, 256);
    a_sp = np_ctx_make(STACK_TOP(0), unwind_entry);
    np_ctx_switch(&main_sp, a_sp, NULL);
    uintptr_t tramp = (uintptr_t)&np_ctx_trampoline;
    EXPECT(unwind_rc == _URC_END_OF_STACK, "_Unwind_Backtrace returned %d",
           (int)unwind_rc);
    EXPECT(unwind_st.frames >= 2 && unwind_st.frames <= 8,
           "%d frames in a context", unwind_st.frames);
    EXPECT(unwind_st.last_ip > tramp && unwind_st.last_ip - tramp <= 32,
           "outermost frame ip %#lx is not in the trampoline (%#lx)",
           (unsigned long)unwind_st.last_ip, (unsigned long)tramp);
}

/* ------------------------------------------------------------------ */

/* np_ctx_call_on: fn runs on the other stack, aligned, gets its arg, and
 * the caller's frame is intact afterwards; unwinding from fn reaches the
 * caller. */
static uintptr_t call_sp;
static int call_frames;
static _Unwind_Reason_Code count_frame(struct _Unwind_Context *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    call_frames++;
    return _URC_NO_REASON;
}
static void __attribute__((noinline)) on_other(void *arg)
{
    volatile char probe;
    call_sp = (uintptr_t)&probe;
    *(int *)arg += 41;
    call_frames = 0;
    _Unwind_Backtrace(count_frame, NULL);
}

static void test_call_on(void)
{
    for (int misalign = 0; misalign < 16; misalign += 3) {
        volatile uint64_t guard[4] = {1, 2, 3, 4};
        int v = 1;
        unsigned char *top = stacks[2] + STACK_SIZE - 512 + misalign;
        np_ctx_call_on(top, on_other, &v);
        EXPECT(v == 42, "fn got its arg (v=%d)", v);
        EXPECT(call_sp < (uintptr_t)top && call_sp > (uintptr_t)stacks[2],
               "fn ran on the other stack (sp %#lx)", (unsigned long)call_sp);
        EXPECT(guard[0] == 1 && guard[1] == 2 && guard[2] == 3 && guard[3] == 4,
               "the caller's frame survived");
        /* on_other, np_ctx_call_on, test_call_on, run, main: at least 4 */
        EXPECT(call_frames >= 4, "unwinding stopped after %d frames", call_frames);
    }
}

int main(void)
{
    run("first switch delivers arg, values round-trip", test_first_switch);
    run("ping-pong main -> A -> B -> main", test_pingpong);
    run("callee-saved registers survive switches", test_callee_saved);
    run("FP control state is per context", test_fp_control);
    run("entry stack alignment, nothing written above stack_top",
        test_alignment);
    run("unwinding stops at the trampoline", test_unwind);
    run("a call on another stack comes back", test_call_on);
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed != 0;
}
