"""Serving one debugger at a time over a byte stream, with trio.

The machine runs freely while no debugger is attached and stops when one
connects; a connection's session then decides when it runs. Blocking
emulation happens on a worker thread; Ctrl-C from gdb reaches it as a flag
the machine checks between two CPU turns.
"""
from __future__ import annotations

import trio

from .debugger import Debugger
from .rsp import BadPacket, Interrupt, Packet, RemoteProtocol
from .session import DIALECTS, PACKET_SIZE, Detach, Reply, Resume, Session


class Trace:
    """Every packet in and out, one line each, for --trace."""

    def __init__(self, stream):
        self._stream = stream

    def __call__(self, direction: str, payload: bytes) -> None:
        if self._stream:
            self._stream.write(f"{direction} {payload.decode('latin-1')!r}\n")
            self._stream.flush()


async def serve_stream(stream: trio.abc.Stream, debugger: Debugger, *, dialect: str = "modern",
                       trace: Trace | None = None, monitor=None) -> bool:
    """Run one debugger connection to its end; the machine is stopped on entry.

    Returns whether the debugger detached (True) or just went away (False).
    """
    codec = RemoteProtocol(max_packet_size=PACKET_SIZE)
    session = Session(debugger, DIALECTS[dialect], monitor=monitor)
    trace = trace or Trace(None)
    packets_send, packets_receive = trio.open_memory_channel(64)
    closed = False
    detached = False
    # An interrupt belongs to the resume packet it follows on the wire, even
    # when it is read before that packet is handled: count packets to know.
    packets_read = 0
    interrupt_after = -1

    # The reader sends acks and the main loop replies: one writer at a time.
    write_lock = trio.StrictFIFOLock()

    async def flush():
        async with write_lock:
            data = codec.data_to_send()
            if data:
                await stream.send_all(data)

    async def read_wire():
        nonlocal closed, packets_read, interrupt_after
        async with packets_send:
            while True:
                try:
                    data = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    closed = True
                    interrupt_after = packets_read
                    debugger.request_interrupt()
                    return
                codec.receive_data(data)
                for event in codec.events():
                    if isinstance(event, Interrupt):
                        trace("<-", b"\\x03")
                        interrupt_after = packets_read
                        debugger.request_interrupt()
                    elif isinstance(event, Packet):
                        trace("<-", event.payload)
                        packets_read += 1
                        await packets_send.send((packets_read, event.payload))
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

    debugger.attach()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_wire)
        try:
            async with packets_receive:
                async for number, payload in packets_receive:
                    action = session.handle(payload)
                    if isinstance(action, Reply):
                        for line in action.output:
                            await send(line)
                        await send(action.payload)
                        if action.no_ack_after:
                            codec.start_no_ack_mode()
                    elif isinstance(action, Resume):
                        if interrupt_after < number:
                            debugger.forget_interrupt()  # it came while the machine was stopped
                        stop = await trio.to_thread.run_sync(
                            lambda: debugger.resume(step=action.step, cpu=action.cpu, address=action.address)
                        )
                        if closed:
                            break
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
    """Serve debuggers one after another.

    While nobody is attached a detached machine runs freely; a new
    connection stops it, as kgdb's break-in on a connection does. A
    debugger that vanishes without detaching leaves the machine stopped
    for the next one, as kgdb does.
    """
    running_free = False
    while True:
        async with trio.open_nursery() as nursery:
            if running_free:
                debugger.forget_interrupt()
                nursery.start_soon(trio.to_thread.run_sync, debugger.resume)
            stream = await listener.accept()
            debugger.request_interrupt()
        detached = await serve_stream(stream, debugger, **options)
        if once:
            return
        running_free = detached
