"""Breakpoint conditions and dprintf evaluated in the stub, with the real gdb.

With `set breakpoint condition-evaluation target` gdb compiles a
condition into an agent expression and sends it with Z0/Z1 (remote.c's
remote_add_target_side_condition); `dprintf` with `set dprintf-style
agent` sends its printf as a command list (remote_add_target_side_commands).
The stub must stop only where a condition holds, and never where a dprintf
runs: every test counts the stops in the server's packet trace, so a stop
gdb would have swallowed (it checks conditions at every stop too) fails it.
"""
import re
from pathlib import Path

import pytest

from gdbtools import GDB, run_gdb, start_server

pytestmark = pytest.mark.skipif(GDB is None, reason="gdb is not installed")

TARGET = "set breakpoint condition-evaluation target"
FORK_C = Path(__file__).resolve().parents[2] / "targets" / "minikernel" / "kernel" / "fork.c"
# The line of do_fork where its local pid holds the new task's pid.
PID_KNOWN = 1 + FORK_C.read_text().splitlines().index("\tif (pid > 0) {")


def values(output: str) -> list[int]:
    return [int(m, 0) for m in re.findall(r"^\$\d+ = (-?\w+)", output, re.M)]


def packets(trace: str, direction: str, prefix: str) -> list[str]:
    return [p for d, p in re.findall(r"^(<-|->) '(.*)'$", trace, re.M) if d == direction and p.startswith(prefix)]


def breakpoint_stops(trace: str) -> list[str]:
    """The stop replies that report a breakpoint (gdb's own steps over one report none)."""
    return [p for p in packets(trace, "->", "T05") if "swbreak:" in p or "hwbreak:" in p]


def session(tmp_path, commands, *server_args, timeout=90):
    trace = tmp_path / "trace"
    with start_server("--once", "--trace", str(trace), *server_args) as server:
        output = run_gdb(server, [TARGET, *commands], timeout=timeout)
        assert server.wait(30) == 0, output
    return output, trace.read_text()


def test_software_breakpoints_stop_only_where_their_conditions_hold(tmp_path):
    output, trace = session(tmp_path, [
        "break do_fork if total_forks == 3",  # a global
        "continue", "print total_forks", "info breakpoints", "delete",
        f"break kernel/fork.c:{PID_KNOWN} if pid == 6",  # a local, in a register
        "continue", "print pid", "print total_forks", "delete",
        # a register, and memory through a pointer
        "break do_fork if $rdi == 1 && comm[0] == 108 && comm[5] == 114 && total_forks >= 7",
        "continue", "print $rdi", "print total_forks", "print comm", "delete", "detach"])
    assert values(output)[:2] == [3, 6]  # total_forks; pid
    rdi, forks = values(output)[3:5]
    assert rdi == 1 and forks >= 7
    assert '"looper"' in output
    assert "stop only if total_forks == 3 (target evals)" in output
    # The conditions went to the stub, and it stopped exactly three times.
    assert len([p for p in packets(trace, "<-", "Z0,") if ";X" in p]) >= 3
    assert len(breakpoint_stops(trace)) == 3, breakpoint_stops(trace)


def test_a_hardware_breakpoint_with_a_condition_stops_once(tmp_path):
    output, trace = session(tmp_path, [
        "hbreak do_fork if total_forks == 4", "continue", "print total_forks", "delete", "detach"])
    assert "Hardware assisted breakpoint 1" in output
    assert values(output) == [4]
    assert [p for p in packets(trace, "<-", "Z1,") if ";X" in p]
    assert len(breakpoint_stops(trace)) == 1


def test_several_conditions_on_one_location_stop_when_any_holds(tmp_path):
    # Two breakpoints at one address: gdb sends both conditions in one Z0.
    output, trace = session(tmp_path, [
        "break do_fork if total_forks == 3", "break do_fork if total_forks == 5",
        "continue", "print total_forks", "continue", "print total_forks", "delete", "detach"])
    assert values(output) == [3, 5]
    assert re.search(r"hit Breakpoint 1, do_fork.*\n(.*\n)*.*hit Breakpoint 2, do_fork", output)
    assert any(p.count(";") == 1 and p.count("X") >= 2 for p in packets(trace, "<-", "Z0,")), \
        "gdb sent two conditions in one packet"
    assert len(breakpoint_stops(trace)) == 2


