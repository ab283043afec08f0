/*
 * Context switch for x86-64, System V ABI, ELF, GNU as.
 *
 * void *np_ctx_switch(void **from_sp, void *to_sp, void *arg)
 *   Saves the callee-saved state of the caller on its own stack, stores the
 *   stack pointer in *from_sp, loads to_sp and restores the state saved
 *   there.  Returns arg to the resumed side (in rax).
 *
 * void *np_ctx_make(void *stack_top, void (*entry)(void *arg))
 *   Builds a frame on a fresh stack that np_ctx_switch can resume: the
 *   first switch into it calls entry(arg).  entry must never return.
 *
 * Saved frame (low address first; sp points at offset 0):
 *   0x00  MXCSR (4 bytes) | x87 control word (2 bytes) | pad
 *   0x08  r15
 *   0x10  r14
 *   0x18  r13
 *   0x20  r12
 *   0x28  rbx
 *   0x30  rbp
 *   0x38  return address
 */
        .text
        .globl  np_ctx_switch
        .hidden np_ctx_switch
        .type   np_ctx_switch,@function
        .align  16
np_ctx_switch:
        .cfi_startproc
        pushq   %rbp                    /* callee-saved */
        .cfi_adjust_cfa_offset 8
        pushq   %rbx
        .cfi_adjust_cfa_offset 8
        pushq   %r12
        .cfi_adjust_cfa_offset 8
        pushq   %r13
        .cfi_adjust_cfa_offset 8
        pushq   %r14
        .cfi_adjust_cfa_offset 8
        pushq   %r15
        .cfi_adjust_cfa_offset 8
        leaq    -8(%rsp), %rsp          /* room for the FP control words */
        .cfi_adjust_cfa_offset 8
        stmxcsr (%rsp)                  /* SSE rounding/exception mask */
        fnstcw  4(%rsp)                 /* x87 precision/rounding */
        movq    %rsp, (%rdi)            /* *from_sp = sp */
        movq    %rsi, %rsp              /* switch stacks */
        ldmxcsr (%rsp)
        fldcw   4(%rsp)
        leaq    8(%rsp), %rsp
        .cfi_adjust_cfa_offset -8
        popq    %r15
        .cfi_adjust_cfa_offset -8
        popq    %r14
        .cfi_adjust_cfa_offset -8
        popq    %r13
        .cfi_adjust_cfa_offset -8
        popq    %r12
        .cfi_adjust_cfa_offset -8
        popq    %rbx
        .cfi_adjust_cfa_offset -8
        popq    %rbp
        .cfi_adjust_cfa_offset -8
        movq    %rdx, %rax              /* hand arg to the resumed side */
        popq    %rcx                    /* resume address */
        .cfi_adjust_cfa_offset -8
        .cfi_register rip, rcx
        jmpq    *%rcx                   /* not ret: the return stack buffer holds the */
                                        /* other context's address, so ret mispredicts */
        .cfi_endproc
        .size   np_ctx_switch,.-np_ctx_switch

/* First code run on a new stack: r12 holds entry, rax the switch arg. */
        .globl  np_ctx_trampoline
        .hidden np_ctx_trampoline
        .type   np_ctx_trampoline,@function
        .align  16
np_ctx_trampoline:
        .cfi_startproc
        .cfi_undefined rip              /* outermost frame: unwinders stop */
        xorl    %ebp, %ebp              /* end of the frame-pointer chain */
        movq    %rax, %rdi              /* entry(arg) */
        callq   *%r12
        ud2                             /* entry never returns */
        .cfi_endproc
        .size   np_ctx_trampoline,.-np_ctx_trampoline

        .globl  np_ctx_make
        .hidden np_ctx_make
        .type   np_ctx_make,@function
        .align  16
np_ctx_make:
        .cfi_startproc
        movq    %rdi, %rax
        andq    $-16, %rax              /* ABI stack alignment */
        leaq    -0x40(%rax), %rax       /* frame; after ret rsp is 16-aligned */
        leaq    np_ctx_trampoline(%rip), %rcx
        movq    %rcx, 0x38(%rax)        /* return address -> trampoline */
        movq    %rsi, 0x20(%rax)        /* r12 = entry */
        movq    $0, 0x30(%rax)          /* rbp */
        stmxcsr (%rax)                  /* start with the creator's FP modes */
        fnstcw  4(%rax)
        ret
        .cfi_endproc
        .size   np_ctx_make,.-np_ctx_make

/*
 * void np_ctx_call_on(void *sp, void (*fn)(void *arg), void *arg)
 *   Calls fn(arg) with the stack pointer moved to sp (aligned down to 16),
 *   then returns on the caller's stack.  The frame is rbp-based, so an
 *   unwinder walks from fn back to the caller.
 */
        .globl  np_ctx_call_on
        .hidden np_ctx_call_on
        .type   np_ctx_call_on,@function
        .align  16
np_ctx_call_on:
        .cfi_startproc
        pushq   %rbp
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset rbp, 0
        movq    %rsp, %rbp
        .cfi_def_cfa_register rbp
        andq    $-16, %rdi
        movq    %rdi, %rsp              /* the other stack */
        movq    %rdx, %rdi
        callq   *%rsi                   /* fn(arg) */
        movq    %rbp, %rsp              /* back */
        .cfi_def_cfa_register rsp
        popq    %rbp
        .cfi_adjust_cfa_offset -8
        .cfi_restore rbp
        ret
        .cfi_endproc
        .size   np_ctx_call_on,.-np_ctx_call_on

        .section .note.GNU-stack,"",%progbits
