"""tools/splitter.py between `kgdbstub serve --pty` and two TCP clients: the
machine's real gdb on the gdb port and a console client on the other, in
the same run."""
import contextlib
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Iterator

import pytest

from gdbtools import (
    GDB,
    REPO_ROOT,
    RESUMED_MARKER,
    OutputReader,
    continue_command,
    elf_functions,
    parse_backtraces,
    run_gdb,
    spawn_gdb,
    start_line_server,
)

pytestmark = pytest.mark.skipif(GDB is None, reason="gdb is not installed")

SPLITTER = REPO_ROOT / "tools" / "splitter.py"
DO_FORK_STOP = re.compile(r"Breakpoint 1, (?:0x[0-9a-f]+ in )?do_fork \(")
DETACHED = re.compile(r"^\[Inferior 1 \(.*\) detached\]$", re.M)
SIGINT_STOP = "received signal SIGINT, Interrupt."
KGDB_SLOT = re.compile(r"^cpu=\d dr=\d owner=kgdb ", re.M)
VANISH = "python gdb.flush(); import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
BOOT_END = "KGDB: Waiting for connection from remote gdb..."
TELNET_BREAK = b"\xff\xf3"
# gdb's packets must never reach the console. A lone acknowledgement may: when
# gdb sends a packet again under load, the stub acknowledges both copies and
# the splitter, which saw the first '+' settle what was due, cannot tell the
# second from console text.
FRAME = re.compile(r"[$][^#]*#[0-9a-f]{2}")


@dataclass
class Splitter:
    console: tuple[str, int]
    gdb: tuple[str, int]
    proc: subprocess.Popen
    stdout: OutputReader

    @property
    def gdb_address(self) -> str:
        return f"{self.gdb[0]}:{self.gdb[1]}"


