/*
 * Context switch for AArch64, AAPCS64, ELF, GNU as.
 *
 * void *np_ctx_switch(void **from_sp, void *to_sp, void *arg)
 *   Saves the callee-saved state of the caller on its own stack, stores the
 *   stack pointer in *from_sp, loads to_sp and restores the state saved
 *   there.  Returns arg to the resumed side (in x0).
 *
 * void *np_ctx_make(void *stack_top, void (*entry)(void *arg))
 *   Builds a frame on a fresh stack that np_ctx_switch can resume: the
 *   first switch into it calls entry(arg).  entry must never return.
 *
 * Saved frame (low address first; sp points at offset 0, size 0xb0,
 * so sp stays 16-byte aligned):
 *   0x00  d8         0x40  x19        0x80  x27
 *   0x08  d9         0x48  x20        0x88  x28
 *   0x10  d10        0x50  x21        0x90  x29 (fp)
 *   0x18  d11        0x58  x22        0x98  x30 (lr, resume address)
 *   0x20  d12        0x60  x23        0xa0  FPCR
 *   0x28  d13        0x68  x24        0xa8  pad
 *   0x30  d14        0x70  x25
 *   0x38  d15        0x78  x26
 */
        .text
        .globl  np_ctx_switch
        .hidden np_ctx_switch
        .type   np_ctx_switch,%function
        .p2align 4
