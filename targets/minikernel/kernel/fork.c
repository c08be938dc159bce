/* Creating tasks.  The host does the work; do_fork is where it is asked. */
#include <linux/kernel.h>
#include <linux/errno.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <linux/syscalls.h>
#include <linux/uaccess.h>
#include <asm/hypercall.h>

/*
 * Forks since boot, kernel threads included.  Alone on its page: the host
 * watches data with page protection.
 */
unsigned long total_forks __own_page(total_forks);

/*
 * The newest fork: a 16-byte object whose two halves are written by two
 * stores, so a watchpoint on it (or on a range across both halves) sees
 * each of them.
 */
struct fork_record {
	long pid;
	unsigned long nr;
};
struct fork_record last_fork;

/*
 * The image runs one user program, so a task cloned from user space gets
 * its name (Linux's child inherits the parent's comm).
 */
#define USER_CLONE_COMM	"looper"

/* The idle tasks' task_struct, and one for each task do_fork made. */
#define NR_TASK_STRUCTS	64	/* as many as the host has tasks */
struct task_struct init_task = { .pid = 0, .comm = "swapper" };
struct task_struct task_structs[NR_TASK_STRUCTS];

struct task_struct *find_task_by_pid(long pid)
{
	int i;

	for (i = 0; pid > 0 && i < NR_TASK_STRUCTS; i++)
		if (READ_ONCE(task_structs[i].pid) == pid)
			return &task_structs[i];
	return &init_task;
}

/* Linux's current: the task_struct of the task this CPU runs. */
static struct task_struct *current_task(void)
{
	struct current_info info;

	hypercall1(HC_CURRENT, (unsigned long)&info);
	return find_task_by_pid(info.pid);
}

/* A free entry, claimed (pid -1) against the other CPUs' forks. */
static struct task_struct *alloc_task_struct(void)
{
	int i;

	for (i = 0; i < NR_TASK_STRUCTS; i++)
		if (__sync_bool_compare_and_swap(&task_structs[i].pid, 0, -1))
			return &task_structs[i];
	return NULL;
}

/*
 * Linux's dup_task_struct with x86's arch_dup_task_struct and copy_thread:
 * the child starts as a copy of its parent, less the parent's ptrace
 * breakpoints.
 */
static noinline struct task_struct *dup_task_struct(const struct task_struct *orig)
{
	struct task_struct *tsk = alloc_task_struct();

	if (!tsk)
		return NULL;
	memcpy(tsk, orig, sizeof(*tsk));
	WRITE_ONCE(tsk->pid, -1);	/* still claimed, not the parent's */
	memset(tsk->thread.ptrace_bps, 0, sizeof(tsk->thread.ptrace_bps));
	tsk->thread.virtual_dr6 = 0;
	tsk->thread.ptrace_dr7 = 0;
	return tsk;
}

/*
 * What the image does of Linux's copy_process: the child's task_struct,
 * copied from the parent's and named.
 */
static noinline struct task_struct *copy_process(unsigned long clone_flags, const char *comm)
{
	struct task_struct *p = dup_task_struct(current_task());
	int i;

	if (!p)
		return NULL;
	for (i = 0; i < TASK_COMM_LEN - 1 && comm[i]; i++)
		p->comm[i] = comm[i];
	memset(p->comm + i, 0, TASK_COMM_LEN - i);
	p->flags = clone_flags;
	return p;
}

/*
 * Every task is created here: kernel threads (clone_flags 0, started by the
 * host at kthread_trampoline(entry, arg)) and user tasks (CLONE_USER,
 * started at entry(arg) in user mode).  Returns the new task's pid, or
 * -errno when the host could not make one (then it is not counted).
 */
noinline long do_fork(unsigned long clone_flags, void *entry, void *arg,
		      const char *comm)
{
	struct task_struct *p = copy_process(clone_flags, comm);
	long pid;

	if (!p)
		return -EAGAIN;
	pid = hypercall4(HC_CLONE, (unsigned long)entry,
			 (unsigned long)arg, (unsigned long)comm,
			 clone_flags);

	if (pid > 0) {
		WRITE_ONCE(p->pid, pid);
		total_forks++;
		WRITE_ONCE(last_fork.pid, pid);
		WRITE_ONCE(last_fork.nr, READ_ONCE(total_forks));
	} else {
		WRITE_ONCE(p->pid, 0);
	}
	return pid;
}

noinline long kernel_thread(kthread_fn_t fn, void *arg, const char *comm)
{
	return do_fork(0, fn, arg, comm);
}

/* clone(entry, arg): a new user task that starts at entry(arg). */
noinline long sys_clone(unsigned long entry, unsigned long arg)
{
	if (!access_ok((const void *)entry, 1))
		return -EFAULT;
	return do_fork(CLONE_USER, (void *)entry, (void *)arg, USER_CLONE_COMM);
}
