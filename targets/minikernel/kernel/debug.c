/* What the image has of kgdb: the boot parameter and the breakpoint. */
#include <linux/kernel.h>
#include <linux/kgdb.h>

/*
 * kgdbwait: 1 to stop in the debugger at the end of boot.  The host writes
 * it before CPU 0 starts; it is kept in .data (not .bss) so that it has a
 * place in the file as well as in memory.
 */
unsigned long kgdbwait __section(".data") = 0;

/*
 * Enter the debugger, as Linux's kgdb_breakpoint() does: the host stops
 * every CPU with SIGTRAP and the pc after the int3; when the debugger
 * continues, the function returns normally.
 */
noinline void kgdb_breakpoint(void)
{
	barrier();
	__asm__ __volatile__("int3");	/* arch_kgdb_breakpoint() */
	barrier();
}
