"""The RSP state machine: bytes in, events out; payloads in, frames out.

Nothing here does I/O. A caller feeds what arrived with receive_data, drains
events with next_event (or events), may answer with send_packet, and then
writes data_to_send to the wire. Received bytes are parsed only when events
are asked for, so that start_no_ack_mode, called between two events, governs
every byte after the packet that led to it.
"""

import functools
import re
from collections import deque
from collections.abc import Iterator

from .events import Ack, BadPacket, Event, Interrupt, Nak, Packet
from .framing import MalformedBody, checksum, decode_body, encode_frame

PACKET_START, INTERRUPT, ACK, NAK = b"$\x03+-"

# Between packets only these bytes mean something; the rest is line noise
# or console output sharing the line.
_BETWEEN_PACKETS_WITH_ACKS = re.compile(rb"[$\x03+\-]")
_BETWEEN_PACKETS_WITHOUT_ACKS = re.compile(rb"[$\x03]")
_DISCARDED_BODY_END = re.compile(rb"[#$\x03]")
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


@functools.lru_cache(maxsize=None)
def _whole_frame(max_packet_size: int) -> re.Pattern:
    """A frame that arrived whole, with no '$' in it to cut it short: the common case."""
    return re.compile(rb"\$([^$#]{0,%d})#([^$]{2})" % max_packet_size)


# Returned by a reader that changed state and has more to parse.
_KEEP_READING = object()


class ProtocolError(Exception):
    """The caller misused the API. Never raised for anything the peer sends."""


