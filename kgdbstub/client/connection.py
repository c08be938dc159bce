"""Packets over a byte stream: the RSP codec driven from trio, reading on demand.

There is no background task: whoever waits for a packet reads the stream,
so a connection needs no nursery and `async with await connect(...)` works.
Acks (in ack mode) go out as packets are read.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable

import trio

from ..rsp import BadPacket, Packet, RemoteProtocol
from .errors import ClientError, ConnectionLost

# Replies can be larger than the packets we may send (a `g`, a file chunk).
MAX_PACKET = 1 << 20

Trace = Callable[[str, bytes], None]  # ("->" or "<-", raw bytes on the wire)

INTERRUPT_SEQUENCES = {"Ctrl-C": b"\x03", "BREAK-g": b"\xff\xf3g"}


class Mutex:
    """A trio.Lock that is taken without a schedule point when it is free.

    trio.Lock yields to the scheduler on every acquire; a request takes
    three locks, and those yields cost more than the round trip to the stub.
    The I/O under the lock is a checkpoint anyway.
    """

    def __init__(self):
        self._lock = trio.Lock()

    async def __aenter__(self) -> None:
        try:
            self._lock.acquire_nowait()
        except trio.WouldBlock:
            await self._lock.acquire()

    async def __aexit__(self, *exception) -> None:
        self._lock.release()


class Connection:
    def __init__(self, stream: trio.abc.Stream, *, peer: str, trace: Trace | None = None):
        self.peer = peer
        self.codec = RemoteProtocol(max_packet_size=MAX_PACKET, run_length_encode=False)
        self.bad_packets = 0  # damaged frames received (re-sent by the peer in ack mode)
        self._stream = stream
        self._trace = trace
        self._packets: deque[bytes] = deque()
        self._send_lock = Mutex()
        self._receive_lock = Mutex()
        self._lost: str | None = None
        self._closed = False

    @property
    def usable(self) -> bool:
        return self._lost is None and not self._closed

    def check(self) -> None:
        if self._lost is not None:
            raise ConnectionLost(self._lost)
        if self._closed:
            raise ClientError(f"the connection to {self.peer} is closed")

    async def send_packet(self, payload: bytes) -> None:
        self.check()
        self.codec.send_packet(payload)
        await self._flush()

    async def send_interrupt(self, sequence: str = "Ctrl-C") -> None:
        """Outside any packet, what stops the target: a bare 0x03 ("Ctrl-C"), or for
        Linux's kgdb SysRq-G ("BREAK-g": a BREAK, FF F3 as Telnet's IAC BRK, then g),
        named as gdb's `set remote interrupt-sequence` names them."""
        self.check()
        await self._flush(INTERRUPT_SEQUENCES[sequence])

    async def receive(self) -> bytes:
        """The next packet's payload. Cancelling loses nothing."""
        async with self._receive_lock:
            while not self._packets:
                self.check()
                try:
                    data = await self._stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
                    self._lose(f"the connection to {self.peer} broke: {error.__cause__ or error}")
                    continue
                if not data:
                    self._lose(f"{self.peer} closed the connection")
                    continue
                if self._trace:
                    self._trace("<-", data)
                self.codec.receive_data(data)
                for event in self.codec.events():
                    if isinstance(event, Packet):
                        self._packets.append(event.payload)
                    elif isinstance(event, BadPacket):
                        self.bad_packets += 1
                if self.codec.ack_mode:
                    await self._flush()  # acks, and frames released by an ack
            return self._packets.popleft()

    async def _flush(self, extra: bytes = b"") -> None:
        # Shielded: a write cut in the middle would leave half a frame on the line.
        with trio.CancelScope(shield=True):
            async with self._send_lock:
                data = self.codec.data_to_send() + extra
                if not data or not self.usable:
                    return
                if self._trace:
                    self._trace("->", data)
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
                    self._lose(f"the connection to {self.peer} broke: {error.__cause__ or error}")
        self.check()

    def _lose(self, why: str) -> None:
        if self._lost is None and not self._closed:
            self._lost = why

    async def aclose(self) -> None:
        self._closed = True
        with trio.CancelScope(shield=True):
            await self._stream.aclose()
