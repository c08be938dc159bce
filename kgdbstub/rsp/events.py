"""What the protocol makes of the bytes it receives."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Packet:
    """A good packet, escapes undone and run-length encoding expanded."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Interrupt:
    """A 0x03 byte between packets: the peer wants the target stopped."""


@dataclass(frozen=True, slots=True)
class Ack:
    """A '+': the peer received our frame intact and stopped waiting for it."""


@dataclass(frozen=True, slots=True)
class Nak:
    """A '-': the peer received our frame damaged; it is already queued again."""


@dataclass(frozen=True, slots=True)
class BadPacket:
    """A received frame that was dropped.

    `reason` is one of:

    - 'checksum': the checksum digits disagree with the body or are not hex;
    - 'escape': the body ends in the middle of an escape;
    - 'run-length': a '*' with no byte before it to repeat, or without a
      printable count after it;
    - 'truncated': a '$' started a new frame before this one was complete;
    - 'oversize': the body grew past max_packet_size; it was skipped
      unseen, keeping only its checksum.

    'checksum', 'escape' and 'run-length' are frames that arrived whole but
    damaged: in ack mode a '-' has been queued so that the peer sends them
    again. An 'oversize' frame arrived whole and intact (or it would be a
    'checksum' one), only too big to keep: in ack mode a '+' has been
    queued, since sending it again cannot help, and the peer now awaits an
    answer, which should be an error. A 'truncated' frame gets neither: it
    was noise or was abandoned by its sender, who has moved on to the frame
    that cut it, so a '-' would only make the peer send that newer frame
    twice.
    """

    reason: str


Event = Packet | Interrupt | Ack | Nak | BadPacket
