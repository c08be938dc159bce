"""Fuzz the codec, the session and the server's connections, in process, against the real machine.

    python tools/fuzz.py [--seconds 60] [--seed N]

A quarter of the time goes to the session: random byte streams --
garbage, truncated and corrupted frames, bad hex, escapes and run-length
markers in odd places, 0x03 inside and between packets, and well-formed
packets of every command with random arguments -- go through the
dialect's codec into its session; resumes are not run. A quarter goes to whole
connections served by serve_stream over an in-memory stream, resumes
included: random packets, each resume followed at once or later by a 0x03,
packets while the machine runs, oversize frames, and line noise between
frames, in ack and no-ack mode, ending with a detach or a hang-up.

A quarter feeds hostile values, each round on a machine of its own:
every register of both layouts written with 0, all ones and odd values
(P and G) and the machine stepped and run after; floods of software
breakpoints and of one hardware request; and connections whose packet log
cannot be written (a full device, a pipe with no reader).

The last quarter plays hostile clients: floods of requests never
acknowledged and of '-', silent and dribbling connections and refused ones
(serve_listener on a loopback port), and on a pty (serve_line) slaves with
echo turned on and storms of programs opening the slave, writing and
closing it.

Checked as it goes: nothing raises; every good packet gets exactly one
answer (a resume, its stop reply; but a SysRq-G that CPU 0 never takes
because the fuzzed registers left its interrupts disabled stops nothing,
as in Linux, and the machine is booted anew after the hang-up that stops
it); a connection ends when its client hangs up; and after each
connection the slot accounting is what it was before.
A refused register write changes nothing; the breakpoint tables stay
within their bounds; a failing log is one line on stderr. Floods are
answered without anything held for an ack, a flood of '-' brings at most
one copy of the reply per read of them, a connection that sends no packet
is closed and takes no seat, a refusal is an `E.` reply, echo on a pty
makes no packet of the stub's own replies, and a storm leaves the pty to
the next debugger. Prints what it fed and any violation; exits 1 if there
was one.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import re
import sys
import termios
import time
import traceback
import tty
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kgdbstub import targets  # noqa: E402
from kgdbstub.core.debugger import Debugger  # noqa: E402
from kgdbstub.kernel.image import Image  # noqa: E402
from kgdbstub.kernel.kernel import Kernel  # noqa: E402
from kgdbstub.rsp import Packet, RemoteProtocol, encode_frame  # noqa: E402
from kgdbstub.server import serve_line, serve_listener, serve_stream  # noqa: E402
from kgdbstub.transport import ConsoleBuffer, PtyLine  # noqa: E402
from kgdbstub.gdbstub.actions import PACKET_SIZE, Reply  # noqa: E402
from kgdbstub.gdbstub.dialects import DIALECTS  # noqa: E402
from kgdbstub.trace import Trace  # noqa: E402
from kgdbstub.x86 import registers  # noqa: E402

COMMANDS = [b"?", b"g", b"G", b"p", b"P", b"m", b"M", b"X", b"Hg", b"Hc", b"T", b"Z0,", b"Z1,", b"Z2,", b"Z3,",
            b"Z4,", b"z0,", b"z1,", b"z2,", b"z3,", b"z4,", b"qC", b"qfThreadInfo", b"qsThreadInfo",
            b"qThreadExtraInfo,", b"qSupported:", b"qXfer:features:read:target.xml:", b"qXfer:exec-file:read::",
            b"vFile:open:", b"vFile:pread:", b"qRcmd,", b"vCont?", b"QStartNoAckMode", b"qAttached", b"x",
            b"qHostInfo", b"qProcessInfo", b"qWatchpointSupportInfo:", b"QThreadSuffixSupported",
            b"QListThreadsInStopReply", b"p10;thread:", b"g;thread:"]


def argument(rng: random.Random) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:
        return b"%x" % rng.choice([0, 1, 8, 0xFFFFFFFF81002000, 0xFFFFFFFF81000062, 0x402000, 2**64 - 1, 2**80])
    if choice == 1:
        return rng.choice([b",", b":", b";", b"=", b"-1", b"fffffffe", b"}", b"*", b"#", b"$"])
    if choice == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
    if choice == 3:
        return b"%x,%x" % (rng.randrange(2**64), rng.randrange(1 << rng.randrange(1, 20)))
    if choice == 4:
        return b"6d6f6e69746f722070730a"[: rng.randrange(24)]
    return b""


def packet(rng: random.Random) -> bytes:
    return rng.choice(COMMANDS) + b"".join(argument(rng) for _ in range(rng.randrange(5)))


def wire(rng: random.Random, payload: bytes) -> bytes:
    frame = encode_frame(payload, run_length_encode=rng.random() < 0.3)
    mutation = rng.randrange(10)
    if mutation == 0:
        return frame[: rng.randrange(len(frame))]  # truncated
    if mutation == 1:
        i = rng.randrange(len(frame))
        return frame[:i] + bytes([rng.randrange(256)]) + frame[i + 1 :]  # corrupted
    if mutation == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(40)))  # garbage
    if mutation == 3:
        return b"\x03" + frame  # an interrupt between packets
    if mutation == 4:
        return b"$" + b"A" * rng.randrange(PACKET_SIZE, PACKET_SIZE * 2) + b"#00"  # oversize
    return frame


def fuzz_session(debugger: Debugger, rng: random.Random) -> tuple[int, int, str | None]:
    """A random stream through a codec into a session: (bytes fed, packets answered, violation or None)."""
    fed = answered = 0
    dialect = DIALECTS[rng.choice(sorted(DIALECTS))]
    codec = dialect.codec()
    session = dialect.session(debugger, dialect, monitor=lambda line: "ok\n")
    debugger.attach()
    try:
        for _ in range(rng.randrange(1, 60)):
            data = wire(rng, packet(rng))
            fed += len(data)
            for start in range(0, len(data), rng.randrange(1, 64)):
                codec.receive_data(data[start : start + 64])
            for event in codec.events():
                if isinstance(event, Packet):
                    action = session.handle(event.payload)
                    answered += 1
                    if isinstance(action, Reply):
                        codec.send_packet(action.payload)
            codec.data_to_send()
    except Exception:  # noqa: BLE001 - a violation to report, not to hide
        return fed, answered, traceback.format_exc()
    finally:
        debugger.detach()
    return fed, answered, None


RESUMES = {
    "modern": [b"c", b"s", b"vCont;c", b"vCont;s:1", b"C05"],
    # gdbstub.c's resumes: anything else is answered at once. (Its C05 would
    # resume at 0x5: the guest panics with interrupts off, and SysRq-G could
    # not stop it, as in Linux.)
    "kgdb": [b"c", b"s"],
}
QUIET_NOISE = bytes(b for b in range(256) if b not in b"$#+-\x03")  # noise that cannot frame, ack or interrupt


def connection_script(rng: random.Random, dialect: str = "modern") -> tuple[list[tuple[bytes, int | None]], int]:
    """What one client sends, as (bytes, answers to wait for before going on), and the answers due.

    Like gdb it waits for each answer before its next packet, but for those
    it sends while the machine runs: their answers come after the stop.
    """
    steps: list[tuple[bytes, int | None]] = []
    answers = 0

    def send(payload: bytes, *, wait: bool = True, run_length_encode: bool = False) -> None:
        nonlocal answers
        answers += 1
        steps.append((encode_frame(payload, run_length_encode=run_length_encode), answers if wait else None))

    send(b"qSupported:swbreak+;hwbreak+")
    if rng.random() < 0.5:
        send(b"QStartNoAckMode")
    for _ in range(rng.randrange(1, 40)):
        kind = rng.randrange(8)
        if kind == 0:
            steps.append((bytes(rng.choice(QUIET_NOISE) for _ in range(rng.randrange(1, 30))), None))
        elif kind == 1 and dialect == "kgdb":
            continue  # Linux's get_packet drops a packet too big for it without an answer
        elif kind == 1:
            send(b"M402000,%x:" % PACKET_SIZE + b"00" * PACKET_SIZE)  # intact but too big: an error
        elif kind == 2:
            # A resume, stopped at once or after some packets sent while it runs.
            send(rng.choice(RESUMES[dialect]), wait=False)
            # Not to kgdb: what comes while Linux runs is the tty's, never
            # kgdb's, and a packet sent before the stop reply's ack is due
            # meets put_packet's rule for a '$' in place of an ack (the
            # reply is given up and that packet lost), as in Linux.
            for _ in range(rng.randrange(3) if dialect == "modern" else 0):
                send(b"m402000,8", wait=False)
            # kgdb ignores a Ctrl-C: SysRq-G (a telnet BREAK, then g) breaks in
            steps.append((b"\x03" if dialect == "modern" else b"\xff\xf3g", answers))
        else:
            payload = packet(rng)
            if payload[:1] in b"cCsSDk3" or payload.startswith((b"vCont;", b"vFile", b"QStartNoAckMode")):
                continue  # resumes and endings come only where the script expects them
            send(payload, run_length_encode=rng.random() < 0.3)
    if rng.random() < 0.5:
        send(b"D")
    return steps, answers


async def serve_one(debugger: Debugger, rng: random.Random, dialect: str,
                    trace: Trace | None = None) -> tuple[int, int, str | None]:
    """One fuzzed connection to serve_stream: (bytes sent, replies, violation or None)."""
    steps, expected = connection_script(rng, dialect)
    client, server_side = trio.testing.memory_stream_pair()
    received = bytearray()
    answered = trio.Condition()
    writing = trio.StrictFIFOLock()  # the acks and the script share the client's side
    problem = None
    sent = 0

    async def serve():
        await serve_stream(server_side, debugger, dialect=dialect, monitor=lambda line: "ok\n", trace=trace)

    async def read():
        # Every frame is acknowledged before the next packet goes, as gdb
        # does: needed in ack mode, ignored as noise in no-ack mode.
        try:
            while chunk := await client.receive_some(65536):
                received.extend(chunk)
                try:
                    async with writing:
                        await client.send_all(b"+" * chunk.count(b"#"))
                finally:
                    async with answered:
                        answered.notify_all()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # one side hung up: the script, or the stub after a detach

    async def talk():
        nonlocal sent, problem
        for data, wait_for in steps:
            async with writing:  # whole: an ack inside a frame would damage it
                await client.send_all(data)
            sent += len(data)
            if wait_for is not None:
                with trio.move_on_after(10) as waiting:
                    async with answered:
                        while _answers(received) < wait_for:
                            await answered.wait()
                if waiting.cancelled_caught:
                    problem = f"no answer to packet {wait_for} within 10 s"
                    break
        await client.aclose()

    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve)
                nursery.start_soon(read)
                nursery.start_soon(talk)
    except trio.TooSlowError:
        problem = "the connection did not end within 30 s"
    except Exception:  # noqa: BLE001 - a violation to report, not to hide
        problem = traceback.format_exc()
    got = _answers(received)
    if problem and problem.startswith("no answer") and dialect == "kgdb" and debugger.kernel.interrupt_waiting(0):
        # SysRq-G is the serial port's interrupt on CPU 0 (sysrq_handle_dbg),
        # which a CPU that keeps interrupts disabled never takes, in Linux as
        # here; the fuzzed registers left it so. The hang-up stopped the
        # machine all the same (an NMI), which is what is asked of the stub.
        return sent, got, None
    if problem is None and got != expected:
        problem = f"{expected} packets sent, {got} answered"
    return sent, got, problem


def _answers(received: bytes) -> int:
    """Replies in what the stub sent, console O packets aside."""
    return sum(1 for body in re.findall(rb"\$([^#$]*)#[0-9a-f]{2}", bytes(received))
               if not (body.startswith(b"O") and body != b"OK"))


def fuzz_connection(debugger: Debugger, rng: random.Random) -> tuple[int, int, str | None]:
    """A whole connection through serve_stream: (bytes sent, replies, violation or None)."""
    dialect = rng.choice(sorted(DIALECTS))
    sent, replies, problem = trio.run(serve_one, debugger, rng, dialect)
    return sent, replies, problem and f"({dialect}) {problem}"


# -- hostile clients -------------------------------------------------------------------

HOSTILE_DEADLINE = 20.0  # for every wait of a hostile case
PATIENCE = 0.3  # serve_listener's first-packet patience here, to keep cases short


class Client:
    """A raw client of the stub: what it received, parsed by a codec of its own, which acks nothing by itself."""

    def __init__(self, stream: trio.abc.Stream):
        self.stream = stream
        self.codec = RemoteProtocol(max_packet_size=1 << 20)
        self.packets: list[bytes] = []
        self.raw = bytearray()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive(self) -> bool:
        try:
            data = await self.stream.receive_some(1 << 16)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        self.raw = (self.raw + data)[-4096:]
        self.codec.receive_data(data)
        self.packets += [event.payload for event in self.codec.events()
                         if isinstance(event, Packet) and not (event.payload[:1] == b"O" and event.payload != b"OK")]
        self.codec.data_to_send()
        return bool(data)

    async def until(self, wanted, what: str) -> list[bytes]:
        """Packets up to and including the first `wanted(payload)` is true of."""
        with trio.fail_after(HOSTILE_DEADLINE):
            while True:
                for index, payload in enumerate(self.packets):
                    if wanted(payload):
                        taken, self.packets = self.packets[: index + 1], self.packets[index + 1 :]
                        return taken
                if not await self.receive():
                    raise AssertionError(f"hung up before {what}; last bytes {bytes(self.raw[-200:])!r}")

    async def request(self, payload: bytes) -> bytes:
        await self.send(encode_frame(payload, run_length_encode=False))
        reply = (await self.until(lambda _: True, f"the reply to {payload[:30]!r}"))[0]
        await self.send(b"+")
        return reply

    async def until_closed(self, what: str) -> None:
        with trio.fail_after(HOSTILE_DEADLINE):
            while await self.receive():
                pass


def _distinct_reads(rng: random.Random, count: int, length: int) -> list[bytes]:
    base = 0xFFFFFFFF81000000 + rng.randrange(0x1000)
    return [b"m%x,%x" % (base + n, length) for n in range(count)]


async def flood_client(client: Client, rng: random.Random, *, modern: bool) -> None:
    """Reads never acknowledged, then bursts of '-' after a large reply, on one connection.

    Every read must be answered (in `modern`; kgdb may drop a packet that
    comes in place of an ack), so nothing waits for an ack; each burst of
    '-' may bring the reply back once per read of it, and the stub reads a
    burst in one piece or two (in `kgdb` once per '-', as put_packet does).
    """
    await client.request(b"qSupported:swbreak+")
    reads = _distinct_reads(rng, rng.randrange(50, 2000), rng.choice([1, 0x40, 0x800]))
    await client.send(b"".join(encode_frame(r, run_length_encode=False) for r in reads) + b"+"
                      + encode_frame(b"qC", run_length_encode=False))
    answers = await client.until(lambda payload: payload.startswith(b"QC"), "the marker after the flood")
    if modern and len(answers) != len(reads) + 1:
        raise AssertionError(f"{len(reads)} reads never acknowledged, {len(answers) - 1} answered")
    # In kgdb every '-' brings a copy: a short reply keeps tens of thousands of them quick.
    await client.send(b"+" + encode_frame(b"m%x,%x" % (0xFFFFFFFF81000000, 0x800 if modern else 8),
                                          run_length_encode=False))
    await client.until(lambda _: True, "the large reply")
    bursts = rng.randrange(1, 8)
    copies = dashes = 0
    for _ in range(bursts):
        burst = rng.randrange(1, 8192 if modern else 512)  # kgdb: a copy each, which this client reads slowly
        dashes += burst
        await client.send(b"-" * burst)
        copies += len(await client.until(lambda _: True, "the reply sent again"))  # read: the next is a burst of its own
    await client.send(b"+" + encode_frame(b"qC", run_length_encode=False))
    copies += len(await client.until(lambda payload: payload.startswith(b"QC"), "the marker after the naks")) - 1
    # kgdb's put_packet sends the reply again for each of them, one copy after another.
    if copies > 2 * bursts if modern else copies != dashes:
        raise AssertionError(f"{bursts} bursts of {dashes} '-' brought the reply {copies} times")
    await client.send(b"+")


async def flood(debugger: Debugger, rng: random.Random, dialect: str) -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: serve_stream(server_end, debugger, dialect=dialect, monitor=lambda line: "ok\n"))
        await flood_client(Client(client_end), rng, modern=dialect == "modern")
        await client_end.aclose()


async def silent_dribbling_and_refused(debugger: Debugger, rng: random.Random, dialect: str) -> None:
    """Connections that send nothing or a byte at a time take no seat and are closed; a second debugger is refused."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: serve_listener(listeners[0], debugger, dialect=dialect, first_packet_patience=PATIENCE,
                                                  monitor=lambda line: "ok\n"))
        quiet = [Client(await trio.open_tcp_stream("127.0.0.1", port)) for _ in range(rng.randrange(1, 6))]
        dribblers = [Client(await trio.open_tcp_stream("127.0.0.1", port)) for _ in range(rng.randrange(0, 3))]
        seated = Client(await trio.open_tcp_stream("127.0.0.1", port))
        await seated.request(b"qSupported:swbreak+")

        async def dribble(client: Client):
            with trio.fail_after(HOSTILE_DEADLINE):
                while True:
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await client.send(bytes([rng.choice(b"$m0,1x+-")]))
                    with trio.move_on_after(PATIENCE / 4):
                        if not await client.receive():
                            return

        async with trio.open_nursery() as waiting:
            for client in quiet:
                waiting.start_soon(client.until_closed, "a silent connection closed")
            for client in dribblers:
                waiting.start_soon(dribble, client)
        second = Client(await trio.open_tcp_stream("127.0.0.1", port))
        refusal = await second.request(b"qSupported:swbreak+")
        if not refusal.startswith(b"E.") or b"another debugger" not in refusal:
            raise AssertionError(f"a second debugger was answered {refusal!r}")
        await second.until_closed("the refused one closed")
        if (await seated.request(b"D")) != b"OK":
            raise AssertionError("the seated debugger could not detach")
        nursery.cancel_scope.cancel()
    for listener in listeners:
        await listener.aclose()


