#ifndef _LINUX_JIFFIES_H
#define _LINUX_JIFFIES_H

/* One jiffy is one host round (every CPU ran once); HZ is nominal. */
#define HZ 100

extern unsigned long jiffies;

/* kernel/time.c */
void do_timer(unsigned long ticks);
void timer_interrupt(unsigned long cpu, unsigned long ticks, unsigned long need_resched);

#endif /* _LINUX_JIFFIES_H */
