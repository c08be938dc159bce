"""What hostile clients cost `kgdbstub serve`: figures, measured on real server processes.

    python tools/bench_hostile.py [--requests 20000] [--json FILE]

Prints, each from a fresh server:

- the server's resident memory at rest, after N memory reads of 4 KiB
  sent at once and never acknowledged (each reply 8 KiB), and once that
  client has gone;
- its resident memory after one 8 KiB reply left unacknowledged and then
  16 KiB of '-' over TCP, and the bytes it sent back for them;
- how long five clients that connect while a debugger is attached, and
  send their first packet at once, take to be refused (all of them);
- how long the server takes to exit after SIGINT while the machine runs
  (after a debugger detached, and while one waits for a `c` to stop), and
  its exit status;
- with echo turned on at a pty's slave, how many packets the server
  answers in 3 s after one `qC` (from its --trace).

A wait that the server never ends is cut at its deadline and reported as
such; nothing here needs gdb.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import termios
import time
import tty
from contextlib import contextmanager
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 60.0
KERNEL_TEXT = 0xFFFFFFFF81000000
QSUPPORTED = b"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386"


def frame(payload: bytes) -> bytes:
    return b"$%s#%02x" % (payload, sum(payload) & 0xFF)


@contextmanager
def serving(*args: str):
    """`kgdbstub serve ARGS` (from this checkout, or PYTHONPATH's): (process, address)."""
    process = subprocess.Popen([sys.executable, "-m", "kgdbstub", "serve", *args], cwd=ROOT, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        first = process.stdout.readline().decode()
        process.stdout.readline()
        address = re.fullmatch(r"listening on (?:tcp|pty):(\S+)\n", first)[1]
        yield process, address
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


def resident(process) -> int:
    with open(f"/proc/{process.pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


async def tcp(address: str) -> trio.SocketStream:
    host, port = address.rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def read_until(stream, needle: bytes, deadline: float) -> tuple[bool, int]:
    """Read until `needle` comes (or the deadline, or the end): (whether it came, bytes read)."""
    seen, tail = 0, b""
    with trio.move_on_after(deadline):
        while data := await stream.receive_some(1 << 16):
            seen += len(data)
            window = tail + data
            if needle in window:
                return True, seen
            tail = window[-len(needle):]
    return False, seen


def megabytes(count: int) -> float:
    return round(count / (1 << 20), 1)


async def unacknowledged(requests: int) -> dict:
    with serving("--tcp", "127.0.0.1:0") as (process, address):
        stream = await tcp(address)
        await stream.send_all(frame(QSUPPORTED))
        await read_until(stream, b"#", DEADLINE)
        await stream.send_all(b"+")
        rest = resident(process)
        flood = b"".join(frame(b"m%x,1000" % (KERNEL_TEXT + n)) for n in range(requests))
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, flood + b"+" + frame(b"qC"))
            answered, _ = await read_until(stream, b"$QC", DEADLINE)
            nursery.cancel_scope.cancel()
        seconds = time.monotonic() - started
        flooded = resident(process)
        await stream.aclose()
        # Gone once a new debugger is served.
        again = await tcp(address)
        await again.send_all(frame(QSUPPORTED))
        served, _ = await read_until(again, b"#", DEADLINE)
        left = resident(process)
        await again.aclose()
    return {"requests": requests, "rest_mib": megabytes(rest), "flooded_mib": megabytes(flooded),
            "after_leaving_mib": megabytes(left), "all_answered": answered, "seconds": round(seconds, 2),
            "next_debugger_served": served}


async def naks() -> dict:
    with serving("--tcp", "127.0.0.1:0") as (process, address):
        stream = await tcp(address)
        await stream.send_all(frame(QSUPPORTED))
        await read_until(stream, b"#", DEADLINE)
        await stream.send_all(b"+" + frame(b"m%x,1000" % KERNEL_TEXT))
        await read_until(stream, b"#", DEADLINE)
        rest = resident(process)
        await stream.send_all(b"-" * 16384 + b"+" + frame(b"qC"))
        answered, sent_back = await read_until(stream, b"$QC", 3.0)
        after = resident(process)
        await stream.aclose()
    return {"rest_mib": megabytes(rest), "after_mib": megabytes(after), "bytes_sent_back": sent_back,
            "next_request_answered": answered}


async def refusals() -> dict:
    with serving("--tcp", "127.0.0.1:0") as (_, address):
        holder = await tcp(address)
        await holder.send_all(frame(QSUPPORTED))
        await read_until(holder, b"#", DEADLINE)
        await holder.send_all(b"+")
        newcomers = [await tcp(address) for _ in range(5)]
        said: list[bytes] = []

        async def refused(stream):
            await stream.send_all(frame(QSUPPORTED))
            data = b""
            with trio.move_on_after(DEADLINE):
                try:
                    while chunk := await stream.receive_some(4096):
                        data += chunk
                except trio.BrokenResourceError:
                    data += b"(reset)"
            said.append(data)

        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            for stream in newcomers:
                nursery.start_soon(refused, stream)
        seconds = time.monotonic() - started
    return {"seconds_for_five": round(seconds, 2), "first_said": said[0].decode("latin-1")}


async def interrupt_while_running(resume: bytes) -> dict:
    """SIGINT while the machine runs: after `D` (nobody attached) or `c` (a debugger waits for the stop)."""
    with serving("--tcp", "127.0.0.1:0") as (process, address):
        stream = await tcp(address)
        await stream.send_all(frame(QSUPPORTED))
        await read_until(stream, b"#", DEADLINE)
        await stream.send_all(b"+" + frame(resume))
        await read_until(stream, b"+", DEADLINE)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        try:
            status = await trio.to_thread.run_sync(lambda: process.wait(timeout=DEADLINE))
        except subprocess.TimeoutExpired:
            status = None
        seconds = time.monotonic() - started
        await stream.aclose()
    return {"seconds": round(seconds, 3), "exit_status": status}


async def echo() -> dict:
    with tempfile.TemporaryDirectory(prefix="kgdbstub-bench-") as where:
        trace = Path(where) / "trace"  # --trace makes a new file
        with serving("--pty", "--trace", str(trace)) as (_, path):
            fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            tty.setraw(fd, termios.TCSANOW)
            termios.tcflush(fd, termios.TCIFLUSH)
            settings = termios.tcgetattr(fd)
            settings[3] |= termios.ECHO
            termios.tcsetattr(fd, termios.TCSANOW, settings)
            stream = trio.lowlevel.FdStream(fd)
            await stream.send_all(frame(b"qC"))
            with trio.move_on_after(3.0):
                while True:
                    await stream.receive_some(1 << 16)
                    await stream.send_all(b"+")  # as a client would ack what it receives
            await stream.aclose()
        answered = sum(1 for line in trace.read_text(errors="replace").splitlines() if line.startswith("-> "))
    return {"packets_answered_in_3_s": answered}


async def main_async(args) -> dict:
    figures = {}
    for name, measure in (("unacknowledged", lambda: unacknowledged(args.requests)), ("naks", naks),
                          ("refusals", refusals), ("sigint_detached", lambda: interrupt_while_running(b"D")),
                          ("sigint_continued", lambda: interrupt_while_running(b"c")), ("echo", echo)):
        figures[name] = await measure()
        print(f"{name}: {figures[name]}", flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = trio.run(main_async, args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
