/*
 * What the image has of kgdb: the boot parameter, the breakpoint, and the
 * two ways an error enters the debugger (kernel/debug/debug_core.c and
 * arch/x86/kernel/kgdb.c in Linux).  The debugger itself is the host's.
 */
#include <linux/kernel.h>
#include <linux/kgdb.h>
#include <linux/panic.h>
#include <asm/hypercall.h>
#include <asm/ptrace.h>

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

/* panic() gives the debugger its chance through a breakpoint. */
noinline void kgdb_panic(const char *msg)
{
	kgdb_breakpoint();
}

/*
 * kgdb_handle_exception(): the debugger stops every CPU and reports the
 * exception's signal, with the registers of regs -- the context that
 * faulted -- as this CPU's.  Changes the debugger makes to them are what
 * the exception returns to.
 */
static noinline int kgdb_handle_exception(int trap, int sig, struct pt_regs *regs)
{
	return hypercall(HC_KGDB_TRAP, (unsigned long)regs, trap, sig, 0);
}

/* The die notifier (__kgdb_notify): faults in user mode are not kgdb's. */
noinline int kgdb_notify(enum die_val val, struct pt_regs *regs, int trap, int sig)
{
	if (user_mode(regs))
		return NOTIFY_DONE;
	if (kgdb_handle_exception(trap, sig, regs))
		return NOTIFY_DONE;
	return NOTIFY_STOP;
}
