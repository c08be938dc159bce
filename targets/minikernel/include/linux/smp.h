#ifndef _LINUX_SMP_H
#define _LINUX_SMP_H

#include <linux/compiler.h>

/* kernel/smp.c */
extern unsigned long nr_cpus_online;
void smp_init(void);
void start_secondary(unsigned long cpu) __noreturn;
void smp_send_stop(void);
void stop_this_cpu(unsigned long cpu) __noreturn;

/* arch/x86/entry.S: where a secondary CPU starts, with the cpu in rdi. */
void secondary_startup_64(unsigned long cpu) __noreturn;

#endif /* _LINUX_SMP_H */
