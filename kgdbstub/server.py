"""Serving one debugger at a time over a byte stream, with trio.

The machine runs freely while no debugger is attached and stops when one
connects; a connection's session then decides when it runs. Blocking
emulation happens on a worker thread; Ctrl-C from gdb reaches it as a flag
the machine checks between two CPU turns.

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

import trio

from .debugger import Debugger
from .rsp import Ack, BadPacket, Interrupt, Packet, RemoteProtocol, encode_frame, encode_hex
from .session import DIALECTS, PACKET_SIZE, Detach, Reply, Resume, Session
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
    codec = RemoteProtocol(max_packet_size=PACKET_SIZE)
    session = Session(debugger, DIALECTS[dialect], monitor=monitor)
    trace = trace or Trace(None)
    line = stream if isinstance(stream, LineConnection) else None
    console_packets = CONSOLE_AS_PACKETS.get(dialect, True)
    sysrq = SysRqG()
    packets_send, packets_receive = trio.open_memory_channel(64)
    closed = False
    detached = False
    running = False  # a resume is on the worker thread
    # An interrupt belongs to the resume packet it follows on the wire, even
    # when it is read before that packet is handled: count packets to know.
    packets_read = 0
    interrupt_after = -1
    last_payload: bytes | None = None
    acknowledged = True  # gdb acknowledged a frame since its last packet

    # The reader sends acks and the main loop replies: one writer at a time.
    write_lock = trio.StrictFIFOLock()

    async def flush():
        async with write_lock:
            data = codec.data_to_send()
            if data:
                await stream.send_all(data)

    def interrupt():
        nonlocal interrupt_after
        interrupt_after = packets_read
        debugger.request_interrupt()

    def on_line(payload: bytes) -> str | None:
        """'repeat' or 'new debugger' for a packet on a line, else None."""
        if last_payload is None:
            return None
        if codec.ack_mode and not acknowledged and payload == last_payload:
            return "repeat"
        if payload.startswith(b"qSupported") and payload != last_payload:
            return "new debugger"
        return None

    def unparsed(data: bytes) -> bytes:
        """What the codec holds unparsed: the end of `data`, the read in which the last event came."""
        left = min(codec.buffered_bytes, len(data))
        return data[len(data) - left :] if left else b""

    async def read_wire():
        nonlocal closed, packets_read, last_payload, acknowledged
        async with packets_send:
            while True:
                try:
                    data = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    closed = True
                    interrupt()
                    return
                if line is not None and sysrq.feed(data) and running:
                    trace("<-", b"BREAK g")
                    interrupt()
                codec.receive_data(data)
                for event in codec.events():
                    if isinstance(event, Interrupt):
                        trace("<-", b"\\x03")
                        interrupt()
                    elif isinstance(event, Packet):
                        trace("<-", event.payload)
                        verdict = on_line(event.payload) if line is not None else None
                        if verdict == "repeat":
                            trace("<-!", b"sent again before any ack: acknowledged, not run twice")
                            continue
                        if verdict == "new debugger":
                            trace("<-!", b"a new debugger: this session ends")
                            line.unread(encode_frame(event.payload, run_length_encode=False) + unparsed(data))
                            closed = True
                            interrupt()
                            return
                        last_payload, acknowledged = event.payload, False
                        packets_read += 1
                        await packets_send.send((packets_read, event.payload))
                        if line is not None and event.payload[:1] in (b"D", b"k"):
                            # The session ends with this packet: what follows
                            # on the line (a break-in, the next debugger) is
                            # not this session's to read.
                            line.unread(unparsed(data))
                            await flush()
                            return
                    elif isinstance(event, Ack):
                        acknowledged = True
                    elif isinstance(event, BadPacket):
                        trace("<-!", event.reason.encode())
                try:
                    await flush()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

    async def send(payload: bytes):
        trace("->", payload)
        codec.send_packet(payload)
        await flush()

    async def forward_console():
        """Console output waiting now, to the debugger; never cut short mid-frame."""
        while data := console.peek(CONSOLE_CHUNK):
            with trio.CancelScope(shield=True):
                if console_packets:
                    await send(b"O" + encode_hex(data))
                else:
                    async with write_lock:  # our acks go first: a '-' in the text must not look like a nak of them
                        await stream.send_all(codec.data_to_send() + data)
            console.consume(len(data))

    async def forward_console_while_running():
        try:
            while True:
                await console.wait()
                await forward_console()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the debugger is gone: the reader sees it and stops the machine

    debugger.attach()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_wire)
        try:
            async with packets_receive:
                async for number, payload in packets_receive:
                    action = session.handle(payload)
                    if isinstance(action, Reply):
                        for line_out in action.output:
                            await send(line_out)
                        await send(action.payload)
                        if action.no_ack_after:
                            codec.start_no_ack_mode()
                    elif isinstance(action, Resume):
                        if interrupt_after < number:
                            debugger.forget_interrupt()  # it came while the machine was stopped
                        run = lambda: debugger.resume(step=action.step, cpu=action.cpu, address=action.address)  # noqa: E731
                        running = True
                        try:
                            if action.step:
                                # One instruction: quicker here than a worker thread's round trip.
                                stop = run()
                            elif console is None:
                                stop = await trio.to_thread.run_sync(run)
                            else:
                                async with trio.open_nursery() as running_tasks:
                                    running_tasks.start_soon(forward_console_while_running)
                                    stop = await trio.to_thread.run_sync(run)
                                    running_tasks.cancel_scope.cancel()
                        finally:
                            running = False
                        if closed:
                            break
                        if console is not None:
                            await forward_console()  # what the run printed last comes before its stop
                        await send(session.stop_reply(stop))
                    elif isinstance(action, Detach):
                        detached = True
                        if action.reply is not None:
                            await send(action.reply)
                        break
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            debugger.detach()
            nursery.cancel_scope.cancel()
    await stream.aclose()
    return detached


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
                debugger.request_interrupt()
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

# What the console shows when the machine is stopped from the line with no
# debugger attached (Linux's sysrq and kgdb messages, in this image's style).
BREAK_IN_MESSAGES = {
    "sysrq-g": b"sysrq: DEBUG\nkgdb: Entering KGDB\n",
    "ctrl-c": b"kgdb: Entering KGDB\n",
}


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
                                            leftover=leftover)
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
                               running: bool, leftover: bytes = b"") -> bytes:
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
                        debugger.request_interrupt()  # its thread is waited for as the nursery closes
                    nursery.cancel_scope.cancel()
                    return event.replay
                trace("<-", event.how.encode())
                if running:
                    debugger.request_interrupt()
                    await machine_stopped.wait()
                    debugger.kernel.console_write(BREAK_IN_MESSAGES[event.how])


async def _console_to_line(console: ConsoleBuffer, line: FdLine) -> None:
    """Raw console text onto the line, as fast as it takes it."""
    while True:
        await console.wait()
        console.consume(await line.send_some(console.peek()))