np_ctx_switch:
        .cfi_startproc
        sub     sp, sp, #0xb0           /* room for the saved frame */
        .cfi_def_cfa_offset 0xb0
        stp     d8,  d9,  [sp, #0x00]   /* callee-saved FP (low 64 bits) */
        .cfi_offset d8,  -0xb0
        .cfi_offset d9,  -0xa8
        stp     d10, d11, [sp, #0x10]
        .cfi_offset d10, -0xa0
        .cfi_offset d11, -0x98
        stp     d12, d13, [sp, #0x20]
        .cfi_offset d12, -0x90
        .cfi_offset d13, -0x88
        stp     d14, d15, [sp, #0x30]
        .cfi_offset d14, -0x80
        .cfi_offset d15, -0x78
        stp     x19, x20, [sp, #0x40]   /* callee-saved integer */
        .cfi_offset x19, -0x70
        .cfi_offset x20, -0x68
        stp     x21, x22, [sp, #0x50]
        .cfi_offset x21, -0x60
        .cfi_offset x22, -0x58
        stp     x23, x24, [sp, #0x60]
        .cfi_offset x23, -0x50
        .cfi_offset x24, -0x48
        stp     x25, x26, [sp, #0x70]
        .cfi_offset x25, -0x40
        .cfi_offset x26, -0x38
        stp     x27, x28, [sp, #0x80]
        .cfi_offset x27, -0x30
        .cfi_offset x28, -0x28
        stp     x29, x30, [sp, #0x90]   /* frame pointer, return address */
        .cfi_offset x29, -0x20
        .cfi_offset x30, -0x18
        mrs     x9, fpcr                /* rounding mode, FZ, DN, ... */
        str     x9, [sp, #0xa0]
        mov     x10, sp
        str     x10, [x0]               /* *from_sp = sp */
        mov     sp, x1                  /* switch stacks */
        ldr     x10, [sp, #0xa0]        /* FPCR of the resumed side */
        cmp     x9, x10
        b.eq    1f                      /* unchanged: skip the costly write */
        msr     fpcr, x10
1:
        ldp     d8,  d9,  [sp, #0x00]   /* callee-saved FP (low 64 bits) */
        ldp     d10, d11, [sp, #0x10]
        ldp     d12, d13, [sp, #0x20]
        ldp     d14, d15, [sp, #0x30]
        ldp     x19, x20, [sp, #0x40]   /* callee-saved integer */
        ldp     x21, x22, [sp, #0x50]
        ldp     x23, x24, [sp, #0x60]
        ldp     x25, x26, [sp, #0x70]
        ldp     x27, x28, [sp, #0x80]
        ldp     x29, x30, [sp, #0x90]   /* frame pointer, resume address */
        add     sp, sp, #0xb0           /* drop the frame */
        .cfi_def_cfa_offset 0
        .cfi_restore d8
        .cfi_restore d9
        .cfi_restore d10
        .cfi_restore d11
        .cfi_restore d12
        .cfi_restore d13
        .cfi_restore d14
        .cfi_restore d15
        .cfi_restore x19
        .cfi_restore x20
        .cfi_restore x21
        .cfi_restore x22
        .cfi_restore x23
        .cfi_restore x24
        .cfi_restore x25
        .cfi_restore x26
        .cfi_restore x27
        .cfi_restore x28
        .cfi_restore x29
        .cfi_restore x30
        mov     x0, x2                  /* hand arg to the resumed side */
        ret
        .cfi_endproc
        .size   np_ctx_switch,.-np_ctx_switch

/* First code run on a new stack: x19 holds entry, x0 the switch arg. */
        .globl  np_ctx_trampoline
        .hidden np_ctx_trampoline
        .type   np_ctx_trampoline,%function
        .p2align 4
np_ctx_trampoline:
        .cfi_startproc
        .cfi_undefined x30              /* outermost frame: unwinders stop */
        mov     x29, xzr                /* end of the frame-pointer chain */
        blr     x19                     /* entry(arg); arg is already in x0 */
        brk     #0x3e8                  /* entry never returns */
        .cfi_endproc
        .size   np_ctx_trampoline,.-np_ctx_trampoline

        .globl  np_ctx_make
        .hidden np_ctx_make
        .type   np_ctx_make,%function
        .p2align 4
np_ctx_make:
        .cfi_startproc
        and     x0, x0, #-16            /* ABI stack alignment */
        sub     x0, x0, #0xb0           /* frame; after restore sp is aligned */
        stp     xzr, xzr, [x0, #0x00]   /* d8-d15 = 0 */
        stp     xzr, xzr, [x0, #0x10]
        stp     xzr, xzr, [x0, #0x20]
        stp     xzr, xzr, [x0, #0x30]
        stp     x1,  xzr, [x0, #0x40]   /* x19 = entry, x20 = 0 */
        stp     xzr, xzr, [x0, #0x50]   /* x21-x28 = 0 */
        stp     xzr, xzr, [x0, #0x60]
        stp     xzr, xzr, [x0, #0x70]
        stp     xzr, xzr, [x0, #0x80]
        adr     x9, np_ctx_trampoline
        stp     xzr, x9,  [x0, #0x90]   /* fp = 0, resume address -> trampoline */
        mrs     x10, fpcr               /* start with the creator's FP modes */
        stp     x10, xzr, [x0, #0xa0]   /* FPCR, pad */
        ret
        .cfi_endproc
        .size   np_ctx_make,.-np_ctx_make

/*
 * void np_ctx_call_on(void *sp, void (*fn)(void *arg), void *arg)
 *   Calls fn(arg) with the stack pointer moved to sp (aligned down to 16),
 *   then returns on the caller's stack.  The frame is x29-based, so an
 *   unwinder walks from fn back to the caller.
 */
        .globl  np_ctx_call_on
        .hidden np_ctx_call_on
        .type   np_ctx_call_on,%function
        .p2align 4
np_ctx_call_on:
        .cfi_startproc
        stp     x29, x30, [sp, #-16]!
        .cfi_def_cfa_offset 16
        .cfi_offset x29, -16
        .cfi_offset x30, -8
        mov     x29, sp
        .cfi_def_cfa_register x29
        and     x9, x0, #-16
        mov     sp, x9                  /* the other stack */
        mov     x0, x2
        blr     x1                      /* fn(arg) */
        mov     sp, x29                 /* back */
        .cfi_def_cfa_register sp
        ldp     x29, x30, [sp], #16
        .cfi_def_cfa_offset 0
        .cfi_restore x29
        .cfi_restore x30
        ret
        .cfi_endproc
        .size   np_ctx_call_on,.-np_ctx_call_on

        .section .note.GNU-stack,"",%progbits
