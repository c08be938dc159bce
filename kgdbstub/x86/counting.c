/*
 * Debug-register hits that stop nobody, counted in C while a CPU runs.
 *
 * A perf event, or a ptrace breakpoint whose tracer has continues left,
 * only counts its hits.  Sending each through Python costs about a
 * microsecond for an execute slot and a fault and a step (15 µs or more)
 * for a data slot; counting them here costs a few nanoseconds.  The host
 * (kgdbstub/x86/counting.py, which mirrors struct count_state) loads the
 * running CPU's countable slots before each run and collects what was
 * counted after it, and before it handles any debug exception itself, so
 * that the order of exceptions -- DR6 says which came last -- is kept.
 *
 * Execute slots: count_execute is the code hook of every hooked address.
 * It counts a hit when the address holds countable slots only and their
 * owners can afford it; anything else (a probe, a MOV DRn, RF, a hit
 * that must stop) goes to the Python hook, which decides exactly.
 *
 * Data slots: while a watched page is hot, the host stops protecting it
 * and count_access, a memory hook on the page, sees each access.  One
 * instruction is one debug exception however many of its accesses match
 * (the host's guest clock and RIP tell instructions apart: a repeated
 * string instruction begins a block an iteration); an instruction that
 * faults after an access did not complete, and the host takes its hits
 * back (count_abandon).  The host makes a page hot only when the owners
 * of its slots count without end (perf events), so that no hit here ever
 * has to stop.
 */
#include <stdint.h>

#define SLOTS 4
#define EXECUTES 8
#define PIECES 8
#define HOT_PAGES 8
#define DEFERRED 3
#define KEY_ACCESSES 16
#define PAGE_SIZE 4096u
#define UC_MEM_WRITE 17

typedef void (*code_hook_fn)(void *uc, uint64_t address, uint32_t size, void *user_data);
typedef int (*reg_read_fn)(void *uc, int regid, void *value);

struct count_state {
	/* Given once: the guest clock's block count, the Python code hook, uc_reg_read. */
	const uint64_t *blocks;
	code_hook_fn python;
	reg_read_fn reg_read;
	int32_t rip_register;
	/* Whether count_access counts: off while the host records an instruction itself. */
	uint32_t counting_data;
	/* The running CPU's countable slots, loaded before each run. */
	uint32_t executes;
	uint32_t pieces;
	uint32_t hot_pages;
	uint32_t pool_of_slot[SLOTS];
	uint64_t execute_address[EXECUTES];
	uint32_t execute_slots[EXECUTES]; /* the B bits of the exception */
	uint32_t piece_slot[PIECES];
	uint32_t piece_reads[PIECES]; /* the slot fires on reads too */
	uint64_t piece_start[PIECES]; /* physical, [start, end) */
	uint64_t piece_end[PIECES];
	uint64_t hot_page[HOT_PAGES]; /* physical */
	/* Addresses whose next execution the Python hook decides (RF, a MOV SS shadow...). */
	uint64_t deferred[DEFERRED];
	/* Hits each pool's owner may still count without a stop: one a debug exception. */
	uint64_t budget[SLOTS];
	/* Counted since the host last collected. */
	uint64_t exceptions;
	uint64_t slot_hits[SLOTS];
	uint64_t pool_hits[SLOTS];
	uint32_t pool_last[SLOTS]; /* the B bits of each pool's last exception */
	uint32_t last_b_bits;
	uint32_t overrun; /* a data hit found its owner's budget spent: a bug of the host */
	uint64_t page_touches[HOT_PAGES];
	/*
	 * The instruction after a MOV SS (at merge_next_rip, in the block
	 * after merge_block) is one debug exception with it (SDM §6.8.3).
	 */
	uint64_t merge_block;
	uint64_t merge_rip;
	uint64_t merge_next_rip;
	/*
	 * The instruction whose data accesses were counted last, to merge
	 * accesses into one exception and to take them back; its matching
	 * accesses in order (those of the MOV SS it follows first).
	 */
	uint64_t key_block;
	uint64_t key_rip;
	uint32_t key_slots;
	uint32_t key_prev_b_bits;
	uint32_t key_prev_pool_last[SLOTS];
	uint32_t key_accesses;
	uint32_t key_shadow_accesses; /* how many of them the MOV SS made */
	uint32_t key_merged;          /* the instruction after the MOV SS has begun */
	uint64_t key_access_address[KEY_ACCESSES];
	uint32_t key_access_size[KEY_ACCESSES];
	uint32_t key_access_write[KEY_ACCESSES];
};

uint64_t count_state_size(void)
{
	return sizeof(struct count_state);
}

static uint32_t pools_of(const struct count_state *s, uint32_t slots)
{
	uint32_t pools = 0;

	for (int i = 0; i < SLOTS; i++)
		if (slots >> i & 1)
			pools |= 1u << s->pool_of_slot[i];
	return pools;
}

static int affordable(const struct count_state *s, uint32_t pools)
{
	for (int p = 0; p < SLOTS; p++)
		if (pools >> p & 1 && s->budget[p] == 0)
			return 0;
	return 1;
}

