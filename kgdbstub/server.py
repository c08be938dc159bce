"""Serving one debugger at a time over a byte stream, with trio.

The machine runs freely while no debugger is attached and stops when one
arrives; a connection's session then decides when it runs. A resume runs
on the event loop for its first FIRST_SLICE, then on a worker thread, so
that the loop reads the wire while the machine runs: a Ctrl-C sets the
flag the machine checks at every translation block (a break-in), and the
machine stops within one block wherever it is.

Over TCP (`serve_listener`) a connection is a debugger from its first
packet, and one debugger holds the seat at a time. On a line -- a pty
or a serial port (`serve_line`) -- the line stays while debuggers come and
go, and it carries the kernel console too, as kgdboc shares a serial
console:

- while no debugger is attached the console text goes out raw; gdb's first
  packet, a Ctrl-C or SysRq-G (BREAK, then `g`) stop the machine;
- while one is attached and the machine runs, console text reaches gdb as
  `O` packets in the `modern` dialect, and raw on the line in the `kgdb`
  dialect (see CONSOLE_AS_PACKETS); while the machine is stopped it waits;
- a debugger is gone when the line says so (a pty whose slave was closed),
  or when a new debugger announces itself with `qSupported` (kgdb's put_packet
  takes a new frame in place of an ack the same way: gdb is reconnecting).

Whatever a client sends, the stub reads its connection throughout and holds
a bounded amount for it (the README lists the bounds): a hang-up, Ctrl-C
and a new debugger are always seen.
"""
from __future__ import annotations

import errno
import time
from collections import deque

import trio

from .core.conditions import OUTPUT_LIMIT
from .core.debugger import Debugger
from .rsp import Ack, BadPacket, Interrupt, Packet, encode_frame, encode_hex
from .gdbstub.actions import PACKET_SIZE, Detach, NoReply, Reply, Resume
from .gdbstub.dialects import DIALECTS, Dialect
from .trace import Trace
from .transport.line import BREAK
from .transport import Arrival, ConsoleBuffer, FdLine, LineConnection, LineWatcher, ReplyStream, SysRqG

# How console output reaches an attached debugger while the machine runs.
# Linux sends the console to gdb as O packets only with `kgdbcon`, which
# must not be used when the kgdboc line is also the system console -- the
# case of a line shared with the console -- so the kgdb dialect leaves
# console text raw on the line, where gdb skips it between packets.
CONSOLE_AS_PACKETS = {"modern": True, "kgdb": False}
# Console bytes per O packet: hex doubles them, and 'O' comes first.
CONSOLE_CHUNK = (PACKET_SIZE - 1) // 2


