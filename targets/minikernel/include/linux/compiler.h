/* Compiler helpers, as the real kernel spells them. */
#ifndef _LINUX_COMPILER_H
#define _LINUX_COMPILER_H

#define __noreturn	__attribute__((__noreturn__))
#define noinline	__attribute__((__noinline__))
#define __used		__attribute__((__used__))
#define __section(s)	__attribute__((__section__(s)))
#define __aligned(n)	__attribute__((__aligned__(n)))
#define __printf(a, b)	__attribute__((__format__(printf, a, b)))

/* Stops the compiler from moving memory accesses across this point. */
#define barrier()	__asm__ __volatile__("" : : : "memory")

#define READ_ONCE(x)	(*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, val)	(*(volatile __typeof__(x) *)&(x) = (val))

#define PAGE_SIZE	4096UL

/*
 * A hot variable that must be alone on its 4 KiB page.  The host watches
 * data with page protection, so a neighbour written all the time would make
 * a watchpoint on anything else on that page expensive.  The linker script
 * collects the .data..own_page.* sections; the alignment of each variable
 * keeps the next one off its page.
 */
#define __own_page(name) \
	__section(".data..own_page." #name) __aligned(PAGE_SIZE)

#endif /* _LINUX_COMPILER_H */
