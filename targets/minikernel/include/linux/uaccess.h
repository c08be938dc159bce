/* Checks on addresses that come from user space. */
#ifndef _LINUX_UACCESS_H
#define _LINUX_UACCESS_H

/* The user half of the address space ends here, as on Linux x86-64. */
#define TASK_SIZE_MAX	0x00007ffffffff000UL

/* Whether [addr, addr + size) lies wholly in user space. */
static inline int access_ok(const void *addr, unsigned long size)
{
	unsigned long start = (unsigned long)addr;

	return size <= TASK_SIZE_MAX && start <= TASK_SIZE_MAX - size;
}

#endif /* _LINUX_UACCESS_H */
