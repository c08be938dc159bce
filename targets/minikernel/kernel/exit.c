/* Ending tasks. */
#include <linux/kernel.h>
#include <linux/panic.h>
#include <linux/sched.h>
#include <linux/syscalls.h>
#include <asm/hypercall.h>

/* The idle task and init may not end: Linux panics, as here. */
void do_exit(long code)
{
	struct current_info info;

	hypercall1(HC_CURRENT, (unsigned long)&info);
	if (info.pid == 0)
		panic("Attempted to kill the idle task!");
	if (info.pid == 1)
		panic("Attempted to kill init! exitcode=0x%08lx", code);
	WRITE_ONCE(find_task_by_pid(info.pid)->pid, 0);	/* its task_struct is free */
	hypercall1(HC_EXIT, (unsigned long)code);
	__builtin_trap();	/* HC_EXIT does not return */
}

noinline long sys_exit(long code)
{
	do_exit(code);
}
