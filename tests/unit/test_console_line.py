"""Lines shared with the kernel console (kgdboc): the sans-IO pieces, the pty,
and serve_line in process against the real machine with a raw RSP client on
the pty's slave. Every wait has a deadline (trio.fail_after)."""
from __future__ import annotations

import functools
import importlib.util
import os
import re
import termios
import tty
from pathlib import Path

import pytest
import trio

from kgdbstub import targets
from kgdbstub.core.debugger import Debugger
from kgdbstub.kernel.image import Image
from kgdbstub.kernel.kernel import Kernel
from kgdbstub.monitor import Monitor
from kgdbstub.rsp import Packet, RemoteProtocol, encode_frame
from kgdbstub.server import serve_line
from kgdbstub.transport import (
    BREAK,
    Arrival,
    BreakIn,
    BreakMarks,
    ConsoleBuffer,
    LineConnection,
    LineWatcher,
    PtyLine,
    SysRqG,
)

DEADLINE = 20
SPLITTER = Path(__file__).resolve().parents[2] / "tools" / "splitter.py"
QSUPPORTED = b"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386"


# -- SysRq-G, break marks, the watcher --------------------------------------------


def test_sysrq_g_is_a_break_then_g_even_split_over_reads():
    sysrq = SysRqG()
    assert not sysrq.feed(b"console text g")
    assert sysrq.feed(BREAK + b"g")
    assert not sysrq.feed(b"\xff")
    assert not sysrq.feed(b"\xf3")
    assert sysrq.feed(b"g")
    assert not sysrq.feed(BREAK + b"xg")  # the key must follow the break at once
    assert sysrq.feed(b"\xff" + BREAK + b"g")


def test_break_marks_undo_parmrk():
    marks = BreakMarks()
    assert marks.feed(b"a\xff\xffb") == b"a\xffb"
    assert marks.feed(b"x\xff\x00\x00g") == b"x" + BREAK + b"g"
    assert marks.feed(b"\xff") == b""  # a mark split over reads
    assert marks.feed(b"\x00") == b""
    assert marks.feed(b"\x00y") == BREAK + b"y"
    assert marks.feed(b"\xff\x00c") == b"c"  # a damaged byte is still the byte
    assert marks.feed(b"\xffq") == b"\xffq"  # not a mark: passed on


def test_the_watcher_finds_gdbs_first_packet_among_console_traffic():
    watcher = LineWatcher()
    assert watcher.feed(b"typed at a terminal: $5 for a coffee\r\n") == []
    frame = encode_frame(QSUPPORTED, run_length_encode=False)
    found = watcher.feed(b"+" + frame[:10])
    assert found == []
    found = watcher.feed(frame[10:] + b"more")
    assert found == [Arrival(frame + b"more")]


def test_the_watcher_reports_ctrl_c_and_sysrq_g():
    assert LineWatcher().feed(b"abc\x03") == [BreakIn("ctrl-c")]
    assert LineWatcher().feed(BREAK + b"g") == [BreakIn("sysrq-g")]


# -- the console buffer ---------------------------------------------------------


async def test_console_output_from_another_thread_wakes_the_trio_side():
    console = ConsoleBuffer(limit=8)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, console.write, b"0123")
            await console.wait()
        assert console.peek() == b"0123"
        console.write(b"456789ab")  # the oldest goes first
        assert console.take() == b"456789ab"
        assert console.dropped == 4
        console.write(b"xyz")
        console.consume(1)
        assert console.peek(1) == b"y"


# -- the pty ----------------------------------------------------------------------


def open_slave(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd, termios.TCSANOW)
    return fd


async def read_fd(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, 65536)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(fd)


async def test_the_pty_keeps_text_for_its_first_reader_and_sees_a_debugger_hang_up():
    line = PtyLine()
    try:
        with trio.fail_after(DEADLINE):
            await line.send_all(b"boot messages\n")
            client = open_slave(line.path)
            assert await read_fd(client) == b"boot messages\n"
            os.write(client, b"$?#3f")
            line.debugger_arrived()  # the stub lets go of its own slave descriptor
            assert await line.receive_some() == b"$?#3f"
            await line.send_all(b"$S05#b8")  # never read: the debugger goes
            os.close(client)
            assert await line.receive_some() == b""  # EIO: nobody has the slave open
            line.debugger_left(gone=True)  # held again, its unread reply dropped
            await line.send_all(b"console\n")
            client = open_slave(line.path)
            assert await read_fd(client) == b"console\n"
            os.close(client)
    finally:
        line.close()


