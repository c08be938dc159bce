"""A packet console for RSP stubs: send raw packets, see the replies decoded.

    python tools/rsp_console.py ADDRESS [PACKET ...]      # these packets, in order
    python tools/rsp_console.py ADDRESS -f FILE           # one packet a line ('-': stdin)
    python tools/rsp_console.py ADDRESS                   # type packets at the prompt

ADDRESS is `HOST:PORT`, `tcp:HOST:PORT`, or the path of a pty or serial
line. A packet is its payload, as typed: `m ffffffff81003000,8`-style spaces
are not removed. `^C` sends an interrupt (0x03). In a file, blank lines and
lines starting with `#` are skipped.

Nothing is sent but what you give (no qSupported, acks on) unless you ask
for --handshake, which sets the session up as gdb does and names registers.
Replies are printed as they came, then decoded: console output (`O`) as
text, stop replies split into their fields, `E` replies with their errno,
hex text and host I/O results spelled out. A resume (c, s, vCont;c ...)
waits --timeout seconds for the stop; if none comes, `^C` stops the target.
"""
from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kgdbstub.client import ConnectionLost, RemoteError, SyncTarget, Timeout  # noqa: E402
from kgdbstub.client.packets import (  # noqa: E402
    error_number, is_resume, output_text, parse_thread_id, stop_fields,
)

INTERRUPT = "^C"


def show(data: bytes, limit: int) -> str:
    """Bytes as text: printable ASCII as is, the rest as \\xNN; long ones cut."""
    text = "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in data[:limit])
    return text + (f"... ({len(data)} bytes)" if len(data) > limit else "")


def decode(request: bytes, reply: bytes, names: dict[int, str]) -> str | None:
    """A line that says what the reply means, or None when it speaks for itself."""
    if reply == b"":
        return "empty: the stub does not support this packet"
    failure = error_number(reply)
    if failure is not None:
        number, text = failure
        if number is None:
            return f"error: {text}"
        return f"error: errno {number}, {errno.errorcode.get(number, '?')}: {os.strerror(number)}"
    if reply[:1] in (b"S", b"T") and re.match(rb"[ST][0-9a-fA-F]{2}", reply) and (is_resume(request) or request == b"?"):
        return decode_stop(reply, names)
    if reply[:1] in (b"W", b"X") and is_resume(request):
        return ("exited with status " if reply[:1] == b"W" else "terminated by signal ") + reply[1:3].decode()
    if request.startswith(b"vFile:") and reply.startswith(b"F"):
        head, semicolon, attachment = reply.partition(b";")
        result, _, code = head[1:].partition(b",")
        if result.startswith(b"-"):
            number = int(code, 16) if code else 0
            return f"failed: errno {number}, {errno.errorcode.get(number, '?')}: {os.strerror(number)}"
        return f"result {int(result, 16)}" + (f", {len(attachment)} bytes attached" if semicolon else "")
    if request.startswith((b"qThreadExtraInfo", b"qRcmd")) and re.fullmatch(rb"(?:[0-9a-fA-F]{2})+", reply):
        return repr(bytes.fromhex(reply.decode()).decode("utf-8", "replace"))
    if request.startswith(b"qfThreadInfo") or request.startswith(b"qsThreadInfo"):
        if reply.startswith(b"m"):
            return "threads " + ", ".join(str(parse_thread_id(t)) for t in reply[1:].split(b",") if t)
        return "end of the thread list" if reply == b"l" else None
    if request.startswith(b"qC") and reply.startswith(b"QC"):
        return f"current thread {parse_thread_id(reply[2:])}"
    return None


def decode_stop(reply: bytes, names: dict[int, str]) -> str:
    number = int(reply[1:3], 16)
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = "?"
    parts = [f"signal {number} ({name})"]
    for field, value in stop_fields(reply) if reply[:1] == b"T" else ():
        if field == "thread":
            parts.append(f"thread={parse_thread_id(value.encode())}")
        elif field == "core":
            parts.append(f"cpu={int(value, 16)}")
        elif re.fullmatch(r"[0-9a-fA-F]+", field) and re.fullmatch(r"(?:[0-9a-fA-F]{2})+", value):
            register = names.get(int(field, 16), field)
            parts.append(f"{register}={int.from_bytes(bytes.fromhex(value), 'little'):#x}")
        elif field in ("watch", "rwatch", "awatch"):
            parts.append(f"{field}={int(value, 16):#x}")
        else:
            parts.append(f"{field}:{value}" if value else field)
    return "  ".join(parts)