def _open_slave(path: str) -> trio.lowlevel.FdStream:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd, termios.TCSANOW)
    termios.tcflush(fd, termios.TCIFLUSH)  # as gdb does when it opens a port
    return trio.lowlevel.FdStream(fd)


async def echo_and_storm_client(path: str, rng: random.Random) -> None:
    """On a pty: a slave with echo on gets one answer per packet; then a storm
    of programs opening the slave, writing and closing it; then a debugger
    attaches and detaches."""
    client = Client(_open_slave(path))
    settings = termios.tcgetattr(client.stream.fileno())
    settings[3] |= termios.ECHO  # as `stty echo` from another terminal
    termios.tcsetattr(client.stream.fileno(), termios.TCSANOW, settings)
    await client.send(encode_frame(b"qSupported:swbreak+", run_length_encode=False))
    await client.until(lambda _: True, "the reply to qSupported")  # (kgdb's is empty)
    await client.send(b"+")
    for read in _distinct_reads(rng, rng.randrange(1, 20), 4):
        await client.request(read)
    await client.send(encode_frame(b"qC", run_length_encode=False))
    extra = await client.until(lambda payload: payload.startswith(b"QC"), "the marker with echo on")
    if len(extra) != 1:
        raise AssertionError(f"echo on the slave: {len(extra) - 1} packets the stub should not have answered")
    await client.send(b"+")
    await client.stream.aclose()
    for _ in range(rng.randrange(10, 200)):
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        with contextlib.suppress(BlockingIOError):
            os.write(fd, b"".join(rng.choice([encode_frame(b"m%x,1" % rng.randrange(1 << 16)), encode_frame(b"c"),
                                              b"\x03", b"$m0,", b"-", b"+", b"noise"])
                                  for _ in range(rng.randrange(1, 12))))
        os.close(fd)
        if rng.random() < 0.2:
            await trio.sleep(0)
    # Frames the stub wrote for the last of them may still come: a line
    # cannot tell one program from the next.
    client = Client(_open_slave(path))
    await client.send(encode_frame(b"qSupported:swbreak+", run_length_encode=False))
    await client.send(b"+" + encode_frame(b"m%x,4" % 0xFFFFFFFF81000000, run_length_encode=False))
    await client.until(lambda payload: re.fullmatch(rb"[0-9a-f]{8}", payload), "a read after the storm")
    await client.send(b"+")
    if (await client.request(b"D")) != b"OK":
        raise AssertionError("no detach after the storm")
    await client.stream.aclose()


