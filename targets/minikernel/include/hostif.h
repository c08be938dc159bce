/*
 * The interface between the minikernel image and the kgdbstub host.
 *
 * This header is the one place that defines it; docs/host-interface.md
 * explains it and kgdbstub/kernel/hostif.py mirrors the numbers (a test
 * checks that the two agree).
 *
 * The image runs on emulated x86-64 CPUs.  What it cannot do itself --
 * scheduling and context switches, the timer, entering the kernel on a
 * system call, the console device, bringing up CPUs -- it asks of the host
 * with a hypercall: `hlt` with the call number in eax, arguments in rdi, rsi,
 * rdx and rcx, and the result in rax.  All other registers are preserved.
 */
#ifndef HOSTIF_H
#define HOSTIF_H

#define HC_CONSOLE_WRITE 1 /* (const char *buf, unsigned long len) -> len       */
#define HC_SCHEDULE      2 /* () -> 0: give up the CPU, stay runnable           */
#define HC_SLEEP         3 /* (unsigned long ticks) -> 0: block for ticks jiffies */
#define HC_CLONE         4 /* (entry, arg, const char *comm, flags) -> pid      */
#define HC_EXIT          5 /* (long code): the calling task ends; no return     */
#define HC_CPU_UP        6 /* (cpu, entry) -> 0 or -errno: start cpu at entry(cpu) */
#define HC_SYSRET        7 /* (long value): return to user mode from a syscall  */
#define HC_IRET          8 /* (): resume the context an interrupt interrupted   */
#define HC_NR_CPUS       9 /* () -> number of CPUs                              */
#define HC_CURRENT      10 /* (struct current_info *) -> 0: who runs on this CPU */
#define HC_KGDB_TRAP    11 /* (struct pt_regs *, vector, signo) -> 0: enter kgdb */
#define HC_NMI_ALLBUTSELF 12 /* (void (*fn)(unsigned long cpu)) -> 0: an NMI on every other CPU calls fn(cpu) */
#define HC_HALT         13 /* () -> 0: the CPU halts until an interrupt; with IF clear, for good */

/* What HC_CURRENT writes. */
#define CURRENT_COMM_LEN 16

/* HC_CLONE flags */
#define CLONE_USER 1 /* the task runs in user space: entry(arg) on a user stack */

/* System call numbers (Linux x86-64 numbering), made with `syscall`. */
#define SYS_write       1
#define SYS_sched_yield 24
#define SYS_clone       56
#define SYS_exit        60

#endif
