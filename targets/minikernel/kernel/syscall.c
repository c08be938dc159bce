/*
 * System calls.  The host enters do_syscall on the task's kernel stack, as
 * a call whose return address is syscall_return (arch/x86/entry.S).
 */
#include <linux/kernel.h>
#include <linux/errno.h>
#include <linux/sched.h>
#include <linux/syscalls.h>
#include <linux/uaccess.h>
#include <hostif.h>

/*
 * write(fd, buf, count): standard output and error go to the console.
 * Returns the bytes written, which may be fewer than count, or -errno.
 */
noinline long sys_write(unsigned long fd, const char *buf, unsigned long count)
{
	if (fd != 1 && fd != 2)
		return -EBADF;
	if (!access_ok(buf, count))
		return -EFAULT;
	return console_write(buf, count);
}

long do_syscall(unsigned long nr, unsigned long a1, unsigned long a2,
		unsigned long a3)
{
	switch (nr) {
	case SYS_write:
		return sys_write(a1, (const char *)a2, a3);
	case SYS_sched_yield:
		return sys_sched_yield();
	case SYS_clone:
		return sys_clone(a1, a2);
	case SYS_exit:
		sys_exit((long)a1);
	}
	return -ENOSYS;
}
