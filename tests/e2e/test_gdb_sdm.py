"""What gdb shows of the x86 debug model (Intel SDM Vol. 3 §18.3.1), on the default target.

Against real hardware and Linux's kgdb, RF is set in the frame of an
instruction breakpoint's #DB before kgdb runs (hw_breakpoint_handler), so
it belongs to whatever instruction the CPU resumes at; a data breakpoint in
a `rep movsb` traps after the iteration that wrote, RIP at the instruction
and RCX counting what is left; an instruction breakpoint on it fires once
an execution. The minikernel meets rep strings where Linux does: do_fork
copies the parent's task_struct into the child's with memcpy's `rep movsb`
(dup_task_struct), and each gdb session here starts at kgdbwait, where
looper's first child is the next fork and task_structs[2] will be its entry.
"""
import re

import pytest

from gdbtools import GDB, run_gdb, start_server

from kgdbstub.kernel.image import Image
from kgdbstub.targets import DEFAULT_TARGET, resolve

pytestmark = pytest.mark.skipif(GDB is None, reason="gdb is not installed")

IMAGE = Image(resolve(DEFAULT_TARGET))
CALL, REP = 0xE8, b"\xf3\xa4"  # call rel32; rep movsb
TASK_STRUCT_SIZE, COMM_OFFSET = 80, 16  # struct task_struct of include/linux/sched.h
FIRST_CHILD = 2  # task_structs[0] is init's, [1] looper's


def code_at(address: int, size: int) -> bytes:
    for segment in IMAGE.segments:
        if segment.address <= address and address + size <= segment.address + len(segment.data):
            return segment.data[address - segment.address:address - segment.address + size]
    raise AssertionError(f"no code at {address:#x}")


def call_of_do_fork_in_sys_clone() -> int:
    start, do_fork = IMAGE.address_of("sys_clone"), IMAGE.address_of("do_fork")
    code = code_at(start, 0x80)
    for offset in range(len(code) - 5):
        if code[offset] == CALL and start + offset + 5 + int.from_bytes(code[offset + 1:offset + 5], "little",
                                                                        signed=True) == do_fork:
            return start + offset
    raise AssertionError("sys_clone does not call do_fork")


def rep_movsb_in_memcpy() -> int:
    start = IMAGE.address_of("memcpy")
    return start + code_at(start, 0x10).index(REP)


def values(output: str) -> list[int]:
    return [int(m, 0) for m in re.findall(r"^\$\d+ = (?:\([^)]*\) )?(-?\w+)", output, re.M)]


def session(commands: list[str], dialect: str = "modern") -> str:
    with start_server("--once", "--dialect", dialect) as server:
        output = run_gdb(server, [*commands, "delete", "detach"], timeout=90)
        assert server.wait(30) == 0, output
    return output


@pytest.mark.parametrize("dialect", ["modern", "kgdb"])
def test_resuming_at_the_call_of_do_fork_stops_at_the_reexecuted_calls_do_fork(dialect):
    """§18.3.1.1: RF set by the #DB of `hbreak do_fork` belongs to the next instruction,
    here the call the PC was moved back to: the call runs and do_fork stops again before
    its body, total_forks unchanged (2, not 3)."""
    call = call_of_do_fork_in_sys_clone()
    output = session([
        "hbreak do_fork", "continue", "print total_forks",
        "set $sp = $sp + 8", f"set $pc = {call:#x}",  # back to the call, its return address popped
        "continue", "print total_forks", "print $pc == do_fork",
    ], dialect)
    assert len(re.findall(r"hit Breakpoint 1, do_fork \(", output)) == 2, output
    assert values(output) == [2, 2, 1], output


