"""Optional protocol features: what each adds to qSupported, the packets it serves
and what it adds to stop replies.

A dialect is a list of these; its qSupported answer is derived from the list.
"""
from __future__ import annotations

import functools
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


class ThreadList(Extension):
    """`qXfer:threads:read`: the whole thread list, names included, in one reply.

    gdb refreshes its thread list at every stop it shows (normal_stop in
    infrun.c calls update_thread_list); with this it takes one packet where
    qfThreadInfo and qsThreadInfo take two, and it no longer asks
    qThreadExtraInfo for a new thread's name (remote.c's extra_thread_info
    uses the text of the thread's element). The list is the one
    qfThreadInfo sends, each thread's text what qThreadExtraInfo answers.
    """

    def advertise(self, offered):
        return "qXfer:threads:read+"

    def handlers(self, session):
        document = b""

        def read(args: bytes) -> Action:
            nonlocal document
            match = re.fullmatch(rb":([0-9a-fA-F]+),([0-9a-fA-F]+)", args)
            if not match:
                return Reply(b"E00")  # the qXfer convention for an unknown annex
            offset, length = (int(g, 16) for g in match.groups())
            if offset == 0:  # a new reading: later offsets continue this document
                document = threads_xml(session.debugger)
            chunk = document[offset : offset + min(length, PACKET_SIZE - 16)]
            more = offset + len(chunk) < len(document)
            return Reply((b"m" if more else b"l") + chunk)

        return {"qXfer:threads:read:": read}


def threads_xml(debugger) -> bytes:
    """The thread list as gdb's threads.dtd describes it: an element per thread, its name as text."""
    lines = ['<?xml version="1.0"?>', "<threads>"]
    for thread in debugger.threads():
        lines.append(f'<thread id="{thread & 0xFFFFFFFF:08x}">{_xml_text(debugger.thread_name(thread))}</thread>')
    lines.append("</threads>")
    return "\n".join(lines).encode()


# XML 1.0 has no way to write these characters, not even as references.
_NOT_IN_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


@functools.lru_cache(maxsize=256)  # asked for every thread's name at every stop gdb shows
def _xml_text(text: str) -> str:
    """`text` as XML character data: markup escaped, the characters XML cannot hold as \\xNN."""
    text = _NOT_IN_XML.sub(lambda c: f"\\x{ord(c[0]):02x}", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
