/* Oopses and panics. */
#ifndef _LINUX_PANIC_H
#define _LINUX_PANIC_H

#include <linux/compiler.h>

struct pt_regs;

/* kernel/panic.c */
void panic(const char *fmt, ...) __printf(1, 2) __noreturn;

/* arch/x86/traps.c: the die notifier chain and the oops */
enum die_val { DIE_OOPS = 1, DIE_TRAP, DIE_GPF };
#define NOTIFY_DONE	0x0000
#define NOTIFY_STOP	0x8001
int notify_die(enum die_val val, const char *str, struct pt_regs *regs,
	       long err, int trap, int sig);
void die(const char *str, struct pt_regs *regs, long err);

/* kernel/debug.c */
void kgdb_panic(const char *msg);
int kgdb_notify(enum die_val val, struct pt_regs *regs, int trap, int sig);

#endif /* _LINUX_PANIC_H */
