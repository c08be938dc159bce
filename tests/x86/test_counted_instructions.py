"""Hits counted without a stop equal the hits the exact path reports, instruction form by form.

A hit whose owner only counts it (a perf event, a tracer with continues
left) is counted in C (kgdbstub/x86/counting.c): an execute hit at its
code hook, a data hit by a memory hook while its page is hot. Each case
runs a program on two machines: one gives every hit to the debug handler
(the exact path, where a data hit is a fault on a protected page and a
step of the instruction: the ground truth), the other counts what it can,
with its watched pages hot from the first touch. The hits of each DR, the
number of debug exceptions, the exceptions the handler still sees (the
guest's single steps), DR6 and the final registers and memory must agree
-- and the second machine must really have counted, or the case proves
nothing.
"""
from __future__ import annotations

import pytest

from kgdbstub.x86.counting import UNLIMITED, PageHeat
from kgdbstub.x86.cpu import DebugException, Hypercall

from test_watch_instructions import CODE, DATA, EXEC, HLT, RW, STACK_TOP, TRAPS, W, code, dr6, start, state

TF = 1 << 8


class Owners:
    """Owners that count every hit, as perf events do; what they were told."""

    def __init__(self):
        self.hits = [0] * 4
        self.exceptions = 0
        self.counted = 0  # of those, exceptions counted in C
        self.handled: list[DebugException] = []  # the others that were not plain slot hits

    def handler(self, cpu: int, exception: DebugException) -> bool:
        self.exceptions += 1
        for slot in exception.slots:
            self.hits[slot] += 1
        if exception.single_step or exception.general_detect:
            self.handled.append(exception)
        return False

    def hits_counted(self, cpu: int, counted) -> None:
        self.exceptions += counted.exceptions
        self.counted += counted.exceptions
        for slot, hits in enumerate(counted.slot_hits):
            self.hits[slot] += hits


def observed(processor, *, counting: bool, budgets=(UNLIMITED,) * 4) -> Owners:
    """Owners that hear of the processor's hits: every one (the exact path), or,
    `counting`, those beyond each DR's budget, the rest counted in C on pages
    hot from their first touch."""
    owners = Owners()
    processor.debug_handler = owners.handler
    if counting:
        processor.hit_budget = lambda cpu: list(enumerate(budgets))
        processor.hits_counted = owners.hits_counted
        processor.heat = PageHeat(1, hot_touches=1)
    return owners


def outcome(program: bytes, slots, *, counting: bool, runs: int = 6, memory=None, flags: int = 0x2,
            budgets=(UNLIMITED,) * 4, **registers):
    """Run the program `runs` times from its start on one machine: what its owners saw, and where it ended.

    `budgets`: what each DR's owner counts without the handler (0: it hears of every hit).
    """
    processor, context = start(program, slots, memory, **registers)
    owners = observed(processor, counting=counting, budgets=budgets)
    for _ in range(runs):
        registers.setdefault("rbx", DATA)
        registers.setdefault("rsp", STACK_TOP)
        context = processor.new_context(rip=CODE, rflags=flags, **registers)
        while (exit := processor.run(0, context)) != Hypercall():
            assert isinstance(exit, DebugException) and exit.single_step, exit  # a guest's TF: go on
    return dict(hits=owners.hits, exceptions=owners.exceptions, handled=owners.handled,
                dr6=dr6(processor), state=state(processor, context)), owners.counted


def assert_counted_exactly(program: bytes, slots, *, memory=None, **options):
    exact, counted_there = outcome(program, slots, counting=False, memory=memory, **options)
    counted, counted_here = outcome(program, slots, counting=True, memory=memory, **options)
    assert counted_there == 0
    assert counted_here > 0, "nothing was counted without a stop: the case tests nothing"
    assert counted == exact
    assert exact["exceptions"] > 0


@pytest.mark.parametrize("case", TRAPS.values(), ids=list(TRAPS))
def test_every_instruction_form_counts_as_the_exact_path_does(case):
    program, slots, registers, memory, _, _ = case
    assert_counted_exactly(program, slots, memory=memory, **registers)


