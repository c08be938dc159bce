/*
 * The registers of an interrupted context, as Linux x86-64 lays them out.
 *
 * When the host delivers an exception it saves the interrupted context and
 * writes a struct pt_regs of it on the stack the handler runs on, as the
 * CPU and Linux's entry code together would.
 */
#ifndef _ASM_X86_PTRACE_H
#define _ASM_X86_PTRACE_H

struct pt_regs {
	unsigned long r15;
	unsigned long r14;
	unsigned long r13;
	unsigned long r12;
	unsigned long bp;
	unsigned long bx;
	unsigned long r11;
	unsigned long r10;
	unsigned long r9;
	unsigned long r8;
	unsigned long ax;
	unsigned long cx;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
	unsigned long ip;
	unsigned long cs;
	unsigned long flags;
	unsigned long sp;
	unsigned long ss;
};

/* The user half of the address space ends where the kernel's begins. */
static inline int user_mode(const struct pt_regs *regs)
{
	return regs->ip < 0x0000800000000000UL;
}

#endif /* _ASM_X86_PTRACE_H */
