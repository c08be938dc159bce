"""The machine is deterministic: the same commands give the same stops, counts and packets."""
import re

import pytest

from gdbtools import GDB, run_gdb, start_server

pytestmark = pytest.mark.skipif(GDB is None, reason="gdb is not installed")

# A spinning task: init's sleeps and the tick go on around it, preempting it
# at the same instructions in every run (time is counted in guest blocks).
SPIN = "set {unsigned short}looper_tick = 0xfeeb"
SESSION = ["break do_fork", "continue", "print total_forks", "print jiffies", "delete",
           "watch looper_iterations", "continue", "continue", "info threads", "bt", "delete",
           "rwatch jiffies", "continue", "print $pc", "delete", SPIN, "hbreak schedule_timeout",
           "continue", "continue", "print jiffies", "info threads", "delete", "monitor ps", "detach"]


def traced_session(tmp_path, name):
    trace = tmp_path / f"{name}.trace"
    with start_server("--once", "--trace", str(trace)) as server:
        output = run_gdb(server, SESSION)
        assert server.wait(30) == 0
    return output, trace.read_text()


def test_two_runs_of_the_same_session_are_identical(tmp_path):
    first_output, first_trace = traced_session(tmp_path, "first")
    second_output, second_trace = traced_session(tmp_path, "second")
    assert "hit Breakpoint 1, do_fork" in first_output
    assert first_output.count("hit Breakpoint 4, schedule_timeout") == 2, "init runs while the looper spins"
    assert "(looper)              looper_tick ()" in first_output
    assert first_trace.count("\n") > 50
    assert first_trace == second_trace
    # gdb's own output differs only where it names the server's port
    strip = lambda text: re.sub(r"127\.0\.0\.1:\d+", "ADDRESS", text)  # noqa: E731
    assert strip(first_output) == strip(second_output)
