"""gdb 13's machine interface as an IDE drives it, over TCP and over a pty.

The commands are those VS Code's cppdbg, CLion and Eclipse CDT send (gdb's
manual, "The GDB/MI Interface"); the records are parsed with pygdbmi.
"""
from __future__ import annotations

import contextlib
import re

import pytest

from gdbtools import GDB, start_line_server, start_server
from mitools import MiSession, target_select

pytestmark = pytest.mark.skipif(GDB is None, reason="gdb is not installed")

TRANSPORTS = ("tcp", "pty")


@contextlib.contextmanager
def attached(transport: str, *args: str):
    """A server, and an MI session attached to it as an IDE attaches (non-stop off, async MI)."""
    with contextlib.ExitStack() as stack:
        if transport == "tcp":
            server = stack.enter_context(start_server(*args))
        else:
            server = stack.enter_context(start_line_server("--pty", *args))
        mi = MiSession(server.elf)
        stack.callback(mi.close)
        mi.command("-gdb-set mi-async on")
        start = len(mi.records)
        mi.command(target_select(server), expect="connected")
        mi.wait_stopped(start)
        mi.server = server
        yield mi


def value(mi: MiSession, expression: str) -> int:
    return int(mi.command(f"-data-evaluate-expression {expression}")["value"])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_do_fork_three_times_and_the_stopped_thread_in_thread_info(transport):
    with attached(transport) as mi:
        mi.command("-break-insert do_fork")
        stops = [mi.resume("-exec-continue") for _ in range(3)]
        assert [(s["reason"], s["frame"]["func"]) for s in stops] == [("breakpoint-hit", "do_fork")] * 3
        info = mi.command("-thread-info")
        current = next(t for t in info["threads"] if t["id"] == info["current-thread-id"])
        assert current["details"] == "looper" and current["frame"]["func"] == "do_fork", info
        # Every thread a different task: no two with the same frame.
        frames = [(t["frame"]["addr"], t["target-id"]) for t in info["threads"]]
        assert len(set(frames)) == len(frames) >= 4, info
        # Every thread's backtrace, as an IDE's call-stack view asks for it.
        for thread in info["threads"]:
            stack = mi.command(f"-stack-list-frames --thread {thread['id']}")["stack"]
            assert stack and stack[0]["addr"] == thread["frame"]["addr"], (thread, stack)
            if thread is current:
                assert [f["func"] for f in stack[:2]] == ["do_fork", "sys_clone"], stack
        mi.command("-target-detach")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_hardware_breakpoint_and_write_read_access_watchpoints(transport):
    with attached(transport) as mi:
        number = mi.command("-break-insert -h do_fork")["bkpt"]["number"]
        stop = mi.resume("-exec-continue")
        assert (stop["reason"], stop["frame"]["func"]) == ("breakpoint-hit", "do_fork"), stop
        mi.command(f"-break-delete {number}")
        assert mi.command("-break-watch total_forks")["wpt"]["exp"] == "total_forks"
        stop = mi.resume("-exec-continue")
        assert stop["reason"] == "watchpoint-trigger", stop
        assert int(stop["value"]["new"]) == int(stop["value"]["old"]) + 1 == value(mi, "total_forks"), stop
        mi.command(f"-break-delete {stop['wpt']['number']}")
        mi.command("-break-watch -r looper_iterations")
        stop = mi.resume("-exec-continue")
        assert stop["reason"] == "read-watchpoint-trigger" and stop["frame"]["func"] == "looper_main", stop
        assert int(stop["value"]["value"]) == value(mi, "looper_iterations"), stop
        mi.command(f"-break-delete {stop['hw-rwpt']['number']}")
        mi.command("-break-watch -a looper_iterations")
        stop = mi.resume("-exec-continue")
        assert stop["reason"] == "access-watchpoint-trigger" and stop["frame"]["func"] == "looper_main", stop
        shown = stop["value"].get("new", stop["value"].get("value"))
        assert int(shown) == value(mi, "looper_iterations"), stop
        mi.command("-target-detach")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_step_next_finish_frames_and_registers(transport):
    with attached(transport) as mi:
        mi.command("-break-insert do_fork")
        mi.resume("-exec-continue")
        frames = mi.command("-stack-list-frames")["stack"]
        assert [f["func"] for f in frames[:2]] == ["do_fork", "sys_clone"], frames
        line = int(frames[0]["line"])
        stop = mi.resume("-exec-next")
        assert stop["reason"] == "end-stepping-range" and int(stop["frame"]["line"]) > line, stop
        stop = mi.resume("-exec-step")
        assert stop["reason"] == "end-stepping-range", stop
        stop = mi.resume("-exec-finish")
        assert stop["reason"] == "function-finished", stop
        registers = {r["number"]: int(r["value"], 16)
                     for r in mi.command("-data-list-register-values x 7 16")["register-values"]}
        assert registers["16"] == int(stop["frame"]["addr"], 16) and registers["7"] > 0, (registers, stop)
        mi.command("-target-detach")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_register_and_memory_read_and_write_and_monitor(transport):
    with attached(transport) as mi:
        mi.command("-data-evaluate-expression $rax=0x1234")
        rax = mi.command("-data-list-register-values x 0")["register-values"][0]
        assert int(rax["value"], 16) == 0x1234, rax
        mi.command("-data-write-memory-bytes &total_forks 5500000000000000")
        memory = mi.command("-data-read-memory-bytes &total_forks 8")["memory"][0]
        assert memory["contents"] == "5500000000000000" and value(mi, "total_forks") == 0x55, memory
        slots = mi.console("monitor slots")
        assert len(re.findall(r"^cpu=\d+ dr=\d owner=\w+", slots, re.M)) == 8, slots
        mi.command("-target-detach")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_interrupt_while_running_then_detach_and_attach_again(transport):
    with attached(transport) as mi:
        start = len(mi.records)
        mi.command("-exec-continue", expect="running")
        mi.command("-exec-interrupt")
        stop = mi.wait_stopped(start)
        assert stop["reason"] == "signal-received" and stop["signal-name"] == "SIGINT", stop
        mi.command("-target-detach")
        start = len(mi.records)
        mi.command(target_select(mi.server), expect="connected")
        mi.wait_stopped(start)
        assert mi.command("-stack-list-frames")["stack"], mi.records[-5:]
        mi.command("-target-detach")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_fifth_hardware_watchpoint_is_refused_with_gdbs_message(transport):
    with attached(transport) as mi:
        for name in ("total_forks", "jiffies", "looper_iterations", "looper_forks", "nr_cpus_online"):
            mi.command(f"-break-watch {name}")
        # gdb inserts watchpoints when it resumes: ^running, its warning, then
        # ^error for the same command (infrun.c, insert_breakpoints).
        start = len(mi.records)
        mi.command("-exec-continue", expect="running")
        aborted = mi.wait_for(lambda r: r["type"] == "result" and r["message"] == "error", start)
        warning = "".join(r["payload"] for r in mi.records[start:] if r["type"] == "log")
        assert "Could not insert hardware watchpoint 5." in warning, warning
        assert "You may have requested too many hardware breakpoints/watchpoints." in warning, warning
        assert aborted["payload"]["msg"] == "Command aborted."
        mi.command("-target-detach")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_perf_watch_and_ptrace_loop_counts_exact_at_every_stop(transport):
    with attached(transport, "--scenario", "perf-watch") as mi:
        boot = value(mi, "jiffies")
        mi.command("-break-insert -h do_fork")
        for _ in range(3):
            assert mi.resume("-exec-continue")["reason"] == "breakpoint-hit"
            hits = sum(int(h) for h in re.findall(r"hits=(\d+)", mi.console("monitor perf")))
            assert hits + boot == value(mi, "jiffies")
        mi.command("-target-detach")
    with attached(transport, "--scenario", "ptrace-loop") as mi:
        mi.command("-break-insert -h do_fork")
        for _ in range(3):
            assert mi.resume("-exec-continue")["reason"] == "breakpoint-hit"
            hits = int(re.search(r"hits=(\d+)", mi.console("monitor ptrace"))[1])
            assert hits == value(mi, "looper_iterations") > 0
        mi.command("-target-detach")