class Console:
    def __init__(self, target: SyncTarget, *, timeout: float, limit: int, names: bool, out=sys.stdout):
        self.target = target
        self.timeout = timeout
        self.limit = limit
        self.out = out
        # Registers in stop replies by name once the handshake has told the layout.
        self.names = {r.number: r.name for r in target.registers_layout()} if names else {}

    def print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def reply(self, request: bytes, reply: bytes) -> None:
        self.print(f"<- {show(reply, self.limit)}")
        meaning = decode(request, reply, self.names)
        if meaning:
            self.print(f"   {meaning}")

    def send(self, line: str) -> None:
        if line == INTERRUPT:
            self.print("-> ^C (0x03)")
            if not self.target.running:
                self.print("   (nothing runs: the stub ignores an interrupt while stopped, so none is sent)")
                return
            self.wait(lambda: self.target.interrupt(timeout=self.timeout), b"c")
            return
        payload = line.encode("latin-1")
        self.print(f"-> {show(payload, self.limit)}")
        if self.target.running:
            self.print("   (not sent: the target runs; ^C first)")
            return
        if is_resume(payload):
            self.target.resume_nowait(payload)
            self.wait(lambda: self.target.wait_stop(timeout=self.timeout), payload)
            return
        try:
            exchange = self.target.exchange(payload, timeout=self.timeout)
        except Timeout:
            self.print(f"   (no reply within {self.timeout:g} s; a late one is dropped before the next packet)")
            return
        for packet in exchange.output:
            self.print(f"<- O {output_text(packet)!r}")
        self.reply(payload, exchange.reply)
        if payload == b"D" and exchange.reply == b"OK" or payload == b"k":
            raise SystemExit(0)

    def wait(self, stop_of, request: bytes) -> None:
        try:
            stop = stop_of()
        except KeyboardInterrupt:  # the target was interrupted and has stopped
            self.print("   (Ctrl-C: interrupted)")
            stop = self.target.stop
        except Timeout:
            self.print(f"   (no stop within {self.timeout:g} s: the target runs; ^C stops it)")
            return
        except RemoteError as refused:
            self.reply(request, refused.reply)
            return
        for line in stop.output.splitlines(keepends=True):
            self.print(f"<- O {line!r}")
        self.reply(request, stop.raw)


def packets(args) -> list[str] | None:
    if args.file is None:
        return args.packets or None
    stream = sys.stdin if args.file == "-" else open(args.file, encoding="latin-1")
    with stream:
        lines = [line.rstrip("\r\n") for line in stream]
    return args.packets + [line for line in lines if line.strip() and not line.startswith("#")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("address")
    parser.add_argument("packets", nargs="*", metavar="PACKET")
    parser.add_argument("-f", "--file", help="a file of packets, one a line ('-' for stdin)")
    parser.add_argument("--handshake", action="store_true",
                        help="first qSupported, no-ack mode, target description and ? as gdb does")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a reply or a stop (default 5)")
    parser.add_argument("--wire", action="store_true", help="also show every byte sent and received")
    parser.add_argument("--limit", type=int, default=400, help="show at most this many bytes of a packet")
    args = parser.parse_intermixed_args(argv)

    def wire(direction: str, data: bytes) -> None:
        print(f"   wire {direction} {show(data, args.limit)}", flush=True)

    try:
        target = SyncTarget(args.address, timeout=args.timeout, handshake=args.handshake,
                            trace=wire if args.wire else None)
    except (ConnectionLost, Timeout, ValueError) as failure:
        print(f"rsp_console: {failure}", file=sys.stderr)
        return 1
    try:
        console = Console(target, timeout=args.timeout, limit=args.limit, names=args.handshake)
        given = packets(args)
        if given is not None:
            for line in given:
                console.send(line)
        else:
            interactive = sys.stdin.isatty()
            while True:
                try:
                    line = input("rsp> " if interactive else "")
                except (EOFError, KeyboardInterrupt):
                    break
                if line.strip() and not line.startswith("#"):
                    console.send(line)
    except ConnectionLost as lost:
        print(f"rsp_console: {lost}", file=sys.stderr)
        return 1
    except SystemExit as done:
        return int(done.code or 0)
    finally:
        target.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
