/* The few error numbers the minikernel returns (Linux's values). */
#ifndef _LINUX_ERRNO_H
#define _LINUX_ERRNO_H

#define EBADF	9	/* bad file number */
#define EAGAIN	11	/* try again */
#define EFAULT	14	/* bad address */
#define EINVAL	22	/* invalid argument */
#define ENOSYS	38	/* invalid system call number */

#endif /* _LINUX_ERRNO_H */