async def pty_echo_and_storm(debugger: Debugger, rng: random.Random, dialect: str) -> None:
    reports: list[str] = []
    line = PtyLine(report=reports.append)
    console = ConsoleBuffer()
    console.attach(debugger.kernel, backlog=False)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: serve_line(line, debugger, console, dialect=dialect, monitor=lambda l: "ok\n"))
            await echo_and_storm_client(line.path, rng)
            if not any("echo" in report for report in reports):
                raise AssertionError(f"echo on the slave was not reported: {reports}")
            nursery.cancel_scope.cancel()
    finally:
        console.detach()
        line.close()


HOSTILE_CLIENTS = [flood, silent_dribbling_and_refused, pty_echo_and_storm]


def fuzz_hostile_clients(debugger: Debugger, rng: random.Random) -> tuple[int, int, str | None]:
    """One hostile client's case: (1, 0, violation or None)."""
    case, dialect = rng.choice(HOSTILE_CLIENTS), rng.choice(sorted(DIALECTS))
    try:
        trio.run(case, debugger, rng, dialect)
    except Exception:  # noqa: BLE001 - a violation to report, not to hide
        return 1, 0, f"{case.__name__} ({dialect}): {traceback.format_exc()}"
    return 1, 0, None


def fuzz(debugger: Debugger, rng: random.Random, deadline: float, connection) -> tuple[int, int, int, int]:
    """Connections until the deadline, each to leave the slot accounting as it found it.

    Returns (connections, bytes, answers, violations).
    """
    baseline = debugger.kernel.accounting.snapshot()
    connections = fed = answered = violations = 0
    while time.monotonic() < deadline:
        connections += 1
        if debugger.kernel.interrupt_waiting(0):
            # CPU 0 keeps interrupts disabled for good: no SysRq-G gets in any
            # more, so the next connections get a machine booted anew.
            debugger = booted(debugger.kernel.image)
            baseline = debugger.kernel.accounting.snapshot()
        sent, answers, problem = connection(debugger, rng)
        fed += sent
        answered += answers
        if problem:
            violations += 1
            print(f"connection {connections}: {problem}", file=sys.stderr)
        if debugger.kernel.accounting.snapshot() != baseline:
            violations += 1
            print(f"connection {connections}: the slot accounting changed", file=sys.stderr)
            baseline = debugger.kernel.accounting.snapshot()
    return connections, fed, answered, violations


