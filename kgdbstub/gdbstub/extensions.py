"""Optional protocol features: what each adds to qSupported, the packets it serves
and what it adds to stop replies.

A dialect is a list of these; its qSupported answer is derived from the list.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..x86.tdesc import target_xml
from .actions import PACKET_SIZE, Action, Reply

if TYPE_CHECKING:
    from .session import Session


class Extension:
    """An optional protocol feature: what it adds to qSupported and the packets it serves."""

    def advertise(self, offered: set[str]) -> str | None:
        return None

    def handlers(self, session: "Session") -> dict[str, Callable[[bytes], Action]]:
        return {}

    def stop_fields(self, session: "Session", stop) -> bytes:
        """What it adds to a stop reply (`n:r;` pairs)."""
        return b""


class NoAckMode(Extension):
    def advertise(self, offered):
        return "QStartNoAckMode+"

    def handlers(self, session):
        return {"QStartNoAckMode": lambda _: Reply(b"OK", no_ack_after=True)}


class TargetDescription(Extension):
    def advertise(self, offered):
        return "qXfer:features:read+"

    def handlers(self, session):
        document = target_xml().encode()

        def read(args: bytes) -> Action:
            match = re.fullmatch(rb"target\.xml:([0-9a-fA-F]+),([0-9a-fA-F]+)", args)
            if not match:
                return Reply(b"E00")  # the qXfer convention for an unknown annex
            offset, length = (int(g, 16) for g in match.groups())
            chunk = document[offset : offset + min(length, PACKET_SIZE - 16)]
            more = offset + len(chunk) < len(document)
            return Reply((b"m" if more else b"l") + chunk)

        return {"qXfer:features:read:": read}


class StopReason(Extension):
    """`swbreak:`/`hwbreak:` in stop replies, only if gdb offered to parse them."""

    def __init__(self, name: str):
        self.name = name

    def advertise(self, offered):
        return f"{self.name}+" if f"{self.name}+" in offered else None


class VContSupported(Extension):
    def advertise(self, offered):
        return "vContSupported+"
