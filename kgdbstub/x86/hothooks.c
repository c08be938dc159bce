/*
 * Unicorn hook callbacks that run on the emulator's hot path, in C.
 *
 * A hook whose callback is Python costs about half a microsecond a call; a
 * block hook with one halves the emulation speed.  The callbacks here cost a
 * few nanoseconds.  kgdbstub/x86/hothooks.py loads this file with ctypes
 * (it is built as a shared library by `pip install`) and mirrors struct
 * hot_state; hot_state_size() lets it check that the two agree.
 *
 * Nothing here knows Python, and unicorn is reached only through the
 * uc_emu_stop pointer the loader stores in the state, so that the library
 * needs neither unicorn's nor Python's headers.
 */
#include <stdint.h>
#include <time.h>

typedef int (*emu_stop_fn)(void *uc);

/* Why on_block stopped the engine (hot_state.stopped_by). */
enum {
	STOPPED_BY_NOTHING = 0,
	STOPPED_BY_LIMIT = 1,	 /* blocks reached limit: the CPU's time is up */
	STOPPED_BY_REQUEST = 2,	 /* another thread or the event loop asked */
	STOPPED_BY_DEADLINE = 3, /* the monotonic clock passed deadline_ns */
};

/* Blocks between two looks at the clock: reading it costs about 20 ns. */
#define CLOCK_EVERY 1024

struct hot_state {
	/*
	 * Guest time: the translation blocks this engine has begun to run.
	 * A block that is stopped at its start is not counted; it is when
	 * it runs.
	 */
	uint64_t blocks;
	/* Stop at the start of a block when blocks has reached this. */
	uint64_t limit;
	/* Stop at the start of a block once CLOCK_MONOTONIC passes this; 0: never. */
	uint64_t deadline_ns;
	/* Set by any thread: stop at the start of the next block. */
	volatile uint32_t stop_request;
	/* Whether stop_request and deadline_ns apply (not during a single step). */
	uint32_t interruptible;
	uint32_t until_clock;
	uint32_t stopped_by;
	/*
	 * Set by the host: the next block runs whatever is requested (the
	 * instruction after a MOV SS, which no event may come between).
	 */
	uint32_t hold;
	volatile uint32_t stop_deferred;
	/* The last block begun, [last_start, last_end): where the CPU has been. */
	uint64_t last_start;
	uint64_t last_end;
	emu_stop_fn emu_stop;
	/* When the engine last gave the CPU to the host; 0 while it runs. */
	volatile uint64_t host_since_ns;
	/*
	 * A stop requested while the host had the CPU, placed in the engine's
	 * own time (see request_stop in hothooks.py): set by another thread
	 * after owed_ns, it becomes a stop_request once the engine has run
	 * owed_ns more.  due_ns is when that is in the current run, 0 until
	 * the run's first block looks; looked_ns when a block last looked.
	 */
	volatile uint64_t owed_ns;
	uint64_t due_ns;
	uint64_t looked_ns;
};

uint64_t hot_state_size(void)
{
	return sizeof(struct hot_state);
}

static uint64_t monotonic_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static void stop(void *uc, struct hot_state *state, uint32_t why)
{
	state->stopped_by = why;
	state->emu_stop(uc);
}

/*
 * Whether a deferred stop is due: the engine has run owed_ns since it
 * took the CPU back.  Read only while one is pending, so that the clock is
 * looked at every block only then.
 */
static int deferred_stop_due(struct hot_state *state)
{
	uint64_t now = monotonic_ns();

	if (!state->due_ns)
		state->due_ns = now + state->owed_ns;
	if (now < state->due_ns) {
		state->looked_ns = now;
		return 0;
	}
	state->due_ns = 0;
	state->stop_deferred = 0;
	state->stop_request = 1;
	return 1;
}

/*
 * UC_HOOK_BLOCK: called before each translation block runs.  Stopping the
 * engine here leaves it exactly at the block's first instruction, none of
 * whose instructions has run (unicorn checks for an exit request right
 * after the block hook).
 */
void on_block(void *uc, uint64_t address, uint32_t size, void *user_data)
{
	struct hot_state *state = user_data;

	if (state->hold) {
		state->hold = 0;
		goto run;
	}
	if (state->blocks >= state->limit) {
		stop(uc, state, STOPPED_BY_LIMIT);
		return;
	}
	if (state->interruptible) {
		if (state->stop_request) {
			stop(uc, state, STOPPED_BY_REQUEST);
			return;
		}
		if (state->stop_deferred && deferred_stop_due(state)) {
			stop(uc, state, STOPPED_BY_REQUEST);
			return;
		}
		if (--state->until_clock == 0) {
			state->until_clock = CLOCK_EVERY;
			if (state->deadline_ns && monotonic_ns() >= state->deadline_ns) {
				stop(uc, state, STOPPED_BY_DEADLINE);
				return;
			}
		}
	}
run:
	state->host_since_ns = 0;
	state->last_start = address;
	state->last_end = address + size;
	state->blocks++;
}
