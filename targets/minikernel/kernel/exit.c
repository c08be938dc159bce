/* Ending tasks. */
#include <linux/kernel.h>
#include <linux/sched.h>
#include <linux/syscalls.h>
#include <asm/hypercall.h>

void do_exit(long code)
{
	hypercall1(HC_EXIT, (unsigned long)code);
	__builtin_trap();	/* HC_EXIT does not return */
}

noinline long sys_exit(long code)
{
	do_exit(code);
}
