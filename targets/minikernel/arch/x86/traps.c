/*
 * Exceptions: what Linux's arch/x86/kernel/traps.c, mm/fault.c and
 * dumpstack.c do with them, in small.
 *
 * The host delivers an exception the way the CPU and Linux's entry code
 * would: it saves the interrupted context, writes a struct pt_regs of it
 * on the stack (the task's kernel stack, or the CPU's double-fault stack)
 * and calls the handler with exception_return as the return address, so
 * that a handler that returns resumes the interrupted context exactly.
 *
 * In user mode a fault kills the task with a signal.  In the kernel the die
 * notifier chain comes first; kgdb is on it, and it stops there with the
 * faulting context's registers.  As on Linux with kgdb registered:
 * a general protection fault (DIE_GPF) and a trap such as a divide error
 * or an invalid opcode (DIE_TRAP) enter kgdb before anything is printed; a
 * page fault is an oops: its report is printed first, then __die() calls
 * the chain with DIE_OOPS.  When kgdb returns, the handler returns and the
 * faulting instruction runs again, unless the debugger moved rip.
 */
#include <linux/kernel.h>
#include <linux/bug.h>
#include <linux/panic.h>
#include <linux/sched.h>
#include <asm/ptrace.h>
#include <asm/hypercall.h>

#define SIGILL	4
#define SIGFPE	8
#define SIGKILL	9
#define SIGSEGV	11

#define X86_TRAP_DE	0
#define X86_TRAP_UD	6
#define X86_TRAP_DF	8
#define X86_TRAP_GP	13
#define X86_TRAP_PF	14

/* Page-fault error code bits. */
#define X86_PF_PROT	(1 << 0)
#define X86_PF_WRITE	(1 << 1)
#define X86_PF_USER	(1 << 2)
#define X86_PF_INSTR	(1 << 4)

#define UTS_RELEASE	"6.1.0-minikernel"
#define UTS_VERSION	"#1"

/* The double-fault stacks, one per CPU, for the host to deliver #DF on. */
#define DF_STACK_SIZE	4096
#define MAX_CPUS	8
unsigned char double_fault_stack[MAX_CPUS][DF_STACK_SIZE] __aligned(16);

static int die_counter;

extern const struct bug_entry __start___bug_table[], __stop___bug_table[];

const struct bug_entry *find_bug(unsigned long addr)
{
	const struct bug_entry *bug;

	for (bug = __start___bug_table; bug < __stop___bug_table; bug++)
		if (bug->addr == addr)
			return bug;
	return NULL;
}

static void current_info(struct current_info *info)
{
	hypercall1(HC_CURRENT, (unsigned long)info);
}

/* The frame-pointer chain from the interrupted context, while it stays on its stack. */
static void show_trace(const struct pt_regs *regs)
{
	unsigned long bp = regs->bp, low = regs->sp, high = regs->sp + 4 * PAGE_SIZE;
	int depth;

	printk("Call Trace:\n <TASK>\n");
	for (depth = 0; depth < 16; depth++) {
		const unsigned long *frame = (const unsigned long *)bp;

		if (bp < low || bp + 16 > high || bp & 7 || !frame[1])
			break;
		printk(" 0x%016lx\n", frame[1]);
		low = bp + 16;
		bp = frame[0];
	}
	printk(" </TASK>\n");
}

/* show_regs(): the task, where it was and its registers. */
static void show_regs(const struct pt_regs *regs)
{
	struct current_info info;

	current_info(&info);
	printk("CPU: %ld PID: %ld Comm: %s Not tainted %s %s\n",
	       info.cpu, info.pid, info.comm, UTS_RELEASE, UTS_VERSION);
	printk("RIP: %04lx:0x%016lx\n", regs->cs, regs->ip);
	printk("RSP: %04lx:%016lx EFLAGS: %08lx\n", regs->ss, regs->sp, regs->flags);
	printk("RAX: %016lx RBX: %016lx RCX: %016lx\n", regs->ax, regs->bx, regs->cx);
	printk("RDX: %016lx RSI: %016lx RDI: %016lx\n", regs->dx, regs->si, regs->di);
	printk("RBP: %016lx R08: %016lx R09: %016lx\n", regs->bp, regs->r8, regs->r9);
	printk("R10: %016lx R11: %016lx R12: %016lx\n", regs->r10, regs->r11, regs->r12);
	printk("R13: %016lx R14: %016lx R15: %016lx\n", regs->r13, regs->r14, regs->r15);
	if (!user_mode(regs))
		show_trace(regs);
}

