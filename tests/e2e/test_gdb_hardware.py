"""Hardware breakpoints and watchpoints with the real gdb (issue: x86 debug registers, Z1-Z4)."""
import re

import pytest

from gdbtools import GDB, run_gdb, start_server

pytestmark = pytest.mark.skipif(GDB is None, reason="gdb is not installed")


def values(output: str) -> list[int]:
    return [int(m, 0) for m in re.findall(r"^\$\d+ = (-?\w+)", output, re.M)]


@pytest.fixture(scope="module")
def server():
    with start_server() as running:
        yield running


def test_hbreak_stops_at_do_fork_and_again_at_the_next_fork(server):
    # always-inserted: gdb leaves its breakpoints in while stopped, so monitor slots shows them
    out = run_gdb(server, ["set breakpoint always-inserted on", "hbreak do_fork", "continue", "print total_forks",
                           "continue", "print total_forks", "monitor slots", "delete", "detach"])
    assert re.search(r"Hardware assisted breakpoint 1 at 0x[0-9a-f]+: file kernel/fork.c", out)
    assert len(re.findall(r"hit Breakpoint 1, do_fork \(", out)) == 2, out
    first, second = values(out)
    assert second == first + 1, "the second stop is the next fork, not the same instant"
    assert re.search(r"cpu=0 dr=\d owner=kgdb addr=0x[0-9a-f]+ type=x len=1", out)


def test_watch_reports_old_and_new_value_after_the_write(server):
    out = run_gdb(server, ["watch total_forks", "continue", "print $pc", "info line *$pc", "delete", "detach"])
    assert "Hardware watchpoint 1: total_forks" in out
    old, new = (int(v) for v in re.search(r"Old value = (\d+)\s+New value = (\d+)", out).groups())
    assert new == old + 1
    assert re.search(r"^do_fork \(", out, re.M), "the stop is in do_fork, after the write"


def test_rwatch_sees_the_load_and_a_write_alone_does_not_stop_it(server):
    out = run_gdb(server, ["rwatch jiffies", "continue", "print $pc", "print jiffies", "continue", "print $pc",
                           "print jiffies", "delete", "detach"])
    assert len(re.findall(r"Hardware read watchpoint 1: jiffies\s+Value = \d+", out)) == 2, out
    pcs = re.findall(r"^\$\d+ = \(void \(\*\)\(\)\) (0x[0-9a-f]+) <do_timer\+\d+>", out, re.M)
    # Both stops follow do_timer's load: its store, a write alone, never stops a read watchpoint.
    assert len(pcs) == 2 and pcs[0] == pcs[1], out


def test_awatch_sees_reads_and_writes(server):
    out = run_gdb(server, ["awatch jiffies", "continue", "print $pc", "continue", "print $pc", "delete", "detach"])
    assert len(re.findall(r"Hardware access \(read/write\) watchpoint 1: jiffies", out)) >= 2
    pcs = re.findall(r"<do_timer\+(\d+)>", out)
    assert len(set(pcs)) == 2, "one stop after the load, one after the store"


def test_four_slots_hold_and_a_fifth_is_refused_until_one_is_deleted(server):
    four = ["hbreak do_fork", "watch total_forks", "watch last_fork.nr", "rwatch jiffies"]
    out = run_gdb(server, [*four, "watch looper_iterations", "continue", "delete 5",
                           *["continue"] * 8, "delete 4", "watch looper_iterations", *["continue"] * 4, "delete", "detach"])
    # gdb inserts all five when it resumes; whichever comes last finds no slot.
    refused, after = out.split("Could not insert hardware", 1)
    assert "Command aborted." in after
    fired = set(re.findall(r"hit (?:Hardware (?:read )?watchpoint|Breakpoint) (\d+)", after))
    assert {"1", "2", "3", "4"} <= fired, out
    assert "Could not insert" not in after.split("Hardware watchpoint 6: looper_iterations", 1)[1]
    assert re.search(r"hit Hardware watchpoint 6: looper_iterations", after), out


def test_a_16_byte_watch_stops_on_either_half(server):
    out = run_gdb(server, ["watch last_fork", "continue", "continue", "delete", "detach"])
    stops = re.findall(r"Old value = \{pid = (\d+), nr = (\d+)\}\s+New value = \{pid = (\d+), nr = (\d+)\}", out)
    assert len(stops) == 2, out
    (pid0, nr0, pid1, nr1), (pid2, nr2, pid3, nr3) = stops
    assert pid1 != pid0 and nr1 == nr0, "the first stop is the write of the first half"
    assert nr3 != nr2 and pid3 == pid2, "the second stop is the write of the second half"


def test_an_unaligned_8_byte_watch_stops_on_writes_to_its_bytes(server):
    # Bytes -3..4 of last_fork: three bytes before it and the low five of pid,
    # which change at every fork (gdb reports a write watchpoint only when
    # the value changes). It takes four pieces: 1, 2, 4 and 1 bytes.
    out = run_gdb(server, ["watch *(long *)((char *)&last_fork - 3)", "continue", "print $pc",
                           "print last_fork.pid", "continue", "print last_fork.pid", "delete", "detach"])
    assert "Hardware watchpoint 1: *(long *)((char *)&last_fork - 3)" in out
    assert len(re.findall(r"hit Hardware watchpoint 1", out)) == 2
    assert re.search(r"<do_fork\+\d+>", out), "the stop follows the store in do_fork"
    first, second = (int(v) for v in re.findall(r"^\$\d+ = (\d+)$", out, re.M))
    assert second > first