class _Wire:
    """One debugger connection's bytes as packets, and its replies as bytes.

    One task reads at a time: the session's loop while the machine is
    stopped, the watcher while it runs. Received bytes are parsed only as
    far as the next packet, so that an interrupt that follows a resume
    packet on the wire is seen after that resume has begun.
    """

    def __init__(self, stream: trio.abc.Stream, debugger: Debugger, trace: Trace, dialect: Dialect):
        self.stream = stream
        self.codec = dialect.codec()
        self._interrupt_byte_stops = dialect.interrupt_byte_stops
        self._dialect = dialect
        self.closed = False
        self.running = False  # interrupts stop the machine only while it runs
        self.break_pending = False  # a SysRq-G that came in one read with the resume before it
        self._debugger = debugger
        self._trace = trace
        self._line = stream if isinstance(stream, LineConnection) else None
        self._sysrq = SysRqG()
        # A stream paced for request and reply waits for a request outside trio (transport/tcp.py).
        self._receive_request = getattr(stream, "receive_request", stream.receive_some)
        self._early: deque[Packet | BadPacket] = deque()  # packets that came while the machine ran
        self._last_payload: bytes | None = None
        self._packets = 0  # packets this session took
        self._acknowledged = True  # gdb acknowledged a frame since its last packet
        self._acknowledgements = trio.lowlevel.ParkingLot()
        # The watcher sends acks while the session's loop may be sending: one writer at a time.
        self._write_lock = trio.StrictFIFOLock()

    def receive_first(self, data: bytes) -> None:
        """Bytes already read from the connection (its first packet), to be parsed first."""
        self.codec.receive_data(data)

    async def next_packet(self) -> Packet | BadPacket | None:
        """The next packet (or an intact 'oversize' one to refuse); None once the debugger is gone."""
        if self._early:
            return self._early.popleft()
        while True:
            event = self._parse()
            if event is not None or self.closed:
                return event
            paused = self.codec.paused  # what it has read waits for what it sends
            await self.flush()
            if not paused:
                await self._receive(self._receive_request)

    async def watch_while_running(self) -> None:
        """Read while the machine runs, for interrupts and for the debugger going away.

        The connection is read throughout, whatever comes. Packets that
        come meanwhile wait for the stop (gdb sends none in all-stop mode,
        but a script may), EARLY_PACKETS of them; more are dropped
        unanswered, so that a flood costs nothing.
        """
        while True:
            event = self._parse()
            if event is not None:
                if len(self._early) < EARLY_PACKETS:
                    self._early.append(event)
                else:
                    self._trace("<-!", b"dropped: %d packets already wait for the stop" % EARLY_PACKETS)
                continue
            if self.closed:
                return
            paused = self.codec.paused
            try:
                await self._write_whole(self.codec.data_to_send())
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._gone()  # reset under our acks: as a hang-up
                return
            if not paused:
                await self._receive(self.stream.receive_some)

    async def until_acknowledged(self) -> None:
        """Until nothing sent waits for a '+' (at once in no-ack mode), or the debugger is gone."""
        while self.codec.awaiting_ack and not self.closed:
            await self._acknowledgements.park()

    def _parse(self) -> Packet | BadPacket | None:
        while (event := self.codec.next_event()) is not None:
            if isinstance(event, Packet):
                self._trace("<-", event.payload)
                verdict = self._on_line(event.payload) if self._line is not None else None
                if verdict == "repeat":
                    self._trace("<-!", b"sent again before any ack: acknowledged, not run twice")
                    continue
                if verdict == "new debugger":
                    self._trace("<-!", b"a new debugger: this session ends")
                    self._line.unread(encode_frame(event.payload, run_length_encode=False) + self.codec.unparsed())
                    self._gone()
                    return None
                if self.codec.awaiting_ack:
                    # A client that sends before acknowledging has moved on or
                    # never acknowledges: holding our answer for it would only grow.
                    self.codec.assume_acknowledged()
                    self._acknowledgements.unpark_all()
                self._last_payload, self._acknowledged = event.payload, False
                self._packets += 1
                return event
            if isinstance(event, Interrupt):
                self._trace("<-", b"\\x03")
                if self._interrupt_byte_stops:
                    self._interrupt()
            elif isinstance(event, Ack):
                self._acknowledged = True
                self._acknowledgements.unpark_all()
            elif isinstance(event, BadPacket):
                self._trace("<-!", event.reason.encode())
                if event.reason == "oversize":
                    return event
        return None

    def _on_line(self, payload: bytes) -> str | None:
        """'repeat' or 'new debugger' for a packet on a line, else None."""
        if self._line is None or self._last_payload is None:
            return None
        if self.codec.ack_mode and not self._acknowledged and payload == self._last_payload:
            return "repeat"
        # gdb opens with qSupported; LLDB with QStartNoAckMode, then qSupported,
        # and no debugger asks for no-ack mode twice.
        lldb_opening = self._packets == 1 and self._last_payload == b"QStartNoAckMode"
        if payload.startswith(b"qSupported") and payload != self._last_payload and not lldb_opening:
            return "new debugger"
        if payload == b"QStartNoAckMode" and not self.codec.ack_mode:
            return "new debugger"
        return None

    async def _receive(self, receive) -> None:
        try:
            data = await receive(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self._gone()
            return
        # SysRq-G: on a line a BREAK, over TCP the telnet BREAK gdb sends for one.
        if self._sysrq.feed(data):
            self._trace("<-", b"BREAK g")
            if self.running:
                self._debugger.request_sysrq_g()
            else:
                # Read along with the resume it follows: it is for the run that resume starts.
                self.break_pending = True
            # The serial driver takes the key (uart_handle_sysrq_char): kgdb never reads it.
            data = data.replace(BREAK + b"g", b"")
        self.codec.receive_data(data)

    def _interrupt(self) -> None:
        if self.running:
            self._debugger.request_interrupt()

    def _gone(self) -> None:
        self.closed = True
        self._acknowledgements.unpark_all()
        break_in(self._debugger, self._dialect)  # a running machine stops for the next debugger

    def give_back_unparsed(self) -> None:
        """On a line, what follows the session's last packet is the next reader's."""
        if self._line is not None:
            self._line.unread(self.codec.unparsed())

    async def send(self, *payloads: bytes, whole: bool = False) -> None:
        """Frame and send; with `whole`, as _write_whole does."""
        for payload in payloads:
            self._trace("->", payload)
            self.codec.send_packet(payload)
        data = self.codec.data_to_send()
        if whole:
            await self._write_whole(data)
        elif data:
            await self._write(data)

    async def send_raw(self, data: bytes) -> None:
        """Raw text, never cut (as _write_whole); our acks go first, so that a '-' in it is no nak of them."""
        await self._write_whole(self.codec.data_to_send() + data)

    async def flush(self) -> None:
        if data := self.codec.data_to_send():
            await self._write(data)

    async def _write(self, data: bytes) -> None:
        if not self.running:
            await self.stream.send_all(data)  # the session's loop is the only writer
            return
        # The lock is FIFO and nothing yields between taking the data and
        # queueing for it, so writes go out in the order they were made.
        async with self._write_lock:
            await self.stream.send_all(data)

    async def _write_whole(self, data: bytes) -> None:
        """Write `data` even when the task is cancelled meanwhile: a frame is never cut.

        Unless the debugger reads nothing for WRITE_PATIENCE: it is then gone.
        """
        if not data:
            return
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + WRITE_PATIENCE
            try:
                await self._write(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._gone()
                raise
        if scope.cancelled_caught:
            self._gone()
            raise trio.BrokenResourceError("the debugger read nothing for a while")


# How many packets that came while the machine ran may wait for its stop
# (at most PACKET_SIZE bytes each); later ones are dropped.
EARLY_PACKETS = 64
# Bytes read from a connection at a time: with one packet in the making and
# the early packets, what a connection's input can make the stub hold.
RECEIVE_SIZE = 65536
# A write that must not be cut (a frame, while the machine runs) waits this
# long for a debugger that reads nothing before the debugger is taken as gone.
WRITE_PATIENCE = 10.0

# How long a resume runs on the event loop before the rest of the run moves
# to a worker thread, leaving the loop to read the wire and forward the
# console. Most runs between two stops are shorter than this: for them the
# hand-over to a thread and back (about 120 us) would cost more than the run.
FIRST_SLICE = 0.002
# How long the worker thread runs the machine before breakpoint output
# (dprintf) that waits is sent; the run comes back sooner when that
# output reaches OUTPUT_LIMIT.
THREAD_SLICE = 0.05


async def serve_stream(stream: trio.abc.Stream, debugger: Debugger, *, dialect: str = "modern",
                       trace: Trace | None = None, monitor=None,
                       console: ConsoleBuffer | None = None, received: bytes = b"") -> bool:
    """Run one debugger connection to its end; the machine is stopped on entry.

    Returns whether the debugger detached (True) or just went away (False).
    `received` is what was read from the stream already (its first packet).

    With `console`, console output the machine prints while it runs goes to
    the debugger (O packets or raw, by dialect) before the stop is reported.
    A `LineConnection` is a session on a line: SysRq-G interrupts as Ctrl-C
    does, a repeated packet that gdb sent again before any acknowledgement
    (because console noise on the line looked like a '-') is not run twice,
    and a `qSupported` after other packets is a new debugger: the session
    ends and gives the packet back to the connection for the next one.
    """
    session = DIALECTS[dialect].session(debugger, DIALECTS[dialect], monitor=monitor)
    wire = _Wire(stream, debugger, trace or Trace(None), DIALECTS[dialect])
    wire.receive_first(received)
    console_packets = CONSOLE_AS_PACKETS.get(dialect, True)

    async def forward_console_chunk(data: bytes):
        if console_packets:
            await wire.send(b"O" + encode_hex(data), whole=True)
        else:
            await wire.send_raw(data)
        console.consume(len(data))

    async def forward_console():
        """Console output waiting now, to the debugger (no more than the console's bound)."""
        while data := console.peek(CONSOLE_CHUNK):
            await forward_console_chunk(data)

    async def forward_console_while_running():
        # A packet at a time: the next waits in the console's bounded buffer
        # until the debugger acknowledged the one before.
        try:
            while True:
                await console.wait()
                await wire.until_acknowledged()
                if data := console.peek(CONSOLE_CHUNK):
                    await forward_console_chunk(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the debugger is gone: the watcher sees it and stops the machine

    async def forward_breakpoint_output(*, paced: bool = False):
        """What breakpoint commands (dprintf) printed, as console output (O packets).

        `paced`, while the machine runs: each packet after the '+' for the
        one before, so that what waits stays in the output's bounded buffer
        (and the dprintf waits), not in the connection's.
        """
        output = debugger.conditions.output
        try:
            while output:
                if paced:
                    await wire.until_acknowledged()
                data = bytes(output[:CONSOLE_CHUNK])
                await wire.send(b"O" + encode_hex(data), whole=True)
                del output[: len(data)]
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the debugger is gone, and the machine is being stopped

    def output_waits() -> bool:
        # A run pauses when breakpoint output waits: it goes out before the machine runs on.
        return len(debugger.conditions.output) >= OUTPUT_LIMIT

    async def run_machine(resume: Resume):
        await wire.flush()  # the ack of the resume packet goes out before the machine runs
        debugger.forget_interrupt()  # one read while the machine was stopped is not this run's
        if wire.break_pending and not resume.step:
            debugger.request_sysrq_g()
        wire.break_pending = False
        with debugger.resumed(step=resume.step, cpu=resume.cpu, address=resume.address,
                              thread=resume.thread) as run:
            # Most runs, and steps but for a thread on no CPU, end within the
            # first slice: the thread and the watchers are only for a longer one.
            if (stop := run(time.monotonic() + FIRST_SLICE, output_waits)) is not None:
                return stop
            wire.running = True
            stopped = False

            async def break_in_when_cancelled():
                try:
                    await trio.sleep_forever()
                finally:
                    if not stopped:
                        debugger.request_interrupt()  # the thread ends only when the machine stops

            try:
                async with trio.open_nursery() as watchers:
                    watchers.start_soon(wire.watch_while_running)
                    watchers.start_soon(break_in_when_cancelled)
                    if console is not None:
                        watchers.start_soon(forward_console_while_running)
                    # The event loop stays free to read the wire: a Ctrl-C stops the machine at once.
                    while True:
                        await forward_breakpoint_output(paced=True)
                        stop = await trio.to_thread.run_sync(run, time.monotonic() + THREAD_SLICE, output_waits)
                        if stop is not None:
                            break
                    stopped = True
                    watchers.cancel_scope.cancel()
            finally:
                wire.running = False
            return stop

    detached = False
    debugger.attach()
    # A dprintf waits when this much of its output has not gone out yet.
    debugger.conditions.output_limit = OUTPUT_LIMIT
    try:
        while (packet := await wire.next_packet()) is not None:
            if isinstance(packet, Packet):
                action = session.handle(packet.payload)
                if not isinstance(action, Resume):
                    wire.break_pending = False  # the machine was stopped: the key did nothing
            else:
                action = session.too_large()
            if isinstance(action, Reply):
                await wire.send(*action.output, action.payload)
                if action.no_ack_after:
                    wire.codec.start_no_ack_mode()
            elif isinstance(action, NoReply):
                await wire.flush()
            elif isinstance(action, Resume):
                if action.output:
                    await wire.send(*action.output)
                stop = await run_machine(action)
                if wire.closed:
                    break
                if console is not None and len(console):
                    await forward_console()  # what the run printed last comes before its stop
                if debugger.conditions.output:
                    await forward_breakpoint_output()
                await wire.send(session.stop_reply(stop))
            elif isinstance(action, Detach):
                detached = True
                wire.give_back_unparsed()
                if action.reply is not None:
                    await wire.send(action.reply)
                else:
                    await wire.flush()  # its ack
                break
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        debugger.detach()
        debugger.conditions.output_limit = None
        debugger.conditions.output.clear()  # for a debugger that is gone
    await stream.aclose()
    return detached


async def serve_listener(listener: trio.abc.Listener, debugger: Debugger, *, once: bool = False,
                         dialect: str = "modern", first_packet_patience: float | None = None,
                         **options) -> None:
    """Serve debuggers one after another over connections, one at a time.

    A connection becomes a debugger with its first packet: it then takes
    the seat if nobody holds it, which stops the machine (as kgdb's
    break-in on a connection does), or is refused with an error reply gdb
    shows. One that sends no packet within `first_packet_patience` seconds
    is closed; each newcomer is dealt with on its own, never in another's
    way. While nobody is attached a detached machine runs freely; a
    debugger that vanishes without detaching leaves the machine stopped
    for the next one, as kgdb does.

    In `modern`, console output the machine prints while a debugger has it
    running reaches the debugger as O packets.
    """
    seat = _Seat()
    patience = FIRST_PACKET_PATIENCE if first_packet_patience is None else first_packet_patience
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_welcome_newcomers, listener, seat, patience)
        running_free = False
        while True:
            async with trio.open_nursery() as free_run:
                if running_free:
                    debugger.forget_interrupt()
                    free_run.start_soon(_run_freely, debugger)
                stream, first = await seat.arrivals.receive()
                break_in(debugger, DIALECTS[dialect])
            console = ConsoleBuffer() if CONSOLE_AS_PACKETS.get(dialect, True) else None
            try:
                if console is not None:
                    console.attach(debugger.kernel, backlog=False)
                if isinstance(stream, trio.SocketStream):
                    stream = ReplyStream(stream)
                detached = await serve_stream(stream, debugger, dialect=dialect, console=console, received=first,
                                              **options)
            finally:
                if console is not None:
                    console.detach()
                seat.leave()
            if once:
                nursery.cancel_scope.cancel()
                return
            running_free = detached


# How long a new connection may take to send its first packet (gdb sends
# one at once): a socket that sends none never holds the seat.
FIRST_PACKET_PATIENCE = 5.0
# Connections waiting for their first packet or being refused at one time;
# one more is closed at once, which keeps the descriptors a flood of
# connections can take bounded.
MAX_NEWCOMERS = 16
# A debugger that detaches or drops its connection may reconnect before its
# session has finished: its first packet waits for the seat that long at
# most, and so does a refusal.
HANDOVER_PATIENCE = 2.0
# How long a refused client may take to read the refusal and hang up.
REFUSAL_PATIENCE = 5.0
REFUSAL = b"kgdbstub: another debugger is attached; only one is served at a time"
SILENCE = b"kgdbstub: no packet came within %g s: closing the connection\n"


class _Seat:
    """The one debugger served at a time, and the hand-over of a newcomer that takes it."""

    def __init__(self):
        self.taken = False
        self._left = trio.Event()
        self._arrive, self.arrivals = trio.open_memory_channel(1)

    async def take(self, stream: trio.abc.Stream, first: bytes) -> bool:
        """Whether `stream`, whose first packet is in `first`, gets the seat.

        A debugger that reconnects may come before its old session has seen
        the old connection end (the session reads it throughout, so that
        takes moments): the newcomer waits that long for the seat.
        """
        if self.taken:
            with trio.move_on_after(HANDOVER_PATIENCE):
                while self.taken:
                    await self._left.wait()
        if self.taken:
            return False
        self.taken = True
        self._left = trio.Event()
        self._arrive.send_nowait((stream, first))
        return True

    def leave(self) -> None:
        self.taken = False
        self._left.set()


async def _welcome_newcomers(listener: trio.abc.Listener, seat: _Seat, patience: float) -> None:
    """Accept connections for ever, each greeted in a task of its own."""
    newcomers = trio.CapacityLimiter(MAX_NEWCOMERS)
    async with trio.open_nursery() as nursery:
        while True:
            try:
                stream = await listener.accept()
            except OSError as problem:
                if problem.errno not in _OUT_OF_DESCRIPTORS:
                    raise
                # Descriptors run out beyond what newcomers hold: wait for
                # some to be freed, as trio.serve_listeners does.
                await trio.sleep(0.1)
                continue
            try:
                newcomers.acquire_on_behalf_of_nowait(stream)
            except trio.WouldBlock:
                await trio.aclose_forcefully(stream)
                continue
            nursery.start_soon(_greet, stream, seat, patience, newcomers)


_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


async def _greet(stream: trio.abc.Stream, seat: _Seat, patience: float, newcomers: trio.CapacityLimiter) -> None:
    """A newcomer's first packet gets it the seat, or a refusal; no packet in time, and it is closed."""
    seated = False
    try:
        first = None
        with trio.move_on_after(patience):
            first = await _first_packet(stream)
        if first is None:
            with trio.move_on_after(REFUSAL_PATIENCE):
                await stream.send_all(SILENCE % patience)
        elif first:
            seated = await seat.take(stream, first)
            if not seated:
                await _refuse(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        newcomers.release_on_behalf_of(stream)
        if not seated:
            await trio.aclose_forcefully(stream)


async def _first_packet(stream: trio.abc.Stream) -> bytes:
    """Read until a whole, intact packet came: it, framed again, and what followed it; b"" if it hung up.

    What came before the packet is noise, and goes; the watcher keeps at
    most one packet's worth.
    """
    watcher = LineWatcher()
    while data := await stream.receive_some(RECEIVE_SIZE):
        for event in watcher.feed(data):
            if isinstance(event, Arrival):
                return event.replay
    return b""


async def _refuse(stream: trio.abc.Stream) -> None:
    """Answer the newcomer's first packet with an error gdb shows the user, and hang up once it has read it.

    gdb prints an `E.` reply to its qSupported as "Remote failure reply:"
    and the text. The end of the stream goes with the reply, and what the
    client sends meanwhile is read (and dropped) until it hangs up, so that
    closing does not reset the connection before the reply is read.
    """
    with trio.move_on_after(REFUSAL_PATIENCE):
        await stream.send_all(b"+" + encode_frame(b"E." + REFUSAL, run_length_encode=False))
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
        while await stream.receive_some(RECEIVE_SIZE):
            pass


async def _run_freely(debugger: Debugger) -> None:
    """Run the machine on a worker thread until it stops; being cancelled stops it too.

    The caller forgets old interrupts first. A worker thread cannot be
    cancelled: the machine is asked to stop, and the thread is waited for.
    """
    running = True

    async def interrupt_when_cancelled():
        try:
            await trio.sleep_forever()
        finally:
            if running:
                debugger.request_interrupt()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(interrupt_when_cancelled)
        try:
            await trio.to_thread.run_sync(debugger.resume)
        finally:
            running = False
        nursery.cancel_scope.cancel()


# With --once on a pty, how long the debugger may take to close its end
# after its last reply before the stub closes the pty (which would discard
# that reply unread).
ONCE_PATIENCE = 10.0

# What the console shows when a Ctrl-C on the line stops the machine with
# no debugger attached (the `modern` dialect only: Linux ignores the byte).
CTRL_C_MESSAGE = b"KGDB: Entering KGDB\n"


def break_in(debugger: Debugger, dialect: Dialect) -> None:
    """Stop the running machine for a debugger that arrives, as the dialect does it."""
    if dialect.break_in == "sysrq-g":
        debugger.request_sysrq_g(announce=False)
    else:
        debugger.request_interrupt()


async def serve_line(line: FdLine, debugger: Debugger, console: ConsoleBuffer, *, once: bool = False,
                     trace: Trace | None = None, **options) -> None:
    """Serve debuggers one after another on one line, which stays open throughout.

    The machine starts stopped (it waits for a debugger, as with kgdbwait).
    Between sessions the console goes out raw and the line is watched for a
    debugger; a detached machine runs meanwhile, one that a vanished
    debugger left stopped stays stopped, as in serve_listener.
    """
    trace = trace or Trace(None)
    running_free = False
    leftover = b""
    while True:
        replay = await _wait_for_a_debugger(line, debugger, console, trace, running=running_free,
                                            leftover=leftover,
                                            dialect=DIALECTS[options.get("dialect", "modern")])
        line.debugger_arrived()
        connection = LineConnection(line, replay)
        detached = await serve_stream(connection, debugger, console=console, trace=trace, **options)
        if once:
            if not connection.gone:
                await line.until_hung_up(ONCE_PATIENCE)  # its last reply must not die with the line
            return
        line.debugger_left(gone=connection.gone)
        # What came after the session's last packet: a break-in, or the next
        # debugger's first packet when that is what ended the session.
        leftover = connection.pending
        running_free = detached


async def _wait_for_a_debugger(line: FdLine, debugger: Debugger, console: ConsoleBuffer, trace: Trace, *,
                               running: bool, leftover: bytes = b"", dialect: Dialect) -> bytes:
    """Console out, break-ins in, until a debugger's first packet; that packet to replay.

    `leftover` is read first, then the line. The machine is stopped when
    this returns.
    """
    watcher = LineWatcher()
    machine_stopped = trio.Event()

    async def run_machine():
        nonlocal running
        try:
            await _run_freely(debugger)
        finally:
            running = False
            machine_stopped.set()

    console_out = trio.CancelScope()  # stopped the moment a debugger's first packet is seen

    async def console_to_line():
        with console_out:
            await _console_to_line(console, line)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(console_to_line)
        if running:
            debugger.forget_interrupt()
            nursery.start_soon(run_machine)
        data = leftover
        while True:
            if not data:
                data = await line.receive_some()
                if not data:
                    line.debugger_left(gone=True)  # whoever had the pty open is gone; we hold it again
                    continue
            events, data = watcher.feed(data), b""
            for event in events:
                if isinstance(event, Arrival):
                    console_out.cancel()  # nothing raw after its first packet: the rest waits for the session
                    if running:
                        # The machine stops for the debugger even when it
                        # arrives before the run has begun.
                        break_in(debugger, dialect)
                        await machine_stopped.wait()
                    nursery.cancel_scope.cancel()
                    return event.replay
                trace("<-", event.how.encode())
                if not running:
                    continue
                if event.how == "sysrq-g":
                    debugger.request_sysrq_g()  # the kernel prints what sysrq prints
                    await machine_stopped.wait()
                elif dialect.interrupt_byte_stops:
                    debugger.request_interrupt()
                    await machine_stopped.wait()
                    debugger.kernel.console_write(CTRL_C_MESSAGE)


async def _console_to_line(console: ConsoleBuffer, line: FdLine) -> None:
    """Raw console text onto the line, as fast as it takes it.

    Never while input waits to be read: it may be a debugger's first
    packet, and text that follows that packet on the line would reach the
    debugger raw. The watcher reads first; the text then waits for the
    session (as O packets in `modern`).
    """
    while True:
        await console.wait()
        console.consume(await line.send_console(console.peek()))