# -- hostile values, each round on a machine of its own ------------------------------


def booted(image: Image, dialect=None) -> Debugger:
    debugger = Debugger(Kernel(image, cpus=2), **(dialect.core if dialect else {}))
    debugger.resume()
    debugger.late_init()
    return debugger


def odd_value(rng: random.Random, size: int) -> int:
    top = (1 << (8 * size)) - 1
    return rng.choice([0, top, 1, 3, 8, 0x2B, 0xFFFF, rng.randrange(top + 1), rng.randrange(top + 1)]) & top


def fuzz_registers(image: Image, rng: random.Random) -> tuple[int, int, str | None]:
    """Every register of a layout with odd values, by P and G; then a step and a short run."""
    dialect = DIALECTS[rng.choice(sorted(DIALECTS))]
    debugger = booted(image, dialect)
    session = dialect.session(debugger, dialect)
    fed = answered = 0

    def state() -> bytes:  # the registers of the task that stopped, which P and G write
        return registers.encode(debugger.kernel.current[debugger.stop.cpu].regs, registers.MODERN)

    try:
        for _ in range(rng.randrange(1, 30)):
            before = state()
            if rng.random() < 0.8:
                number = rng.randrange(len(dialect.layout) + 4)
                size = dialect.layout[number].size if number < len(dialect.layout) else 8
                packet = b"P%x=%s" % (number, odd_value(rng, size).to_bytes(size, "little").hex().encode())
            else:
                packet = b"G" + b"".join(odd_value(rng, r.size).to_bytes(r.size, "little").hex().encode()
                                         for r in dialect.layout)
            reply = session.handle(packet).payload
            fed, answered = fed + len(packet), answered + 1
            if reply not in (b"OK", b"E22"):
                return fed, answered, f"({dialect.name}) {packet[:40]!r}... answered {reply!r}"
            if reply == b"E22" and state() != before:
                return fed, answered, f"({dialect.name}) {packet[:40]!r}... was refused and changed registers"
            if rng.random() < 0.3:
                debugger.resume(step=True)
                session.handle(b"?")
        debugger.request_interrupt()
        debugger.resume()
    except Exception:  # noqa: BLE001 - a violation to report, not to hide
        return fed, answered, f"({dialect.name}) {traceback.format_exc()}"
    return fed, answered, None


