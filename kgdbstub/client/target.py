"""A debugging session with a stub, in typed operations, on trio.

    async with await connect("127.0.0.1:1234") as target:
        total_forks = await target.symbol("total_forks")
        await target.watch(total_forks, 8)
        stop = await target.resume()            # Stop(signal=5, reason='watch', ...)
        print(await target.read_int(total_forks), stop.thread)

Requests are one at a time, as the protocol wants: tasks that share a
Target take turns. While the target runs, only interrupt() and wait_stop()
are allowed. Every wait has a deadline: the `timeout` given to connect()
(10 s by default), or a call's own `timeout=` (None waits for ever).
"""
from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ..rsp import decode_hex, encode_hex
from .connection import INTERRUPT_SEQUENCES, Connection, Mutex, Trace
from .errors import BreakpointRefused, ClientError, RemoteError, Timeout, Unsupported
from .packets import (
    KGDB_LAYOUT, Breakpoint, BreakpointKind, Register, Stop, Thread, error_number,
    format_thread_id, is_output, is_resume, output_text, parse_stop, parse_thread_id, target_registers,
)
from .transport import open_stream

DEFAULT: Any = object()  # "the target's timeout"
_UNKNOWN = object()  # which thread Hg selects
OFFER = b"qSupported:swbreak+;hwbreak+;vContSupported+;xmlRegisters=i386"
# Without a PacketSize, kgdb's buffer (BUFMAX) holds 1024 characters.
DEFAULT_PACKET_SIZE = 1024


@dataclass(frozen=True)
class Exchange:
    """A request's reply and the console output (`O` packets) that came before it."""

    reply: bytes
    output: tuple[bytes, ...] = ()

    @property
    def text(self) -> str:
        return "".join(output_text(packet) for packet in self.output)


async def connect(address: str, *, timeout: float | None = 10.0, handshake: bool = True,
                  no_ack: bool = True, elf: str | Path | None = None, baud: int | None = None,
                  trace: Trace | None = None) -> "Target":
    """Connect to a stub and, unless `handshake` is False, set the session up
    as gdb would: qSupported, no-ack mode if offered, the target
    description (else kgdb's register layout), and `?` for where it stopped.

    `address`: `HOST:PORT`, `tcp:HOST:PORT`, or the path of a pty or serial
    line (`pty:PATH`, `serial:PATH`; `baud` for a real line). `elf`: the
    image to take symbols from; by default the stub's own, read over host
    I/O. `trace(direction, data)` sees every byte on the wire. With
    `handshake=False` nothing is sent until you ask: for packet-level work.
    """
    with _deadline(timeout, f"could not connect to {address} within {timeout} s"):
        stream = await open_stream(address, baud=baud)
    target = Target(Connection(stream, peer=address, trace=trace), timeout=timeout, elf=elf)
    if handshake:
        try:
            await target._handshake(no_ack=no_ack)
        except BaseException:
            await target.close()
            raise
    return target


