"""Serving one debugger at a time over a byte stream, with trio.

The machine runs freely while no debugger is attached and stops when one
connects; a connection's session then decides when it runs, in slices on
the event loop while a debugger is attached (on a worker thread while
none is); Ctrl-C from gdb reaches it as a flag the machine checks between
two CPU turns.

Over TCP (`serve_listener`) a connection is a debugger. On a line -- a pty
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
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import trio

from .core.conditions import OUTPUT_LIMIT
from .core.debugger import Debugger
from .rsp import Ack, BadPacket, Interrupt, Packet, encode_frame, encode_hex
from .gdbstub.actions import PACKET_SIZE, Detach, NoReply, Reply, Resume
from .gdbstub.dialects import DIALECTS, Dialect
from .transport.line import BREAK
from .transport import Arrival, ConsoleBuffer, FdLine, LineConnection, LineWatcher, SysRqG

# How console output reaches an attached debugger while the machine runs.
# Linux sends the console to gdb as O packets only with `kgdbcon`, which
# must not be used when the kgdboc line is also the system console -- the
# case of a line shared with the console -- so the kgdb dialect leaves
# console text raw on the line, where gdb skips it between packets.
CONSOLE_AS_PACKETS = {"modern": True, "kgdb": False}
# Console bytes per O packet: hex doubles them, and 'O' comes first.
CONSOLE_CHUNK = (PACKET_SIZE - 1) // 2


class Trace:
    """Every packet in and out, one line each, for --trace."""

    def __init__(self, stream):
        self._stream = stream

    def __call__(self, direction: str, payload: bytes) -> None:
        if self._stream:
            self._stream.write(f"{direction} {payload.decode('latin-1')!r}\n")
            self._stream.flush()


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
        self.sysrq_pending = False  # SysRq-G read ahead of a resume the session has yet to run
        self._dialect = dialect
        self.closed = False
        self.running = False  # interrupts stop the machine only while it runs
        self._debugger = debugger
        self._trace = trace
        self._line = stream if isinstance(stream, LineConnection) else None
        self._sysrq = SysRqG()
        self._early: deque[Packet | BadPacket] = deque()  # packets that came while the machine ran
        self._last_payload: bytes | None = None
        self._acknowledged = True  # gdb acknowledged a frame since its last packet
        # The watcher sends acks while the session's loop may be sending: one writer at a time.
        self._write_lock = trio.StrictFIFOLock()

    async def next_packet(self) -> Packet | BadPacket | None:
        """The next packet (or an intact 'oversize' one to refuse); None once the debugger is gone."""
        if self._early:
            return self._early.popleft()
        while True:
            event = self._parse()
            if event is not None or self.closed:
                return event
            await self.flush()
            await self._receive()

    async def watch_while_running(self) -> None:
        """Read while the machine runs, for interrupts and for the debugger going away.

        Packets that come meanwhile wait for the stop (gdb sends none in
        all-stop mode, but a script may); reading pauses when EARLY_PACKETS
        of them wait, so that a flood cannot make the stub buffer more.
        """
        while len(self._early) < EARLY_PACKETS:
            event = self._parse()
            if event is not None:
                self._early.append(event)
                continue
            if self.closed:
                return
            with trio.CancelScope(shield=True):
                await self.flush()
            await self._receive()

    def _parse(self) -> Packet | BadPacket | None:
        while (event := self.codec.next_event()) is not None:
            if isinstance(event, Packet):
                self._trace("<-", event.payload)
                verdict = self._on_line(event.payload)
                if verdict == "repeat":
                    self._trace("<-!", b"sent again before any ack: acknowledged, not run twice")
                    continue
                if verdict == "new debugger":
                    self._trace("<-!", b"a new debugger: this session ends")
                    self._line.unread(encode_frame(event.payload, run_length_encode=False) + self.codec.unparsed())
                    self._gone()
                    return None
                self._last_payload, self._acknowledged = event.payload, False
                return event
            if isinstance(event, Interrupt):
                self._trace("<-", b"\\x03")
                if self._interrupt_byte_stops:
                    self._interrupt()
            elif isinstance(event, Ack):
                self._acknowledged = True
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
        if payload.startswith(b"qSupported") and payload != self._last_payload:
            return "new debugger"
        return None

    async def _receive(self) -> None:
        try:
            data = await self.stream.receive_some(65536)
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
                self.sysrq_pending = True
            # The serial driver takes the key (uart_handle_sysrq_char): kgdb never reads it.
            data = data.replace(BREAK + b"g", b"")
        self.codec.receive_data(data)

    def _interrupt(self) -> None:
        if self.running:
            self._debugger.request_interrupt()

    def _gone(self) -> None:
        self.closed = True
        break_in(self._debugger, self._dialect)  # a running machine stops for the next debugger

    def give_back_unparsed(self) -> None:
        """On a line, what follows the session's last packet is the next reader's."""
        if self._line is not None:
            self._line.unread(self.codec.unparsed())

    async def send(self, *payloads: bytes) -> None:
        for payload in payloads:
            self._trace("->", payload)
            self.codec.send_packet(payload)
        await self.flush()

    async def send_raw(self, data: bytes) -> None:
        # Our acks go first: a '-' in the text must not look like a nak of them.
        await self._write(self.codec.data_to_send() + data)

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


# How many packets that came while the machine ran may wait for its stop.
EARLY_PACKETS = 64

# How long the machine runs on the event loop before it lets the other tasks
# (the wire's watcher, the console) have their turn. A resume runs here
# rather than on a worker thread: the hand-over to a thread and back costs
# more than most runs between two stops take.
RUN_SLICE = 0.005


async def serve_stream(stream: trio.abc.Stream, debugger: Debugger, *, dialect: str = "modern",
                       trace: Trace | None = None, monitor=None,
                       console: ConsoleBuffer | None = None) -> bool:
    """Run one debugger connection to its end; the machine is stopped on entry.

    Returns whether the debugger detached (True) or just went away (False).

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
    console_packets = CONSOLE_AS_PACKETS.get(dialect, True)

    async def forward_console():
        """Console output waiting now, to the debugger; never cut short mid-frame."""
        while data := console.peek(CONSOLE_CHUNK):
            with trio.CancelScope(shield=True):
                if console_packets:
                    await wire.send(b"O" + encode_hex(data))
                else:
                    await wire.send_raw(data)
            console.consume(len(data))

    async def forward_console_while_running():
        try:
            while True:
                await console.wait()
                await forward_console()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the debugger is gone: the watcher sees it and stops the machine

    async def forward_breakpoint_output():
        """What breakpoint commands (dprintf) printed, as console output (O packets)."""
        output = debugger.conditions.output
        while output:
            data = bytes(output[:CONSOLE_CHUNK])
            with trio.CancelScope(shield=True):
                await wire.send(b"O" + encode_hex(data))
            del output[: len(data)]

    def slice_over() -> Callable[[], bool]:
        # A slice ends early when breakpoint output waits: it goes out before the machine runs on.
        over, output = _slice_over(), debugger.conditions.output
        return lambda: over() or len(output) >= OUTPUT_LIMIT

    async def run_machine(resume: Resume):
        await wire.flush()  # the ack of the resume packet goes out before the machine runs
        debugger.forget_interrupt()  # one read while the machine was stopped is not this run's
        if wire.sysrq_pending:  # it came after the resume packet, read with it
            wire.sysrq_pending = False
            debugger.request_sysrq_g()
        with debugger.resumed(step=resume.step, cpu=resume.cpu, address=resume.address) as run:
            if resume.step:
                return run()
            # Most runs end within a slice: watchers are started only for a longer one.
            if (stop := run(slice_over())) is not None:
                return stop
            wire.running = True
            try:
                async with trio.open_nursery() as watchers:
                    watchers.start_soon(wire.watch_while_running)
                    if console is not None:
                        watchers.start_soon(forward_console_while_running)
                    while True:
                        await forward_breakpoint_output()
                        if (stop := run(slice_over())) is not None:
                            break
                        await trio.lowlevel.checkpoint()
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
                    wire.sysrq_pending = False  # the machine was stopped: the key did nothing
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
                if console is not None:
                    await forward_console()  # what the run printed last comes before its stop
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