def fuzz_breakpoint_flood(image: Image, rng: random.Random) -> tuple[int, int, str | None]:
    """More software breakpoints than kgdb holds, one hardware request again and again, then a step."""
    dialect = DIALECTS[rng.choice(sorted(DIALECTS))]
    debugger = booted(image, dialect)
    session = dialect.session(debugger, dialect)
    text = image.address_of("start_kernel")
    code = debugger.kernel.read(text, 0x600)
    fed = answered = 0
    try:
        for _ in range(rng.randrange(900, 1300)):
            packet = b"Z0,%x,1" % (text + rng.randrange(0x600))
            reply = session.handle(packet).payload
            fed, answered = fed + len(packet), answered + 1
            if reply not in (b"OK", b"E17", b"E07"):
                return fed, answered, f"({dialect.name}) {packet!r} answered {reply!r}"
        if len(debugger.breakpoints) > 1000:
            return fed, answered, f"({dialect.name}) {len(debugger.breakpoints)} software breakpoints held"
        kind = rng.choice((1, 2, 4))
        request = b"%d,%x,%d" % (kind, image.address_of("total_forks" if kind != 1 else "do_fork"), 1 if kind == 1 else 8)
        for _ in range(rng.randrange(1, 3000)):
            session.handle(b"Z" + request)
            fed, answered = fed + len(request) + 1, answered + 1
        if len(debugger.hardware.requests) > 1:
            return fed, answered, f"({dialect.name}) one request stored {len(debugger.hardware.requests)} times"
        debugger.resume(step=True)
        session.handle(b"?")  # kgdb takes every breakpoint out
        if debugger.kernel.read(text, 0x600) != code or debugger.breakpoints or debugger.hardware.requests:
            return fed, answered, f"({dialect.name}) breakpoints were left behind"
    except Exception:  # noqa: BLE001 - a violation to report, not to hide
        return fed, answered, f"({dialect.name}) {traceback.format_exc()}"
    return fed, answered, None


