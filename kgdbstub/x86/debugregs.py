"""x86 debug registers: DR0-DR3, DR6 and DR7 of one CPU, with their exact rules.

This module owns the encoding (which DR7 bits mean what), the validity rules
(alignment, lengths, no I/O breakpoints) and the match rules (an execute slot
matches its address; a data slot matches any access overlapping its range).
Everything that makes the emulator notice an access is derived from the
slots these registers describe.
"""
from __future__ import annotations

import errno
from enum import IntEnum
from typing import NamedTuple

SLOTS = 4
DR7_ALWAYS_ONE = 1 << 10
DR7_GD = 1 << 13
# L0-G3, LE, GE, GD and the four R/W-LEN fields. Bits 11, 12, 14 and 15
# (RTM, IR, TR on some models) are not modelled and read as 0.
DR7_WRITABLE = 0xFFFF23FF
DR6_B_BITS = 0xF
DR6_BD = 1 << 13  # general detect: a MOV DRn while DR7.GD was set
DR6_BS = 1 << 14  # single step
DR6_BT = 1 << 15  # task switch
DR6_WRITABLE = DR6_B_BITS | DR6_BD | DR6_BS | DR6_BT
DR6_RESERVED_ONES = 0xFFFF0FF0  # bits that read as 1 on x86-64 (BLD and RTM among them: not modelled)


class Access(IntEnum):
    """The R/W field of a slot."""

    EXECUTE = 0b00
    WRITE = 0b01
    IO = 0b10
    READ_WRITE = 0b11


_LENGTH_OF_FIELD = {0b00: 1, 0b01: 2, 0b11: 4, 0b10: 8}
_ACCESS_OF_FIELD = tuple(Access(field) for field in range(4))
_FIELD_OF_LENGTH = {v: k for k, v in _LENGTH_OF_FIELD.items()}


class DebugRegisterError(OSError):
    def __init__(self, message: str):
        super().__init__(errno.EINVAL, message)


class DebugRegisterFault(Exception):
    """A value MOV DRn may not write: the processor raises #GP(0)."""


class Slot(NamedTuple):
    """One of DR0-DR3 with its DR7 fields; made afresh whenever asked for."""

    index: int
    address: int
    access: Access
    length: int
    enabled: bool

    @property
    def start(self) -> int:
        # The hardware ignores the address bits below the length.
        return self.address & ~(self.length - 1)

    def overlaps(self, address: int, size: int) -> bool:
        start = self.start
        return address < start + self.length and start < address + size

    def matches_data(self, address: int, size: int, write: bool) -> bool:
        if not self.enabled or self.access is Access.EXECUTE:
            return False
        if not write and self.access is not Access.READ_WRITE:
            return False
        return self.overlaps(address, size)

    def matches_execute(self, address: int) -> bool:
        return self.enabled and self.access is Access.EXECUTE and address == self.address


def check_slot(address: int, access: Access, length: int) -> None:
    """Refuse what Linux refuses to program (arch_build_bp_info), with EINVAL."""
    if length not in _FIELD_OF_LENGTH:
        raise DebugRegisterError(f"length {length} is not 1, 2, 4 or 8")
    if access is Access.IO:
        raise DebugRegisterError("I/O breakpoints are not supported")
    if access is Access.EXECUTE and length != 1:
        raise DebugRegisterError("an execute breakpoint has length 1")
    if address % length:
        raise DebugRegisterError(f"address {address:#x} is not aligned to its length {length}")


def dr7_field(access: Access, length: int) -> int:
    return access | (_FIELD_OF_LENGTH[length] << 2)


class DebugRegisters:
    """One CPU's debug registers."""

    def __init__(self):
        self.dr = [0] * SLOTS
        self.dr6 = DR6_RESERVED_ONES
        self.dr7 = DR7_ALWAYS_ONE

    def slot(self, index: int) -> Slot:
        field = (self.dr7 >> (16 + 4 * index)) & 0xF
        enabled = bool(self.dr7 & (0b11 << (2 * index)))
        return Slot(index, self.dr[index], _ACCESS_OF_FIELD[field & 0b11], _LENGTH_OF_FIELD[field >> 2], enabled)

    def slots(self) -> list[Slot]:
        return [self.slot(i) for i in range(SLOTS)]

    def enabled_slots(self) -> list[Slot]:
        return [s for s in self.slots() if s.enabled]

    def install(self, index: int, address: int, access: Access, length: int) -> None:
        """Program a slot and enable it globally, as Linux does.

        Like the hardware, this takes an unaligned address (and then watches
        the aligned range around it); refusing one is Linux's business.
        """
        if length not in _FIELD_OF_LENGTH or access is Access.IO:
            raise DebugRegisterError(f"no DR7 encoding for {access.name} of length {length}")
        self.dr[index] = address
        mask = (0xF << (16 + 4 * index)) | (0b11 << (2 * index))
        self.dr7 = (self.dr7 & ~mask) | (dr7_field(access, length) << (16 + 4 * index)) | (0b10 << (2 * index))

    def clear(self, index: int) -> None:
        self.dr[index] = 0
        self.dr7 &= ~((0xF << (16 + 4 * index)) | (0b11 << (2 * index)))

    def write_dr7(self, value: int) -> None:
        self.dr7 = (value | DR7_ALWAYS_ONE) & 0xFFFFFFFF

    def execute_hits(self, address: int) -> list[int]:
        return [s.index for s in self.enabled_slots() if s.matches_execute(address)]

    def data_hits(self, address: int, size: int, write: bool) -> list[int]:
        return [s.index for s in self.enabled_slots() if s.matches_data(address, size, write)]

    def report(self, b_bits: int, *, single_step: bool = False, general_detect: bool = False) -> None:
        """Set DR6 for a debug exception (SDM Vol. 3 §18.2.3).

        B0-B3 become the slots that matched (the SDM lets a processor clear
        them at a debug exception; this one always does, and sets none for
        a slot DR7 does not enable). BD and BS are set as the exception
        says; they and BT are never cleared by the processor, only by a
        write to DR6.
        """
        self.dr6 = (self.dr6 & ~DR6_B_BITS) | b_bits | (DR6_BS if single_step else 0) | (
            DR6_BD if general_detect else 0)

    # -- MOV to and from DRn (SDM Vol. 2, MOV--Move to/from Debug Registers) --

    def read(self, index: int) -> int:
        """DR0-DR3, DR6 or DR7 as MOV r64, DRn reads it."""
        if index < SLOTS:
            return self.dr[index]
        return self.dr6 if index == 6 else self.dr7

    def write(self, index: int, value: int) -> None:
        """MOV DRn, r64 for DR0-DR3, DR6 and DR7.

        DR0-DR3 take any 64-bit value. A 1 in bits 63:32 of DR6 or DR7 is
        #GP, raised here as DebugRegisterFault; nothing changes then.
        Reserved bits read as the processor fixes them.
        """
        value &= 2**64 - 1
        if index < SLOTS:
            self.dr[index] = value
            return
        if value >> 32:
            raise DebugRegisterFault(f"DR{index} has no bits above 31: {value:#x}")
        if index == 6:
            self.dr6 = (value & DR6_WRITABLE) | DR6_RESERVED_ONES
        else:
            self.dr7 = (value & DR7_WRITABLE) | DR7_ALWAYS_ONE