# ecx times: inc qword ptr [rbx+0x10] (a read and a write of one slot: one exception each time)
INC_LOOP = code("b9 40 00 00 00", "48 ff 43 10", "ff c9", "75 f8", HLT)
# ecx times: movdqu xmmword ptr [rbx+0x20], xmm0 (two accesses over two slots: one exception)
MOVDQU_LOOP = code("b9 40 00 00 00", "f3 0f 7f 43 20", "ff c9", "75 f6", HLT)
# mov rsi, rbx; lea rdi, [rbx+0x800]; mov ecx, 64; rep movsb
REP_MOVSB = code("48 89 de", "48 8d bb 00 08 00 00", "b9 40 00 00 00", "f3 a4", HLT)
# lea rdi, [rbx+0x100]; mov ecx, 64; rep stosq
REP_STOSQ = code("48 8d bb 00 01 00 00", "b9 40 00 00 00", "f3 48 ab", HLT)
# a loop over an execute slot and a data slot on the same instruction
EXECUTE_AND_WRITE = code("b9 40 00 00 00", "48 89 43 10", "ff c9", "75 f8", HLT)

LOOPS = {
    "inc-read-write-slot": (INC_LOOP, [(DATA + 0x10, RW, 8)]),
    "movdqu-two-slots": (MOVDQU_LOOP, [(DATA + 0x20, W, 8), (DATA + 0x28, W, 8)]),
    "rep-movsb-source-and-destination": (REP_MOVSB, [(DATA + 0x20, RW, 8), (DATA + 0x828, W, 8)]),
    "rep-stosq": (REP_STOSQ, [(DATA + 0x108, W, 8), None, (DATA + 0x1F8, W, 8)]),
    "execute-slot": (EXECUTE_AND_WRITE, [(CODE + 5, EXEC, 1)]),
    "execute-and-data-slot-on-one-instruction": (EXECUTE_AND_WRITE, [(CODE + 5, EXEC, 1), (DATA + 0x10, W, 8)]),
    "slots-on-two-pages": (REP_MOVSB, [(DATA + 0x8, RW, 4), (DATA + 0x1000, W, 8), (DATA + 0x838, W, 8)]),
}


@pytest.mark.parametrize("program, slots", LOOPS.values(), ids=list(LOOPS))
def test_hits_in_loops_and_rep_strings_count_as_the_exact_path_does(program, slots):
    assert_counted_exactly(program, slots, rax=3)


# ecx times: movsq from one page to another, back to the same qwords, and each touched once more
MOVSQ_BETWEEN_PAGES = code(
    "b9 10 00 00 00",  # mov ecx, 16
    "48 a5",  # movs qword ptr [rdi], qword ptr [rsi]   <- CODE+5
    "48 83 ee 08",  # sub rsi, 8
    "48 83 c7 f8",  # add rdi, -8
    "48 8b 06",  # mov rax, qword ptr [rsi]
    "48 89 07",  # mov qword ptr [rdi], rax
    "ff c9",  # dec ecx
    "75 ec",  # jnz CODE+5
    HLT,
)


@pytest.mark.parametrize("source, destination", [(DATA + 0x100, DATA + 0x1100), (DATA + 0x1100, DATA + 0x100)],
                         ids=["hot-to-protected", "protected-to-hot"])
def test_an_instruction_that_touches_a_protected_page_after_a_hot_one_counts_once(source, destination):
    """movsq reads its source, then writes its destination: the read a memory hook counted
    is taken back when the write faults on the protected page and the instruction runs
    again on its own, where both are seen."""
    slots = [(source, RW, 8), (destination, W, 8)]
    budgets = (UNLIMITED, 0, 0, 0)  # DR1's owner hears of every hit: its page stays protected
    registers = dict(rsi=source, rdi=destination)
    exact, _ = outcome(MOVSQ_BETWEEN_PAGES, slots, counting=False, budgets=budgets, **registers)
    counted, counted_here = outcome(MOVSQ_BETWEEN_PAGES, slots, counting=True, budgets=budgets, **registers)
    assert counted == exact and counted_here > 0
    assert exact["hits"][:2] == [6 * 16 * 2, 6 * 16 * 2]


# mov ss, word ptr [rbx]; mov qword ptr [rbx+8], rax (in the shadow); inc edx; hlt
MOV_SS_FROM_MEMORY = code("8e 13", "48 89 43 08", "ff c2", HLT)


# mov ss, word ptr [rbx]; mov word ptr [rbx+2], ax (in the shadow); inc edx; hlt
MOV_SS_THEN_NEXT_WORD = code("8e 13", "66 89 43 02", "ff c2", HLT)


