"""kgdboc's view of a line it shares with the console, sans-IO.

While no debugger is attached the line carries console text out and
whatever a terminal or a debugger sends in. `LineWatcher` reads what comes
in and reports the three things that matter:

- gdb's first packet (a whole, well-formed frame, so that a `$` typed at a
  terminal is not taken for a debugger): the session starts with it;
- a Ctrl-C (a 0x03 byte outside a frame): stop the machine;
- SysRq-G: a BREAK followed by `g`, Linux's magic SysRq "enter the
  debugger" key as a serial console sends it (`SysRqG`). On the line a
  BREAK is the bytes FF F3 (see line.py). Linux accepts the key within five
  seconds of the break; here it must be the very next byte, so that the
  machine's behaviour never depends on timing.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..rsp import Interrupt, Packet, RemoteProtocol, encode_frame
from .line import BREAK

_MARK, _BRK = BREAK
_KEY = ord("g")


class SysRqG:
    """Finds BREAK + 'g' in bytes fed in order, across reads."""

    def __init__(self):
        self._seen = 0  # how much of FF F3 'g' has just been seen

    def feed(self, data: bytes) -> bool:
        """Whether a SysRq-G ends somewhere in `data`."""
        start = 0
        if self._seen == 0:
            start = data.find(BREAK[:1])
            if start < 0:
                return False
        found = False
        for byte in data[start:]:
            if self._seen == 2 and byte == _KEY:
                found = True
                self._seen = 0
            elif byte == _MARK:
                self._seen = 1
            elif self._seen == 1 and byte == _BRK:
                self._seen = 2
            else:
                self._seen = 0
        return found


@dataclass(frozen=True)
class Arrival:
    """A debugger's first packet: `replay` is it, framed again, and what followed it."""

    replay: bytes


@dataclass(frozen=True)
class BreakIn:
    """A request to stop the machine: 'ctrl-c' or 'sysrq-g'."""

    how: str


class LineWatcher:
    def __init__(self):
        self._codec = RemoteProtocol()
        self._sysrq = SysRqG()

    def feed(self, data: bytes) -> list[BreakIn | Arrival]:
        """What `data` holds, in order; nothing after an Arrival (it is in its replay)."""
        found: list[BreakIn | Arrival] = []
        if self._sysrq.feed(data):
            found.append(BreakIn("sysrq-g"))
        self._codec.receive_data(data)
        for event in self._codec.events():
            if isinstance(event, Interrupt):
                found.append(BreakIn("ctrl-c"))
            elif isinstance(event, Packet):
                # What the codec has not parsed yet is the end of this read:
                # the frame just completed in it.
                rest = min(self._codec.buffered_bytes, len(data))
                tail = data[len(data) - rest :] if rest else b""
                found.append(Arrival(encode_frame(event.payload, run_length_encode=False) + tail))
                break
        self._codec.data_to_send()  # its acks are not ours to send: the session acks the replay
        return found
