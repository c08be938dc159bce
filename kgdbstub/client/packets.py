"""What the client makes of the stub's replies: no I/O here.

Thread ids are kgdb's: a task's pid, and -(cpu + 2) for each CPU's shadow
thread, as 32-bit two's complement hex (CPU 0's is `fffffffe`); kgdb drops
leading zero bytes (pid 1 is `01`).
"""
from __future__ import annotations

import re
import signal as _signal
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import Literal

from ..rsp import decode_hex

Reason = Literal["watch", "rwatch", "awatch", "hwbreak", "swbreak", "exited", "terminated"]
WATCH_REASONS = ("watch", "rwatch", "awatch")
BREAK_REASONS = ("hwbreak", "swbreak")


@dataclass(frozen=True)
class Register:
    name: str
    size: int  # bytes
    number: int  # for `p`/`P` and in stop replies


# Linux's x86-64 kgdb without a target description (asm/kgdb.h): `g` holds
# 17 eight-byte registers, then eflags, cs, ss, ds and es at four bytes each.
KGDB_LAYOUT: tuple[Register, ...] = tuple(
    Register(name, 8 if number < 17 else 4, number)
    for number, name in enumerate(
        "rax rbx rcx rdx rsi rdi rbp rsp r8 r9 r10 r11 r12 r13 r14 r15 rip "
        "eflags cs ss ds es".split()
    )
)


@dataclass(frozen=True)
class Stop:
    """Why and where the target stopped.

    `reason` is the stub's stop reason (None when it gives none, as kgdb
    never does); `address` is the data address for watch/rwatch/awatch and
    the breakpoint's (the PC) for hwbreak/swbreak. `registers` holds the
    values the stop reply carried (by name once the register layout is
    known, else by the stub's hex register number). `output` is the console
    output that came while the target ran.
    """

    signal: int
    reason: Reason | None = None
    address: int | None = None
    thread: int | None = None
    cpu: int | None = None
    registers: dict[str, int] = field(default_factory=dict)
    output: str = ""
    raw: bytes = b""

    @property
    def pc(self) -> int | None:
        return self.registers.get("rip")

    @property
    def signal_name(self) -> str:
        try:
            return _signal.Signals(self.signal).name
        except ValueError:
            return f"signal {self.signal}"


@dataclass(frozen=True)
class Thread:
    id: int
    name: str | None  # the stub's qThreadExtraInfo: a task's comm, or shadowCPU<n>


BreakpointKind = Literal["software", "hardware", "write", "read", "access"]
Z_TYPES: dict[str, int] = {"software": 0, "hardware": 1, "write": 2, "read": 3, "access": 4}


@dataclass(frozen=True)
class Breakpoint:
    """An inserted breakpoint or watchpoint; give it to remove_breakpoint."""

    kind: BreakpointKind
    address: int
    length: int

    @property
    def z_type(self) -> int:
        return Z_TYPES[self.kind]


# -- replies ---------------------------------------------------------------------


def error_number(reply: bytes) -> tuple[int | None, str] | None:
    """(errno, text) if `reply` is an error reply, else None.

    `Enn` carries errno in decimal as kgdb writes it (E14 is EFAULT); digits
    that are not all decimal are read as hex, as other stubs write them.
    `E.text` carries a message instead.
    """
    if reply.startswith(b"E."):
        return None, reply[2:].decode("utf-8", "replace")
    match = re.fullmatch(rb"E([0-9a-fA-F]{2,})", reply)
    if match is None:
        return None
    digits = match[1]
    return (int(digits) if digits.isdigit() else int(digits, 16)), ""


def is_output(reply: bytes) -> bool:
    """A console output packet (`O` and hex text), not an `OK`."""
    return reply[:1] == b"O" and reply != b"OK" and re.fullmatch(rb"(?:[0-9a-fA-F]{2})+", reply[1:]) is not None


def output_text(reply: bytes) -> str:
    return decode_hex(reply[1:]).decode("utf-8", "replace")


def parse_thread_id(text: bytes) -> int:
    """kgdb's thread id as a signed number: `fffffffe` is -2. A multiprocess
    `pPID.TID` id gives its TID."""
    if text.startswith(b"p") and b"." in text:
        text = text.split(b".", 1)[1]
    if text.startswith(b"-"):
        return -int(text[1:], 16)
    value = int(text, 16)
    return value - (1 << 32) if 0x80000000 <= value < (1 << 32) else value


def format_thread_id(thread: int) -> bytes:
    return b"%08x" % (thread & 0xFFFFFFFF)


def stop_fields(payload: bytes) -> list[tuple[str, str]]:
    """A `T` stop reply's `name:value;` pairs in order (a bare `swbreak;` has value '')."""
    pairs = []
    for item in payload[3:].split(b";"):
        if item:
            name, _, value = item.partition(b":")
            pairs.append((name.decode("latin-1"), value.decode("latin-1")))
    return pairs


def parse_stop(payload: bytes, layout: tuple[Register, ...] | None, output: str = "") -> Stop:
    """A stop reply: `S`, `T` with fields, or `W`/`X` for an exit. Raises
    ValueError for anything else."""
    kind = payload[:1]
    if kind in (b"W", b"X"):
        status = int(payload[1:].split(b";")[0], 16)
        return Stop(status, "exited" if kind == b"W" else "terminated", output=output, raw=payload)
    if kind not in (b"S", b"T") or not re.fullmatch(rb"[0-9a-fA-F]{2}", payload[1:3]):
        raise ValueError(f"not a stop reply: {payload!r}")
    signal = int(payload[1:3], 16)
    if kind == b"S":
        return Stop(signal, output=output, raw=payload)
    by_number = {r.number: r for r in layout or ()}
    reason = address = thread = cpu = None
    registers: dict[str, int] = {}
    for name, value in stop_fields(payload):
        if name == "thread":
            thread = parse_thread_id(value.encode())
        elif name == "core":
            cpu = int(value, 16)
        elif name in WATCH_REASONS:
            reason, address = name, int(value, 16)
        elif name in BREAK_REASONS:
            reason = name
        elif re.fullmatch(r"[0-9a-fA-F]+", name) and re.fullmatch(r"(?:[0-9a-fA-F]{2})+", value):
            number = int(name, 16)
            key = by_number[number].name if number in by_number else name
            registers[key] = int.from_bytes(bytes.fromhex(value), "little")
    if reason in BREAK_REASONS:
        address = registers.get("rip")
    return Stop(signal, reason, address, thread, cpu, registers, output, payload)


def is_resume(payload: bytes) -> bool:
    """Whether a request resumes the target, so that a stop reply answers it."""
    return payload[:1] in (b"c", b"C", b"s", b"S") or (
        payload.startswith(b"vCont;") and payload[6:7] in (b"c", b"C", b"s", b"S")
    )


# -- target descriptions ---------------------------------------------------------

_XINCLUDE = "{http://www.w3.org/2001/XInclude}include"


def target_registers(document: bytes, include=None) -> tuple[Register, ...]:
    """The registers a target description names, in `g` order.

    `include(href)` returns the text of an `<xi:include>`d annex; without it
    includes are not followed.
    """
    registers: list[Register] = []

    def walk(element):
        for child in element:
            if child.tag == _XINCLUDE and include is not None:
                walk(ElementTree.fromstring(include(child.get("href"))))
            elif child.tag == "reg":
                number = int(child.get("regnum", registers[-1].number + 1 if registers else 0))
                registers.append(Register(child.get("name"), int(child.get("bitsize")) // 8, number))
            else:
                walk(child)

    walk(ElementTree.fromstring(document))  # ElementTree fetches no DTD
    return tuple(registers)
