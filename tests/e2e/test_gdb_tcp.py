"""Issue 2's acceptance: the machine's real gdb, in batch mode, against
`kgdbstub serve --tcp 127.0.0.1:0`.

The gdb 13 output these tests read (see gdbtools for the parsers):

    rip            0xffffffff8100003b  0xffffffff8100003b <kgdb_breakpoint+1>
    => 0xffffffff8100003b <kgdb_breakpoint+1>:\tret
       0xffffffff8100003c <do_exit>:\tmov    $0x0,%edx
    * 3    Thread 1 (init)                kgdb_breakpoint () at kernel/debug.c:21
      1    Thread 4294967294 (shadowCPU0) schedule () at kernel/sched.c:14
    Breakpoint 1 at 0xffffffff81000062: file kernel/fork.c, line 40.
    Thread 4 hit Breakpoint 1, do_fork (clone_flags=1, ...) at kernel/fork.c:40
    #1  0xffffffff810000e4 in sys_clone (entry=<optimized out>, ...) at kernel/fork.c:63
    $3 = 12345
    [Switching to thread 3 (Thread 1)]
    [Inferior 1 (Remote target) detached]
    Thread 5 received signal SIGINT, Interrupt.   ("Program received ..." with one thread)
"""

import re

import pytest

from gdbtools import (
    GDB,
    RESUMED_MARKER,
    continue_command,
    elf_functions,
    parse_backtraces,
    parse_threads,
    parse_values,
    run_gdb,
    select_thread_command,
    spawn_gdb,
    start_server,
)

pytestmark = pytest.mark.skipif(
    GDB is None, reason="gdb is not installed (.ci/run installs it with apt-get)"
)

KERNEL_ADDRESS = re.compile(r"0xffffffff8[0-9a-f]{7}")
RIP = re.compile(r"^rip\s+(0x[0-9a-f]+)\s", re.M)
INSTRUCTION = re.compile(
    r"^(?P<marker>=> |   )(?P<address>0x[0-9a-f]+)(?: <[^>]*>)?:\t(?P<text>.*)$", re.M
)
BREAKPOINT_SET = re.compile(r"^Breakpoint 1 at (0x[0-9a-f]+)", re.M)
DO_FORK_STOP = re.compile(r"Breakpoint 1, (?:0x[0-9a-f]+ in )?do_fork \(")
SWITCHED = re.compile(r"^\[Switching to thread (\d+) \(([^)]*)\)\]$", re.M)
DETACHED = re.compile(r"^\[Inferior 1 \(.*\) detached\]$", re.M)
SIGINT_STOP = "received signal SIGINT, Interrupt."


def check_stops_at_do_fork(output: str, functions: set[str], stops: int = 1) -> None:
    """`stops` stops at do_fork, each `bt` with a caller from the image."""
    assert len(DO_FORK_STOP.findall(output)) == stops, output
    traces = [t for t in parse_backtraces(output) if t[0].function == "do_fork"]
    assert traces, output
    for trace in traces:
        assert len(trace) >= 2, output
        assert trace[1].function in functions, output


def check_threads(output: str, cpus: int) -> None:
    rows = parse_threads(output)
    assert rows, output
    labels = [row.label for row in rows]
    assert "init" in labels and "looper" in labels, output
    init = rows[labels.index("init")]
    assert re.fullmatch(r"Thread (?:p?[0-9a-f]+\.)?1", init.target_id), output
    shadows = [row for row in rows if (row.label or "").startswith("shadowCPU")]
    assert sorted(row.label for row in shadows) == [
        f"shadowCPU{cpu}" for cpu in range(cpus)
    ], output
    for row in shadows:
        # kgdb's shadow thread of CPU n is -(n + 2), sent as 32 bits
        cpu = int(row.label.removeprefix("shadowCPU"))
        assert row.target_id in (f"Thread {0xFFFFFFFE - cpu}", f"Thread {-(cpu + 2)}")
    assert sum(row.current for row in rows) == 1, output


