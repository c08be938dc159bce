"""The few x86-64 instructions the debug model must recognise by their bytes.

The emulator lets unicorn run every instruction, but three kinds have debug
semantics unicorn does not give (Intel SDM): a repeated string instruction
is one instruction to instruction breakpoints and RF, however many
iterations it makes (Vol. 3 §18.3.1.1); MOV to and from DR0-DR7 must reach
the machine's own debug registers (Vol. 2, "MOV--Move to/from Debug
Registers"); and MOV SS holds debug exceptions off until the next
instruction has run (Vol. 3 §6.8.3). POP SS, the other instruction that
does so, is invalid in 64-bit mode.

Only what those rules need is decoded: prefixes (Vol. 2 §2.1-2.2), the
opcode, and for MOV SS its ModR/M operand's length.
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_LENGTH = 15  # longer is #GP, whatever the bytes
LEGACY_PREFIXES = frozenset({0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67})
LOCK, REPNE, REP, ADDRESS_SIZE = 0xF0, 0xF2, 0xF3, 0x67
# INS, OUTS, MOVS, CMPS, STOS, LODS, SCAS: the instructions REP repeats.
STRING_OPCODES = frozenset({0x6C, 0x6D, 0x6E, 0x6F, 0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF})
TWO_BYTE = 0x0F
MOV_FROM_DR, MOV_TO_DR = 0x21, 0x23  # 0F 21 /r, 0F 23 /r
MOV_SREG = 0x8E  # 8E /r: MOV Sreg, r/m16; SS is Sreg 2
SS = 2
REX_R, REX_B = 0b0100, 0b0001


def _is_rex(byte: int) -> bool:
    return 0x40 <= byte <= 0x4F


@dataclass(frozen=True)
class Prefixes:
    length: int
    lock: bool
    repeat: bool  # F2 or F3
    address32: bool  # 67: 32-bit addresses (and ECX as the count)
    rex: int  # the REX byte just before the opcode, 0 if none (a REX before a legacy prefix is ignored)


def prefixes(code: bytes) -> Prefixes | None:
    """The prefixes at the start of code; None if they run past the longest instruction."""
    lock = repeat = address32 = False
    rex = 0
    for index, byte in enumerate(code[:MAX_LENGTH]):
        if byte in LEGACY_PREFIXES:
            lock |= byte == LOCK
            repeat |= byte in (REP, REPNE)
            address32 |= byte == ADDRESS_SIZE
            rex = 0
        elif _is_rex(byte):
            rex = byte
        else:
            return Prefixes(index, lock, repeat, address32, rex)
    return None


@dataclass(frozen=True)
class RepString:
    """A string instruction with a REP, REPE or REPNE prefix."""

    length: int
    count_mask: int  # the bits of RCX that count: ECX with an address-size prefix

    def done(self, rcx: int) -> bool:
        return not rcx & self.count_mask


def rep_string(code: bytes) -> RepString | None:
    found = prefixes(code)
    if found is None or not found.repeat or found.length >= len(code) or code[found.length] not in STRING_OPCODES:
        return None
    return RepString(found.length + 1, 0xFFFF_FFFF if found.address32 else 2**64 - 1)


@dataclass(frozen=True)
class MovDebugRegister:
    """MOV r64, DRn or MOV DRn, r64. The ModR/M mod bits are ignored (always a register)."""

    length: int
    debug_register: int  # 0-15: REX.R reaches the undefined DR8-DR15
    register: int  # the general register, 0 (RAX) to 15 (R15), as ModR/M r/m and REX.B number them
    to_debug_register: bool
    lock: bool


def mov_debug_register(code: bytes) -> MovDebugRegister | None:
    found = prefixes(code)
    if found is None:
        return None
    at = found.length
    if at + 3 > min(len(code), MAX_LENGTH) or code[at] != TWO_BYTE or code[at + 1] not in (MOV_FROM_DR, MOV_TO_DR):
        return None
    modrm = code[at + 2]
    return MovDebugRegister(
        length=at + 3,
        debug_register=(modrm >> 3 & 7) | (8 if found.rex & REX_R else 0),
        register=(modrm & 7) | (8 if found.rex & REX_B else 0),
        to_debug_register=code[at + 1] == MOV_TO_DR,
        lock=found.lock,
    )


def _modrm_operand_length(modrm: int, sib: int | None) -> int:
    """Bytes after the ModR/M byte: SIB and displacement (the same with 32- and 64-bit addresses)."""
    mod, rm = modrm >> 6, modrm & 7
    if mod == 3:
        return 0
    extra = 0
    if rm == 4:
        extra = 1
        if sib is None:
            return -1
        if mod == 0 and sib & 7 == 5:
            return extra + 4
    elif mod == 0 and rm == 5:
        return 4  # RIP-relative
    return extra + {0: 0, 1: 1, 2: 4}[mod]


def mov_ss_length(code: bytes) -> int | None:
    """The length of a MOV SS at the start of code, None if it is not one."""
    found = prefixes(code)
    if found is None:
        return None
    at = found.length
    if at + 2 > len(code) or code[at] != MOV_SREG or code[at + 1] >> 3 & 7 != SS:
        return None
    modrm = code[at + 1]
    extra = _modrm_operand_length(modrm, code[at + 2] if at + 2 < len(code) else None)
    length = at + 2 + extra
    if extra < 0 or length > min(len(code), MAX_LENGTH):
        return None
    return length


_OPCODES = ((bytes([TWO_BYTE, MOV_FROM_DR]), None), (bytes([TWO_BYTE, MOV_TO_DR]), None), (bytes([MOV_SREG]), SS))


def candidate_starts(code: bytes, first: int, last: int) -> set[int]:
    """Offsets in [first, last) of code where a MOV DRn or a MOV SS may start.

    Decoding x86 backwards is ambiguous, so this over-approximates: every
    opcode match, and every run of prefixes before one, is a candidate. An
    instruction that really starts at a candidate is one of them, and the
    emulator decodes it there; the others are never reached. `code` holds
    the bytes from offset 0 to at least MAX_LENGTH past last.
    """
    found = set()
    for opcode, reg in _OPCODES:
        at = code.find(opcode, max(0, first))
        while at != -1 and at < last + MAX_LENGTH:
            modrm = at + len(opcode)
            if reg is None or (modrm < len(code) and code[modrm] >> 3 & 7 == reg):
                start = at
                while True:
                    if first <= start < last:
                        found.add(start)
                    start -= 1
                    if start < first or at - start >= MAX_LENGTH or not (
                            code[start] in LEGACY_PREFIXES or _is_rex(code[start])):
                        break
            at = code.find(opcode, at + 1)
    return found