async def test_a_line_connection_replays_then_reads_and_closing_it_leaves_the_line_open():
    line = PtyLine()
    client = open_slave(line.path)
    try:
        with trio.fail_after(DEADLINE):
            connection = LineConnection(line, b"replayed")
            assert await connection.receive_some() == b"replayed"
            os.write(client, b"fresh")
            assert await connection.receive_some() == b"fresh"
            connection.unread(b"next")
            assert connection.pending == b"next"
            await connection.aclose()
            await line.send_all(b"still open")
            assert await read_fd(client) == b"still open"
    finally:
        os.close(client)
        line.close()


def test_link_is_a_symlink_to_the_slave_and_goes_with_the_line(tmp_path):
    link = tmp_path / "ttyKGDB"
    line = PtyLine(link=link)
    assert os.readlink(link) == line.path
    line.close()
    assert not link.exists() and not link.is_symlink()
    (tmp_path / "file").write_text("mine")
    with pytest.raises(FileExistsError):
        PtyLine(link=tmp_path / "file")


# -- serve_line in process, with a raw client on the slave ----------------------------


class LineClient:
    """gdb's end of a pty, speaking RSP with a codec; keeps the raw bytes too."""

    def __init__(self, path: str):
        self.fd = open_slave(path)
        self.codec = RemoteProtocol(run_length_encode=False, max_packet_size=1 << 20)
        self.raw = bytearray()
        self.packets: list[bytes] = []

    def close(self):
        os.close(self.fd)

    def write(self, data: bytes):
        os.write(self.fd, data)

    def send(self, payload: bytes):
        self.codec.send_packet(payload)
        self.write(self.codec.data_to_send())

    async def _read(self):
        data = await read_fd(self.fd)
        self.raw += data
        self.codec.receive_data(data)
        self.packets += [e.payload for e in self.codec.events() if isinstance(e, Packet)]
        self.write(self.codec.data_to_send())

    async def receive(self) -> bytes:
        while not self.packets:
            await self._read()
        return self.packets.pop(0)

    async def receive_stop(self) -> tuple[bytes, bytes]:
        """(the stop reply, console text that came as O packets before it)."""
        text = b""
        while (packet := await self.receive()).startswith(b"O"):
            text += bytes.fromhex(packet[1:].decode())
        return packet, text

    async def request(self, payload: bytes) -> bytes:
        self.send(payload)
        return await self.receive()

    async def wait_raw(self, needle: bytes):
        while needle not in self.console_text():
            await self._read()

    def console_text(self) -> bytes:
        """What came raw: everything but frames and acks."""
        return re.sub(rb"\$[^#$]*#..|[+]", b"", bytes(self.raw))

    async def monitor(self, command: str) -> str:
        self.send(b"qRcmd," + command.encode().hex().encode())
        text = ""
        while (reply := await self.receive()) != b"OK":
            text += bytes.fromhex(reply[1:].decode()).decode()
        return text


@pytest.fixture
async def machine():
    """serve_line on a new pty for a booted machine: (line, kernel, debugger, options)."""
    kernel = Kernel(Image(targets.resolve("minikernel")), cpus=2)
    debugger = Debugger(kernel)
    debugger.resume()
    debugger.late_init()
    line = PtyLine()
    console = ConsoleBuffer()
    console.attach(kernel)
    options = {}
    try:
        async with trio.open_nursery() as nursery:

            def start(dialect="modern"):
                nursery.start_soon(functools.partial(
                    serve_line, line, debugger, console, dialect=dialect, monitor=Monitor(kernel, debugger)))

            options["start"] = start
            yield line, kernel, debugger, options
            debugger.request_interrupt()  # the machine may be running: let its thread end
            nursery.cancel_scope.cancel()
    finally:
        console.detach()
        line.close()