/*
 * The die notifier chain.  It has one member, kgdb (kgdb_notify in
 * kernel/debug.c), as a kernel whose only registered notifier is kgdb's.
 */
int notify_die(enum die_val val, const char *str, struct pt_regs *regs,
	       long err, int trap, int sig)
{
	return kgdb_notify(val, regs, trap, sig);
}

/* __die(): the oops header and body; 1 when a notifier took it. */
static int __die(const char *str, struct pt_regs *regs, long err, int trap)
{
	printk("%s: %04lx [#%d] SMP\n", str, err & 0xffff, ++die_counter);
	show_regs(regs);
	printk("Modules linked in:\n");
	return notify_die(DIE_OOPS, str, regs, err, trap, SIGSEGV) == NOTIFY_STOP;
}

static void oops_end(int signr)
{
	printk("---[ end trace 0000000000000000 ]---\n");
	if (signr)
		do_exit(signr);
}

void die(const char *str, struct pt_regs *regs, long err)
{
	oops_end(__die(str, regs, err, 0) ? 0 : SIGSEGV);
}

/* A fault in user mode: the task dies of the signal (it has no handler). */
static void force_sig(const char *what, const struct pt_regs *regs, long err, int sig)
{
	struct current_info info;

	current_info(&info);
	printk("traps: %s[%ld] %s ip:%lx sp:%lx error:%lx\n",
	       info.comm, info.pid, what, regs->ip, regs->sp, err);
	do_exit(sig);
}

static void do_error_trap(struct pt_regs *regs, long err, const char *str, int trap, int sig)
{
	if (user_mode(regs))
		force_sig(str, regs, err, sig);
	if (notify_die(DIE_TRAP, str, regs, err, trap, sig) == NOTIFY_STOP)
		return;
	die(str, regs, err);
}

void exc_divide_error(struct pt_regs *regs)
{
	do_error_trap(regs, 0, "divide error", X86_TRAP_DE, SIGFPE);
}

/* handle_bug(): a BUG()'s ud2 is reported before it is treated as a trap. */
void exc_invalid_op(struct pt_regs *regs)
{
	const struct bug_entry *bug = user_mode(regs) ? NULL : find_bug(regs->ip);

	if (bug) {
		printk("------------[ cut here ]------------\n");
		printk("kernel BUG at %s:%lu!\n", bug->file, bug->line);
	}
	do_error_trap(regs, 0, "invalid opcode", X86_TRAP_UD, SIGILL);
}

void exc_general_protection(struct pt_regs *regs, long err)
{
	if (user_mode(regs))
		force_sig("general protection fault", regs, err, SIGSEGV);
	if (notify_die(DIE_GPF, "general protection fault", regs, err, X86_TRAP_GP, SIGSEGV) == NOTIFY_STOP)
		return;
	die("general protection fault", regs, err);
}

/* show_fault_oops() and page_fault_oops() of arch/x86/mm/fault.c. */
void exc_page_fault(struct pt_regs *regs, long err, unsigned long address)
{
	int sig;

	if (user_mode(regs)) {
		struct current_info info;

		current_info(&info);
		printk("%s[%ld]: segfault at %lx ip %016lx sp %016lx error %lx\n",
		       info.comm, info.pid, address, regs->ip, regs->sp, err);
		do_exit(SIGSEGV);
	}
	if (address < PAGE_SIZE)
		printk("BUG: kernel NULL pointer dereference, address: %016lx\n", address);
	else
		printk("BUG: unable to handle page fault for address: %016lx\n", address);
	printk("#PF: %s %s in %s mode\n",
	       err & X86_PF_USER ? "user" : "supervisor",
	       err & X86_PF_INSTR ? "instruction fetch" :
	       err & X86_PF_WRITE ? "write access" : "read access",
	       user_mode(regs) ? "user" : "kernel");
	printk("#PF: error_code(0x%04lx) - %s\n", err,
	       err & X86_PF_PROT ? "permissions violation" : "not-present page");
	sig = SIGKILL;
	if (__die("Oops", regs, err, X86_TRAP_PF))
		sig = 0;
	printk("CR2: %016lx\n", address);
	oops_end(sig);
}

/*
 * A fault while the host delivered another exception (its stack could not
 * be written): the host switched to the CPU's double-fault stack.  As in
 * Linux, the notifier's answer is not checked: a double fault cannot be
 * ignored.
 */
void exc_double_fault(struct pt_regs *regs, long err)
{
	notify_die(DIE_TRAP, "double fault", regs, err, X86_TRAP_DF, SIGSEGV);
	printk("PANIC: double fault, error_code: 0x%lx\n", err);
	die("double fault", regs, err);
	panic("Machine halted.");
}
