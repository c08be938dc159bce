/* Tasks.  The host owns them; the image only asks for what it needs. */
#ifndef _LINUX_SCHED_H
#define _LINUX_SCHED_H

#include <linux/compiler.h>

#include <hostif.h>

typedef int (*kthread_fn_t)(void *arg);

#define TASK_COMM_LEN	16
#define HBP_NUM		4	/* debug registers with an address: DR0-DR3 */

/*
 * What x86 keeps of a task for ptrace's hardware breakpoints
 * (arch/x86/include/asm/processor.h): a child does not inherit them.
 */
struct thread_struct {
	void *ptrace_bps[HBP_NUM];
	unsigned long virtual_dr6;
	unsigned long ptrace_dr7;
};

/*
 * The image's record of a task.  The host owns the task itself; this is
 * what do_fork copies from the parent to the child, as Linux's
 * dup_task_struct copies the whole task_struct.
 */
struct task_struct {
	long pid;			/* 0: a free entry (the idle tasks have init_task) */
	unsigned long flags;		/* the clone flags it was made with */
	char comm[TASK_COMM_LEN];
	struct thread_struct thread;
};

extern struct task_struct init_task;
extern struct task_struct task_structs[];
struct task_struct *find_task_by_pid(long pid);

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
