/* Tasks.  The host owns them; the image only asks for what it needs. */
#ifndef _LINUX_SCHED_H
#define _LINUX_SCHED_H

#include <linux/compiler.h>

#include <hostif.h>

typedef int (*kthread_fn_t)(void *arg);

/* Who runs on this CPU, as HC_CURRENT tells it (pid 0: the idle task). */
struct current_info {
	long pid;
	long cpu;
	char comm[CURRENT_COMM_LEN];
};

/* kernel/fork.c */
extern unsigned long total_forks;
long do_fork(unsigned long clone_flags, void *entry, void *arg, const char *comm);
long kernel_thread(kthread_fn_t fn, void *arg, const char *comm);

/* kernel/exit.c */
void do_exit(long code) __noreturn;

/* kernel/sched.c */
void schedule(void);
void preempt_schedule_irq(void);
long schedule_timeout(unsigned long ticks);
void cpu_idle(void) __noreturn;

/* arch/x86/entry.S: where the host starts every kernel thread. */
void kthread_trampoline(kthread_fn_t fn, void *arg) __noreturn;

#endif /* _LINUX_SCHED_H */
