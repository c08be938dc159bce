"""Hostile and unlucky clients of `kgdbstub serve`, over TCP and a pty, in both dialects.

Nothing a client does may make the stub stop reading its line, hold more
than a bounded amount of memory, keep the seat without being a debugger, or
survive a Ctrl-C in the terminal that runs it. Each test is a reproducer of
something that once did; each talks raw bytes, as a script or an attacker
would, to a real `kgdbstub serve` process.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
import termios
import time
import tty
from collections import deque

import pytest
import trio

from gdbtools import GDB, OpenWatch, run_gdb
from gdbtools import serving as serving_transport
from kgdbstub.kernel.image import Image
from kgdbstub.rsp import Ack, Packet, RemoteProtocol, encode_frame

DEADLINE = 30.0  # for every wait on the server
QSUPPORTED = b"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386"
REFUSAL = "kgdbstub: another debugger is attached; only one is served at a time"
MIB = 1024 * 1024
# What a flood may add to the server's resident memory, all told (it adds
# under 1 MiB). Before these bounds, 3,000 unacknowledged 4 KiB reads added
# about 20 MiB and 16 KiB of '-' about 170 MiB.
MEMORY_SLACK = 8 * MIB
FLOOD = 3000


def frame(payload: bytes) -> bytes:
    return encode_frame(payload, run_length_encode=False)


def serving(transport: str, dialect: str, *args: str):
    return serving_transport(transport, "--dialect", dialect, *args)


class Peer:
    """A raw client on a TCP connection or on the pty's slave; every wait has the deadline.

    What arrives is parsed as it comes (packets, acks, console text in O
    packets); nothing is sent that the test does not send, acknowledgements
    included.
    """

    def __init__(self, stream: trio.abc.Stream):
        self.stream = stream
        self.codec = RemoteProtocol(max_packet_size=1 << 20)
        self.packets: deque[bytes] = deque()
        self.acks = 0
        self.console = bytearray()  # what came in O packets
        self.text = bytearray()  # the latest raw bytes

    @classmethod
    async def open(cls, server) -> Peer:
        if getattr(server, "kind", "tcp") == "tcp":
            return cls(await trio.open_tcp_stream(server.host, server.port))
        fd = os.open(server.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd, termios.TCSANOW)
        termios.tcflush(fd, termios.TCIFLUSH)  # as gdb does: console text from before is not ours
        return cls(trio.lowlevel.FdStream(fd))

    async def send(self, data: bytes) -> None:
        with trio.fail_after(DEADLINE):
            await self.stream.send_all(data)

    async def receive(self) -> bool:
        """Read once; False once the far end is gone."""
        try:
            data = await self.stream.receive_some(1 << 16)
        except trio.BrokenResourceError:  # EIO on a pty whose master went
            data = b""
        self.text = (self.text + data)[-4096:]
        self.codec.receive_data(data)
        for event in self.codec.events():
            if isinstance(event, Packet) and event.payload.startswith(b"O") and event.payload != b"OK":
                self.console += bytes.fromhex(event.payload[1:].decode())
            elif isinstance(event, Packet):
                self.packets.append(event.payload)
            elif isinstance(event, Ack):
                self.acks += 1
        self.codec.data_to_send()  # its acks are the test's to send
        return bool(data)

    async def _until(self, done, what: str) -> None:
        with trio.fail_after(DEADLINE):
            while not done():
                if not await self.receive():
                    raise AssertionError(f"the stub hung up waiting for {what}; it said {bytes(self.text[-300:])!r}")

    async def packet(self, what: str = "a packet") -> bytes:
        await self._until(lambda: self.packets, what)
        return self.packets.popleft()

    async def until(self, wanted, what: str) -> tuple[bytes, list[bytes]]:
        """The first packet `wanted(payload)` is true of, and the packets before it."""
        skipped = []
        while not wanted(payload := await self.packet(what)):
            skipped.append(payload)
        return payload, skipped

    async def until_acks(self, count: int) -> None:
        await self._until(lambda: self.acks >= count, f"{count} acks")

    async def request(self, payload: bytes) -> bytes:
        """Send a packet, acknowledge its reply; the reply."""
        await self.send(frame(payload))
        reply = await self.packet(f"the reply to {payload[:40]!r}")
        await self.send(b"+")
        return reply

    async def until_closed(self) -> None:
        with trio.fail_after(DEADLINE):
            while await self.receive():
                pass

    async def aclose(self) -> None:
        await self.stream.aclose()


def resident(server) -> int:
    with open(f"/proc/{server.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def kernel_address(server) -> int:
    return Image(server.elf).address_of("start_kernel")


# -- what waits for an acknowledgement -----------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "pty"])
@pytest.mark.parametrize("dialect", ["modern", "kgdb"])
async def test_floods_of_unacknowledged_requests_and_of_naks_cost_bounded_memory(transport, dialect):
    with serving(transport, dialect) as server:
        peer = await Peer.open(server)
        # Reads of 4 KiB (8 KiB replies), each different: on a line the same
        # packet twice without an ack between is gdb sending it again.
        address = kernel_address(server)
        reads = [frame(b"m%x,1000" % (address + n)) for n in range(FLOOD)]
        await peer.request(QSUPPORTED)
        assert len(await peer.request(b"m%x,1000" % address)) > 0x100
        before = resident(server)

        # The reads sent at once, not one reply acknowledged; then a marker.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.send, b"".join(reads) + b"+" + frame(b"qC"))
            await peer.until(lambda reply: reply.startswith(b"QC"), "the reply to qC after the flood")
        await peer.send(b"+")
        flooded = resident(server)

        # One reply never acknowledged, then 16 KiB of '-': each may not bring a copy.
        await peer.send(reads[0])
        await peer.packet("the read's reply")
        async with trio.open_nursery() as nursery:  # read while sending: each '-' may bring 8 KiB
            nursery.start_soon(peer.send, b"-" * 16384 + b"+" + frame(b"qC"))
            _, copies = await peer.until(lambda reply: reply.startswith(b"QC"), "the reply to qC after the naks")
        naked = resident(server)

        await peer.send(b"+")
        assert await peer.request(b"qC")  # and the session goes on
        await peer.aclose()
        after = resident(server)
    assert flooded - before < MEMORY_SLACK, f"{FLOOD} unacknowledged replies: {before} -> {flooded} bytes"
    if dialect == "kgdb":  # put_packet sends the reply again for every byte but '+' and '$'
        assert len(copies) == 16384, f"16 KiB of '-' brought the reply {len(copies)} times"
    else:
        assert len(copies) <= 16, f"16 KiB of '-' brought the reply {len(copies)} times"  # one per read of them
    assert naked - before < MEMORY_SLACK, f"16 KiB of '-': {before} -> {naked} bytes"
    assert after - before < MEMORY_SLACK, f"after the client left: {before} -> {after} bytes"


# -- the line is always read ---------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "pty"])
@pytest.mark.parametrize("dialect", ["modern", "kgdb"])
async def test_packets_sent_while_the_machine_runs_never_stop_the_stub_reading(transport, dialect):
    """100 packets while the machine runs: a hang-up is still seen and frees the seat at once."""
    with serving(transport, dialect) as server:
        peer = await Peer.open(server)
        await peer.request(QSUPPORTED)
        # Each different: on a line a packet sent twice before an ack is gdb sending it again.
        await peer.send(frame(b"c") + b"".join(frame(b"m%x,1" % n) for n in range(100)))
        await peer.until_acks(101)
        if transport == "pty":
            with OpenWatch(server.path) as watch:
                await peer.aclose()
                await watch.opened(DEADLINE)  # the stub saw the hang-up and holds the pty again
        else:
            await peer.aclose()
        second = await Peer.open(server)
        await second.request(QSUPPORTED)
        status = await second.request(b"?")
        assert status[:1] in (b"T", b"S"), status  # stopped for the new debugger
        await second.aclose()


async def test_a_connection_reset_under_the_acks_of_packets_sent_while_the_machine_runs_kills_nothing():
    with serving("tcp", "modern") as server:
        for _ in range(10):
            peer = await Peer.open(server)
            await peer.request(QSUPPORTED)
            await peer.send(frame(b"c"))
            await peer.until_acks(1)
            await peer.send(b"".join(frame(b"m%x,1" % n) for n in range(50)))
            peer.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await peer.aclose()  # a reset, not a close: writing the acks fails
        assert server.proc.poll() is None, server.stderr_text()
        last = await Peer.open(server)
        assert await last.request(QSUPPORTED)


async def test_ctrl_c_after_many_packets_stops_the_machine_and_64_wait_for_the_stop():
    with serving("tcp", "modern") as server:
        peer = await Peer.open(server)
        await peer.request(QSUPPORTED)
        assert await peer.request(b"QStartNoAckMode") == b"OK"
        await peer.send(frame(b"c") + b"".join(frame(b"m%x,1" % n) for n in range(100)) + b"\x03")
        assert (await peer.packet("the stop reply")).startswith(b"T02")
        answers = [await peer.packet("an answer") for _ in range(64)]
        assert all(len(answer) in (2, 3) for answer in answers), answers  # a byte, or E14
        # The 36 others were dropped unanswered: the next answer is the next request's.
        await peer.send(frame(b"vMustReplyEmpty"))
        assert await peer.packet() == b"", "a dropped packet was answered"
        await peer.aclose()


# -- seats -----------------------------------------------------------------------------


async def test_refusals_are_concurrent_and_say_why_in_an_error_reply():
    with serving("tcp", "modern") as server:
        holder = await Peer.open(server)
        await holder.request(QSUPPORTED)
        waiting = [await Peer.open(server) for _ in range(5)]
        # The last one is refused before the four before it have said anything.
        await waiting[-1].send(frame(QSUPPORTED))
        assert await waiting[-1].packet("the refusal") == b"E." + REFUSAL.encode()
        assert waiting[-1].acks == 1
        await waiting[-1].until_closed()
        async with trio.open_nursery() as nursery:
            for peer in waiting[:-1]:
                nursery.start_soon(peer.send, frame(QSUPPORTED))
        for peer in waiting[:-1]:
            assert (await peer.packet("the refusal")).startswith(b"E.")
            await peer.until_closed()
        assert await holder.request(b"qC")  # undisturbed


@pytest.mark.skipif(GDB is None, reason="gdb is not installed")
async def test_a_refused_gdb_shows_why():
    with serving("tcp", "modern") as server:
        holder = await Peer.open(server)
        await holder.request(QSUPPORTED)
        output = await trio.to_thread.run_sync(lambda: run_gdb(server, ["info registers rip"], timeout=DEADLINE))
        assert REFUSAL in output, output
        assert await holder.request(b"qC")


async def test_a_silent_and_a_dribbling_connection_hold_no_seat_and_are_closed():
    with serving("tcp", "modern") as server:
        silent = await Peer.open(server)
        dribbler = await Peer.open(server)
        debugger = await Peer.open(server)
        assert (await debugger.request(QSUPPORTED)).startswith(b"PacketSize=")
        started = time.monotonic()

        async def dribble():
            # A byte a second, never a packet: the time to send one is counted from the connection.
            with trio.move_on_after(DEADLINE):
                while True:
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await dribbler.stream.send_all(b"x")
                    with trio.move_on_after(1):
                        if not await dribbler.receive():
                            return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(silent.until_closed)
            nursery.start_soon(dribble)
        assert time.monotonic() - started < DEADLINE
        assert b"no packet" in silent.text
        assert await debugger.request(b"qC")


# -- the console over TCP ----------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["modern", "kgdb"])
async def test_over_tcp_the_console_shows_after_the_contract_lines_and_reaches_gdb_in_modern(dialect):
    with serving("tcp", dialect) as server:
        server.stdout.wait_for(r"KGDB: Waiting for connection from remote gdb\.\.\.", timeout=DEADLINE)
        lines = server.stdout.text.splitlines()
        assert lines[2].startswith("attach with: ") and lines[3].startswith("Linux version"), lines
        peer = await Peer.open(server)
        await peer.request(QSUPPORTED)
        await peer.request(b"QStartNoAckMode")  # O packets need no ack (kgdb sends none)
        assert await peer.request(b"Z0,%x,1" % Image(server.elf).address_of("do_fork")) == b"OK"
        await peer.send(frame(b"c"))
        assert (await peer.packet("the stop at do_fork")).startswith(b"T")
        assert peer.console == (b"looper: running\n" if dialect == "modern" else b"")
        server.stdout.wait_for(r"looper: running", timeout=DEADLINE)  # on the terminal, in both


# -- Ctrl-C in the terminal ---------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "pty"])
@pytest.mark.parametrize("state, dialect", [("stopped", "modern"), ("running", "modern"), ("running", "kgdb"),
                                            ("running attached", "modern"), ("running attached", "kgdb")])
async def test_sigint_ends_serve_promptly_with_status_130(transport, state, dialect, tmp_path):
    link = tmp_path / "ttyKGDB"
    extra = ("--link", str(link)) if transport == "pty" else ()
    with serving(transport, dialect, *extra) as server:
        if state != "stopped":
            peer = await Peer.open(server)
            await peer.request(QSUPPORTED)
            if state == "running":
                assert await peer.request(b"D") == b"OK"
                await peer.aclose()
            else:
                await peer.send(frame(b"c"))
                await peer.until_acks(1)
        server.proc.send_signal(signal.SIGINT)
        status = await trio.to_thread.run_sync(server.wait, 10)
        said = server.stderr_text()
    assert status == 130, said
    assert "Traceback" not in said and len(said.splitlines()) <= 1, said
    assert not link.is_symlink()


# -- the pty: echo and storms ------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["modern", "kgdb"])
async def test_echo_turned_on_at_the_slave_is_turned_off_and_no_reply_comes_back_as_a_packet(dialect):
    with serving("pty", dialect) as server:
        peer = await Peer.open(server)
        fd = peer.stream.fileno()
        settings = termios.tcgetattr(fd)
        settings[3] |= termios.ECHO  # as `stty -F /dev/pts/N echo` from another terminal does
        termios.tcsetattr(fd, termios.TCSANOW, settings)
        await peer.send(frame(b"qC"))
        first = await peer.packet("the reply to qC")
        await peer.send(b"+" + frame(b"m%x,4" % kernel_address(server)))
        second = await peer.packet("the reply to the read")
        await peer.send(b"+")
        assert first.startswith(b"QC") and len(second) == 8, (first, second)
        assert not termios.tcgetattr(fd)[3] & termios.ECHO
        await peer.aclose()
        said = server.stderr_text()
    assert "echo" in said and server.path in said, said


@pytest.mark.parametrize("dialect", ["modern", "kgdb"])
async def test_a_storm_of_opens_writes_and_closes_on_the_pty_leaves_it_usable(dialect):
    """Each program that opens the slave writes a few packets and goes, some
    while the machine runs: the stub keeps up, and a debugger then attaches."""
    with serving("pty", dialect) as server:
        for cycle in range(200):
            fd = os.open(server.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            with contextlib.suppress(BlockingIOError):
                os.write(fd, b"".join(frame(b"m%x,1" % (cycle * 8 + n)) for n in range(8)) + frame(b"c")
                         + b"\x03"[: cycle % 2] + b"$m0,")
            os.close(fd)
        # Frames the stub wrote for the last of them may still come (a line
        # cannot tell one program from the next): they are skipped.
        peer = await Peer.open(server)
        await peer.send(frame(QSUPPORTED))
        await peer.send(b"+" + frame(b"m%x,4" % kernel_address(server)))
        await peer.until(lambda reply: re.fullmatch(rb"[0-9a-f]{8}", reply), "the reply to a read")
        await peer.send(b"+")  # as gdb does: kgdb's put_packet takes a packet in its place as a nak
        assert (await peer.request(b"?"))[:1] in (b"T", b"S")
        assert await peer.request(b"D") == b"OK"
        await peer.aclose()
