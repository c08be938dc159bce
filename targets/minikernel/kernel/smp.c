/* Bringing up the secondary CPUs, and stopping them when the kernel panics. */
#include <linux/kernel.h>
#include <linux/irqflags.h>
#include <linux/sched.h>
#include <linux/smp.h>
#include <asm/hypercall.h>

/* CPUs online: brought up (the boot CPU included) and not stopped since. */
unsigned long nr_cpus_online = 1;

void smp_init(void)
{
	unsigned long nr_cpus = hypercall0(HC_NR_CPUS);
	unsigned long cpu;

	printk("smp: Bringing up secondary CPUs ...\n");
	for (cpu = 1; cpu < nr_cpus; cpu++) {
		long err = hypercall2(HC_CPU_UP, cpu,
				      (unsigned long)secondary_startup_64);

		if (err)
			printk("smp: CPU%lu failed to start: %ld\n", cpu, err);
		else
			nr_cpus_online++;
	}
	printk("smp: Brought up 1 node, %lu CPU%s\n", nr_cpus_online,
	       nr_cpus_online == 1 ? "" : "s");
}

/* A secondary CPU, on its idle task's stack (from secondary_startup_64). */
void start_secondary(unsigned long cpu)
{
	printk("CPU%lu: online\n", cpu);
	local_irq_enable();
	cpu_idle();
}

/*
 * Where another CPU's smp_send_stop() sends this one (stop_this_cpu() in
 * arch/x86/kernel/process.c): it leaves the online CPUs and halts with
 * interrupts disabled, for good.  The task it interrupted stays its current
 * task, stopped where the NMI found it.
 */
void stop_this_cpu(unsigned long cpu)
{
	local_irq_disable();
	nr_cpus_online--;
	for (;;)
		hypercall0(HC_HALT);
}

/*
 * Stop every other CPU (native_stop_other_cpus): panic() does it once kgdb
 * has had its chance.  Linux sends REBOOT_VECTOR first and falls back to an
 * NMI for CPUs that have not stopped within a second; here the NMI goes at
 * once, which every CPU takes whatever it runs.  As Linux, wait a while for
 * the others to go offline.
 */
void smp_send_stop(void)
{
	unsigned long spins = 100000000;

	if (READ_ONCE(nr_cpus_online) <= 1)
		return;
	hypercall1(HC_NMI_ALLBUTSELF, (unsigned long)stop_this_cpu);
	while (READ_ONCE(nr_cpus_online) > 1 && --spins)
		barrier();
}
