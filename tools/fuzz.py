"""Fuzz the codec, the session and the server's connections, in process, against the real machine.

    python tools/fuzz.py [--seconds 60] [--seed N]

Half the time goes to the session: random byte streams -- garbage,
truncated and corrupted frames, bad hex, escapes and run-length markers in
odd places, 0x03 inside and between packets, and well-formed packets of
every command with random arguments -- go through the dialect's codec into its
session; resumes are not run. The other half goes to whole connections
served by serve_stream over an in-memory stream, resumes included: random
packets, each resume followed at once or later by a 0x03, packets while
the machine runs, oversize frames, and line noise between frames, in ack
and no-ack mode, ending with a detach or a hang-up.

Checked as it goes: nothing raises; every good packet gets exactly one
answer (a resume, its stop reply); a connection ends when its client hangs
up; and after each connection the slot accounting is what it was before.
Prints what it fed and any violation; exits 1 if there was one.
"""
from __future__ import annotations

import argparse
import random
import re
import sys
import time
import traceback
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kgdbstub import targets  # noqa: E402
from kgdbstub.core.debugger import Debugger  # noqa: E402
from kgdbstub.kernel.image import Image  # noqa: E402
from kgdbstub.kernel.kernel import Kernel  # noqa: E402
from kgdbstub.rsp import Packet, encode_frame  # noqa: E402
from kgdbstub.server import serve_stream  # noqa: E402
from kgdbstub.gdbstub.actions import PACKET_SIZE, Reply  # noqa: E402
from kgdbstub.gdbstub.dialects import DIALECTS  # noqa: E402

COMMANDS = [b"?", b"g", b"G", b"p", b"P", b"m", b"M", b"X", b"Hg", b"Hc", b"T", b"Z0,", b"Z1,", b"Z2,", b"Z3,",
            b"Z4,", b"z0,", b"z1,", b"z2,", b"z3,", b"z4,", b"qC", b"qfThreadInfo", b"qsThreadInfo",
            b"qThreadExtraInfo,", b"qSupported:", b"qXfer:features:read:target.xml:", b"qXfer:exec-file:read::",
            b"vFile:open:", b"vFile:pread:", b"qRcmd,", b"vCont?", b"QStartNoAckMode", b"qAttached", b"x"]


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
    "kgdb": [b"c", b"s", b"C05"],  # gdbstub.c's resumes: anything else is answered at once
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


async def serve_one(debugger: Debugger, rng: random.Random, dialect: str) -> tuple[int, int, str | None]:
    """One fuzzed connection to serve_stream: (bytes sent, replies, violation or None)."""
    steps, expected = connection_script(rng, dialect)
    client, server_side = trio.testing.memory_stream_pair()
    received = bytearray()
    answered = trio.Condition()
    writing = trio.StrictFIFOLock()  # the acks and the script share the client's side
    problem = None
    sent = 0

    async def serve():
        await serve_stream(server_side, debugger, dialect=dialect, monitor=lambda line: "ok\n")

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


def fuzz(debugger: Debugger, rng: random.Random, deadline: float, connection) -> tuple[int, int, int, int]:
    """Connections until the deadline, each to leave the slot accounting as it found it.

    Returns (connections, bytes, answers, violations).
    """
    baseline = debugger.kernel.accounting.snapshot()
    connections = fed = answered = violations = 0
    while time.monotonic() < deadline:
        connections += 1
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    kernel = Kernel(Image(targets.resolve(targets.DEFAULT_TARGET)), cpus=2)
    debugger = Debugger(kernel)
    debugger.resume()
    debugger.late_init()
    half = time.monotonic() + args.seconds / 2
    connections, fed, answered, violations = fuzz(debugger, rng, half, fuzz_session)
    print(f"sessions: connections {connections}, bytes fed {fed:,}, packets answered {answered:,}, "
          f"violations {violations}")
    served, sent, replies, broken = fuzz(debugger, rng, half + args.seconds / 2, fuzz_connection)
    print(f"served connections: connections {served}, bytes sent {sent:,}, replies {replies:,}, "
          f"violations {broken}")
    print(f"violations {violations + broken}")
    return 1 if violations + broken else 0


if __name__ == "__main__":
    sys.exit(main())
