#ifndef _LINUX_KGDB_H
#define _LINUX_KGDB_H

/* Boot parameter, written by the host before CPU 0 starts. */
extern unsigned long kgdbwait;

/* kernel/debug.c: stop in the debugger, like Linux's kgdb_breakpoint(). */
void kgdb_breakpoint(void);

#endif /* _LINUX_KGDB_H */