def test_a_condition_that_cannot_be_evaluated_stops_and_gdb_reports_why(tmp_path):
    output, trace = session(tmp_path, [
        "break do_fork if *(int *)8 == 1", "continue", "print total_forks", "delete",
        "break do_fork if 100 / (total_forks - total_forks) == 1", "continue", "print total_forks",
        "delete", "detach"])
    # The stub stops as gdbserver does; gdb evaluates the condition itself and says what failed.
    assert "Error in testing breakpoint condition" in output
    assert "Cannot access memory at address 0x8" in output
    assert "Division by zero" in output
    first, second = values(output)
    assert second == first + 1
    assert len(breakpoint_stops(trace)) == 2


def test_dprintf_in_agent_style_prints_every_hit_without_stopping(tmp_path):
    output, trace = session(tmp_path, [
        "set dprintf-style agent",
        r'dprintf looper_tick,"tick %lu\n", looper_iterations',
        "break user/looper.c:54 if looper_iterations == 3000",
        "continue", "print looper_iterations", "delete", "detach"])
    ticks = [int(n) for n in re.findall(r"^tick (\d+)$", output, re.M)]
    assert values(output) == [3000]
    # Every iteration up to the stop, in order, none lost and none twice.
    assert ticks == list(range(ticks[0], 3001)) and ticks[0] <= 1, ticks[:5]
    assert [p for p in packets(trace, "<-", "Z0,400014,") if ";cmds:" in p]
    assert len(breakpoint_stops(trace)) == 1  # only the conditional breakpoint
    assert len(packets(trace, "->", "O")) >= 1


@pytest.mark.parametrize("always_inserted", ["off", "on"])
def test_a_condition_changed_and_removed_while_stopped(tmp_path, always_inserted):
    output, trace = session(tmp_path, [
        f"set breakpoint always-inserted {always_inserted}",
        "break do_fork if total_forks == 3", "hbreak looper_tick if looper_iterations == 100000000",
        "continue", "print total_forks", "print looper_iterations", "monitor slots",
        "condition 1 total_forks == 6", "condition 2 looper_iterations % 7 == 3",
        "continue", "print looper_iterations", "delete 2",
        "continue", "print total_forks",
        "condition 1", "continue", "print total_forks", "delete", "detach"])
    forks, iterations, later, *more = values(output)
    # (gdb keeps a condition with a value from its history, `$2 + 5`, to itself.)
    assert forks == 3 and later % 7 == 3 and iterations <= later <= iterations + 7 and more == [6, 7], values(output)
    assert len(breakpoint_stops(trace)) == 4
    if always_inserted == "on":
        # The changes came as packets for breakpoints still inserted: the
        # stub replaced their lists, and the hardware one kept its one slot.
        z0 = [p for p in packets(trace, "<-", "Z0,") + packets(trace, "<-", "z0,")]
        assert any(a.startswith("Z0") and b.startswith("Z0") for a, b in zip(z0, z0[1:]))
        assert len(re.findall(r"owner=kgdb", output)) == 2  # one DR on each of the two CPUs


def test_conditions_are_right_across_detach_and_reattach(tmp_path):
    trace = tmp_path / "trace"
    with start_server("--trace", str(trace)) as server:
        first = run_gdb(server, [
            TARGET, "set breakpoint always-inserted on", "set dprintf-style agent",
            "break do_fork if total_forks == 3", r'dprintf looper_tick,"first %lu\n", looper_iterations',
            "hbreak do_fork if total_forks == 1000", "continue", "print total_forks", "detach"])
        # The machine runs on without the first debugger's breakpoints, then stops for the second.
        second = run_gdb(server, [
            TARGET, "monitor slots", "print total_forks",
            "hbreak do_fork if total_forks % 5 == 4", "continue", "print total_forks",
            "delete", "detach"])
    assert values(first) == [3]
    assert "first " in first
    before, after = values(second)
    assert after % 5 == 4 and before <= after < before + 5
    assert "owner=kgdb" not in second.split("Hardware assisted")[0]
    assert "first " not in second, "the first debugger's dprintf is gone with it"
    assert len(breakpoint_stops(trace.read_text())) == 2
