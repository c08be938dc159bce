/*
 * The scheduler.  The host owns the run queues and switches tasks; a task
 * gives up its CPU with a hypercall.  Scheduling is cooperative: code that
 * never makes a hypercall or system call keeps its CPU.
 */
#include <linux/kernel.h>
#include <linux/sched.h>
#include <linux/syscalls.h>
#include <asm/hypercall.h>

/* Give up the CPU and stay runnable. */
noinline void schedule(void)
{
	hypercall0(HC_SCHEDULE);
}

/* Sleep for ticks jiffies. */
noinline long schedule_timeout(unsigned long ticks)
{
	hypercall1(HC_SLEEP, ticks);
	return 0;
}

/* The idle task of every CPU ends here. */
void cpu_idle(void)
{
	for (;;)
		schedule();
}

noinline long sys_sched_yield(void)
{
	schedule();
	return 0;
}
