/*
 * Boot: start_kernel, the init task, and the user program it starts.
 *
 * CPU 0 starts at start_kernel in 64-bit mode on its idle task's stack;
 * there is nothing to set up (no descriptor tables, no page tables: the
 * host maps memory and delivers the timer itself).  It starts with
 * interrupts disabled and enables them once the other CPUs are up.  start_kernel brings up
 * the other CPUs, creates init (pid 1) and becomes CPU 0's idle task.
 */
#include <linux/kernel.h>
#include <linux/irqflags.h>
#include <linux/kgdb.h>
#include <linux/sched.h>
#include <linux/smp.h>
#include <hostif.h>

/*
 * The user program: user/looper.c, linked into the same image at 0x400000.
 * There is no exec and no file system; init starts the program directly,
 * as if /sbin/init had been built into the kernel.
 */
extern void looper_main(void *arg);

#define INIT_SLEEP_TICKS	100

/* init: the first task (pid 1). */
static int kernel_init(void *unused)
{
	long pid;

	printk("Run /sbin/init as init process\n");
	pid = do_fork(CLONE_USER, looper_main, NULL, "looper");
	printk("init: started looper as pid %ld\n", pid);

	if (kgdbwait) {
		printk("KGDB: Waiting for connection from remote gdb...\n");
		kgdb_breakpoint();
	}

	for (;;)
		schedule_timeout(INIT_SLEEP_TICKS);
	return 0;
}

/* The end of boot: start init and become the idle task of CPU 0. */
static noinline void rest_init(void)
{
	kernel_thread(kernel_init, NULL, "init");
	cpu_idle();
}

void start_kernel(void)
{
	printk("%s", linux_banner);
	printk("Command line:%s\n", kgdbwait ? " kgdbwait" : "");
	smp_init();
	local_irq_enable();
	rest_init();
}
