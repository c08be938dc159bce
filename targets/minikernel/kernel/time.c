/* The timer tick. */
#include <linux/kernel.h>
#include <linux/jiffies.h>

/*
 * Ticks since boot: one per host round.  Alone on its page: it is written
 * at every tick and the host watches data with page protection.
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
 * The timer interrupt, on CPU 0 at the start of every round.  The host
 * calls it with irq_return as the return address, having saved the whole
 * interrupted state, so it may use any register.
 */
noinline void timer_interrupt(void)
{
	do_timer(1);
}
