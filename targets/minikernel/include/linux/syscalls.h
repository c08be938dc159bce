/* System calls; do_syscall() in kernel/syscall.c dispatches them. */
#ifndef _LINUX_SYSCALLS_H
#define _LINUX_SYSCALLS_H

#include <linux/compiler.h>

long do_syscall(unsigned long nr, unsigned long a1, unsigned long a2,
		unsigned long a3);

long sys_write(unsigned long fd, const char *buf, unsigned long count);
long sys_sched_yield(void);
long sys_clone(unsigned long entry, unsigned long arg);
long sys_exit(long code) __noreturn;

/* arch/x86/entry.S: the return addresses the host gives its calls. */
void syscall_return(void);
void irq_return(void);
void exception_return(void);

#endif /* _LINUX_SYSCALLS_H */
