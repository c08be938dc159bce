"""Share one serial line between gdb and a console, in the spirit of agent-proxy.

    python tools/splitter.py LINE [--baud N] [--console HOST:PORT] [--gdb HOST:PORT]

LINE is a serial device, or a pty slave such as the one `kgdbstub serve
--pty` prints. The splitter owns the line and offers two TCP ports on
loopback (defaults 127.0.0.1:5550 and 127.0.0.1:5551; port 0 picks a free
one). Its first lines on stdout are

    console on tcp:HOST:PORT
    gdb on tcp:HOST:PORT

then it serves until it is killed or the line goes away:

    nc 127.0.0.1 5550                                   # the console
    gdb vmlinux -ex 'target remote 127.0.0.1:5551'     # the debugger

From the line, RSP frames with a good checksum go to gdb, and so do `+` and
`-` while gdb waits for the acknowledgement of a packet it sent; everything
else is console text. (Console text holding a `$` is held back until it
turns out not to start a frame: at the next `#` and two characters, at the
next `$`, or after 64 KiB.) While no debugger is connected, everything is
console text, even a stop reply the stub sends after its gdb vanished.
Console text goes to every console client; while none is connected it is
kept (the last 64 KiB) for the next one. What was already waiting on the
line when the splitter opened it counts: on a kgdbstub pty, the boot
messages.

Towards the line, gdb's bytes go as they are, except a BREAK: gdb sends the
Telnet command IAC BRK (FF F3) over TCP for `set remote interrupt-sequence
BREAK` or `BREAK-g`. What a console client types goes to the line too, Telnet
commands dropped except IAC BRK (telnet's `send brk`). A BREAK becomes a real
break condition on a serial port, and the bytes FF F3 on a pty, which cannot
carry one (kgdbstub takes them for a BREAK; BREAK then `g` is SysRq-G).

One debugger at a time: a second gdb connection is closed at once.
"""
from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kgdbstub.rsp import checksum  # noqa: E402
from kgdbstub.transport import BREAK, LineLost, SerialLine  # noqa: E402

BACKLOG = 64 * 1024
CLIENT_QUEUE = 256  # chunks waiting for one console client before its text is dropped
MAX_FRAME = 64 * 1024  # a '$' not closed within this many bytes was console text
DEFAULT_CONSOLE = ("127.0.0.1", 5550)
DEFAULT_GDB = ("127.0.0.1", 5551)


class Break:
    """A BREAK to put on the line."""

    def __repr__(self):
        return "BREAK"


BREAK_SIGNAL = Break()
_TEXT, _FRAME, _CHECKSUM = range(3)
_HEX = re.compile(rb"[0-9a-fA-F]{2}")
_FRAME_START = re.compile(rb"[$]")
_FRAME_START_OR_ACK = re.compile(rb"[$+\-]")
_FRAME_START_OR_IAC = re.compile(rb"[$\xff]")


def valid_frame(frame: bytes) -> bool:
    """`$body#cc` with the right checksum."""
    body, digits = frame[1:-3], frame[-2:]
    return (frame[:1] == b"$" and frame[-3:-2] == b"#" and _HEX.fullmatch(digits) is not None
            and int(digits, 16) == checksum(body))


