/* The CPU's interrupt flag: the host delivers the timer only while it is set. */
#ifndef _LINUX_IRQFLAGS_H
#define _LINUX_IRQFLAGS_H

static inline void local_irq_enable(void)
{
	__asm__ __volatile__("sti" : : : "memory");
}

static inline void local_irq_disable(void)
{
	__asm__ __volatile__("cli" : : : "memory");
}

#endif /* _LINUX_IRQFLAGS_H */
