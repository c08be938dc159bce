/* The timer tick. */
#include <linux/kernel.h>
#include <linux/jiffies.h>
#include <linux/sched.h>

/* The CPU whose tick keeps jiffies (Linux's tick_do_timer_cpu). */
#define TICK_DO_TIMER_CPU	0

/*
 * Ticks since boot.  Alone on its page: it is written at every tick and
 * the host watches data with page protection.
 */
unsigned long jiffies __own_page(jiffies);

/*
 * One load and one store, as Linux's jiffies_64 update does: a read
 * watchpoint sees the load, and the store alone is a write-only access.
 */
noinline void do_timer(unsigned long ticks)
{
	WRITE_ONCE(jiffies, READ_ONCE(jiffies) + ticks);
}

/*
 * The local timer interrupt of a CPU (tick_periodic).  The host calls it
 * between two instructions of whatever the CPU runs, when the CPU has
 * interrupts enabled, with irq_return as the return address and the
 * interrupted state saved; interrupts are disabled while it runs.
 *
 * ticks: timer periods since this CPU's previous tick (more than one when
 * the CPU had interrupts disabled).  need_resched: the host's scheduler
 * wants the CPU for another task; the interrupted task is preempted here
 * and goes on from this point when it runs again.
 */
noinline void timer_interrupt(unsigned long cpu, unsigned long ticks,
			      unsigned long need_resched)
{
	if (cpu == TICK_DO_TIMER_CPU)
		do_timer(ticks);
	if (need_resched)
		preempt_schedule_irq();
}
