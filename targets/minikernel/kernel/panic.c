/* panic(): the end of the kernel, with kgdb given its chance first. */
#include <linux/kernel.h>
#include <linux/irqflags.h>
#include <linux/panic.h>

#define PANIC_MAX	256

/*
 * As Linux's panic(): the message, then kgdb_panic() (which stops in the
 * debugger through kgdb_breakpoint()), then the end marker; after that the
 * CPU spins with interrupts off for good.
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
	printk("---[ end Kernel panic - not syncing: %s ]---\n", buf);
	for (;;)
		barrier();
}
