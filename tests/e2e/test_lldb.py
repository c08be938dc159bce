"""LLDB 14 as a client, over TCP and over a pty (`process connect serial://`).

Each expectation names what LLDB does (lldb/source/Plugins/Process/gdb-remote,
GDBRemoteCommunicationClient.cpp and ProcessGDBRemote.cpp) or what kgdb does
(kernel/debug/gdbstub.c).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from gdbtools import REPO_ROOT, serving, start_server
from kgdbstub.kernel.image import Image
from lldbtools import FRAME, LLDB, STOP, VARIABLE, LldbConsole, connect_command, read_boot_console, run_lldb

pytestmark = pytest.mark.skipif(LLDB is None, reason="lldb is not installed")

TRANSPORTS = ("tcp", "pty")
IMAGE = Image(REPO_ROOT / "targets" / "minikernel" / "minikernel.elf")  # what `serve` loads


INTERRUPT_TRACED = "<- '\\\\x03'"  # how --trace logs a 0x03 it received


def stops(output: str) -> list[tuple[str | None, str, str]]:
    """(thread name, stop reason, function of frame 0) of each stop LLDB printed."""
    found = []
    for stop in STOP.finditer(output):
        frame = FRAME.search(output, stop.end())
        found.append((stop["name"], stop["reason"], frame["function"] if frame else ""))
    return found


def variables(output: str, name: str) -> list[int]:
    return [int(m["value"]) for m in VARIABLE.finditer(output) if m["name"] == name]


def monitor(command: str) -> str:
    return f"process plugin packet monitor {command}"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_do_fork_three_times_in_a_row(transport):
    # A shadow thread that showed the task's registers looked to LLDB like a
    # second thread stopped at the breakpoint (Thread::SetupForResume steps
    # every thread whose PC is at a breakpoint site): it stepped that one
    # forever, and the second continue never stopped.
    with serving(transport) as server:
        output = run_lldb(server, ["breakpoint set -n do_fork", "continue", "continue", "continue",
                                   "thread list", "process detach"])
    hits = [s for s in stops(output) if s[1] == "breakpoint 1.1"]
    assert [function for _, _, function in hits] == ["do_fork"] * 3, output
    # No two threads at one PC with one stack: the thread list has none aliased.
    rows = re.findall(r"thread #\d+: tid = (0x[0-9a-f]+), (0x[0-9a-f]+)", output)
    assert len({tid for tid, _ in rows}) == len(rows) >= 4, output
    assert re.search(r"Process \d+ detached", output), output


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_hardware_breakpoint_and_write_read_access_watchpoints_with_their_values(transport):
    with serving(transport) as server:
        output = run_lldb(server, [
            "breakpoint set -H -n do_fork", "continue", monitor("slots"), "breakpoint delete 1",
            "watchpoint set variable -w write total_forks", "continue", "target variable total_forks",
            "watchpoint delete 1",
            "watchpoint set variable -w read looper_iterations", "continue", "target variable looper_iterations",
            "watchpoint delete 2",
            "watchpoint set variable -w read_write looper_iterations", "continue",
            "target variable looper_iterations", "process detach"])
    reasons = [(reason, function) for _, reason, function in stops(output)]
    assert reasons[1:] == [("breakpoint 1.1", "do_fork"), ("watchpoint 1", "do_fork"),
                           ("watchpoint 2", "looper_main"), ("watchpoint 3", "looper_main")], output
    do_fork = IMAGE.address_of("do_fork")
    assert re.search(rf"cpu=\d+ dr=\d owner=kgdb addr={do_fork:#x} type=x len=1", output), output
    # looper_iterations++ reads and writes: each watchpoint shows the value before and after.
    hits = [(int(old), int(new)) for old, new in re.findall(r"old value: (\d+)\s+new value: (\d+)", output)]
    values = variables(output, "total_forks") + variables(output, "looper_iterations")
    assert len(hits) == 3 and all(new == old + 1 for old, new in hits), output
    assert [new for _, new in hits] == values, output


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_step_next_finish(transport):
    with serving(transport) as server:
        output = run_lldb(server, ["breakpoint set -n do_fork", "continue", "breakpoint delete 1",
                                   "thread step-over", "thread step-inst", "thread step-out",
                                   "process detach"])
    reasons = [(reason, function) for _, reason, function in stops(output)][1:]
    assert reasons[0] == ("breakpoint 1.1", "do_fork"), output
    assert reasons[1] == ("step over", "do_fork"), output
    assert reasons[2] == ("instruction step into", "do_fork"), output
    assert reasons[3][0] == "step out" and reasons[3][1] == "sys_clone", output


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_threads_backtrace(transport):
    with serving(transport) as server:
        output = run_lldb(server, ["breakpoint set -n do_fork", "continue", "bt all", "process detach"])
    traces = output.split("(lldb) bt all", 1)[1].split("(lldb) process detach")[0]
    threads = re.split(r"^[ *] thread #", traces, flags=re.M)[1:]
    assert len(threads) >= 4, traces
    for thread in threads:
        assert FRAME.search(thread), thread
    assert any("frame #1:" in t and "`sys_clone" in t for t in threads), traces


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_register_and_memory_read_and_write(transport):
    total_forks = IMAGE.address_of("total_forks")
    with serving(transport) as server:
        output = run_lldb(server, [
            "breakpoint set -n do_fork", "continue",
            "register write rax 0x1234", "register read rax",
            f"memory write -s 8 -f x {total_forks:#x} 0x55", f"memory read -s 8 -f x -c 1 {total_forks:#x}",
            "target variable total_forks",
            "thread select 1", "register read rip", "process detach"])
    assert re.search(r"rax = 0x0000000000001234", output), output
    assert f"{total_forks:#x}: 0x0000000000000055" in output, output
    assert variables(output, "total_forks") == [0x55], output
    assert re.search(r"rip = 0x[0-9a-f]+", output.split("(lldb) thread select 1")[1]), output


def interrupt(lldb: LldbConsole, trace: Path, attempts: int = 5) -> re.Match:
    """^C at a running process, until LLDB passes it on to the stub.

    LLDB prints "Process N resuming" before it hands its terminal to the
    running process; a ^C that comes in between only ends its own command
    line and sends the stub nothing, as a user pressing it that early
    sees. The stub's trace tells: each ^C that LLDB did pass on (a 0x03
    the stub received) must stop the machine.
    """
    for _ in range(attempts):
        received = trace.read_text().count(INTERRUPT_TRACED)
        start = lldb.control_c()
        try:
            return lldb.expect(r"stop reason = signal SIGINT", start=start, timeout=5)
        except AssertionError:
            if trace.read_text().count(INTERRUPT_TRACED) != received:
                raise  # the stub got the interrupt and the machine did not stop
    raise AssertionError(f"lldb kept every ^C to itself; screen:\n{lldb.text}")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_interrupt_while_running(transport, tmp_path):
    trace = tmp_path / "packets"
    with serving(transport, "--trace", str(trace)) as server:
        if transport == "pty":
            read_boot_console(server)
        lldb = LldbConsole(server.elf)
        try:
            lldb.expect(r"\(lldb\) ")
            lldb.expect(r"stop reason = signal SIGTRAP", start=lldb.type(connect_command(server)))
            lldb.expect(r"Process \d+ resuming", start=lldb.type("continue"))
            stopped = interrupt(lldb, trace)
            lldb.expect(r"frame #0: 0x", start=stopped.end())
            lldb.expect(r"Process \d+ detached", start=lldb.type("process detach"))
        finally:
            lldb.close()



@pytest.mark.parametrize("transport", TRANSPORTS)
def test_detach_and_attach_again(transport):
    with serving(transport) as server:
        output = run_lldb(server, ["breakpoint set -n do_fork", "continue", "process detach",
                                   connect_command(server), "breakpoint set -n do_fork", "continue",
                                   "process detach"])
    # LLDB prints "Process 1 detached" from an event that the next connect
    # can overtake in batch mode; the second session's stops show the first
    # one ended.
    second = output.split(f"(lldb) {connect_command(server)}")[-1]
    assert re.search(r"Process \d+ stopped", second), output
    assert [f for _, r, f in stops(second) if r.startswith("breakpoint")] == ["do_fork"], output
    assert re.search(r"Process \d+ detached\n*$", output), output


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_fifth_hardware_slot_is_refused_with_a_message(transport):
    with serving(transport) as server:
        output = run_lldb(server, [
            "watchpoint list",
            *[f"watchpoint set variable {name}" for name in ("total_forks", "jiffies", "looper_iterations",
                                                            "looper_forks")],
            "watchpoint set expression -s 8 -- &last_fork", "breakpoint set -H -n do_fork",
            "process detach"])
    assert "Number of supported hardware watchpoints: 4" in output, output
    last_fork = IMAGE.address_of("last_fork")
    assert f"error: Watchpoint creation failed (addr={last_fork:#x}, size=8)" in output, output
    assert "hardware breakpoint resources might be exhausted or unavailable" in output, output


def test_watchpoint_count_is_what_perf_and_ptrace_leave():
    # LLDB asks qWatchpointSupportInfo once (GetWatchpointSupportInfo caches
    # it) and refuses every watchpoint when the answer is 0.
    with start_server("--scenario", "perf-watch") as server:
        output = run_lldb(server, ["watchpoint list", "process detach"])
        assert "Number of supported hardware watchpoints: 3" in output, output
        output = run_lldb(server, [*[monitor("perf add wide jiffies w 8")] * 3,
                                   "watchpoint set variable total_forks", "process detach"])
    assert re.search(r"Process \d+ detached", output), output
    assert "Target supports (0) hardware watchpoint slots." in output, output


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_perf_watch_counts_every_jiffies_write_at_every_stop(transport):
    with serving(transport, "--scenario", "perf-watch") as server:
        output = run_lldb(server, [monitor("perf"), "target variable jiffies", "breakpoint set -H -n do_fork",
                                   *["continue", monitor("perf"), "target variable jiffies"] * 3,
                                   "process detach"])
    blocks = re.findall(r"((?:^id=\d+ kind=wide .*\n)+)", output, re.M)  # one line per CPU
    hits = [sum(int(h) for h in re.findall(r"hits=(\d+)", block)) for block in blocks]
    jiffies = variables(output, "jiffies")
    assert len(hits) == len(jiffies) == 4 and hits[0] == 0, output
    assert [h + jiffies[0] for h in hits] == jiffies and jiffies[-1] > jiffies[0], output


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ptrace_loop_counts_every_looper_iteration_at_every_stop(transport):
    with serving(transport, "--scenario", "ptrace-loop") as server:
        output = run_lldb(server, ["breakpoint set -H -n do_fork",
                                   *["continue", monitor("ptrace"), "target variable looper_iterations"] * 3,
                                   "process detach"])
    hits = [int(h) for h in re.findall(r"^pid=\d+ dr=\d .* hits=(\d+) ", output, re.M)]
    iterations = variables(output, "looper_iterations")
    assert len(hits) == 3 and hits == iterations and hits[0] > 0, output


def test_with_no_file_lldb_knows_the_machine():
    with start_server() as server:
        output = run_lldb(server, ["target list", "register read rip", "process detach"], elf=False)
    assert re.search(r"arch=x86_64-unknown-none", output), output
    assert re.search(r"rip = 0xffffffff8", output), output


def test_a_stop_costs_lldb_no_packet_per_thread(tmp_path):
    # Without QThreadSuffixSupported and QListThreadsInStopReply, LLDB asks
    # at each stop for the thread list and, for every thread, selects it
    # (Hg) and reads its PC, stack pointer, frame pointer and stack.
    trace = tmp_path / "trace"
    with start_server("--trace", str(trace)) as server:
        run_lldb(server, ["watchpoint set variable total_forks", *["continue"] * 4, "process detach"])
    lines = trace.read_text().splitlines()
    stop_lines = [i for i, line in enumerate(lines) if line.startswith("-> 'T05")]
    between = [line for line in lines[stop_lines[1]:stop_lines[-1]] if line.startswith("<- ")]
    asked = {re.match(r"<- '(\w)", line)[1] for line in between}
    assert not any(line.startswith(("<- 'qfThreadInfo", "<- 'Hg", "<- 'qThreadStopInfo", "<- 'jThreadsInfo"))
                   for line in between), between
    assert not any(re.match(r"<- 'p[0-9a-f]+'", line) for line in between), between
    assert asked <= {"z", "Z", "m", "c"}, between