async def test_modern_console_output_reaches_gdb_as_o_packets_before_the_stop(machine):
    line, kernel, debugger, options = machine
    options["start"]("modern")
    client = LineClient(line.path)
    try:
        with trio.fail_after(DEADLINE):
            await client.wait_raw(b"KGDB: Waiting for connection from remote gdb...\n")
            assert (await client.request(QSUPPORTED)).startswith(b"PacketSize=")
            address = kernel.image.address_of("do_fork")
            assert await client.request(b"Z0,%x,1" % address) == b"OK"
            client.send(b"c")
            stop, text = await client.receive_stop()
            assert stop.startswith(b"T05")
            assert text == b"looper: running\n"  # looper's first words, printed during the run
            assert b"looper: running" not in client.console_text()
    finally:
        client.close()


async def test_kgdb_dialect_console_output_stays_raw_on_the_line(machine):
    line, kernel, debugger, options = machine
    options["start"]("kgdb")
    client = LineClient(line.path)
    try:
        with trio.fail_after(DEADLINE):
            assert await client.request(b"qSupported") == b""
            address = kernel.image.address_of("do_fork")
            assert await client.request(b"Z0,%x,1" % address) == b"OK"
            client.send(b"c")
            stop, text = await client.receive_stop()
            assert stop.startswith(b"T05") and text == b""
            assert b"looper: running\n" in client.console_text()
    finally:
        client.close()


async def test_a_debugger_that_hangs_up_leaves_nothing_and_the_next_attaches_cleanly(machine):
    line, kernel, debugger, options = machine
    options["start"]("modern")
    first = LineClient(line.path)
    with trio.fail_after(DEADLINE):
        await first.request(QSUPPORTED)
        assert await first.request(b"QStartNoAckMode") == b"OK"
        first.codec.start_no_ack_mode()
        assert await first.request(b"Z1,%x,1" % kernel.image.address_of("do_fork")) == b"OK"
        assert await first.request(b"Z0,%x,1" % kernel.image.address_of("looper_tick")) == b"OK"
        first.send(b"c")
        assert (await first.receive_stop())[0].startswith(b"T05")
        assert "owner=kgdb" in await first.monitor("slots")  # installed when the machine ran
        first.close()  # gone without a word, in no-ack mode
        second = LineClient(line.path)
        try:
            assert (await second.request(QSUPPORTED)).startswith(b"PacketSize=")  # acked: a fresh session
            assert "owner=kgdb" not in await second.monitor("slots")
            assert not debugger.breakpoints
        finally:
            second.close()


async def test_a_new_qsupported_ends_a_session_nobody_closed(machine):
    """As on a serial line or behind the splitter: the line never says the debugger left."""
    line, kernel, debugger, options = machine
    options["start"]("modern")
    holder = os.open(line.path, os.O_RDWR | os.O_NOCTTY)  # like a splitter holding the line
    client = LineClient(line.path)
    try:
        with trio.fail_after(DEADLINE):
            await client.request(QSUPPORTED)
            assert await client.request(b"QStartNoAckMode") == b"OK"
            client.codec.start_no_ack_mode()
            assert await client.request(b"Z1,%x,1" % kernel.image.address_of("do_fork")) == b"OK"
            # A second gdb on the same line: ack mode again, and nothing of the first left.
            client.codec = RemoteProtocol(run_length_encode=False)
            client.write(b"+")
            assert (await client.request(QSUPPORTED)).startswith(b"PacketSize=")
            assert "owner=kgdb" not in await client.monitor("slots")
    finally:
        client.close()
        os.close(holder)


async def test_a_packet_sent_again_before_any_ack_is_not_run_twice(machine):
    line, kernel, debugger, options = machine
    options["start"]("modern")
    client = LineClient(line.path)
    try:
        with trio.fail_after(DEADLINE):
            await client.request(QSUPPORTED)
            insert = encode_frame(b"Z0,%x,1" % kernel.image.address_of("do_fork"), run_length_encode=False)
            client.write(insert + insert)  # as gdb does when console noise held a '-'
            assert await client.receive() == b"OK"
            assert await client.request(b"vMustReplyEmpty") == b""  # not an EEXIST for a second insert
            assert client.packets == []
    finally:
        client.close()


