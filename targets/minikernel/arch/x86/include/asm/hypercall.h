/*
 * Hypercalls: how the image asks the host for what hardware would do.
 *
 * `hlt` with the call number in eax and up to four arguments in rdi, rsi,
 * rdx and rcx; the host puts the result in rax and preserves every other
 * register.  The numbers are in <hostif.h>.  The "memory" clobber keeps the
 * compiler from caching memory across a call: the host may run other tasks
 * (and the debugger may change memory) before the hlt completes.
 *
 * A macro rather than an inline function, so that the debug line info puts
 * the hlt, and the pc where a waiting task sits, in the caller's source
 * (schedule() in kernel/sched.c rather than this header).
 */
#ifndef _ASM_X86_HYPERCALL_H
#define _ASM_X86_HYPERCALL_H

#include <hostif.h>

#define hypercall(nr, a, b, c, d)					\
({									\
	long __hc_ret;							\
									\
	__asm__ __volatile__("hlt"					\
			     : "=a"(__hc_ret)				\
			     : "a"((unsigned long)(nr)),		\
			       "D"((unsigned long)(a)),			\
			       "S"((unsigned long)(b)),			\
			       "d"((unsigned long)(c)),			\
			       "c"((unsigned long)(d))			\
			     : "memory");				\
	__hc_ret;							\
})

#define hypercall0(nr)			hypercall(nr, 0, 0, 0, 0)
#define hypercall1(nr, a)		hypercall(nr, a, 0, 0, 0)
#define hypercall2(nr, a, b)		hypercall(nr, a, b, 0, 0)
#define hypercall4(nr, a, b, c, d)	hypercall(nr, a, b, c, d)

#endif /* _ASM_X86_HYPERCALL_H */
