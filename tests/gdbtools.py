"""Drive `kgdbstub serve` and the machine's real gdb from tests.

Every wait here has a deadline, and nothing sleeps to let things settle: the
helpers wait on output (a line from the server, a marker or message from gdb)
or on a process exit, and raise AssertionError with everything seen so far when
the deadline passes.

The gdb output shapes the parsers rely on are gdb 13's, as it prints them
against this stub:

    info threads   "  1    Thread 4294967294 (shadowCPU0) schedule () at kernel/sched.c:14"
                   "* 3    Thread 1 (init)                kgdb_breakpoint () at ..."
                   the Target Id is `Thread ID`, then ` "NAME"` if the target
                   names threads (qXfer:threads), then ` (EXTRA)` if it answers
                   qThreadExtraInfo: kgdb gives the task's comm or shadowCPU<n>.
    bt             "#0  do_fork (clone_flags=1, ...) at kernel/fork.c:40"
                   "#1  0xffffffff810000e4 in sys_clone (entry=<optimized out>, ...) at ..."
    print          "$1 = 12345"
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
GDB = shutil.which("gdb")
SERVER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "kgdbstub", "serve")

# gdb prints this (with `set debug infrun 1`, gdb 11 and later) when a resume
# is complete: the resume packet has gone out and gdb has handed the terminal
# to the inferior, so that a SIGINT from then on is forwarded to the target as
# an interrupt (0x03) instead of quitting the command. gdb writes it from C to
# stderr, unbuffered. (A marker printed from a Python event handler is not
# safe: a SIGINT that arrives while the handler runs becomes a Python
# KeyboardInterrupt and never reaches the target.)
RESUMED_MARKER = "[infrun] proceed: exit"


def continue_command(command: str = "continue") -> list[str]:
    """`command` (continue, step, ...) wrapped so that gdb prints
    RESUMED_MARKER once the target runs: wait for it before a SIGINT."""
    return ["set debug infrun 1", command, "set debug infrun 0"]


SIGINT_STOP = re.compile(r"received signal SIGINT, Interrupt\.")


# -- reading a child's output with deadlines ---------------------------------


class OutputReader:
    """Drains a child's pipe in a thread; waits on its text with deadlines.

    The pipe is always drained, so a chatty child never blocks on a full pipe.
    """

    def __init__(self, stream, name: str):
        self.name = name
        self._stream = stream
        self._chunks: list[str] = []
        self._text = ""
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(
            target=self._pump, name=f"reader:{name}", daemon=True
        )
        self._thread.start()

    def _pump(self) -> None:
        fd = self._stream.fileno()
        try:
            while True:
                data = os.read(fd, 65536)
                if not data:
                    break
                with self._cond:
                    self._text += data.decode("utf-8", "replace")
                    self._cond.notify_all()
        except OSError:
            pass
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return self._text

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def _wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(self._text)
                if result is not None:
                    return result
                if self._closed:
                    raise AssertionError(
                        f"{self.name}: output ended while waiting for {what}; "
                        f"output was:\n{self._text}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.name}: no {what} within {timeout:g} s; "
                        f"output so far:\n{self._text}"
                    )
                self._cond.wait(left)

    def wait_for(
        self, pattern: str | re.Pattern, *, timeout: float, start: int = 0
    ) -> re.Match:
        """The first match of `pattern` in the output at or after `start`."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        return self._wait(
            lambda text: regex.search(text, start),
            timeout,
            f"match for {regex.pattern!r}",
        )

    def wait_count(self, needle: str, count: int, *, timeout: float) -> int:
        """Wait until `needle` occurs `count` times; the end of the last one."""

        def nth_end(text: str):
            pos = 0
            for _ in range(count):
                found = text.find(needle, pos)
                if found < 0:
                    return None
                pos = found + len(needle)
            return pos

        return self._wait(nth_end, timeout, f"{count} x {needle!r}")

    def readline(self, start: int, *, timeout: float) -> tuple[str, int]:
        """The line starting at offset `start` (without its newline) and the
        offset after it."""

        def line(text: str):
            end = text.find("\n", start)
            return None if end < 0 else (text[start:end].rstrip("\r"), end + 1)

        return self._wait(line, timeout, "complete line")

    def wait_closed(self, timeout: float) -> str:
        self._wait(lambda text: True if self._closed else None, timeout, "end of output")
        return self.text


# -- the server ---------------------------------------------------------------

_LISTENING = re.compile(r"listening on tcp:(?P<host>\S+):(?P<port>\d+)")
_SYMBOLS = re.compile(r"symbols: (?P<elf>.+)")


