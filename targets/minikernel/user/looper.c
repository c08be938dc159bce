/*
 * looper: the user program init starts.
 *
 * It counts iterations, calling looper_tick() once in each, forks a child
 * every LOOPER_FORK_EVERY iterations and yields the CPU every
 * LOOPER_YIELD_EVERY, as a program that makes system calls does; the
 * timer tick preempts it all the same when another task needs the CPU.
 *
 * The loop is kept tiny (the call, the increment, a count-down and a branch)
 * because debugger benchmarks stop on looper_tick a million times.
 */
#include "syscall.h"

#define LOOPER_YIELD_EVERY	10000
#define LOOPER_FORK_EVERY	20000

_Static_assert(LOOPER_FORK_EVERY % LOOPER_YIELD_EVERY == 0,
	       "forks happen on yield iterations");

/* Iterations so far.  Alone on its page: it is written all the time. */
unsigned long looper_iterations __own_page(looper_iterations);

/* The rest of the program's data, on other pages. */
unsigned long looper_forks;		/* children started */
long looper_last_child;			/* pid of the latest, or -errno */

static const char looper_hello[] = "looper: running\n";

/* Called once per iteration: the place to put a breakpoint. */
noinline void looper_tick(void)
{
	/* Nothing to do; the asm keeps the compiler from dropping calls. */
	__asm__ __volatile__("" : : : "memory");
}

/* A forked child: it only exits. */
static __noreturn void looper_child(void *arg)
{
	(void)arg;
	_exit(0);
}

/* The program's entry point: the host starts it at looper_main(arg). */
void looper_main(void *arg)
{
	unsigned long until_yield = LOOPER_YIELD_EVERY;
	unsigned long yields_until_fork = LOOPER_FORK_EVERY / LOOPER_YIELD_EVERY;

	(void)arg;
	write(1, looper_hello, sizeof(looper_hello) - 1);

	for (;;) {
		looper_tick();
		looper_iterations++;
		if (--until_yield)
			continue;

		until_yield = LOOPER_YIELD_EVERY;
		if (--yields_until_fork == 0) {
			yields_until_fork = LOOPER_FORK_EVERY / LOOPER_YIELD_EVERY;
			looper_last_child = clone(looper_child, NULL);
			looper_forks++;
		}
		sched_yield();
	}
}
