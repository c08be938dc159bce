"""What a session tells the connection layer to do with a packet: reply, resume, detach or nothing.

The session is sans-I/O: it returns one of these and the server carries it out.
"""
from __future__ import annotations

from dataclasses import dataclass

# The largest packet the stub takes and sends, as qSupported advertises it.
PACKET_SIZE = 0x4000


@dataclass(frozen=True)
class Reply:
    payload: bytes
    no_ack_after: bool = False  # switch the codec to no-ack mode once sent
    output: tuple[bytes, ...] = ()  # console output (O packets) sent before the reply


@dataclass(frozen=True)
class Resume:
    step: bool
    cpu: int | None
    address: int | None
    thread: int | None = None  # the thread a step steps (None: the CPU that stopped)
    output: tuple[bytes, ...] = ()  # console output (O packets) sent before the machine runs


@dataclass(frozen=True)
class NoReply:
    """A packet that gets no answer (only its acknowledgement)."""


@dataclass(frozen=True)
class Detach:
    reply: bytes | None  # None for `k`, which kgdb does not answer


Action = Reply | Resume | Detach | NoReply
