"""Probes (Processor.set_probe): a debugger's question before an instruction runs.

A breakpoint with conditions is a probe rather than an int3: asked each
time a CPU reaches its address, it lets the instruction run, stops the CPU
before it (like an int3 rewound by the debugger), or pauses it with
nothing done, to be asked again. Each execution asks it exactly once,
whatever else happens at that instruction: an execute slot, a watched
page, a single step.
"""
from __future__ import annotations

from test_watch_instructions import CODE, DATA, EXEC, HLT, W, code, reg, start

from kgdbstub.x86.cpu import DebugException, Hypercall, Preempted, Probed, ProbeVerdict, Stepped

LOOP = code(
    "b9 05 00 00 00",  # mov ecx, 5
    "48 ff 03",  # inc qword [rbx]   <- CODE+5 (rbx = DATA)
    "ff c9",  # dec ecx           <- CODE+8
    "75 f9",  # jnz CODE+5
    HLT,  # hlt               <- CODE+12
)
INC = CODE + 5


def asking(*answers: ProbeVerdict):
    """A probe that answers in turn (then RUN), and the CPUs it was asked for."""
    asked: list[int] = []
    queue = list(answers)

    def probe(cpu: int) -> ProbeVerdict:
        asked.append(cpu)
        return queue.pop(0) if queue else ProbeVerdict.RUN

    return probe, asked


def test_a_probe_that_says_run_is_asked_at_every_execution():
    processor, context = start(LOOP)
    probe, asked = asking()
    processor.set_probe(INC, probe)
    assert isinstance(processor.run(0, context), Hypercall)
    assert asked == [0] * 5
    assert processor.read(DATA, 8) != start(LOOP)[0].read(DATA, 8), "the instructions ran"


def test_a_stop_comes_before_the_instruction_and_the_next_run_asks_again():
    processor, context = start(LOOP)
    probe, asked = asking(ProbeVerdict.RUN, ProbeVerdict.STOP)
    processor.set_probe(INC, probe)
    before = processor.read(DATA, 8)
    exit = processor.run(0, context)
    assert exit == Probed(INC) and reg(context, "rip") == INC and reg(context, "rcx") == 4
    assert int.from_bytes(processor.read(DATA, 8), "little") == int.from_bytes(before, "little") + 1
    assert isinstance(processor.run(0, context), Hypercall)
    assert len(asked) == 6, "the stopped execution is asked again, as an int3 would fire again"


def test_a_pause_stops_with_nothing_done_and_an_execute_slot_there_is_not_reported_twice():
    processor, context = start(LOOP, [(INC, EXEC, 1)])
    hits = []
    processor.debug_handler = lambda cpu, exception: hits.append(exception) or False  # counted, not stopping
    probe, asked = asking(ProbeVerdict.PAUSE)
    processor.set_probe(INC, probe)
    assert isinstance(processor.run(0, context), Preempted)
    assert reg(context, "rip") == INC and len(hits) == 1
    assert isinstance(processor.run(0, context), Hypercall)
    assert len(asked) == 6 and len(hits) == 5, (asked, hits)


def test_an_execute_slot_that_stops_comes_first_and_the_probe_is_asked_on_resume():
    processor, context = start(LOOP, [(INC, EXEC, 1)])
    probe, asked = asking()
    processor.set_probe(INC, probe)
    assert isinstance(processor.run(0, context), DebugException) and asked == []
    processor.debug_registers[0].clear(0)
    processor.debug_registers_changed()
    assert isinstance(processor.run(0, context), Hypercall) and len(asked) == 5


def test_an_instruction_on_a_watched_page_asks_its_probe_once():
    processor, context = start(LOOP, [(DATA + 0x800, W, 8)])  # the page of DATA, not the qword
    probe, asked = asking()
    processor.set_probe(INC, probe)
    assert isinstance(processor.run(0, context), Hypercall)
    assert asked == [0] * 5


def test_a_single_step_onto_a_probe_asks_it_and_removing_it_stops_the_asking():
    processor, context = start(LOOP)
    probe, asked = asking(ProbeVerdict.STOP)
    processor.set_probe(INC, probe)
    assert isinstance(processor.run(0, context, step=True), Stepped)  # mov ecx, 5
    assert processor.run(0, context, step=True) == Probed(INC) and reg(context, "rip") == INC
    assert isinstance(processor.run(0, context, step=True), Stepped) and reg(context, "rip") == INC + 3
    processor.set_probe(INC, None)
    assert isinstance(processor.run(0, context), Hypercall)
    assert len(asked) == 2


def test_an_execute_slot_or_a_probe_at_the_last_byte_of_the_address_space_is_taken():
    # A debugger may ask for either there (kgdb's Z1 takes any address).
    processor, context = start(LOOP, [(2**64 - 1, EXEC, 1)])
    probe, asked = asking()
    processor.set_probe(2**64 - 2, probe)
    assert isinstance(processor.run(0, context), Hypercall)
    assert asked == []