@pytest.mark.parametrize("how, message", [
    (BREAK + b"g", b"sysrq: DEBUG\nKGDB: Entering KGDB\n"),
    (b"\x03", b"KGDB: Entering KGDB\n"),
])
async def test_a_break_in_stops_the_machine_running_free(machine, how, message):
    line, kernel, debugger, options = machine
    options["start"]("modern")
    client = LineClient(line.path)
    try:
        with trio.fail_after(DEADLINE):
            await client.request(QSUPPORTED)
            assert await client.request(b"D") == b"OK"  # the machine runs free
            client.write(how)
            await client.wait_raw(message)
            ticks = kernel.ticks
            client.write(b"+")
            client.codec = RemoteProtocol(run_length_encode=False)
            await client.request(QSUPPORTED)
            assert kernel.ticks == ticks  # it stayed stopped
    finally:
        client.close()


# -- the splitter's routing, sans-IO ----------------------------------------------------


@pytest.fixture(scope="module")
def splitter():
    spec = importlib.util.spec_from_file_location("kgdbstub_splitter", SPLITTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_with_no_debugger_everything_from_the_line_is_console(splitter):
    demux = splitter.Demux()
    assert demux.from_line(b"$OK#9a +-") == [("console", b"$OK#9a +-")]


def test_frames_and_due_acks_go_to_gdb_the_rest_to_the_console(splitter):
    demux = splitter.Demux()
    demux.connected()
    assert demux.from_gdb(b"+$g#67") == [b"+$g#67"]
    routes = demux.from_line(b"6.1.0-mini+$OK#9a")
    assert routes == [("console", b"6.1.0"), ("gdb", b"-"), ("console", b"mini"), ("gdb", b"+$OK#9a")]
    # no ack is due now: '+' and '-' are console text; a bad checksum is console text
    assert demux.from_line(b"a-b+$OK#00") == [("console", b"a-b+$OK#00")]
    # a frame split over reads
    frame = encode_frame(b"O6c0a")
    assert demux.from_line(b"text " + frame[:4]) == [("console", b"text ")]
    assert demux.from_line(frame[4:] + b" more") == [("gdb", frame), ("console", b" more")]


def test_no_ack_mode_stops_routing_acks(splitter):
    demux = splitter.Demux()
    demux.connected()
    demux.from_gdb(b"$QStartNoAckMode#b0")
    assert demux.from_line(b"+$OK#9a") == [("gdb", b"+$OK#9a")]
    demux.from_gdb(b"+$g#67")
    assert demux.from_line(b"-") == [("console", b"-")]


def test_a_telnet_break_from_gdb_becomes_a_break_but_not_inside_a_packet(splitter):
    demux = splitter.Demux()
    demux.connected()
    assert demux.from_gdb(b"\x03\xff") == [b"\x03"]
    assert demux.from_gdb(b"\xf3g") == [splitter.BREAK_SIGNAL, b"g"]
    assert demux.from_gdb(b"$X0,2:\xff\xf3#00") == [b"$X0,2:\xff\xf3#00"]


def test_telnet_console_input(splitter):
    telnet = splitter.TelnetInput()
    assert telnet.feed(b"ls\r\n\xff\xfb\x01x\xff\xff\xff\xf3g") == [b"ls\r\nx\xff", splitter.BREAK_SIGNAL, b"g"]
    assert telnet.feed(b"\xff\xfa\x18\x01\xff\xf0ok") == [b"ok"]


async def test_in_modern_no_raw_console_byte_follows_gdbs_first_packet(machine):
    """The console waits for room on a full pty; gdb opens it (discarding what
    waits unread), which makes room, and sends its first packet at once. The
    text that waited must not go out raw after that packet: held, it goes to
    gdb as O packets. (Which of the stub's tasks runs first is left to trio,
    so the arrival is tried several times.)"""
    line, kernel, debugger, options = machine
    options["start"]("modern")
    noise = b"console text with a $ and a - in it\n" * 2048  # more than the pty holds
    with trio.fail_after(DEADLINE):
        for _ in range(8):
            kernel.console_write(noise)
            await trio.testing.wait_all_tasks_blocked()  # the pty is full and the console waits
            client = LineClient(line.path)
            termios.tcflush(client.fd, termios.TCIFLUSH)  # as gdb does when it opens a port
            client.send(QSUPPORTED)
            try:
                assert (await client.receive()).startswith(b"PacketSize=")
                assert (await client.request(b"qC")).startswith(b"QC")
                assert client.console_text() == b"", client.console_text()[:80]
            finally:
                client.close()
            await trio.testing.wait_all_tasks_blocked()  # the stub saw it go and holds the pty again
