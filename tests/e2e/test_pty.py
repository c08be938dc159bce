"""Issue 5's acceptance over a pty and a serial line: the machine's real gdb
against `kgdbstub serve --pty` (and `--serial`), the kernel console sharing
the line.

gdb prints console text that arrives as O packets as it is, so in the
`modern` dialect its output holds `looper: running` (looper's greeting,
printed during the first continue after boot); in the `kgdb` dialect the
text goes raw on the line and gdb skips it.
"""
import os
import re
import select
import termios
import time
import tty

import pytest

from gdbtools import (
    GDB,
    RESUMED_MARKER,
    continue_command,
    elf_functions,
    null_modem,
    parse_backtraces,
    parse_threads,
    parse_values,
    run_gdb,
    select_thread_command,
    spawn_gdb,
    start_line_server,
)
from kgdbstub.transport.serial import open_serial

pytestmark = pytest.mark.skipif(GDB is None, reason="gdb is not installed")

DO_FORK_STOP = re.compile(r"Breakpoint 1, (?:0x[0-9a-f]+ in )?do_fork \(")
DETACHED = re.compile(r"^\[Inferior 1 \(.*\) detached\]$", re.M)
SWITCHED = re.compile(r"^\[Switching to thread (\d+) \(([^)]*)\)\]$", re.M)
SIGINT_STOP = "received signal SIGINT, Interrupt."
LOOPER_GREETING = "looper: running"
BOOT_END = b"KGDB: Waiting for connection from remote gdb...\n"
# gdb dies right after what it printed is out, without detaching.
VANISH = "python gdb.flush(); import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
KGDB_SLOT = re.compile(r"^cpu=\d dr=\d owner=kgdb ", re.M)


def check_stops_at_do_fork(output: str, functions: set[str], stops: int = 1) -> None:
    assert len(DO_FORK_STOP.findall(output)) == stops, output
    traces = [t for t in parse_backtraces(output) if t[0].function == "do_fork"]
    assert traces, output
    for trace in traces:
        assert len(trace) >= 2 and trace[1].function in functions, output


def test_boot_messages_wait_on_the_pty_for_a_pyserial_reader_then_gdb_attaches_on_the_same_line():
    with start_line_server("--pty") as server:
        assert re.fullmatch(r"/dev/pts/\d+", server.path), server.path
        # pyserial's own open discards pending input (as gdb's does); open_serial
        # keeps it, as `cat` or `screen` would show it.
        port = open_serial(server.path, keep_pending_input=True)
        try:
            port.timeout = 20  # the deadline for the whole read
            boot = port.read_until(BOOT_END)
        finally:
            port.close()
        assert boot.startswith(b"Linux version 6.1.0-minikernel"), boot
        assert b"Command line: kgdbwait\n" in boot and boot.endswith(BOOT_END), boot

        output = run_gdb(server, ["break do_fork", "continue", "bt", "detach"])
        check_stops_at_do_fork(output, elf_functions(server.elf))
        assert LOOPER_GREETING in output, output  # console text as O packets
        assert DETACHED.search(output), output


def test_the_foundation_session_over_the_pty_then_a_second_gdb_attaches():
    with start_line_server("--pty") as server:
        functions = elf_functions(server.elf)
        output = run_gdb(server, [
            "set var jiffies = 12345",
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
        ])
        values = parse_values(output)
        assert values.get(1) == "12345", output
        check_stops_at_do_fork(output, functions, stops=2)
        assert int(values[3]) > int(values[2]), output
        rows = parse_threads(output)
        labels = [row.label for row in rows]
        assert "init" in labels and "looper" in labels, output
        assert {"shadowCPU0", "shadowCPU1"} <= set(labels), output
        switched = SWITCHED.search(output)
        assert switched, output
        after = parse_backtraces(output[switched.end():])
        assert len(after) >= 2 and after[1][0].function in functions, output
        assert DETACHED.search(output), output

        again = run_gdb(server, ["break do_fork", "continue", "bt", "detach"])
        check_stops_at_do_fork(again, functions)
        assert DETACHED.search(again), again


def test_hbreak_and_watch_over_the_pty():
    with start_line_server("--pty") as server:
        output = run_gdb(server, [
            "hbreak do_fork", "continue", "print total_forks", "continue", "print total_forks", "delete",
            "watch total_forks", "continue", "delete", "detach",
        ])
    assert re.search(r"Hardware assisted breakpoint 1 at 0x[0-9a-f]+: file kernel/fork.c", output), output
    assert len(re.findall(r"hit Breakpoint 1, do_fork \(", output)) == 2, output
    first, second = (int(v) for v in re.findall(r"^\$\d+ = (\d+)$", output, re.M))
    assert second == first + 1, output
    assert "Hardware watchpoint 2: total_forks" in output, output
    old, new = (int(v) for v in re.search(r"Old value = (\d+)\s+New value = (\d+)", output).groups())
    assert new == old + 1, output
    assert DETACHED.search(output), output


