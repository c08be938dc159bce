"""The GDB Remote Serial Protocol as a sans-I/O state machine.

Bytes in, events out; payloads in, frames out. No sockets, threads or
knowledge of what is being debugged: see RemoteProtocol.
"""

from .events import Ack, BadPacket, Event, Interrupt, Nak, Packet
from .framing import checksum, encode_frame
from .hexdata import decode_hex, encode_hex
from .protocol import ProtocolError, RemoteProtocol

__all__ = [
    "Ack",
    "BadPacket",
    "Event",
    "Interrupt",
    "Nak",
    "Packet",
    "ProtocolError",
    "RemoteProtocol",
    "checksum",
    "decode_hex",
    "encode_frame",
    "encode_hex",
]