class Target:
    """One connection to a stub. Make it with connect()."""

    def __init__(self, connection: Connection, *, timeout: float | None = 10.0, elf: str | Path | None = None):
        self.connection = connection
        self.timeout = timeout
        self.features: dict[str, str | bool] = {}  # the qSupported answer
        self.stop: Stop | None = None  # the last stop, from `?` or a resume
        self._layout: tuple[Register, ...] | None = None
        self._elf = Path(elf) if elf is not None else None
        self._symbols: dict[str, int] | None = None
        self._request_lock = Mutex()  # one request and its reply at a time
        self._stop_lock = Mutex()  # one reader of a stop reply
        self._thread_lock = Mutex()  # Hg and what it selects for; the thread list's place
        self._running = False
        self._owed = 0  # replies to requests that timed out, to drop when they come
        self._selected: object = None  # the thread of the last Hg, None for the one that stopped
        self._pending_output: list[bytes] = []  # console output of a run not yet stopped
        self._detached = False
        self._negotiated = False  # the handshake's qSupported was answered
        self._software_breakpoints: set[int] = set()  # addresses of our Z0s, for the int3 rewind

    # -- lifetime -------------------------------------------------------------------

    async def __aenter__(self) -> "Target":
        return self

    async def __aexit__(self, kind, error, traceback) -> None:
        """Detach (the machine runs on) and close; after an error, close quietly."""
        try:
            if self.connection.usable and not self._detached:
                with contextlib.suppress(ClientError) if error is not None else contextlib.nullcontext():
                    if self._running:
                        await self.interrupt()
                    await self.detach()
        finally:
            await self.close()

    async def close(self) -> None:
        """Drop the connection without detaching: the machine stays stopped
        for the next debugger, as when gdb vanishes."""
        await self.connection.aclose()

    async def detach(self, *, timeout: float | None = DEFAULT) -> None:
        """`D`: the stub removes every breakpoint, the machine runs on, the connection ends."""
        await self._command(b"D", timeout=timeout)
        await self.close()

    @property
    def running(self) -> bool:
        return self._running

    # -- packets ----------------------------------------------------------------------

    async def request(self, payload: bytes, *, timeout: float | None = DEFAULT) -> bytes:
        """Send one packet and return the reply as it came, errors included.

        A resume (c, s, vCont;c ...) returns the stop reply; `k` returns b""
        at once, as kgdb does not answer it. Console output before the reply
        is dropped: use exchange() to see it.
        """
        if is_resume(payload):
            await self._start(payload, timeout)
            try:
                return (await self.wait_stop(timeout=timeout)).raw
            except RemoteError as refused:
                return refused.reply
        return (await self.exchange(payload, timeout=timeout)).reply

    async def exchange(self, payload: bytes, *, timeout: float | None = DEFAULT) -> Exchange:
        """Send one packet; its reply and the `O` packets that came first."""
        async with self._request_lock:
            self._check_stopped(payload)
            if payload == b"k":  # the session ends without a reply
                await self.connection.send_packet(payload)
                self._detached = True
                return Exchange(b"")
            seconds = self._timeout(timeout)
            with _deadline(seconds, f"no reply to {_show(payload)} within {seconds} s"):
                await self._settle_owed()
                await self.connection.send_packet(payload)
                self._owed += 1
                reply, output = await self._reply()
                self._owed -= 1
            # What the reply changes, before anyone else sends.
            if payload == b"QStartNoAckMode" and reply == b"OK":
                self.connection.codec.start_no_ack_mode()
            elif payload[:1] == b"D" and reply == b"OK":
                self._detached = True
            elif payload[:2] == b"Hg" and reply == b"OK":
                self._selected = parse_thread_id(payload[2:]) if payload[2:] not in (b"0", b"-1") else None
            elif payload == b"?":
                self._selected = _UNKNOWN  # a modern stub forgets Hg here, kgdb does not
        return Exchange(reply, output)

    async def _reply(self) -> tuple[bytes, tuple[bytes, ...]]:
        output = []
        while is_output(packet := await self.connection.receive()):
            output.append(packet)
        return packet, tuple(output)

    async def _settle_owed(self) -> None:
        # The stub answers in order: the replies owed to requests that timed
        # out come before the reply to the next one.
        while self._owed:
            await self._reply()
            self._owed -= 1

    def _check_stopped(self, payload: bytes) -> None:
        self.connection.check()
        if self._running:
            raise ClientError(f"cannot send {_show(payload)}: the target is running (interrupt() or wait_stop() first)")

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is DEFAULT else timeout

    def _check(self, request: bytes, reply: bytes, what: str = "", refused=RemoteError) -> bytes:
        """The reply, unless it is an error (raise `refused`) or empty (Unsupported)."""
        failure = error_number(reply)
        if failure is not None:
            raise refused(request, reply, *failure)
        if reply == b"":
            raise Unsupported(request, what)
        return reply

    def _check_ok(self, request: bytes, reply: bytes, what: str = "", refused=RemoteError) -> None:
        if self._check(request, reply, what, refused) != b"OK":
            raise ClientError(f"{_show(request)}: expected OK, got {_show(reply)}")

    async def _query(self, payload: bytes, what: str = "", *, timeout: float | None = DEFAULT) -> bytes:
        return self._check(payload, await self.request(payload, timeout=timeout), what)

    async def _command(self, payload: bytes, what: str = "", *, timeout: float | None = DEFAULT) -> None:
        self._check_ok(payload, await self.request(payload, timeout=timeout), what)

    # -- setting up -----------------------------------------------------------------

    async def _handshake(self, *, no_ack: bool) -> None:
        reply = await self.request(OFFER)
        self._negotiated = True
        for item in reply.decode("latin-1").split(";"):
            if item.endswith(("+", "-")):
                self.features[item[:-1]] = item.endswith("+")
            elif "=" in item:
                name, _, value = item.partition("=")
                self.features[name] = value
        if no_ack and self.features.get("QStartNoAckMode") is True:
            await self._command(b"QStartNoAckMode")
        await self.registers_layout()
        status = await self._query(b"?")
        self.stop = parse_stop(status, self._layout)

    @property
    def packet_size(self) -> int:
        size = self.features.get("PacketSize")
        return int(size, 16) if isinstance(size, str) else DEFAULT_PACKET_SIZE

    async def registers_layout(self) -> tuple[Register, ...]:
        """The registers by name, size and number: from the stub's target
        description (qXfer:features:read), else Linux x86-64 kgdb's layout."""
        if self._layout is None and self._negotiated and not self.features.get("qXfer:features:read"):
            self._layout = KGDB_LAYOUT  # as gdb does, ask only for what the stub offered
        if self._layout is None:
            try:
                document = await self.read_xfer(b"features", b"target.xml")
                self._layout = target_registers(document)
            except (Unsupported, RemoteError):
                self._layout = KGDB_LAYOUT
        return self._layout

    async def read_xfer(self, object: bytes, annex: bytes) -> bytes:
        """A whole qXfer object, read in chunks."""
        data = b""
        chunk = max(self.packet_size - 16, 64)
        while True:
            request = b"qXfer:%s:read:%s:%x,%x" % (object, annex, len(data), chunk)
            reply = await self._query(request, f"qXfer:{object.decode()}:read")
            if reply[:1] not in (b"m", b"l"):
                raise ClientError(f"{_show(request)}: unexpected reply {_show(reply)}")
            data += reply[1:]
            if reply[:1] == b"l":
                return data

    # -- registers --------------------------------------------------------------------

    async def _register(self, name: str) -> Register:
        for register in await self.registers_layout():
            if register.name == name:
                return register
        raise KeyError(f"no register {name!r} in the target's layout")

    async def _select(self, thread: int | None) -> None:
        if thread != self._selected:
            await self._command(b"Hg" + (format_thread_id(thread) if thread is not None else b"0"))

    async def read_register(self, name: str, *, thread: int | None = None) -> int:
        """A register of `thread` (default: the thread that stopped)."""
        register = await self._register(name)
        async with self._thread_lock:
            await self._select(thread)
            request = b"p%x" % register.number
            reply = await self.request(request)
            if reply == b"":  # no `p`: take it from `g`
                return (await self._read_registers())[name]
        self._check(request, reply)
        return int.from_bytes(_hex(request, reply), "little")

    async def read_registers(self, *, thread: int | None = None) -> dict[str, int]:
        """Every register of the `g` packet, by name."""
        async with self._thread_lock:
            await self._select(thread)
            return await self._read_registers()

    async def _read_registers(self) -> dict[str, int]:
        layout = await self.registers_layout()
        data = _hex(b"g", await self._query(b"g"))
        values, offset = {}, 0
        for register in layout:
            if offset + register.size > len(data):
                break
            values[register.name] = int.from_bytes(data[offset : offset + register.size], "little")
            offset += register.size
        return values

    async def write_register(self, name: str, value: int, *, thread: int | None = None) -> None:
        register = await self._register(name)
        layout = await self.registers_layout()
        async with self._thread_lock:
            await self._select(thread)
            request = b"P%x=%s" % (register.number, encode_hex(value.to_bytes(register.size, "little")))
            reply = await self.request(request)
            if reply != b"":
                self._check_ok(request, reply)
                return
            values = await self._read_registers()  # no `P`: rewrite them all with `G`
            values[name] = value
            data = b"".join(values[r.name].to_bytes(r.size, "little") for r in layout if r.name in values)
            await self._command(b"G" + encode_hex(data))

    # -- memory -------------------------------------------------------------------------

    async def read_memory(self, address: int, length: int) -> bytes:
        """`length` bytes at `address`; RemoteError (EFAULT) where nothing is mapped."""
        data = bytearray()
        most = max((self.packet_size - 8) // 2, 16)
        while len(data) < length:
            request = b"m%x,%x" % (address + len(data), min(most, length - len(data)))
            chunk = _hex(request, await self._query(request))
            if not chunk:
                raise ClientError(f"{_show(request)}: the stub returned no bytes")
            data += chunk
        return bytes(data[:length])

    async def write_memory(self, address: int, data: bytes) -> None:
        most = max((self.packet_size - 32) // 2, 16)
        for offset in range(0, len(data), most) if data else ():
            piece = data[offset : offset + most]
            await self._command(b"M%x,%x:%s" % (address + offset, len(piece), encode_hex(piece)))

    async def read_int(self, address: int, size: int = 8, *, signed: bool = False) -> int:
        """A little-endian integer in memory, such as an `unsigned long` variable."""
        return int.from_bytes(await self.read_memory(address, size), "little", signed=signed)

    async def write_int(self, address: int, value: int, size: int = 8) -> None:
        await self.write_memory(address, value.to_bytes(size, "little", signed=value < 0))

    # -- breakpoints --------------------------------------------------------------------

    async def insert_breakpoint(self, address: int, kind: BreakpointKind = "software", *,
                                conditions: Sequence[bytes] = (), commands: Sequence[bytes] = (),
                                persist: bool = False) -> Breakpoint:
        """A software (`Z0`, int3) or hardware (`Z1`, a debug register) breakpoint.

        `conditions` are agent expressions (bytecode, as gdb's `maint
        agent-eval` shows it) the stub evaluates at each hit: it stops
        only when one of them is non-zero. `commands` (a printf, as for
        an agent-style dprintf) run at each hit instead of a stop; what
        they print arrives as console output (`Stop.output`). Inserting
        again at the same address replaces both lists. A stub that does
        not offer them (ConditionalBreakpoints, BreakpointCommands in
        qSupported) gets nothing: Unsupported is raised first, since such
        a stub would ignore them and stop at every hit.
        """
        if kind not in ("software", "hardware"):
            raise ValueError(f"a breakpoint is 'software' or 'hardware', not {kind!r}; use watch()")
        options = b""
        if conditions:
            options += b";" + b"".join(_agent_expression(c) for c in conditions)
        if commands:
            options += b";cmds:%d," % bool(persist) + b"".join(_agent_expression(c) for c in commands)
        breakpoint = Breakpoint(kind, address, 1)
        if self._negotiated:
            for wanted, feature, what in ((conditions, "ConditionalBreakpoints", "breakpoint conditions"),
                                          (commands, "BreakpointCommands", "breakpoint commands")):
                if wanted and self.features.get(feature) is not True:
                    raise Unsupported(b"Z%d,%x,1%s" % (breakpoint.z_type, address, options), what,
                                      why=f"no {feature} in its qSupported answer")
        return await self._insert(breakpoint, options)

    async def watch(self, address: int, length: int = 8, kind: BreakpointKind = "write") -> Breakpoint:
        """A hardware watchpoint on `length` bytes: 'write' (Z2), 'read' (Z3) or 'access' (Z4)."""
        if kind not in ("write", "read", "access"):
            raise ValueError(f"a watchpoint is 'write', 'read' or 'access', not {kind!r}")
        return await self._insert(Breakpoint(kind, address, length))

    async def _insert(self, breakpoint: Breakpoint, options: bytes = b"") -> Breakpoint:
        request = b"Z%d,%x,%x%s" % (breakpoint.z_type, breakpoint.address, breakpoint.length, options)
        self._check_ok(request, await self.request(request), f"{breakpoint.kind} breakpoints", BreakpointRefused)
        if breakpoint.kind == "software":
            self._software_breakpoints.add(breakpoint.address)
        return breakpoint

    async def remove_breakpoint(self, breakpoint: Breakpoint) -> None:
        request = b"z%d,%x,%x" % (breakpoint.z_type, breakpoint.address, breakpoint.length)
        self._check_ok(request, await self.request(request), f"{breakpoint.kind} breakpoints")
        if breakpoint.kind == "software":
            self._software_breakpoints.discard(breakpoint.address)

    # -- running ------------------------------------------------------------------------

    async def resume(self, *, timeout: float | None = DEFAULT) -> Stop:
        """Continue (`c`) until the target stops. On Timeout it is still running."""
        await self._start(b"c", timeout)
        return await self.wait_stop(timeout=timeout)

    async def step(self, *, timeout: float | None = DEFAULT) -> Stop:
        """One instruction (`s`)."""
        await self._start(b"s", timeout)
        return await self.wait_stop(timeout=timeout)

    async def resume_nowait(self, packet: bytes = b"c") -> None:
        """Send a resume (`c` unless told otherwise: `s`, `vCont;c` ...) without
        waiting for the stop: then interrupt() or wait_stop()."""
        if not is_resume(packet):
            raise ValueError(f"not a resume packet: {packet!r}")
        await self._start(packet, DEFAULT)

    async def _start(self, packet: bytes, timeout: float | None) -> None:
        async with self._request_lock:
            self._check_stopped(packet)
            seconds = self._timeout(timeout)
            with _deadline(seconds, f"no reply to an earlier request within {seconds} s"):
                await self._settle_owed()
            await self.connection.send_packet(packet)
            self._running = True
            self._selected = None  # the stub forgets Hg when it stops
            self._pending_output = []

    async def wait_stop(self, *, timeout: float | None = DEFAULT) -> Stop:
        """The stop that ends the current run (or the last stop, if none runs)."""
        async with self._stop_lock:
            if not self._running:
                return self._last_stop()
            seconds = self._timeout(timeout)
            with _deadline(seconds, f"the target did not stop within {seconds} s; it is still running "
                                    "(interrupt() or wait_stop())"):
                while is_output(packet := await self.connection.receive()):
                    self._pending_output.append(packet)
            self._running = False
            output = "".join(output_text(p) for p in self._pending_output)
            failure = error_number(packet)
            if failure is not None:
                raise RemoteError(b"resume", packet, *failure)
            try:
                self.stop = parse_stop(packet, self._layout, output)
            except ValueError:
                raise ClientError(f"expected a stop reply, got {_show(packet)}") from None
        await self._rewind_after_int3()
        return self.stop

    async def _rewind_after_int3(self) -> None:
        """As gdb does for a stub that gives no stop reason (Linux's kgdb): a SIGTRAP
        one byte after one of our software breakpoints is that breakpoint's int3,
        and the pc goes back to it (GDB_ADJUSTS_BREAK_OFFSET)."""
        if self.stop.signal != 5 or self.stop.reason is not None or not self._software_breakpoints:
            return
        pc = await self.read_register("rip")
        if pc - 1 in self._software_breakpoints:
            await self.write_register("rip", pc - 1)

    async def interrupt(self, *, timeout: float | None = DEFAULT, sequence: str = "Ctrl-C") -> Stop:
        """Stop a running target (a 0x03 on the wire): its stop, SIGINT
        unless something else stopped it first. If nothing runs, the current stop.

        `sequence="BREAK-g"` sends SysRq-G instead, which Linux's kgdb
        needs (it ignores a 0x03): the stop is then a SIGTRAP in
        kgdb_breakpoint.
        """
        if sequence not in INTERRUPT_SEQUENCES:
            raise ValueError(f"an interrupt sequence is one of {', '.join(INTERRUPT_SEQUENCES)}, not {sequence!r}")
        if not self._running:
            return self._last_stop()
        await self.connection.send_interrupt(sequence)
        return await self.wait_stop(timeout=timeout)

    def _last_stop(self) -> Stop:
        if self.stop is None:
            raise ClientError("the target's stop is unknown (connected without the handshake)")
        return self.stop

    # -- threads and monitor ------------------------------------------------------------

    async def threads(self) -> list[Thread]:
        """Every thread, in the stub's order, with its name (a task's comm or shadowCPU<n>)."""
        ids: list[int] = []
        request = b"qfThreadInfo"
        async with self._thread_lock:  # the stub keeps its place in the list between packets
            while True:
                if request == b"qfThreadInfo":
                    reply = await self._query(request, "thread lists")
                else:
                    reply = await self.request(request)  # kgdb ends the list with an empty reply
                if reply[:1] != b"m":
                    break
                ids += [parse_thread_id(t) for t in reply[1:].split(b",") if t]
                request = b"qsThreadInfo"
        threads = []
        for thread in ids:
            reply = await self.request(b"qThreadExtraInfo," + format_thread_id(thread))
            name = decode_hex(reply).decode("utf-8", "replace").rstrip("\0") if reply and error_number(reply) is None else None
            threads.append(Thread(thread, name))
        return threads

    async def monitor(self, command: str, *, timeout: float | None = DEFAULT) -> str:
        """A monitor command (qRcmd) and the text it printed."""
        request = b"qRcmd," + encode_hex(command.encode())
        exchange = await self.exchange(request, timeout=timeout)
        self._check_ok(request, exchange.reply, "monitor commands")
        return exchange.text

    # -- files and symbols ----------------------------------------------------------------

    async def exec_file(self) -> str:
        """The path of the image the target runs (qXfer:exec-file:read)."""
        return (await self.read_xfer(b"exec-file", b"")).decode("utf-8", "surrogateescape")

    async def read_file(self, path: str) -> bytes:
        """A whole file of the stub's host, over host I/O (vFile), as gdb reads the image."""
        await self.request(b"vFile:setfs:0")  # empty if unsupported: fine
        fd = await self._host_io(b"vFile:open:%s,0,0" % encode_hex(path.encode("utf-8", "surrogateescape")))
        data = bytearray()
        try:
            chunk = max(self.packet_size - 32, 256)
            while True:
                request = b"vFile:pread:%x,%x,%x" % (fd, chunk, len(data))
                reply = await self._query(request, "host I/O")
                count, attachment = _host_io_result(request, reply)
                if count == 0:
                    return bytes(data)
                data += attachment[:count]
        finally:
            await self._host_io(b"vFile:close:%x" % fd)

    async def _host_io(self, request: bytes) -> int:
        return _host_io_result(request, await self._query(request, "host I/O"))[0]

    async def symbol(self, name: str) -> int:
        """The address of a symbol of the image: from `elf` given to connect(),
        else from the stub's image read over host I/O (once)."""
        if self._symbols is None:
            if self._elf is not None:
                data = self._elf.read_bytes()
            else:
                data = await self.read_file(await self.exec_file())
            self._symbols = _elf_symbols(data)
        try:
            return self._symbols[name]
        except KeyError:
            raise KeyError(f"no symbol {name!r} in the image") from None


# -- helpers ------------------------------------------------------------------------------


@contextlib.contextmanager
def _deadline(seconds: float | None, what: str) -> Iterator[None]:
    if seconds is None or seconds == math.inf:
        yield
        return
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise Timeout(what) from None


def _show(packet: bytes) -> str:
    text = packet.decode("latin-1")
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _hex(request: bytes, reply: bytes) -> bytes:
    try:
        return decode_hex(reply)
    except ValueError:
        raise ClientError(f"{_show(request)}: the reply is not hex: {_show(reply)}") from None


def _host_io_result(request: bytes, reply: bytes) -> tuple[int, bytes]:
    """(result, attachment) of an `F` reply; RemoteError for `F-1,errno`."""
    head, _, attachment = reply.partition(b";")
    if not head.startswith(b"F"):
        raise ClientError(f"{_show(request)}: not a host I/O reply: {_show(reply)}")
    result, _, code = head[1:].partition(b",")
    if result.startswith(b"-"):
        raise RemoteError(request, reply, int(code, 16) if code else None)
    return int(result, 16), attachment


def _elf_symbols(data: bytes) -> dict[str, int]:
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(data))
    table = elf.get_section_by_name(".symtab")
    if table is None:
        raise ClientError("the image has no symbol table")
    return {s.name: s["st_value"] for s in table.iter_symbols() if s.name}


def _agent_expression(bytecode: bytes) -> bytes:
    """`X<length>,<hex>`: an agent expression as Z packets carry it."""
    if not bytecode:
        raise ValueError("an agent expression has at least one byte (its `end`)")
    return b"X%x,%s" % (len(bytecode), encode_hex(bytes(bytecode)))