def _slice_over() -> Callable[[], bool]:
    end = time.monotonic() + RUN_SLICE
    return lambda: time.monotonic() >= end


async def serve_listener(listener: trio.abc.Listener, debugger: Debugger, *, once: bool = False,
                         **options) -> None:
    """Serve debuggers one after another, refusing a second one while one is attached.

    While nobody is attached a detached machine runs freely; a new
    connection stops it, as kgdb's break-in on a connection does. A
    debugger that vanishes without detaching leaves the machine stopped
    for the next one, as kgdb does.
    """
    arrivals_send, arrivals = trio.open_memory_channel(0)
    attached = False
    session_over = trio.Event()

    async def accept_forever():
        while True:
            stream = await listener.accept()
            if attached:
                # A debugger that just detached may reconnect before its
                # session has finished closing: give that a moment.
                with trio.move_on_after(HANDOVER_PATIENCE):
                    await session_over.wait()
            if attached:
                nursery.start_soon(_refuse, stream)
            else:
                await arrivals_send.send(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_forever)
        running_free = False
        while True:
            async with trio.open_nursery() as free_run:
                if running_free:
                    debugger.forget_interrupt()
                    free_run.start_soon(trio.to_thread.run_sync, debugger.resume)
                stream = await arrivals.receive()
                attached, session_over = True, trio.Event()
                break_in(debugger, DIALECTS[options.get("dialect", "modern")])
            try:
                detached = await serve_stream(stream, debugger, **options)
            finally:
                attached = False
                session_over.set()
            if once:
                nursery.cancel_scope.cancel()
                return
            running_free = detached


HANDOVER_PATIENCE = 2.0
REFUSAL = b"kgdbstub: another debugger is attached; only one is served at a time\n"


async def _refuse(stream: trio.abc.Stream) -> None:
    """Tell a second client why it is turned away, in plain text gdb skips, and hang up."""
    with trio.move_on_after(5):
        try:
            await stream.send_all(REFUSAL)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    await trio.aclose_forcefully(stream)


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
            await trio.to_thread.run_sync(debugger.resume)
        finally:
            running = False
            machine_stopped.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_console_to_line, console, line)
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
    """Raw console text onto the line, as fast as it takes it."""
    while True:
        await console.wait()
        console.consume(await line.send_some(console.peek()))
