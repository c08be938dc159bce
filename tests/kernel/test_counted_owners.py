"""Hits that stop nobody, counted without a stop, against the machine's ground truth.

A perf event only counts, and a tracer with continues left only counts
too: their hits are counted in C (kgdbstub/x86/counting.c), execute hits
at their code hook, data hits by a memory hook while their page is hot
(watched pages turn hot and cold with how often they are touched). Ground
truth comes from the image, as in test_perf_scheduling.py: looper
increments looper_iterations once an iteration and calls looper_tick once
an iteration. Each test also checks that the hits really were counted
that way, so that it proves something about the new path.
"""
from __future__ import annotations

import time

import pytest
from kernel_harness import INIT, LOOPER, W, Machine
from unicorn import x86_const as XR

from kgdbstub.core.debugger import SIGTRAP
from kgdbstub.kernel.hw_breakpoint import BreakpointType
from kgdbstub.x86.debugregs import DR7_ALWAYS_ONE
from kgdbstub.x86.memory import PAGE_MASK

pytestmark = pytest.mark.timeout(120)


def machine_counting(counted: bool) -> tuple[Machine, list[int]]:
    """A machine and its tally of exceptions counted in C; with `counted` False every
    hit goes to its owner's handler instead (the exact path), and the tally stays 0."""
    machine = Machine()
    tally = counting_in_c(machine)
    if not counted:
        machine.kernel.processor.hit_budget = None
    return machine, tally


def counting_in_c(machine: Machine) -> list[int]:
    """A running tally of the debug exceptions counted without the handler, per CPU."""
    processor = machine.kernel.processor
    tally = [0] * machine.kernel.ncpus
    told = processor.hits_counted

    def counted(cpu, hits):
        tally[cpu] += hits.exceptions
        told(cpu, hits)

    processor.hits_counted = counted
    return tally


def test_a_task_event_moving_between_drs_and_cpus_counts_every_write_without_a_stop():
    machine = Machine()
    kernel, perf = machine.kernel, machine.kernel.perf
    tally = counting_in_c(machine)
    perf.register(address=machine.address("jiffies"), length=8, type=W, cpu=0, task=None)  # CPU 0's DR0
    watch = perf.register(address=machine.address("looper_iterations"), length=8, type=W, cpu=None, task=LOOPER)
    start = machine.iterations
    where = set()

    def observe():
        assert watch.hits == machine.iterations - start
        for cpu in range(2):
            if kernel.current[cpu].pid == LOOPER:
                where.add((cpu, tuple(machine.drs_of(cpu, watch))))

    # Past the looper's yield at 10000 iterations, where it may change CPU.
    machine.run(lambda: machine.iterations - start > 30000, observe=observe)
    assert watch.hits == machine.iterations - start
    assert where == {(0, (1,)), (1, (0,))}, "in DR1 on CPU 0, where the jiffies event holds DR0; DR0 on CPU 1"
    assert tally[0] > 1000 and tally[1] > 1000, "counted by the memory hook on both CPUs"


def test_a_wide_event_counts_on_each_cpu_what_that_cpu_wrote():
    machine = Machine()
    tally = counting_in_c(machine)
    events = machine.kernel.perf.register_wide(address=machine.address("looper_iterations"), length=8, type=W)
    start = machine.iterations
    machine.run(lambda: machine.iterations - start > 30000,
                observe=lambda: sum(e.hits for e in events) == machine.iterations - start or pytest.fail(
                    "a hit lost or counted twice"))
    assert sum(e.hits for e in events) == machine.iterations - start
    assert all(e.hits > 0 for e in events), "the looper ran on both CPUs"
    assert min(tally) > 0


@pytest.mark.parametrize("count", [3, 25000])
def test_a_tracer_with_continues_left_counts_and_its_last_continue_stops_where_the_exact_path_does(count):
    """The same machine twice, once with every hit given to the handler (the exact path):
    the tracee stops at the same hit, at the same guest time, with the same registers."""
    stopped = []
    for counted in (False, True):
        machine, tally = machine_counting(counted)
        kernel = machine.kernel
        tracee = machine.trace(1, "looper_tick")
        machine.trace(2, "looper_iterations", type=W, length=8)  # the same tracer's: one budget
        kernel.ptrace.cont(LOOPER, count)
        machine.run(lambda: machine.stopped())
        regs = machine.looper.regs
        stopped.append((tracee.hits, tracee.dr6, tracee.continues_left, machine.iterations,
                        regs.reg_read(XR.UC_X86_REG_RIP), regs.reg_read(XR.UC_X86_REG_EFLAGS),
                        kernel.processor.clock.blocks))
        assert (sum(tally) > 0) == (counted and count > 1)
    assert stopped[0] == stopped[1]
    hits = stopped[0][0]
    assert hits[1] + hits[2] >= count and stopped[0][2] == 0


