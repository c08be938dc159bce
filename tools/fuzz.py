"""Fuzz the codec and the session for a while, in process, against the real machine.

    python tools/fuzz.py [--seconds 60] [--seed N]

Feeds random byte streams -- garbage, truncated and corrupted frames, bad
hex, escapes and run-length markers in odd places, 0x03 inside and between
packets, and well-formed packets of every command with random arguments --
through a RemoteProtocol into a Session, and checks as it goes that nothing
raises, that every good packet is answered, and that after each simulated
connection the slot accounting is what it was before. Resumes are not run
(the machine stays stopped), so each check is about parsing and state.
Prints what it fed and any violation; exits 1 if there was one.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kgdbstub import targets  # noqa: E402
from kgdbstub.debugger import Debugger  # noqa: E402
from kgdbstub.kernel.image import Image  # noqa: E402
from kgdbstub.kernel.kernel import Kernel  # noqa: E402
from kgdbstub.rsp import Packet, RemoteProtocol, encode_frame  # noqa: E402
from kgdbstub.session import DIALECTS, PACKET_SIZE, Reply, Session  # noqa: E402

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
    baseline = kernel.accounting.snapshot()
    fed = answered = connections = violations = 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        connections += 1
        codec = RemoteProtocol(max_packet_size=PACKET_SIZE)
        session = Session(debugger, DIALECTS[rng.choice(sorted(DIALECTS))], monitor=lambda line: "ok\n")
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
            violations += 1
            traceback.print_exc()
        finally:
            debugger.detach()
        if kernel.accounting.snapshot() != baseline:
            violations += 1
            print(f"connection {connections}: the slot accounting changed", file=sys.stderr)
            baseline = kernel.accounting.snapshot()
    print(f"connections {connections}, bytes fed {fed:,}, packets answered {answered:,}, violations {violations}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