def fuzz_failing_trace(image: Image, rng: random.Random) -> tuple[int, int, str | None]:
    """A fuzzed connection whose packet log cannot be written: it is served all the same."""
    if rng.random() < 0.5 and os.path.exists("/dev/full"):
        where, fd = "/dev/full", os.open("/dev/full", os.O_WRONLY)
    else:
        reader, fd = os.pipe()
        os.close(reader)
        where = "a pipe with no reader"
    trace = Trace(fd, name=where)
    errors = io.StringIO()
    dialect = rng.choice(sorted(DIALECTS))
    try:
        with contextlib.redirect_stderr(errors):
            sent, replies, problem = trio.run(serve_one, booted(image), rng, dialect, trace)
    finally:
        trace.close()
    said = errors.getvalue().splitlines()
    if problem is None and (len(said) != 1 or "tracing stopped" not in said[0]):
        problem = f"the failing log ({where}) said {said!r}, not one line"
    return sent, replies, problem and f"({dialect}, log on {where}) {problem}"


def fuzz_hostile(image: Image):
    """One round of hostile values, of a kind chosen at random (for fuzz())."""
    def one(_debugger: Debugger, rng: random.Random) -> tuple[int, int, str | None]:
        return rng.choice((fuzz_registers, fuzz_breakpoint_flood, fuzz_failing_trace))(image, rng)
    return one


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    image = Image(targets.resolve(targets.DEFAULT_TARGET))
    debugger = booted(image)
    quarter = args.seconds / 4
    start = time.monotonic()
    connections, fed, answered, violations = fuzz(debugger, rng, start + quarter, fuzz_session)
    print(f"sessions: connections {connections}, bytes fed {fed:,}, packets answered {answered:,}, "
          f"violations {violations}")
    served, sent, replies, broken = fuzz(debugger, rng, start + 2 * quarter, fuzz_connection)
    print(f"served connections: connections {served}, bytes sent {sent:,}, replies {replies:,}, "
          f"violations {broken}")
    rounds, values, hostile_answers, hostile = fuzz(debugger, rng, start + 3 * quarter, fuzz_hostile(image))
    print(f"hostile values: rounds {rounds}, bytes fed {values:,}, packets answered {hostile_answers:,}, "
          f"violations {hostile}")
    cases, _, _, clients = fuzz(debugger, rng, start + args.seconds, fuzz_hostile_clients)
    print(f"hostile clients: cases {cases}, violations {clients}")
    print(f"violations {violations + broken + hostile + clients}")
    return 1 if violations + broken + hostile + clients else 0


if __name__ == "__main__":
    sys.exit(main())