/* Hits of slots in pools that exception `slots` has not counted yet. */
static void count_hits(struct count_state *s, uint32_t slots, uint32_t pools, uint32_t exception)
{
	for (int i = 0; i < SLOTS; i++)
		if (slots >> i & 1)
			s->slot_hits[i]++;
	for (int p = 0; p < SLOTS; p++) {
		if (!(pools >> p & 1))
			continue;
		if (s->budget[p] == 0)
			s->overrun = 1;
		else
			s->budget[p]--;
		s->pool_hits[p]++;
	}
	for (int p = 0; p < SLOTS; p++)
		if (pools_of(s, exception) >> p & 1)
			s->pool_last[p] = exception;
	s->last_b_bits = exception;
}

/* UC_HOOK_CODE of every hooked address. */
void count_execute(void *uc, uint64_t address, uint32_t size, void *user_data)
{
	struct count_state *s = user_data;

	for (uint32_t i = 0; i < s->executes; i++) {
		if (s->execute_address[i] != address)
			continue;
		for (int d = 0; d < DEFERRED; d++)
			if (s->deferred[d] == address)
				goto python;
		uint32_t slots = s->execute_slots[i];
		uint32_t pools = pools_of(s, slots);
		if (!affordable(s, pools))
			goto python;
		s->exceptions++;
		count_hits(s, slots, pools, slots);
		return;
	}
python:
	s->python(uc, address, size, 0);
}

static void record(struct count_state *s, uint64_t address, int size, int write)
{
	uint32_t n = s->key_accesses;

	if (n < KEY_ACCESSES) {
		s->key_access_address[n] = address;
		s->key_access_size[n] = (uint32_t)size;
		s->key_access_write[n] = (uint32_t)write;
	}
	s->key_accesses = n + 1;
}

/* UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE on each hot page (and the 7 bytes below it). */
void count_access(void *uc, int type, uint64_t address, int size, int64_t value, void *user_data)
{
	struct count_state *s = user_data;
	uint64_t end = address + (uint64_t)size;
	uint32_t slots = 0;
	int write = type == UC_MEM_WRITE;

	(void)value;
	if (!s->counting_data)
		return;
	for (uint32_t j = 0; j < s->hot_pages; j++)
		if (address < s->hot_page[j] + PAGE_SIZE && s->hot_page[j] < end)
			s->page_touches[j]++;
	for (uint32_t k = 0; k < s->pieces; k++)
		if ((write || s->piece_reads[k]) && address < s->piece_end[k] && s->piece_start[k] < end)
			slots |= 1u << s->piece_slot[k];
	if (!slots)
		return;
	uint64_t rip = 0;
	uint64_t block = *s->blocks;
	s->reg_read(uc, s->rip_register, &rip);
	int merged = rip == s->merge_next_rip && block == s->merge_block + 1;
	if (merged) {
		block = s->merge_block;
		rip = s->merge_rip;
	}
	if (s->key_slots && block == s->key_block && rip == s->key_rip) {
		/* Another access of the same instruction: the same exception. */
		if (merged && !s->key_merged) {
			s->key_merged = 1;
			s->key_shadow_accesses = s->key_accesses;
		}
		record(s, address, size, write);
		uint32_t added = slots & ~s->key_slots;
		if (!added)
			return;
		uint32_t pools = pools_of(s, added) & ~pools_of(s, s->key_slots);
		s->key_slots |= added;
		count_hits(s, added, pools, s->key_slots);
		return;
	}
	s->key_block = block;
	s->key_rip = rip;
	s->key_slots = slots;
	s->key_accesses = s->key_shadow_accesses = 0;
	s->key_merged = merged;
	s->key_prev_b_bits = s->last_b_bits;
	for (int p = 0; p < SLOTS; p++)
		s->key_prev_pool_last[p] = s->pool_last[p];
	record(s, address, size, write);
	s->exceptions++;
	count_hits(s, slots, pools_of(s, slots), slots);
}

/*
 * The data hits counted for the instruction at rip, begun in block
 * `block`, are taken back (its accesses stay recorded for the host): it
 * did not complete (it faulted, or touched a protected page and runs
 * again on its own), or its debug exception is the host's to report (the
 * single-step trap of a guest's TF).  Returns whether there were any.
 */
int count_abandon(struct count_state *s, uint64_t block, uint64_t rip)
{
	if (rip == s->merge_next_rip && block == s->merge_block + 1) {
		block = s->merge_block;
		rip = s->merge_rip;
	}
	if (!s->key_slots || block != s->key_block || rip != s->key_rip)
		return 0;
	uint32_t pools = pools_of(s, s->key_slots);
	for (int i = 0; i < SLOTS; i++)
		if (s->key_slots >> i & 1)
			s->slot_hits[i]--;
	for (int p = 0; p < SLOTS; p++) {
		if (pools >> p & 1) {
			s->pool_hits[p]--;
			s->budget[p]++;
		}
		s->pool_last[p] = s->key_prev_pool_last[p];
	}
	s->exceptions--;
	s->last_b_bits = s->key_prev_b_bits;
	s->key_slots = 0;
	return 1;
}