class RemoteProtocol:
    """One end of an RSP connection, either the stub's or the debugger's.

    Driven like this, for each chunk that arrives::

        protocol.receive_data(chunk)
        for event in protocol.events():
            ...                                 # may call send_packet
        wire.write(protocol.data_to_send())

    Acks and retransmissions happen as events are drained, so write
    data_to_send after draining, even when no packet came in.

    In ack mode sending is stop-and-wait, as the protocol intends and as
    kgdb and gdbserver do: while a frame awaits its '+', later frames are
    held back, and each goes out when the '+' for the one before arrives.
    A '-' therefore always names one frame, the one sent again. A copy
    of it waiting in data_to_send answers every '-' that comes before the
    copy is taken, so that a flood of them costs one copy, not one each.

    What waits for a '+' is the frames of one answer at most, if the
    caller calls assume_acknowledged when a new packet comes in place of
    the '+' (a peer that moved on will never acknowledge the old answer).
    """

    def __init__(self, *, max_packet_size: int = 16384, run_length_encode: bool = True,
                 strict_acks: bool = False, decode_bodies: bool = True):
        """`strict_acks`: wait for an ack as Linux's kgdb does (put_packet): a '$'
        in its place is answered '-', the frame awaiting it is dropped and so is
        the incoming one (gdb sends it again on the '-'); any other byte but
        0x03 makes the frame go out again.

        `decode_bodies=False`: a packet's payload is its body as it came,
        escapes and run-length markers left in, as Linux's get_packet reads
        it (kgdb undoes the escapes of an `X` packet alone, in kgdb_ebin2mem).
        """
        if not isinstance(max_packet_size, int) or max_packet_size < 1:
            raise ProtocolError(f"max_packet_size must be a positive int, not {max_packet_size!r}")
        self._max_packet_size = max_packet_size
        self._whole_frame = _whole_frame(max_packet_size)
        self._run_length_encode = run_length_encode
        self._strict_acks = strict_acks
        self._decode_bodies = decode_bodies
        self._ack_mode = True
        self._received = bytearray()
        # How far the body being received has been searched for its end, so
        # that a body arriving a byte at a time is still scanned only once.
        self._scanned = 0
        self._discarded_sum = 0
        self._read = self._read_between_packets
        self._outgoing = bytearray()
        self._unacknowledged: bytes | None = None
        # A copy of the unacknowledged frame is in _outgoing, not yet taken:
        # a '-' now cannot be about it, and the copy answers the '-' before.
        self._copy_queued = False
        self._paused = False  # strict acks: input waits until the copy queued has been taken
        self._held: deque[bytes] = deque()

    @property
    def ack_mode(self) -> bool:
        return self._ack_mode

    @property
    def paused(self) -> bool:
        """Received bytes wait until what is queued has been taken with data_to_send.

        With strict acks every byte but '+', '$' and 0x03 sends the frame
        again, as Linux's put_packet does, one copy after another: the next
        byte is read only once the copy before it has gone, so that a flood
        of them never makes the copies pile up here.
        """
        return self._paused

    @property
    def awaiting_ack(self) -> bool:
        """A frame went out in ack mode and its '+' has not come yet."""
        return self._unacknowledged is not None

    @property
    def unacknowledged_bytes(self) -> int:
        """Bytes of frames kept for a '+': the one sent and those held back."""
        sent = len(self._unacknowledged) if self._unacknowledged is not None else 0
        return sent + sum(map(len, self._held))

    @property
    def buffered_bytes(self) -> int:
        """Received bytes not yet turned into events.

        Once next_event has returned None this is at most max_packet_size + 2:
        the body of an incomplete frame, its '#' and one checksum digit.
        """
        return len(self._received)

    def unparsed(self) -> bytes:
        """The received bytes no event has come from yet, as they arrived.

        For handing the rest of a stream over to another reader, as when a
        session on a shared line ends with a packet and what follows it
        belongs to whoever reads the line next. A frame being skipped for
        its size is not given back.
        """
        if self._read == self._read_body:
            return b"$" + self._received
        if self._read == self._read_between_packets:
            return bytes(self._received)
        return b""

    def receive_data(self, data: bytes) -> None:
        """Take bytes from the wire. Any bytes at all are fine."""
        try:
            self._received += data
        except TypeError:
            raise ProtocolError(f"receive_data wants bytes, not {type(data).__name__}") from None

    def next_event(self) -> Event | None:
        """The next thing the received bytes say, or None until more arrive."""
        if not self._received:
            return None  # every reader waits for more bytes then: asked after each packet, the common case
        while (event := self._read()) is _KEEP_READING:
            pass
        return event

    def events(self) -> Iterator[Event]:
        """Every event the received bytes hold so far."""
        while (event := self.next_event()) is not None:
            yield event

    def send_packet(self, payload: bytes) -> None:
        """Frame `payload` and queue it, keeping it until it is acknowledged.

        The frame escapes '$', '#', '}' and '*'. Note that the peer may only
        undo escapes in packets that carry binary data (gdb does so for those
        alone), so other payloads should not contain those four bytes.
        """
        if type(payload) is not bytes:
            try:
                payload = memoryview(payload).tobytes()
            except TypeError:
                raise ProtocolError(f"send_packet wants bytes, not {type(payload).__name__}") from None
        frame = encode_frame(payload, self._run_length_encode)
        if not self._ack_mode:
            self._outgoing += frame
        elif self._unacknowledged is None:
            self._transmit(frame)
        else:
            self._held.append(frame)

    def data_to_send(self) -> bytes:
        """Everything queued for the wire, which is then forgotten here."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        self._copy_queued = False
        self._paused = False  # strict acks: input waits until the copy queued has been taken
        self._paused = False
        return data

    def start_no_ack_mode(self) -> None:
        """Stop sending acks and stop expecting them.

        Call it once QStartNoAckMode has been answered OK: a stub right after
        send_packet(b"OK"), a debugger when the OK arrives (its '+' for the OK
        is already queued by then). A frame still awaiting its ack is taken
        as delivered, and held frames are released.
        """
        self._ack_mode = False
        self.assume_acknowledged()

    def assume_acknowledged(self) -> None:
        """Take what awaits a '+' as delivered, and release the held frames at once.

        For a peer that sends its next packet instead of the '+': gdb sends
        nothing before it has acknowledged the whole answer, so a peer that
        does has either moved on or never acknowledges. Its later '-' no
        longer brings the old frame back.
        """
        self._unacknowledged = None
        while self._held:
            self._outgoing += self._held.popleft()

    def _transmit(self, frame: bytes) -> None:
        self._outgoing += frame
        self._unacknowledged = frame
        self._copy_queued = True

    # Readers: one per place the stream can be in. Each consumes what it
    # can and returns an event, None for "need more bytes", or _KEEP_READING.

    def _read_between_packets(self):
        if self._strict_acks and self._ack_mode and self._unacknowledged is not None:
            return self._read_ack_strictly()
        # Nearly always the next packet came whole and is all there is: one
        # match reads it, as _read_body would.
        if self._received[0] == PACKET_START and (frame := self._whole_frame.match(self._received)):
            body, digits = frame.groups()  # before the bytes they are taken from go
            del self._received[: frame.end()]
            return self._complete(body, digits)
        pattern = _BETWEEN_PACKETS_WITH_ACKS if self._ack_mode else _BETWEEN_PACKETS_WITHOUT_ACKS
        found = pattern.search(self._received)
        if found is None:
            self._received.clear()
            return None
        marker = self._received[found.start()]
        del self._received[: found.end()]
        if marker == PACKET_START:
            return self._start_body()
        if marker == INTERRUPT:
            return Interrupt()
        if marker == ACK:
            return self._acknowledged()
        return self._refused()

    def _read_ack_strictly(self):
        while self._received and self._unacknowledged is not None:
            byte = self._received[0]
            if byte not in (ACK, PACKET_START, INTERRUPT) and self._copy_queued:
                self._paused = True  # read once the copy queued has been taken
                return None
            del self._received[:1]
            if byte == ACK:
                return self._acknowledged()
            if byte == PACKET_START:
                self._outgoing.append(NAK)
                self._unacknowledged = None
                if self._held:
                    self._transmit(self._held.popleft())
                self._read = self._read_to_next_frame
                return Nak()
            if byte != INTERRUPT:
                self._outgoing += self._unacknowledged
                self._copy_queued = True
        return _KEEP_READING if self._received else None

    def _read_to_next_frame(self):
        start = self._received.find(PACKET_START)
        if start < 0:
            self._received.clear()
            return None
        del self._received[: start + 1]
        return self._start_body()

    def _read_body(self):
        received = self._received
        # A '#' right after max_packet_size body bytes still ends a body that fits.
        limit = self._max_packet_size + 1
        hash_at = received.find(b"#", self._scanned, limit)
        # A '$' anywhere up to the last checksum digit cuts this frame short.
        restart_at = received.find(b"$", self._scanned, limit if hash_at < 0 else hash_at + 3)
        if restart_at >= 0:
            return self._restart_body(restart_at)
        if hash_at < 0:
            if len(received) >= limit:
                # Drop what is held now and skip the rest of the body unseen,
                # keeping only its checksum.
                self._discarded_sum = sum(received[:limit])
                del received[:limit]
                self._read = self._read_discarded_body
                return _KEEP_READING
            self._scanned = len(received)
            return None
        if len(received) < hash_at + 3:
            self._scanned = hash_at
            return None
        body = bytes(received[:hash_at])
        digits = bytes(received[hash_at + 1 : hash_at + 3])
        del received[: hash_at + 3]
        self._read = self._read_between_packets
        return self._complete(body, digits)

    def _read_discarded_body(self):
        # Nothing of an oversized body is kept: wait for its end, for a new
        # frame, or for an interrupt, which must get through even if what
        # looked like a frame was console noise that happened to hold a '$'.
        found = _DISCARDED_BODY_END.search(self._received)
        if found is None:
            self._discarded_sum += sum(self._received)
            self._received.clear()
            return None
        marker = self._received[found.start()]
        self._discarded_sum += sum(self._received[: found.start()])
        del self._received[: found.end()]
        if marker == PACKET_START:
            self._start_body()
            return BadPacket("truncated")
        if marker == INTERRUPT:
            self._read = self._read_between_packets
            return Interrupt()
        self._read = self._read_discarded_checksum
        return _KEEP_READING

    def _read_discarded_checksum(self):
        received = self._received
        restart_at = received.find(b"$", 0, 2)
        if restart_at >= 0:
            self._read = self._read_body
            return self._restart_body(restart_at)
        if len(received) < 2:
            return None
        digits = bytes(received[:2])
        del received[:2]
        self._read = self._read_between_packets
        if not _HEX_DIGITS.issuperset(digits) or int(digits, 16) != self._discarded_sum & 0xFF:
            return self._damaged("checksum")
        # It arrived intact, only too big to keep: the peer awaits an answer.
        if self._ack_mode:
            self._outgoing.append(ACK)
        return BadPacket("oversize")

    def _start_body(self):
        self._read = self._read_body
        self._scanned = 0
        return _KEEP_READING

    def _restart_body(self, packet_start: int) -> BadPacket:
        del self._received[: packet_start + 1]
        self._scanned = 0
        return BadPacket("truncated")

    def _complete(self, body: bytes, digits: bytes) -> Packet | BadPacket:
        if not _HEX_DIGITS.issuperset(digits) or int(digits, 16) != checksum(body):
            return self._damaged("checksum")
        try:
            payload = decode_body(body) if self._decode_bodies else bytes(body)
        except MalformedBody as error:
            return self._damaged(error.reason)
        if self._ack_mode:
            self._outgoing.append(ACK)
        return Packet(payload)

    def _damaged(self, reason: str) -> BadPacket:
        if self._ack_mode:
            self._outgoing.append(NAK)
        return BadPacket(reason)

    def _acknowledged(self) -> Ack:
        self._unacknowledged = None
        if self._held:
            self._transmit(self._held.popleft())
        return Ack()

    def _refused(self) -> Nak:
        if self._unacknowledged is not None and not self._copy_queued:
            self._outgoing += self._unacknowledged
            self._copy_queued = True
        return Nak()