# G1, R/W1 = 01 (writes), LEN1 = 10 (8 bytes)
DR7_WATCH_DR1 = DR7_ALWAYS_ONE | 0b1000 | (0b1001 << 20)
CODE = 0xFFFFFFFF82000000  # mapped kernel memory past the image
TARGET = 0xFFFFFFFF82001000  # the image's own watch
COUNTED = 0xFFFFFFFF82002000  # a perf event's
ITERATIONS = 2000
# ecx times: write COUNTED; then watch TARGET with the image's own DR1, write it, read DR7 and DR6.
WRITES_THEN_OWN_WATCH = bytes.fromhex(
    "b9" + ITERATIONS.to_bytes(4, "little").hex()  # mov ecx, ITERATIONS
    + "48 89 0c 25 00 20 00 82"  # mov qword ptr [COUNTED], rcx   <- CODE+5
    + "ff c9"  # dec ecx
    + "75 f4"  # jnz CODE+5
    + "48 b8" + TARGET.to_bytes(8, "little").hex()  # movabs rax, TARGET
    + "0f 23 c8"  # mov dr1, rax
    + "b8" + DR7_WATCH_DR1.to_bytes(4, "little").hex()  # mov eax, DR7_WATCH_DR1
    + "0f 23 f8"  # mov dr7, rax
    + "48 c7 04 25 00 10 00 82 07 00 00 00"  # mov qword ptr [TARGET], 7
    + "0f 21 f9"  # mov rcx, dr7
    + "0f 21 f2"  # mov rdx, dr6
    + "cc"  # int3
    + "eb fe"  # jmp $
)


def test_the_images_own_debug_registers_see_nothing_of_hits_counted_beside_them():
    """A perf event counted by the memory hook on the CPU where the image watches with its
    own DR1: the image's DR6 names its own hit alone, as on the exact path."""
    seen = []
    for counted in (False, True):
        machine, tally = machine_counting(counted)
        kernel = machine.kernel
        stop = machine.debugger.stop
        assert stop.thread == INIT
        cpu = stop.cpu
        perf = kernel.perf.register(address=COUNTED, length=8, type=BreakpointType.WRITE, cpu=cpu, task=None)
        kernel.write(CODE, WRITES_THEN_OWN_WATCH)
        kernel.tasks[INIT].regs.reg_write(XR.UC_X86_REG_RIP, CODE)
        first = machine.resume()  # the image's own watch
        assert (first.signal, first.thread) == (SIGTRAP, INIT)
        view = kernel.guest_debug_registers.views[cpu]
        own = (view.dr6, view.dr7, view.dr[1])
        machine.resume()  # the int3
        regs = kernel.current[cpu].regs
        seen.append((perf.hits, own, regs.reg_read(XR.UC_X86_REG_RCX), regs.reg_read(XR.UC_X86_REG_RDX),
                     kernel.processor.debug_registers[cpu].dr6 & 0xF))
        assert (tally[cpu] > 0) == counted
    assert seen[0] == seen[1]
    assert seen[1][0] == ITERATIONS
    assert seen[1][1][0] & 0xF == 0b10 and seen[1][3] & 0xF == 0b10  # B1: the image's DR1, nothing else


