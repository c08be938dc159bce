/* panic(): the end of the kernel, with kgdb given its chance first. */
#include <linux/kernel.h>
#include <linux/irqflags.h>
#include <linux/panic.h>
#include <linux/smp.h>

#define PANIC_MAX	256

/*
 * As Linux's panic(): the message, then kgdb_panic() (which stops in the
 * debugger through kgdb_breakpoint()), then, once the debugger lets it go
 * on, the other CPUs are stopped (smp_send_stop) and the end marker is
 * printed; after that the CPU spins for good.  Linux spins with interrupts
 * enabled and preemption disabled; this kernel has no preemption count, so
 * it keeps interrupts disabled instead.
 */
void panic(const char *fmt, ...)
{
	char buf[PANIC_MAX];
	va_list args;
	int len;

	local_irq_disable();
	va_start(args, fmt);
	len = vscnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);
	if (len && buf[len - 1] == '\n')
		buf[len - 1] = '\0';
	printk("Kernel panic - not syncing: %s\n", buf);
	kgdb_panic(buf);
	smp_send_stop();
	printk("---[ end Kernel panic - not syncing: %s ]---\n", buf);
	for (;;)
		barrier();
}
