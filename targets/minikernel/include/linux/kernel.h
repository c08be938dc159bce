#ifndef _LINUX_KERNEL_H
#define _LINUX_KERNEL_H

#include <linux/compiler.h>

#define NULL ((void *)0)

typedef __builtin_va_list va_list;
#define va_start(ap, last)	__builtin_va_start(ap, last)
#define va_arg(ap, type)	__builtin_va_arg(ap, type)
#define va_end(ap)		__builtin_va_end(ap)

/* kernel/printk.c */
int vscnprintf(char *buf, unsigned long size, const char *fmt, va_list args);
int scnprintf(char *buf, unsigned long size, const char *fmt, ...) __printf(3, 4);
int printk(const char *fmt, ...) __printf(1, 2);
long console_write(const char *buf, unsigned long len);

/* kernel/version.c */
extern const char linux_banner[];

#endif /* _LINUX_KERNEL_H */