def parse_contract_lines(
    first: str, second: str, cwd: Path = REPO_ROOT
) -> tuple[str, int, Path]:
    """(host, port, elf) from the first two lines `kgdbstub serve --tcp` prints,
    which by contract are exactly `listening on tcp:HOST:PORT` and
    `symbols: PATH-TO-ELF`. A relative ELF path is taken relative to `cwd`."""
    listening = _LISTENING.fullmatch(first)
    if listening is None:
        raise AssertionError(
            f"first line is not 'listening on tcp:HOST:PORT': {first!r}"
        )
    symbols = _SYMBOLS.fullmatch(second)
    if symbols is None:
        raise AssertionError(f"second line is not 'symbols: PATH': {second!r}")
    host = listening["host"]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(listening["port"])
    if not 0 < port < 65536:
        raise AssertionError(f"not a port a client can connect to: {first!r}")
    return host, port, cwd / symbols["elf"]


@dataclass
class Server:
    """A running `kgdbstub serve --tcp`, as its contract lines describe it."""

    host: str
    port: int
    elf: Path
    proc: subprocess.Popen = field(repr=False)
    stdout: OutputReader = field(repr=False)
    stderr_path: Path = field(repr=False)
    argv: list[str] = field(repr=False)
    failed: bool = False  # set when the test failed: the stderr is shown

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait(self, timeout: float) -> int:
        """The exit status, waiting at most `timeout` seconds for the exit."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"kgdbstub server (pid {self.proc.pid}) still running after "
                f"{timeout:g} s\nstdout:\n{self.stdout.text}\n"
                f"stderr:\n{self.stderr_text()}"
            ) from None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not gone after `grace` seconds."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=grace)
        # Whatever it printed last; a child it left behind may hold the pipe.
        with contextlib.suppress(AssertionError):
            self.stdout.wait_closed(timeout=2)


@contextlib.contextmanager
def start_server(
    *args: str,
    timeout: float = 30.0,
    command: Sequence[str] = SERVER_COMMAND,
    cwd: Path = REPO_ROOT,
    address: str = "127.0.0.1:0",
) -> Iterator[Server]:
    """Run `kgdbstub serve --tcp ADDRESS ARGS...` for the `with` block.

    Yields once the two contract lines have been read (at most `timeout`
    seconds). On exit the server is terminated; if the block raised, or the
    test set `server.failed`, the server's stderr is written to our stderr
    so that pytest shows it with the failure.
    """

    def described(first, second, proc, reader, stderr_path, argv):
        host, port, elf = parse_contract_lines(first, second, cwd)
        return Server(host, port, elf, proc, reader, stderr_path, argv)

    with _serving([*command, "--tcp", address, *args], cwd, timeout, described) as server:
        yield server


@contextlib.contextmanager
def _serving(argv: list[str], cwd: Path, timeout: float, described) -> Iterator[Server]:
    """Run a server, read its two contract lines, and let `described` make the Server of them."""
    stderr_file = tempfile.NamedTemporaryFile(
        prefix="kgdbstub-server-", suffix=".stderr", delete=False
    )
    stderr_path = Path(stderr_file.name)
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
    )
    stderr_file.close()
    reader = OutputReader(proc.stdout, "kgdbstub serve stdout")
    server = None
    try:
        try:
            first, pos = reader.readline(0, timeout=timeout)
            second, pos = reader.readline(pos, timeout=timeout)
            described_server = described(first, second, proc, reader, stderr_path, argv)
        except AssertionError as exc:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)  # it may be exiting: report its status
            raise AssertionError(
                f"{' '.join(argv)}: {exc}\n"
                f"exit status: {proc.returncode}\n"
                f"stderr:\n{stderr_path.read_text(errors='replace')}"
            ) from None
        server = described_server
        yield server
    except BaseException:
        if server is not None:
            server.failed = True
        raise
    finally:
        if server is not None:
            server.stop()
            if server.failed:
                sys.stderr.write(
                    f"---- kgdbstub server {' '.join(argv)}\n"
                    f"---- exit status {proc.returncode}\n"
                    f"---- stdout:\n{reader.text}\n"
                    f"---- stderr:\n{server.stderr_text()}\n"
                )
        else:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            stderr_path.unlink()


# -- the server on a line: a pty or a serial port ---------------------------------

_LISTENING_LINE = re.compile(r"listening on (?P<kind>pty|serial):(?P<path>\S+)")


@dataclass
class LineServer(Server):
    """A running `kgdbstub serve --pty` (or `--serial`), as its contract lines
    describe it: `path` is the pty's slave (or the serial device). gdb
    attaches to `path` for a pty; `host` and `port` are unused."""

    kind: str = "pty"
    path: str = ""

    @property
    def address(self) -> str:
        return self.path


@contextlib.contextmanager
def start_line_server(
    *args: str,
    timeout: float = 30.0,
    command: Sequence[str] = SERVER_COMMAND,
    cwd: Path = REPO_ROOT,
) -> Iterator[LineServer]:
    """Run `kgdbstub serve ARGS...` with ARGS holding `--pty` or `--serial
    DEVICE`, as start_server does for TCP: yields once the contract lines
    `listening on pty:PATH` (or `serial:DEVICE`) and `symbols: PATH` have
    been read; the server is terminated on exit, its stderr shown on failure."""

    def described(first, second, proc, reader, stderr_path, argv):
        listening = _LISTENING_LINE.fullmatch(first)
        symbols = _SYMBOLS.fullmatch(second)
        if listening is None or symbols is None:
            raise AssertionError(
                f"not 'listening on pty:PATH' (or serial:) and 'symbols: PATH': {first!r}, {second!r}"
            )
        return LineServer("", 0, cwd / symbols["elf"], proc, reader, stderr_path, argv,
                          kind=listening["kind"], path=listening["path"])

    with _serving([*command, *args], cwd, timeout, described) as server:
        yield server


@contextlib.contextmanager
def serving(transport: str, *args: str) -> Iterator[Server | LineServer]:
    """start_server for "tcp", start_line_server with `--pty` for "pty"."""
    if transport == "tcp":
        with start_server(*args) as server:
            yield server
    else:
        with start_line_server("--pty", *args) as server:
            yield server


class OpenWatch:
    """Tells when a file is opened (inotify's IN_OPEN), for a `with` block."""

    IN_OPEN = 0x20

    def __init__(self, path: str):
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or _libc.inotify_add_watch(self.fd, path.encode(), self.IN_OPEN) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {path}")

    def __enter__(self) -> OpenWatch:
        return self

    def __exit__(self, *exception) -> None:
        os.close(self.fd)

    async def opened(self, timeout: float = 20.0) -> None:
        import trio  # only the async tests need it

        with trio.fail_after(timeout):
            while True:
                try:
                    if os.read(self.fd, 4096):
                        return
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(self.fd)


_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def null_modem() -> Iterator[tuple[str, str]]:
    """Two serial ports joined by a null-modem cable, made of two ptys: what
    is written to one end's path is read from the other's. Yields the two
    paths (pty slaves). A thread copies between the masters; this process
    holds both slaves open too, so that either end can be closed and opened
    again without breaking the cable."""
    import select
    import termios
    import tty

    pairs = [os.openpty() for _ in range(2)]
    for master, slave in pairs:
        tty.setraw(master, termios.TCSANOW)
        tty.setraw(slave, termios.TCSANOW)
    (m0, s0), (m1, s1) = pairs
    stop_read, stop_write = os.pipe()

    def copy() -> None:
        other = {m0: m1, m1: m0}
        while True:
            ready, _, _ = select.select([m0, m1, stop_read], [], [])
            if stop_read in ready:
                return
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return
                view = memoryview(data)
                while view:
                    view = view[os.write(other[fd], view):]

    thread = threading.Thread(target=copy, name="null-modem", daemon=True)
    thread.start()
    try:
        yield os.ttyname(s0), os.ttyname(s1)
    finally:
        os.write(stop_write, b"x")
        thread.join(timeout=5)
        for fd in (m0, s0, m1, s1, stop_read, stop_write):
            with contextlib.suppress(OSError):
                os.close(fd)


# -- gdb ----------------------------------------------------------------------


def gdb_argv(
    target: Server | str, commands: Sequence[str], *, elf: Path | str | None = None
) -> list[str]:
    """gdb in batch mode: load the ELF, attach over TCP, run `commands`."""
    if GDB is None:
        raise AssertionError("gdb is not installed")
    if isinstance(target, Server):
        address = target.address
        elf = target.elf if elf is None else elf
    else:
        address = target
    argv = [
        GDB,
        "-nx",
        "-batch",
        "-iex", "set debuginfod enabled off",
        "-ex", "set confirm off",
        "-ex", "set pagination off",
        "-ex", "set width 0",
    ]
    if elf is not None:
        argv += ["-ex", f"file {elf}"]
    argv += ["-ex", f"target remote {address}"]
    for command in commands:
        argv += ["-ex", command]
    return argv


def _gdb_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DEBUGINFOD_URLS", None)
    env["TERM"] = "dumb"
    return env


def run_gdb(
    server: Server | str,
    commands: Sequence[str],
    *,
    timeout: float = 60.0,
    elf: Path | str | None = None,
) -> str:
    """Run gdb in batch mode against `server` with each command as an `-ex`;
    its stdout and stderr, interleaved as written."""
    with spawn_gdb(server, commands, elf=elf) as gdb:
        gdb.wait(timeout)
        return gdb.output.text


class GdbProcess:
    """A gdb running in batch mode, for tests that act while it runs."""

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=_gdb_env(),
            start_new_session=True,  # a signal meant for gdb reaches gdb alone
        )
        self.output = OutputReader(self.proc.stdout, "gdb")

    def interrupt(self) -> None:
        """What Ctrl-C at gdb's terminal does: SIGINT to gdb."""
        self.proc.send_signal(signal.SIGINT)

    def wait(self, timeout: float) -> int:
        """Wait for gdb to finish and its output to end; its exit status."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"gdb did not finish within {timeout:g} s; output so far:\n"
                f"{self.output.text}"
            ) from None
        self.output.wait_closed(timeout=10)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(AssertionError):
            self.output.wait_closed(timeout=5)


@contextlib.contextmanager
def spawn_gdb(
    server: Server | str,
    commands: Sequence[str],
    *,
    elf: Path | str | None = None,
) -> Iterator[GdbProcess]:
    """Start gdb as `run_gdb` does without waiting for it; killed on exit."""
    gdb = GdbProcess(gdb_argv(server, commands, elf=elf))
    try:
        yield gdb
    finally:
        gdb.close()


# -- reading gdb's output -------------------------------------------------------

# `info threads`:  "* 3    Thread 1 "name" (extra) frame..."
THREAD_LINE = re.compile(
    r'^(?P<current>\*)?\s+(?P<num>\d+)\s+'
    r'(?P<target_id>Thread \S+)'
    r'(?: "(?P<name>[^"]*)")?'
    r'(?: \((?P<extra>[^()]*)\))?'
    r'(?:\s+(?P<frame>.*?))?\s*$'
)
# `bt`: "#1  0xffffffff81000123 in kernel_clone (x=1) at fork.c:30"
FRAME_LINE = re.compile(
    r"^#(?P<level>\d+)\s+(?:(?P<pc>0x[0-9a-f]+) in )?(?P<function>\S+) \("
)
# `print`: "$3 = 12345"
VALUE_LINE = re.compile(r"^\$(?P<num>\d+) = (?P<value>.*)$")


@dataclass
class ThreadLine:
    num: int
    current: bool
    target_id: str
    name: str | None
    extra: str | None
    frame: str

    @property
    def label(self) -> str | None:
        """What kgdb calls the thread: its extra info, else its name."""
        return self.extra if self.extra is not None else self.name


def parse_threads(output: str) -> list[ThreadLine]:
    """The rows of the last `info threads` table in `output`."""
    tables = output.split("  Id   Target Id")
    if len(tables) < 2:
        return []
    rows = []
    for line in tables[-1].splitlines()[1:]:
        match = THREAD_LINE.match(line)
        if match is None:
            break
        rows.append(
            ThreadLine(
                num=int(match["num"]),
                current=match["current"] is not None,
                target_id=match["target_id"],
                name=match["name"],
                extra=match["extra"],
                frame=match["frame"] or "",
            )
        )
    return rows


@dataclass
class Frame:
    level: int
    pc: int | None
    function: str


def parse_backtraces(output: str) -> list[list[Frame]]:
    """Every backtrace in `output`, each a list of frames from #0 on.

    A stop's own location line ("#0  do_fork (...)" after `thread N`) counts
    as a backtrace of one frame.
    """
    traces: list[list[Frame]] = []
    for line in output.splitlines():
        match = FRAME_LINE.match(line)
        if match is None:
            continue
        frame = Frame(
            int(match["level"]),
            int(match["pc"], 16) if match["pc"] else None,
            match["function"],
        )
        if frame.level == 0 or not traces:
            traces.append([])
        traces[-1].append(frame)
    return traces


def parse_values(output: str) -> dict[int, str]:
    """gdb's value history as printed: {N: text} for each `$N = text` line."""
    return {
        int(m["num"]): m["value"]
        for m in map(VALUE_LINE.match, output.splitlines())
        if m is not None
    }


def select_thread_command(*labels: str) -> str:
    """A gdb command (a Python one-liner) that switches to a thread other
    than the current one whose name or extra info is one of `labels`,
    preferring them in that order. It prints `thread N`'s usual output."""
    return (
        "python import re; "
        f"_labels = {list(labels)!r}; "
        f"_rows = [m for m in (re.match({THREAD_LINE.pattern!r}, line) "
        "for line in gdb.execute('info threads', to_string=True).splitlines()) "
        "if m and not m['current'] "
        "and (m['extra'] in _labels or m['name'] in _labels)]; "
        "_row = min(_rows, key=lambda m: _labels.index("
        "m['extra'] if m['extra'] in _labels else m['name'])); "
        "gdb.execute('thread ' + _row['num'])"
    )


def elf_functions(path: Path | str) -> set[str]:
    """The names of the function symbols of an ELF file."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    names = set()
    with open(path, "rb") as stream:
        elf = ELFFile(stream)
        for section in elf.iter_sections():
            if isinstance(section, SymbolTableSection):
                for symbol in section.iter_symbols():
                    if symbol["st_info"]["type"] == "STT_FUNC" and symbol.name:
                        names.add(symbol.name)
    return names