@contextlib.contextmanager
def start_splitter(line: str, timeout: float = 30.0) -> Iterator[Splitter]:
    proc = subprocess.Popen(
        [sys.executable, str(SPLITTER), line, "--console", "127.0.0.1:0", "--gdb", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    reader = OutputReader(proc.stdout, "splitter")
    try:
        console = reader.wait_for(r"(?m)^console on tcp:(\S+):(\d+)$", timeout=timeout)
        gdb = reader.wait_for(r"(?m)^gdb on tcp:(\S+):(\d+)$", timeout=timeout)
        yield Splitter((console[1], int(console[2])), (gdb[1], int(gdb[2])), proc, reader)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ConsoleClient:
    """What `nc 127.0.0.1 PORT` would be: a socket whose text is read with deadlines."""

    def __init__(self, address: tuple[str, int]):
        self.sock = socket.create_connection(address, timeout=10)
        self.sock.settimeout(None)  # the reader thread reads the descriptor blocking; it has deadlines
        self.output = OutputReader(self.sock, "console client")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@contextlib.contextmanager
def stub_splitter_and_console(*stub_args: str):
    with start_line_server("--pty", *stub_args) as server:
        with start_splitter(server.path) as splitter:
            console = ConsoleClient(splitter.console)
            try:
                yield server, splitter, console
            finally:
                console.close()


def check_stops_at_do_fork(output: str, functions: set[str]) -> None:
    assert len(DO_FORK_STOP.findall(output)) == 1, output
    trace = next(t for t in parse_backtraces(output) if t[0].function == "do_fork")
    assert len(trace) >= 2 and trace[1].function in functions, output


def test_kgdb_dialect_gdb_stops_at_do_fork_while_the_console_client_reads_the_console():
    with stub_splitter_and_console("--dialect", "kgdb") as (server, splitter, console):
        console.output.wait_for(re.escape(BOOT_END), timeout=20)  # kept for the first console client
        output = run_gdb(splitter.gdb_address, ["break do_fork", "continue", "bt", "detach"], elf=server.elf)
        check_stops_at_do_fork(output, elf_functions(server.elf))
        assert DETACHED.search(output), output
        # Printed raw on the line during that continue: the splitter gave it to the console.
        console.output.wait_for(r"looper: running\n", timeout=20)
        assert "looper: running" not in output, output
        assert not FRAME.search(console.output.text), console.output.text


def test_modern_dialect_console_text_goes_to_gdb_as_packets_and_the_boot_log_to_the_console():
    with stub_splitter_and_console() as (server, splitter, console):
        console.output.wait_for(re.escape(BOOT_END), timeout=20)
        output = run_gdb(splitter.gdb_address, ["break do_fork", "continue", "bt", "detach"], elf=server.elf)
        check_stops_at_do_fork(output, elf_functions(server.elf))
        assert "looper: running" in output, output
        assert DETACHED.search(output), output
        assert not FRAME.search(console.output.text), console.output.text


def test_break_g_from_gdb_through_the_splitter_is_sysrq_g():
    with stub_splitter_and_console("--dialect", "kgdb") as (server, splitter, console):
        commands = ["set remote interrupt-sequence BREAK-g", *continue_command(), "print $pc", "detach"]
        with spawn_gdb(splitter.gdb_address, commands, elf=server.elf) as gdb:
            gdb.output.wait_count(RESUMED_MARKER, 1, timeout=30)
            gdb.interrupt()  # gdb sends a Telnet BREAK and 'g' over TCP; the splitter puts them on the pty
            gdb.wait(timeout=60)
        output = gdb.output.text
        # SysRq-G enters through kgdb_breakpoint(): SIGTRAP, in kgdb_breakpoint.
        assert output.count("received signal SIGTRAP") == 1 and "SIGINT" not in output, output
        assert re.search(r"^\$1 = .*<kgdb_breakpoint\+1>", output, re.M), output
        assert DETACHED.search(output), output


def test_sysrq_g_from_the_console_client_stops_the_machine_running_free():
    with stub_splitter_and_console() as (server, splitter, console):
        output = run_gdb(splitter.gdb_address, ["detach"], elf=server.elf)
        assert DETACHED.search(output), output  # the machine runs free
        console.send(TELNET_BREAK + b"g")  # telnet's `send brk`, then g
        console.output.wait_for(r"sysrq: DEBUG\nKGDB: Entering KGDB\n", timeout=20)
        # The next gdb finds it stopped where the break-in caught it.
        output = run_gdb(splitter.gdb_address, ["print $pc", "detach"], elf=server.elf)
        assert re.search(r"^\$1 = .*0x[0-9a-f]+", output, re.M) and DETACHED.search(output), output


@pytest.mark.parametrize("dialect", ["modern", "kgdb"])
def test_a_gdb_that_vanishes_behind_the_splitter_leaves_nothing_for_the_next(dialect):
    with stub_splitter_and_console("--dialect", dialect) as (server, splitter, console):
        first = run_gdb(splitter.gdb_address, [
            "set breakpoint always-inserted on", "hbreak do_fork", "watch total_forks", "continue",
            # hit all the time if it stayed (Linux's kgdb takes no user-space breakpoint)
            "break looper_tick" if dialect == "modern" else "break do_timer", "monitor slots", VANISH,
        ], elf=server.elf)
        assert len(KGDB_SLOT.findall(first)) >= 2, first
        commands = ["monitor slots", *continue_command(), "monitor slots", "detach"]
        if dialect == "kgdb":  # kgdboc ignores Ctrl-C: break in with SysRq-G
            commands.insert(0, "set remote interrupt-sequence BREAK-g")
        with spawn_gdb(splitter.gdb_address, commands, elf=server.elf) as second:
            second.output.wait_count(RESUMED_MARKER, 1, timeout=30)
            second.interrupt()
            second.wait(timeout=60)
        output = second.output.text
        assert not KGDB_SLOT.search(output), output
        if dialect == "kgdb":
            assert output.count("received signal SIGTRAP") == 1 and "SIGINT" not in output, output
        else:
            assert output.count(SIGINT_STOP) == 1 and "SIGTRAP" not in output, output
        assert DETACHED.search(output), output


def test_one_debugger_at_a_time():
    with stub_splitter_and_console() as (server, splitter, console):
        commands = [*continue_command(), "detach"]
        with spawn_gdb(splitter.gdb_address, commands, elf=server.elf) as first:
            first.output.wait_count(RESUMED_MARKER, 1, timeout=30)
            with socket.create_connection(splitter.gdb, timeout=10) as second:
                assert second.recv(1) == b""  # turned away
            first.interrupt()
            first.wait(timeout=60)
        assert DETACHED.search(first.output.text), first.output.text