@pytest.mark.parametrize("dialect", ["modern", "kgdb"])
def test_moving_the_pc_onto_another_hardware_breakpoint_lets_that_instruction_run(dialect):
    """§18.3.1.1: RF is still set when the PC is moved onto the call's own hardware
    breakpoint: the call runs once and the stop comes at do_fork, not at the call.
    (gdb steps over a breakpoint only at the PC it stopped at; a stop its own step made
    is no #DB, leaves RF clear, and the call's breakpoint would fire, as on hardware.)"""
    call = call_of_do_fork_in_sys_clone()
    output = session([
        "hbreak do_fork", "continue", "print total_forks",
        f"hbreak *{call:#x}", "set $sp = $sp + 8", f"set $pc = {call:#x}",
        "continue", "print total_forks", "print $pc == do_fork",
    ], dialect)
    stops = re.findall(r"hit Breakpoint (\d), ", output)
    assert stops == ["1", "1"], output
    assert values(output) == [2, 2, 1], output


def test_a_watch_on_a_field_do_fork_copies_stops_in_rep_movsb_after_each_byte():
    """§18.3.1.2 and §18.3.1.1: memcpy's `rep movsb` writes the child's comm a byte an
    iteration; each write traps after its iteration with RIP at the rep, RCX counting the
    bytes left, so gdb sees the name grow a letter at a time."""
    rep = rep_movsb_in_memcpy()
    output = session([
        f"watch task_structs[{FIRST_CHILD}].comm", "continue", "p/x $pc", "print $rcx", "bt",
        "continue", "print $rcx", "print total_forks",
    ])
    assert re.search(r'New value = "l", ', output) and re.search(r'New value = "lo", ', output), output
    pc, first, second, forks = values(output)
    assert pc == rep, output
    left = TASK_STRUCT_SIZE - COMM_OFFSET - 1
    assert (first, second, forks) == (left, left - 1, 2), output
    assert re.search(r"^#\d+ .*dup_task_struct", output, re.M) and re.search(r"^#\d+ .*do_fork", output, re.M), output


def test_an_hbreak_on_rep_movsb_stops_before_the_copy_and_stepi_takes_one_iteration():
    """§18.3.1.1: an instruction breakpoint on a rep string is a fault before it, the whole
    count in RCX; §18.3.1.4: a single step runs one iteration, RIP still at the rep (where
    gdb, finding its breakpoint at the PC, reports it again, as against hardware)."""
    rep = rep_movsb_in_memcpy()
    output = session([f"hbreak *{rep:#x}", "continue", "print $rcx", "print total_forks",
                      "stepi", "p/x $pc", "print $rcx"])
    assert len(re.findall(r"hit Breakpoint 1, ", output)) == 2, output
    assert values(output) == [TASK_STRUCT_SIZE, 2, rep, TASK_STRUCT_SIZE - 1], output


def test_an_hbreak_on_rep_movsb_with_a_condition_stops_once_a_copy():
    """§18.3.1.1: with the whole count as its condition the breakpoint stops at every copy
    and only there: each continue goes on to the next fork's."""
    rep = rep_movsb_in_memcpy()
    output = session(["set breakpoint condition-evaluation target",
                      f"hbreak *{rep:#x} if $rcx == {TASK_STRUCT_SIZE}", "continue", "print total_forks",
                      "continue", "print total_forks", "print $rcx"])
    assert len(re.findall(r"hit Breakpoint 1, ", output)) == 2, output
    assert values(output) == [2, 3, TASK_STRUCT_SIZE], output


def test_a_condition_on_an_hbreak_at_rep_movsb_is_asked_once_a_copy():
    """§18.3.1.1: the breakpoint (and so its condition, evaluated by the stub) sees each
    execution of the rep once, never an iteration: RCX is the whole count each time, so
    `$rcx != 80` never holds and the next stop is the next fork."""
    rep = rep_movsb_in_memcpy()
    output = session(["set breakpoint condition-evaluation target", "hbreak do_fork", "continue",
                      f"hbreak *{rep:#x} if $rcx != {TASK_STRUCT_SIZE}", "continue", "print total_forks"])
    stops = re.findall(r"hit Breakpoint (\d), ", output)
    assert stops == ["1", "1"], output
    assert values(output) == [3], output