BURST = 3000
QUIET = 400_000  # iterations of a one-block loop: longer than a hot page waits for touches
# Write COUNTED BURST times, loop QUIET times touching nothing, write it BURST times again, spin.
BURST_QUIET_BURST = bytes.fromhex(
    "b9" + BURST.to_bytes(4, "little").hex()  # mov ecx, BURST
    + "48 89 0c 25 00 20 00 82"  # mov qword ptr [COUNTED], rcx   <- CODE+5
    + "ff c9"  # dec ecx
    + "75 f4"  # jnz CODE+5
    + "b9" + QUIET.to_bytes(4, "little").hex()  # mov ecx, QUIET    <- CODE+17
    + "ff c9"  # dec ecx                            <- CODE+22
    + "75 fc"  # jnz CODE+22
    + "b9" + BURST.to_bytes(4, "little").hex()  # mov ecx, BURST    <- CODE+26
    + "48 89 0c 25 00 20 00 82"  # mov qword ptr [COUNTED], rcx   <- CODE+31
    + "ff c9"  # dec ecx
    + "75 f4"  # jnz CODE+31
    + "eb fe"  # jmp $                              <- CODE+43
)
SPARSE, APART = 300, 10_500  # writes a hot page gets about as seldom as a cold one's
# A burst of writes to COUNTED, then SPARSE writes APART blocks apart, then int3.
BURST_THEN_SPARSE = bytes.fromhex(
    "b9" + BURST.to_bytes(4, "little").hex()  # mov ecx, BURST
    + "48 89 0c 25 00 20 00 82"  # mov qword ptr [COUNTED], rcx   <- CODE+5
    + "ff c9"  # dec ecx
    + "75 f4"  # jnz CODE+5
    + "ba" + SPARSE.to_bytes(4, "little").hex()  # mov edx, SPARSE   <- CODE+17
    + "48 89 14 25 00 20 00 82"  # mov qword ptr [COUNTED], rdx   <- CODE+22
    + "b9" + APART.to_bytes(4, "little").hex()  # mov ecx, APART
    + "ff c9"  # dec ecx                            <- CODE+35
    + "75 fc"  # jnz CODE+35
    + "ff ca"  # dec edx
    + "75 eb"  # jnz CODE+22
    + "cc"  # int3
)


def test_a_page_turns_hot_and_cold_again_and_no_hit_is_lost_either_way():
    """The image writes a perf-watched variable in bursts, with a long quiet loop between:
    the page turns hot in the first burst, cold in the quiet, hot again in the second.
    (One CPU, so that the image stays on the CPU whose page it is.)"""
    machine = Machine(cpus=1)
    kernel = machine.kernel
    processor = kernel.processor
    tally = counting_in_c(machine)
    cpu = machine.debugger.stop.cpu
    perf = kernel.perf.register(address=COUNTED, length=8, type=BreakpointType.WRITE, cpu=cpu, task=None)
    kernel.write(CODE, BURST_QUIET_BURST)
    init = kernel.tasks[INIT]
    init.regs.reg_write(XR.UC_X86_REG_RIP, CODE)
    phases = []

    def observe():
        hot = COUNTED & PAGE_MASK in processor.hot_pages(cpu)
        if not phases or phases[-1] != hot:
            phases.append(hot)
        rip = init.regs.reg_read(XR.UC_X86_REG_RIP)
        if CODE + 17 <= rip < CODE + 26:
            assert perf.hits == BURST, "the first burst all counted, nothing in the quiet loop"

    stops = machine.run(lambda: init.regs.reg_read(XR.UC_X86_REG_RIP) == CODE + 43, observe=observe)
    assert stops == []
    assert perf.hits == 2 * BURST
    assert phases == [False, True, False, True]
    assert tally[cpu] > BURST


def test_where_runs_are_cut_short_changes_nothing_hot_or_cold():
    """The machine is deterministic: a run cut into wall-clock slices (each ending
    where the CPU happens to be) stops at the same guest time, with the same counts,
    as one run. Pages turn hot and cold at points of guest time alone: here writes
    come about as seldom as a page needs to turn cold, and each write to a cold
    page is a fault that costs a block of guest time."""
    seen = []
    for sliced in (False, True):
        machine = Machine(cpus=1)
        kernel = machine.kernel
        tally = counting_in_c(machine)
        perf = kernel.perf.register(address=COUNTED, length=8, type=BreakpointType.WRITE, cpu=0, task=None)
        kernel.write(CODE, BURST_THEN_SPARSE)
        kernel.tasks[INIT].regs.reg_write(XR.UC_X86_REG_RIP, CODE)
        slices = 0
        with machine.debugger.resumed() as run:
            if sliced:
                while (stop := run(deadline=time.monotonic() + 0.0001)) is None:
                    slices += 1
            else:
                stop = run()
        assert stop.signal == SIGTRAP and stop.thread == INIT
        seen.append((kernel.processor.clock.blocks, kernel.ticks, perf.hits,
                     kernel.tasks[INIT].regs.reg_read(XR.UC_X86_REG_RIP)))
        assert tally[0] > BURST
        assert not sliced or slices > 10
    assert seen[0] == seen[1]
    assert seen[0][2] == BURST + SPARSE
