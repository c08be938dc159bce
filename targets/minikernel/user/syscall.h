/*
 * System calls from user space: `syscall` with the number in rax and the
 * arguments in rdi, rsi and rdx, the result in rax (Linux x86-64).  rcx and
 * r11 are declared clobbered, as the instruction does on real hardware.
 */
#ifndef _USER_SYSCALL_H
#define _USER_SYSCALL_H

#include <hostif.h>

#define noinline	__attribute__((__noinline__))
#define __noreturn	__attribute__((__noreturn__))
#define NULL		((void *)0)

/* A variable alone on its 4 KiB page (see the linker script). */
#define __own_page(name) \
	__attribute__((__section__(".data..own_page." #name), __aligned__(4096)))

static inline long syscall3(long nr, long a1, long a2, long a3)
{
	long ret;

	__asm__ __volatile__("syscall"
			     : "=a"(ret)
			     : "a"(nr), "D"(a1), "S"(a2), "d"(a3)
			     : "rcx", "r11", "memory");
	return ret;
}

static inline long write(int fd, const void *buf, unsigned long count)
{
	return syscall3(SYS_write, fd, (long)buf, (long)count);
}

static inline long sched_yield(void)
{
	return syscall3(SYS_sched_yield, 0, 0, 0);
}

/* A new task that starts at entry(arg) on a stack of its own. */
static inline long clone(void (*entry)(void *), void *arg)
{
	return syscall3(SYS_clone, (long)entry, (long)arg, 0);
}

static inline __noreturn void _exit(long code)
{
	syscall3(SYS_exit, code, 0, 0);
	__builtin_trap();
}

#endif /* _USER_SYSCALL_H */
