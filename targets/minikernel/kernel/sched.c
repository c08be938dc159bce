/*
 * The scheduler.  The host owns the run queues and switches tasks; a task
 * gives up its CPU with a hypercall, and the timer interrupt takes the CPU
 * from a task that runs on (preempt_schedule_irq).
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

/* Preemption from the timer interrupt, on the interrupted task's stack. */
noinline void preempt_schedule_irq(void)
{
	schedule();
}

/* Sleep for ticks jiffies. */
noinline long schedule_timeout(unsigned long ticks)
{
	hypercall1(HC_SLEEP, ticks);
	return 0;
}

/*
 * The idle task of every CPU ends here.  With nothing to run, the host
 * keeps the CPU halted in schedule() until a task is runnable.
 */
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