def test_kgdb_dialect_over_the_pty_leaves_the_console_raw():
    with start_line_server("--pty", "--dialect", "kgdb") as server:
        output = run_gdb(server, ["hbreak do_fork", "continue", "bt", "detach"])
        check_stops_at_do_fork(output, elf_functions(server.elf))
        assert LOOPER_GREETING not in output, output  # raw on the line: gdb skips it
        assert DETACHED.search(output), output


@pytest.mark.parametrize("dialect", ["modern", "kgdb"])
def test_a_gdb_that_vanishes_leaves_no_breakpoint_and_no_slot_for_the_next(dialect):
    with start_line_server("--pty", "--dialect", dialect) as server:
        first = run_gdb(server, [
            "set breakpoint always-inserted on",
            "hbreak do_fork", "watch total_forks", "continue",
            "break looper_tick",  # inserted at once, and hit at every iteration if it stayed
            "monitor slots",
            VANISH,
        ])
        assert len(KGDB_SLOT.findall(first)) >= 2, first  # its breakpoint and watchpoint held DRs
        assert not DETACHED.search(first), first

        commands = ["monitor slots", *continue_command(), "monitor slots", "detach"]
        with spawn_gdb(server, commands) as second:
            second.output.wait_count(RESUMED_MARKER, 1, timeout=30)
            if dialect == "kgdb":
                # kgdboc ignores a Ctrl-C; a pty carries no BREAK from gdb: SysRq-G from the line.
                line = os.open(server.path, os.O_WRONLY | os.O_NOCTTY)
                os.write(line, b"\xff\xf3g")
                os.close(line)
            else:
                second.interrupt()
            second.wait(timeout=60)
        output = second.output.text
        assert not KGDB_SLOT.search(output), output
        stop = "received signal SIGTRAP" if dialect == "kgdb" else SIGINT_STOP
        assert output.count(stop) == 1 and (dialect == "kgdb" or "SIGTRAP" not in output), output
        assert DETACHED.search(output), output


def test_link_names_the_pty_and_goes_with_the_server(tmp_path):
    link = tmp_path / "ttyKGDB"
    with start_line_server("--pty", "--link", str(link)) as server:
        assert link.is_symlink() and str(link.resolve()) == server.path
        attach = server.stdout.wait_for(r"attach with: gdb .* -ex 'target remote (\S+)'", timeout=10)
        assert attach[1] == str(link)
        output = run_gdb(str(link), ["info registers rip", "detach"], elf=server.elf)
        assert re.search(r"^rip\s+0xffffffff8", output, re.M), output
        server.stop()
    assert not link.is_symlink()


def test_once_exits_when_the_first_debugger_detaches_from_the_pty():
    with start_line_server("--pty", "--once") as server:
        output = run_gdb(server, ["info registers rip", "detach"])
        assert DETACHED.search(output), output
        assert server.wait(timeout=30) == 0


def test_serial_line_through_a_null_modem_cable():
    with null_modem() as (stub_end, gdb_end):
        with start_line_server("--serial", stub_end, "--baud", "115200") as server:
            assert server.kind == "serial" and server.path == stub_end
            functions = elf_functions(server.elf)
            output = run_gdb(gdb_end, ["break do_fork", "continue", "bt", "detach"],
                             elf=server.elf)
            check_stops_at_do_fork(output, functions)
            assert LOOPER_GREETING in output and DETACHED.search(output), output

            # A serial line never tells that gdb went away: the next gdb's
            # arrival ends the forgotten session, in no-ack mode as it was.
            first = run_gdb(gdb_end, ["set breakpoint always-inserted on", "hbreak do_fork", "continue",
                                      "monitor slots", VANISH], elf=server.elf)
            assert KGDB_SLOT.search(first), first
            second = run_gdb(gdb_end, ["monitor slots", "break do_fork", "continue", "bt", "detach"],
                             elf=server.elf)
            assert not KGDB_SLOT.search(second.split("Breakpoint 1 at")[0]), second
            check_stops_at_do_fork(second, functions)
            assert DETACHED.search(second), second


def read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    """Bytes read from `fd` until they end with `needle`, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    seen = b""
    while not seen.endswith(needle):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no {needle!r} within {timeout:g} s; got {seen!r}")
        seen += os.read(fd, 4096)
    return seen


def test_the_boot_log_goes_out_on_a_serial_line_and_losing_the_line_ends_the_stub():
    master, slave = os.openpty()
    tty.setraw(master, termios.TCSANOW)
    device = os.ttyname(slave)
    os.close(slave)  # the stub opens it as its serial port; this test is the far end
    try:
        with start_line_server("--serial", device) as server:
            seen = read_until(master, BOOT_END, timeout=20)
            assert seen.startswith(b"Linux version 6.1.0-minikernel"), seen
            os.close(master)  # the cable is pulled
            master = None
            assert server.wait(timeout=30) == 2
            assert "the line was hung up" in server.stderr_text()
    finally:
        if master is not None:
            os.close(master)