def test_registers_and_disassembly_at_a_kernel_address(server):
    output = run_gdb(server, ["info registers rip", "x/4i $pc"])

    rip = RIP.search(output)
    assert rip, output
    assert KERNEL_ADDRESS.fullmatch(rip[1]), output
    instructions = INSTRUCTION.findall(output)
    assert len(instructions) == 4, output
    assert instructions[0][0] == "=> " and int(instructions[0][1], 16) == int(rip[1], 16)
    for _, address, text in instructions:
        assert KERNEL_ADDRESS.fullmatch(address), output
        assert text.strip() and "(bad)" not in text, output


def test_info_threads_names_init_looper_and_a_shadow_thread_per_cpu(server):
    check_threads(run_gdb(server, ["info threads"]), cpus=2)


@pytest.mark.server_args("--cpus", "3")
def test_one_shadow_thread_per_cpu_with_three_cpus(server):
    check_threads(run_gdb(server, ["info threads"]), cpus=3)


def test_breakpoint_backtrace_variables_and_another_task(server):
    functions = elf_functions(server.elf)
    output = run_gdb(
        server,
        [
            "set var jiffies = 12345",  # while stopped, before any continue
            "print jiffies",  # $1
            "break do_fork",
            "continue",
            "bt",
            "print total_forks",  # $2
            "continue",
            "print total_forks",  # $3
            "info threads",
            select_thread_command("init", "looper"),
            "bt",
            "detach",
        ],
    )

    values = parse_values(output)
    assert values.get(1) == "12345", output

    placed = BREAKPOINT_SET.search(output)
    assert placed and KERNEL_ADDRESS.fullmatch(placed[1]), output
    check_stops_at_do_fork(output, functions, stops=2)
    assert int(values[3]) > int(values[2]), output

    switched = SWITCHED.search(output)
    assert switched, output
    rows = {row.num: row for row in parse_threads(output[: switched.start()])}
    other = rows[int(switched[1])]
    assert other.label in ("init", "looper") and not other.current, output
    after = parse_backtraces(output[switched.end() :])
    assert len(after) >= 2, output  # `thread N`'s frame line, then `bt`
    assert after[1][0].function in functions, output
    assert DETACHED.search(output), output


def test_detach_then_a_second_gdb_attaches_and_does_the_same(server):
    functions = elf_functions(server.elf)
    commands = ["break do_fork", "continue", "bt", "detach"]

    first = run_gdb(server, commands)
    check_stops_at_do_fork(first, functions)
    assert DETACHED.search(first), first

    second = run_gdb(server, commands)
    check_stops_at_do_fork(second, functions)
    assert DETACHED.search(second), second


def test_once_exits_with_status_0_after_the_debugger_detaches():
    with start_server("--once") as server:
        output = run_gdb(server, ["info registers rip", "detach"])
        assert DETACHED.search(output), output
        assert server.wait(timeout=30) == 0


def test_sigint_to_gdb_stops_the_running_machine_and_continue_goes_on(server):
    functions = elf_functions(server.elf)
    commands = [
        *continue_command(),
        "print $pc",  # $1
        *continue_command(),
        "print $pc",  # $2
        "break do_fork",
        "continue",
        "bt",
        "detach",
    ]
    with spawn_gdb(server, commands) as gdb:
        for resumes in (1, 2):
            gdb.output.wait_count(RESUMED_MARKER, resumes, timeout=30)
            gdb.interrupt()  # Ctrl-C at gdb's terminal
            gdb.output.wait_count(SIGINT_STOP, resumes, timeout=10)
        gdb.wait(timeout=60)
    output = gdb.output.text

    assert output.count(SIGINT_STOP) == 2, output
    values = parse_values(output)
    for number in (1, 2):
        assert re.fullmatch(r"\(void \(\*\)\(\)\) 0x[0-9a-f]+.*", values.get(number, "")), output
    # and the machine runs on after the second interrupt
    check_stops_at_do_fork(output, functions)
    assert DETACHED.search(output), output
