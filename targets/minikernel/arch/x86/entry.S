/*
 * The places where the host starts code or returns to it.
 *
 * None of these is reached by a call in the image: the host sets rip (and
 * for the two return stubs pushes a return address) itself.  Each one marks
 * the return address as undefined in its CFI, so a debugger's backtrace ends
 * here cleanly instead of wandering into whatever lies above the stack.
 *
 * The CFI goes to .debug_frame (not loaded, like the C code's), see build.sh.
 */
#include <hostif.h>

/*
 * BUG_ENTRY: a ud2 with its place in __bug_table, as <linux/bug.h>'s BUG()
 * makes, for the stubs below.
 */
	.macro	BUG_ENTRY line
1:	ud2
	.pushsection __bug_table, "aw"
	.quad	1b, bug_file, \line
	.popsection
	.endm

	.section .rodata
bug_file:
	.asciz	"arch/x86/entry.S"

	.cfi_sections .debug_frame
	.text

/*
 * kthread_trampoline(fn, arg): the first code of every kernel thread.
 * The host starts it on the top of the thread's fresh kernel stack; it runs
 * fn(arg) and ends the thread with fn's result, like Linux's ret_from_fork.
 */
	.globl	kthread_trampoline
	.type	kthread_trampoline, @function
kthread_trampoline:
	.cfi_startproc
	.cfi_undefined rip
	xorl	%ebp, %ebp		/* the frame-pointer chain ends here */
	andq	$-16, %rsp		/* whatever rsp the host chose, call aligned */
	movq	%rdi, %rax
	movq	%rsi, %rdi
	call	*%rax			/* fn(arg) */
	movq	%rax, %rdi
	call	do_exit			/* do_exit(result): does not return */
	ud2
	.cfi_endproc
	.size	kthread_trampoline, . - kthread_trampoline

/*
 * secondary_startup_64(cpu): where HC_CPU_UP starts a secondary CPU, on its
 * idle task's stack.  It goes on in C, in start_secondary(cpu).
 */
	.globl	secondary_startup_64
	.type	secondary_startup_64, @function
secondary_startup_64:
	.cfi_startproc
	.cfi_undefined rip
	xorl	%ebp, %ebp
	andq	$-16, %rsp
	call	start_secondary		/* rdi = cpu; does not return */
	ud2
	.cfi_endproc
	.size	secondary_startup_64, . - secondary_startup_64

/*
 * System calls.  On `syscall` the host saves the user registers, switches
 * to the task's kernel stack and calls do_syscall(nr, a1, a2, a3) as if
 * from here, with syscall_return as the return address.  syscall_return
 * hands do_syscall's result to HC_SYSRET, which goes back to user space.
 *
 * The nop in front makes the return address lie inside a function: a
 * debugger looks up a caller at its return address minus one, and finds
 * entry_SYSCALL_64 rather than whatever came before.
 */
	.globl	entry_SYSCALL_64
	.type	entry_SYSCALL_64, @function
entry_SYSCALL_64:
	.cfi_startproc
	.cfi_undefined rip
	nop
	.globl	syscall_return
	.type	syscall_return, @function
syscall_return:
	movq	%rax, %rdi
	movl	$HC_SYSRET, %eax
	hlt				/* returns only when there is nothing to return to */
	BUG_ENTRY __LINE__
	.cfi_endproc
	.size	syscall_return, . - syscall_return
	.size	entry_SYSCALL_64, . - entry_SYSCALL_64

/*
 * Interrupts.  At a tick the host saves the whole state of the CPU, moves
 * to a kernel stack if it was in user space (otherwise it stays below the
 * red zone), disables interrupts and calls timer_interrupt() as if from
 * here, with irq_return as the return address.  HC_IRET resumes what was
 * interrupted, interrupt flag included.
 */
	.globl	common_interrupt
	.type	common_interrupt, @function
common_interrupt:
	.cfi_startproc
	.cfi_undefined rip
	nop
	.globl	irq_return
	.type	irq_return, @function
irq_return:
	movl	$HC_IRET, %eax
	hlt				/* returns only when there is nothing to return to */
	BUG_ENTRY __LINE__
	.cfi_endproc
	.size	irq_return, . - irq_return
	.size	common_interrupt, . - common_interrupt

/*
 * Exceptions.  The host delivers a fault as an interrupt (saving the
 * state, choosing the stack, disabling interrupts) and also writes a
 * struct pt_regs of the faulting context there; it calls the handler,
 * exc_*(regs, error_code[, address]) in arch/x86/traps.c, as if from here,
 * with exception_return as the return address.
 */
	.globl	asm_exc_common
	.type	asm_exc_common, @function
asm_exc_common:
	.cfi_startproc
	.cfi_undefined rip
	nop
	.globl	exception_return
	.type	exception_return, @function
exception_return:
	movl	$HC_IRET, %eax
	hlt				/* returns only when there is nothing to return to */
	BUG_ENTRY __LINE__
	.cfi_endproc
	.size	exception_return, . - exception_return
	.size	asm_exc_common, . - asm_exc_common

	.section .note.GNU-stack, "", @progbits
