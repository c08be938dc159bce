/*
 * BUG(): a ud2 the invalid-opcode handler recognises, as in Linux.
 *
 * Each BUG() leaves an entry in __bug_table with the address of its ud2,
 * the file and the line; exc_invalid_op() (arch/x86/traps.c) looks the
 * faulting address up there and prints "kernel BUG at FILE:LINE!".
 * Assembly uses the BUG_ENTRY macro of <asm/bug.h> for the same table.
 */
#ifndef _LINUX_BUG_H
#define _LINUX_BUG_H

#include <linux/compiler.h>

struct bug_entry {
	unsigned long addr;
	const char *file;
	unsigned long line;
};

#define BUG()								\
do {									\
	__asm__ __volatile__("1:\tud2\n"				\
			     ".pushsection __bug_table,\"aw\"\n"	\
			     "\t.quad 1b, %c0, %c1\n"			\
			     ".popsection"				\
			     : : "i"(__FILE__), "i"(__LINE__));		\
	__builtin_unreachable();					\
} while (0)

/* arch/x86/traps.c */
const struct bug_entry *find_bug(unsigned long addr);

#endif /* _LINUX_BUG_H */
