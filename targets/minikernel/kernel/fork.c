/* Creating tasks.  The host does the work; do_fork is where it is asked. */
#include <linux/kernel.h>
#include <linux/errno.h>
#include <linux/sched.h>
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

/*
 * Every task is created here: kernel threads (clone_flags 0, started by the
 * host at kthread_trampoline(entry, arg)) and user tasks (CLONE_USER,
 * started at entry(arg) in user mode).  Returns the new task's pid, or
 * -errno when the host could not make one (then it is not counted).
 */
noinline long do_fork(unsigned long clone_flags, void *entry, void *arg,
		      const char *comm)
{
	long pid = hypercall4(HC_CLONE, (unsigned long)entry,
			      (unsigned long)arg, (unsigned long)comm,
			      clone_flags);

	if (pid > 0) {
		total_forks++;
		WRITE_ONCE(last_fork.pid, pid);
		WRITE_ONCE(last_fork.nr, READ_ONCE(total_forks));
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
