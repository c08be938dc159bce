"""The real gdb against `--dialect kgdb`, showing what it shows against Linux's kgdb.

One session, over TCP: `hbreak do_fork`, `info threads`, `bt` of a sleeping
task, `watch total_forks`, `jump`, and Ctrl-C sent as SysRq-G (`set remote
interrupt-sequence BREAK-g`: a Telnet BREAK, then `g`). What gdb 13 makes of
each comes from what kgdb sends it (kernel/debug/gdbstub.c,
arch/x86/kernel/kgdb.c), named beside each check.
"""
import re

import pytest

from gdbtools import GDB, RESUMED_MARKER, continue_command, parse_backtraces, parse_threads, spawn_gdb

pytestmark = pytest.mark.skipif(GDB is None, reason="gdb is not installed (.ci/run installs it with apt-get)")

SIGTRAP_STOP = re.compile(r"^Thread \d+ received signal SIGTRAP, Trace/breakpoint trap\.$", re.M)


@pytest.mark.server_args("--dialect", "kgdb")
def test_a_gdb_session_sees_what_linux_kgdb_shows_it(server):
    commands = [
        "set remote interrupt-sequence BREAK-g",
        "hbreak do_fork",
        "continue",
        "bt",
        "info threads",
        "thread apply all bt",
        "delete",
        "print total_forks",  # $1
        "watch total_forks",
        "continue",
        "print total_forks",  # $2
        "print $pc",  # $3
        "delete",
        "tbreak do_fork",
        "jump *$pc",  # on from where the watch stopped it, as gdb's jump goes: P10, then P39
        "print $pc",  # $4
        "delete",
        *continue_command(),
        "print $pc",  # $5
        "detach",
    ]
    with spawn_gdb(server, commands) as gdb:
        gdb.output.wait_count(RESUMED_MARKER, 1, timeout=60)  # the last continue runs
        gdb.interrupt()  # Ctrl-C at gdb's terminal: BREAK, then g
        assert gdb.wait(timeout=60) == 0, gdb.output.text
    output = gdb.output.text
    values = dict(re.findall(r"^\$(\d+) = (.*)$", output, re.M))

    # Z1 -> kgdb_set_hw_break; the execute breakpoint is a fault, the pc is do_fork.
    assert re.search(r"^Hardware assisted breakpoint 1 at 0x[0-9a-f]+: file kernel/fork.c", output, re.M), output
    assert re.search(r"hit Breakpoint 1, do_fork \(", output), output
    traces = parse_backtraces(output)
    assert [f.function for f in traces[0][:3]] == ["do_fork", "sys_clone", "do_syscall"], output

    # qfThreadInfo: the online CPUs' shadow threads, then the tasks; qThreadExtraInfo names them.
    rows = {row.label: row for row in parse_threads(output)}
    assert {"shadowCPU0", "shadowCPU1", "init", "looper"} <= set(rows), output
    # sleeping_thread_to_gdb_regs: a task on no CPU has pc 0 (and its saved rbp and rsp) ...
    assert rows["init"].frame.startswith("0x0000000000000000 in ?? ()"), output
    # ... so its backtrace starts at 0 and goes on through the frame its saved rbp heads.
    init = next(t for t in traces if t[0].function == "??")
    assert init[0].pc == 0 and "kernel_init" in [f.function for f in init[1:]], output

    # Z2 -> kgdb_set_hw_break; the stop is "T05thread:..;" with no watch: reason
    # (gdb_serial_stub), so gdb cannot tell a watchpoint fired: a plain SIGTRAP,
    # after the write (a data breakpoint is a trap), inside do_fork.
    assert "Hardware watchpoint 2: total_forks" in output, output
    assert int(values["2"]) == int(values["1"]) + 1, output
    assert "<do_fork+" in values["3"], output

    # jump: gdb writes rip (P10) and orig_rax (P39), which kgdb takes and ignores
    # (gdb_cmd_reg_set, dbg_set_reg): no "Could not write register", and the
    # machine goes on to the next fork.
    assert "Could not write register" not in output, output
    assert "hit Temporary breakpoint 3, do_fork" in output, output
    assert values["4"].endswith("<do_fork>"), output

    # SysRq-G: sysrq_handle_dbg calls kgdb_breakpoint(), whose int3 is a SIGTRAP,
    # the pc one byte after it.
    assert len(SIGTRAP_STOP.findall(output)) == 2, output
    assert values["5"].endswith("<kgdb_breakpoint+1>"), output
    assert "SIGINT" not in output, output
    assert re.search(r"^\[Inferior 1 \(.*\) detached\]$", output, re.M), output