@pytest.mark.parametrize("program, slots", [
    (MOV_SS_FROM_MEMORY, [(DATA, RW, 2), (DATA + 8, W, 8)]),  # two slots: one exception with both
    (MOV_SS_THEN_NEXT_WORD, [(DATA, RW, 4)]),  # one slot both instructions hit: one hit
    (MOV_SS_FROM_MEMORY, [(DATA + 8, W, 8)]),  # only the shadowed instruction hits
], ids=["two-slots", "one-slot-hit-by-both", "shadowed-instruction-only"])
def test_a_mov_ss_and_the_instruction_after_it_count_as_one_exception(program, slots):
    """SDM §6.8.3: the data breakpoints of both are one debug exception after the second."""
    assert_counted_exactly(program, slots, memory={DATA: bytes(8)}, rax=5)


# inc eax; mov qword ptr [rbx+0x10], rax; add qword ptr [rbx+0x18], 1; inc eax; hlt
TRACED = code("ff c0", "48 89 43 10", "48 83 43 18 01", "ff c0", HLT)


def test_a_guests_single_step_and_the_data_hits_of_its_instruction_are_one_exception():
    """SDM §18.3.1.4: with TF set, the data breakpoints an instruction hits and the
    single-step trap after it are one #DB, whose DR6 has the B bits and BS."""
    exact, _ = outcome(TRACED, [(DATA + 0x10, W, 8), (DATA + 0x18, RW, 8)], counting=False, flags=0x2 | TF)
    assert [e.slots for e in exact["handled"]][:4] == [(), (0,), (1,), ()]
    # The traced run's hits all come with its single steps: warm the page first, without TF.
    assert_counted_exactly(TRACED, [(DATA + 0x10, W, 8), (DATA + 0x18, RW, 8)], runs=3)
    processor_outcome = {}
    for counting in (False, True):
        processor, context = start(TRACED, [(DATA + 0x10, W, 8), (DATA + 0x18, RW, 8)])
        owners = observed(processor, counting=counting)
        for flags in (0x2, 0x2 | TF, 0x2, 0x2 | TF):
            context = processor.new_context(rip=CODE, rbx=DATA, rsp=STACK_TOP, rflags=flags)
            while processor.run(0, context) != Hypercall():
                pass
        processor_outcome[counting] = (owners.hits, owners.exceptions, owners.handled, dr6(processor),
                                       state(processor, context), owners.counted)
    *counted, counted_here = processor_outcome[True]
    *exact, _ = processor_outcome[False]
    assert counted == exact
    assert counted_here > 0


# ecx times a write to a watched qword; then the guest clears DR7 with its own
# MOV (intercepted, run on the machine's registers); then ecx times again.
WRITES_THEN_MOV_DR7 = code(
    "b9 40 00 00 00",  # mov ecx, 64
    "48 89 43 10",  # mov qword ptr [rbx+0x10], rax   <- CODE+5
    "ff c9", "75 f8",  # dec ecx; jnz CODE+5
    "31 c0",  # xor eax, eax
    "0f 23 f8",  # mov dr7, rax
    "b9 40 00 00 00",  # mov ecx, 64
    "48 89 43 10",  # mov qword ptr [rbx+0x10], rax   <- CODE+23
    "ff c9", "75 f8",  # dec ecx; jnz CODE+23
    HLT,
)


def test_slots_the_guest_clears_in_the_middle_of_a_run_count_nothing_more():
    """SDM §18.2.4: a slot DR7 disables matches nothing. The counter follows the
    guest's MOV DR7 at once, within the run that made it."""
    slots = [(DATA + 0x10, W, 8), (CODE + 23, EXEC, 1)]
    exact, _ = outcome(WRITES_THEN_MOV_DR7, slots, counting=False, runs=1)
    assert exact["hits"] == [64, 0, 0, 0]
    # The first run makes the page hot and clears DR7; arm again and run once more.
    for counting in (False, True):
        processor, context = start(WRITES_THEN_MOV_DR7, slots)
        owners = observed(processor, counting=counting)
        for _ in range(2):
            for index, (address, access, length) in enumerate(slots):
                processor.debug_registers[0].install(index, address, access, length)
            processor.debug_registers_changed()
            context = processor.new_context(rip=CODE, rbx=DATA, rsp=STACK_TOP)
            assert processor.run(0, context) == Hypercall()
        assert owners.hits == [128, 0, 0, 0]
        assert not counting or owners.counted > 0
