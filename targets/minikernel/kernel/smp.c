/* Bringing up the secondary CPUs. */
#include <linux/kernel.h>
#include <linux/irqflags.h>
#include <linux/sched.h>
#include <linux/smp.h>
#include <asm/hypercall.h>

/* CPUs brought up so far, the boot CPU included. */
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