class Demux:
    """Splits what the line sends into gdb's traffic and console text. Sans-IO.

    It follows what gdb sends to know when an acknowledgement is due (gdb
    sent a packet, and no-ack mode is not on), so that a `+` or `-` in
    console text goes to gdb only when gdb waits for one.
    """

    def __init__(self):
        self.debugger = False
        self._state = _TEXT
        self._candidate = bytearray()
        self._digits = 0
        self._reset_debugger()

    def _reset_debugger(self) -> None:
        self._ack_due = False
        self._no_ack = False
        self._no_ack_asked = False
        self._gdb_state = _TEXT
        self._gdb_frame = bytearray()
        self._gdb_digits = 0
        self._gdb_held = b""

    def connected(self) -> None:
        self.debugger = True
        self._reset_debugger()

    def disconnected(self) -> bytes:
        """gdb left: a frame half collected from the line was console text after all."""
        self.debugger = False
        self._reset_debugger()
        text = bytes(self._candidate)
        self._candidate.clear()
        self._state, self._digits = _TEXT, 0
        return text

    # -- from the line ---------------------------------------------------------------

    def from_line(self, data: bytes) -> list[tuple[str, bytes]]:
        """('gdb' | 'console', bytes) pieces, in order."""
        routes: list[tuple[str, bytes]] = []

        def route(where: str, piece: bytes) -> None:
            if not piece:
                return
            if routes and routes[-1][0] == where:
                routes[-1] = (where, routes[-1][1] + piece)
            else:
                routes.append((where, bytes(piece)))

        i, end = 0, len(data)
        while i < end:
            if self._state == _TEXT:
                if not self.debugger:
                    route("console", data[i:])
                    break
                found = (_FRAME_START_OR_ACK if self._ack_due else _FRAME_START).search(data, i)
                if found is None:
                    route("console", data[i:])
                    break
                route("console", data[i : found.start()])
                marker = data[found.start() : found.end()]
                i = found.end()
                if marker == b"$":
                    self._state = _FRAME
                    self._candidate = bytearray(b"$")
                else:
                    route("gdb", marker)
                    if marker == b"+":
                        self._ack_due = False
            elif self._state == _FRAME:
                hash_at = data.find(b"#", i)
                restart = data.find(b"$", i)
                if restart >= 0 and (hash_at < 0 or restart < hash_at):
                    route("console", bytes(self._candidate) + data[i:restart])
                    self._candidate = bytearray(b"$")
                    i = restart + 1
                    continue
                if hash_at < 0:
                    self._candidate += data[i:]
                    if len(self._candidate) > MAX_FRAME:
                        route("console", bytes(self._candidate))
                        self._candidate.clear()
                        self._state = _TEXT
                    break
                self._candidate += data[i : hash_at + 1]
                i = hash_at + 1
                self._state, self._digits = _CHECKSUM, 0
            else:
                take = data[i : i + 2 - self._digits]
                self._candidate += take
                self._digits += len(take)
                i += len(take)
                if self._digits == 2:
                    frame = bytes(self._candidate)
                    self._candidate.clear()
                    self._state = _TEXT
                    if valid_frame(frame):
                        route("gdb", frame)
                        self._reply(frame[1:-3])
                    else:
                        route("console", frame)
        return routes

    def _reply(self, body: bytes) -> None:
        if self._no_ack_asked and body == b"OK":
            self._no_ack, self._ack_due = True, False
        self._no_ack_asked = False

    # -- from gdb ----------------------------------------------------------------

    def from_gdb(self, data: bytes) -> list[bytes | Break]:
        """gdb's bytes for the line, with a Telnet BREAK between packets made a Break."""
        out: list[bytes | Break] = []
        pending = bytearray()
        data = self._gdb_held + data
        self._gdb_held = b""
        i, end = 0, len(data)
        while i < end:
            if self._gdb_state == _TEXT:
                found = _FRAME_START_OR_IAC.search(data, i)
                if found is None:
                    pending += data[i:]
                    break
                pending += data[i : found.start()]
                i = found.start()
                if data[i : i + 1] == b"$":
                    pending += b"$"
                    self._gdb_frame.clear()
                    self._gdb_state = _FRAME
                    i += 1
                elif i + 1 == end:
                    self._gdb_held = b"\xff"  # is it a BREAK? the next read tells
                    break
                elif data[i : i + 2] == BREAK:
                    if pending:
                        out.append(bytes(pending))
                        pending.clear()
                    out.append(BREAK_SIGNAL)
                    i += 2
                else:
                    pending += b"\xff"
                    i += 1
            elif self._gdb_state == _FRAME:
                hash_at = data.find(b"#", i)
                if hash_at < 0:
                    self._gdb_frame += data[i:]
                    pending += data[i:]
                    break
                self._gdb_frame += data[i:hash_at]
                pending += data[i : hash_at + 1]
                i = hash_at + 1
                self._gdb_state, self._gdb_digits = _CHECKSUM, 0
            else:
                take = data[i : i + 2 - self._gdb_digits]
                pending += take
                self._gdb_digits += len(take)
                i += len(take)
                if self._gdb_digits == 2:
                    self._gdb_state = _TEXT
                    self._sent(bytes(self._gdb_frame))
        if pending:
            out.append(bytes(pending))
        return out

    def _sent(self, body: bytes) -> None:
        if not self._no_ack:
            self._ack_due = True
        if body == b"QStartNoAckMode":
            self._no_ack_asked = True


class TelnetInput:
    """What a console client types, Telnet commands dropped but IAC IAC and IAC BRK. Sans-IO."""

    IAC, SB, SE, BRK = 0xFF, 0xFA, 0xF0, 0xF3
    OPTION_COMMANDS = range(0xFB, 0xFF)  # WILL WONT DO DONT, each with an option byte

    def __init__(self):
        self._state = "data"

    def feed(self, data: bytes) -> list[bytes | Break]:
        out: list[bytes | Break] = []
        pending = bytearray()
        for byte in data:
            state = self._state
            if state == "data":
                if byte == self.IAC:
                    self._state = "iac"
                else:
                    pending.append(byte)
            elif state == "iac":
                self._state = "data"
                if byte == self.IAC:
                    pending.append(byte)
                elif byte == self.BRK:
                    if pending:
                        out.append(bytes(pending))
                        pending.clear()
                    out.append(BREAK_SIGNAL)
                elif byte in self.OPTION_COMMANDS:
                    self._state = "option"
                elif byte == self.SB:
                    self._state = "sb"
            elif state == "option":
                self._state = "data"
            elif state == "sb":
                if byte == self.IAC:
                    self._state = "sb-iac"
            elif state == "sb-iac":
                self._state = "data" if byte == self.SE else "sb"
        if pending:
            out.append(bytes(pending))
        return out


