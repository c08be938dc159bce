"""Drive the machine's real LLDB against `kgdbstub serve`, as gdbtools does gdb.

LLDB runs in batch mode (`lldb -b`: every `-o` command in turn, then exit)
or, where a test must act while the machine runs, at a pseudo-terminal as a
person types at it (LldbConsole). Every wait has a deadline.

LLDB 14's output shapes the tests rely on:

    a stop          "* thread #4, name = 'looper', stop reason = breakpoint 1.1"
                    "    frame #0: 0xffffffff81000062 minikernel.elf`do_fork(...) at fork.c:40:1"
    watch hit       "Watchpoint 1 hit:" / "old value: 21" / "new value: 22"
    target variable "(unsigned long) jiffies = 1234"
    monitor         `process plugin packet monitor CMD` prints the O packets, then
                    "  packet: qRcmd,..." and "response: OK"

Debian's LLDB 14 prints a Python traceback at start when its scripting
module is missing; batch commands do not need it.
"""
from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from gdbtools import LineServer, Server

LLDB = shutil.which("lldb")
# What kgdbwait's boot prints last before it waits for the debugger.
BOOT_DONE = b"KGDB: Waiting for connection from remote gdb...\n"

STOP = re.compile(r"^\* thread #\d+(?:, name = '(?P<name>[^']*)')?, stop reason = (?P<reason>.+)$", re.M)
FRAME = re.compile(r"frame #(?P<level>\d+): 0x(?P<pc>[0-9a-f]+) \S+`(?P<function>\w+)")
VARIABLE = re.compile(r"^\([^)]*\) (?P<name>\w+) = (?P<value>\d+)$", re.M)


def connect_command(server: Server) -> str:
    """LLDB's command that attaches to the server: TCP, or the pty as a serial line."""
    if isinstance(server, LineServer):
        return f"process connect serial://{server.path}"
    return f"gdb-remote {server.address}"


def read_boot_console(server: LineServer, timeout: float = 10.0) -> bytes:
    """Read the console text that waits on the pty, as `cat /dev/pts/N` would.

    gdb discards what waits on a line when it opens it; LLDB does not, and
    would take the boot messages for replies.
    """
    fd = os.open(server.path, os.O_RDWR | os.O_NOCTTY)
    try:
        data, deadline = b"", time.monotonic() + timeout
        while not data.endswith(BOOT_DONE):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"no end of the boot messages within {timeout:g} s: {data!r}")
            data += os.read(fd, 65536)
        return data
    finally:
        os.close(fd)


def lldb_argv(server: Server, script: Path, *, elf=None) -> list[str]:
    """LLDB in batch mode: attach, then run the commands in `script`.

    Batch mode ends at the first `-o` command that fails; commands run by
    `command source -e false` go on after an error, as a user would.
    """
    if LLDB is None:
        raise AssertionError("lldb is not installed")
    argv = [LLDB, "--no-lldbinit", "--no-use-colors", "-b"]
    if elf is not False:
        argv.append(str(elf or server.elf))
    return argv + ["-o", connect_command(server), "-o", f"command source -e false {script}"]


def run_lldb(server: Server, commands: Sequence[str], *, timeout: float = 60.0, elf=None) -> str:
    """LLDB in batch mode: attach, run each command, exit; stdout and stderr together.

    `elf=False` starts LLDB with no file.
    """
    if isinstance(server, LineServer):
        read_boot_console(server)
    with tempfile.TemporaryDirectory(prefix="kgdbstub-lldb-") as scratch:
        script = Path(scratch) / "commands"
        script.write_text("".join(f"{command}\n" for command in commands))
        try:
            done = subprocess.run(lldb_argv(server, script, elf=elf), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                                  env={**os.environ, "TERM": "dumb"})
        except subprocess.TimeoutExpired as expired:
            raise AssertionError(f"lldb did not finish within {timeout:g} s; output so far:\n"
                                 f"{(expired.output or b'').decode(errors='replace')}") from None
    return done.stdout.decode(errors="replace")


class LldbConsole:
    """An interactive LLDB at a pseudo-terminal: type commands, read the screen."""

    def __init__(self, elf: Path):
        import pty

        if LLDB is None:
            raise AssertionError("lldb is not installed")
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: LLDB itself
            os.environ["TERM"] = "dumb"
            os.execv(LLDB, [LLDB, "--no-lldbinit", "--no-use-colors", str(elf)])
        self.text = ""

    def type(self, line: str) -> int:
        """Type a line; the offset in the output from which its effects show."""
        start = len(self.text)
        os.write(self.fd, line.encode() + b"\n")
        return start

    def control_c(self) -> int:
        start = len(self.text)
        os.write(self.fd, b"\x03")
        return start

    def expect(self, pattern: str, *, start: int = 0, timeout: float = 30.0) -> re.Match:
        regex = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while (match := regex.search(self.text, start)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"lldb: no {pattern!r} within {timeout:g} s; screen:\n{self.text}")
            if select.select([self.fd], [], [], left)[0]:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    raise AssertionError(f"lldb: ended while waiting for {pattern!r}; screen:\n{self.text}")
                self.text += data.decode(errors="replace").replace("\r\n", "\n")
        return match

    def close(self) -> None:
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)
