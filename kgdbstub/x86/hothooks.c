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
	/* The last block begun, [last_start, last_end): where the CPU has been. */
	uint64_t last_start;
	uint64_t last_end;
	emu_stop_fn emu_stop;
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
		if (--state->until_clock == 0) {
			state->until_clock = CLOCK_EVERY;
			if (state->deadline_ns && monotonic_ns() >= state->deadline_ns) {
				stop(uc, state, STOPPED_BY_DEADLINE);
				return;
			}
		}
	}
run:
	state->last_start = address;
	state->last_end = address + size;
	state->blocks++;
}