class Splitter:
    def __init__(self, line: SerialLine, *, line_is_pty: bool):
        self.line = line
        self.line_is_pty = line_is_pty
        self.demux = Demux()
        self.gdb: trio.abc.Stream | None = None
        self.consoles: set[trio.MemorySendChannel] = set()
        self.backlog = bytearray()

    async def put_break(self) -> None:
        if self.line_is_pty:
            await self.line.send_all(BREAK)
        else:
            await self.line.send_break()

    async def to_line(self, items) -> None:
        for item in items:
            if item is BREAK_SIGNAL:
                await self.put_break()
            else:
                await self.line.send_all(item)

    def to_console(self, text: bytes) -> None:
        if not text:
            return
        if not self.consoles:
            self.backlog += text
            del self.backlog[:-BACKLOG]
            return
        for channel in list(self.consoles):
            try:
                channel.send_nowait(text)
            except trio.WouldBlock:
                pass  # a client that does not read loses text rather than stall the line
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.consoles.discard(channel)

    async def read_line(self) -> None:
        while True:
            data = await self.line.receive_some()
            for where, piece in self.demux.from_line(data):
                if where == "gdb" and self.gdb is not None:
                    try:
                        await self.gdb.send_all(piece)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass  # gdb is leaving; its handler tidies up
                else:
                    self.to_console(piece)

    async def serve_gdb(self, stream: trio.SocketStream) -> None:
        if self.gdb is not None:
            await stream.aclose()  # one debugger at a time
            return
        self.gdb = stream
        self.demux.connected()
        try:
            while data := await stream.receive_some():
                await self.to_line(self.demux.from_gdb(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.gdb = None
            self.to_console(self.demux.disconnected())
            await stream.aclose()

    async def serve_console(self, stream: trio.SocketStream) -> None:
        send, receive = trio.open_memory_channel(CLIENT_QUEUE)
        if self.backlog:
            send.send_nowait(bytes(self.backlog))
            self.backlog.clear()
        self.consoles.add(send)
        telnet = TelnetInput()

        async def write_out():
            async with receive:
                async for text in receive:
                    await stream.send_all(text)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write_out)
                while data := await stream.receive_some():
                    await self.to_line(telnet.feed(data))
                nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.consoles.discard(send)
            send.close()
            await stream.aclose()


def _host_port(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


async def main(args) -> None:
    # Keep what already waits on the line: on a kgdbstub pty, the boot messages.
    line = SerialLine(args.line, args.baud, keep_pending_input=True)
    splitter = Splitter(line, line_is_pty=os.path.realpath(args.line).startswith("/dev/pts/"))
    try:
        async with trio.open_nursery() as nursery:
            addresses = []
            for (host, port), handler in ((args.console, splitter.serve_console), (args.gdb, splitter.serve_gdb)):
                listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, port, host=host))
                addresses.append(listeners[0].socket.getsockname()[:2])
            (console_host, console_port), (gdb_host, gdb_port) = addresses
            print(f"console on tcp:{console_host}:{console_port}", flush=True)
            print(f"gdb on tcp:{gdb_host}:{gdb_port}", flush=True)
            print(f"line: {line.path}", flush=True)
            await splitter.read_line()
    finally:
        line.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("line", help="serial device or pty slave")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--console", type=_host_port, default=DEFAULT_CONSOLE, metavar="HOST:PORT")
    parser.add_argument("--gdb", type=_host_port, default=DEFAULT_GDB, metavar="HOST:PORT")
    arguments = parser.parse_args()
    try:
        trio.run(main, arguments)
    except BaseException as failure:  # noqa: B036 -- reported below, then re-raised if unexpected
        leaf = failure
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        if isinstance(leaf, KeyboardInterrupt):
            sys.exit(130)
        if isinstance(leaf, LineLost):
            print(f"splitter: the line is gone: {leaf}", file=sys.stderr)
            sys.exit(1)
        if isinstance(leaf, OSError):
            print(f"splitter: {leaf}", file=sys.stderr)
            sys.exit(2)
        raise
