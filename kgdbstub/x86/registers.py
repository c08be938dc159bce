"""x86-64 register layouts as debuggers number them.

A layout is the order and size of the registers in a `g` packet. The
`modern` layout is the one our target description announces (gdb's amd64
core and SSE features plus the segment bases). Linux's x86-64 kgdb's own,
which gdb reads without a target description, is kgdb's dbg_reg_def
(core/arch_x86.py).
"""
from __future__ import annotations

import functools

from dataclasses import dataclass

from unicorn import x86_const as X
from unicorn.unicorn_py3.arch.intel import UcIntel


@dataclass(frozen=True)
class Register:
    name: str
    size: int  # bytes
    uc_id: int | None  # None: not emulated, reads as zero and ignores writes
    x87: bool = False  # an 80-bit st(i), read from unicorn as (mantissa, exponent)


def _gprs() -> list[Register]:
    names = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp"]
    regs = [Register(n, 8, getattr(X, f"UC_X86_REG_{n.upper()}")) for n in names]
    regs += [Register(f"r{i}", 8, getattr(X, f"UC_X86_REG_R{i}")) for i in range(8, 16)]
    regs.append(Register("rip", 8, X.UC_X86_REG_RIP))
    return regs


def _segments(size: int) -> list[Register]:
    return [Register("eflags", size, X.UC_X86_REG_EFLAGS)] + [
        Register(n, size, getattr(X, f"UC_X86_REG_{n.upper()}"))
        for n in ("cs", "ss", "ds", "es", "fs", "gs")
    ]


MODERN = tuple(
    _gprs()
    + _segments(4)
    + [Register(f"st{i}", 10, X.UC_X86_REG_FP0 + i, x87=True) for i in range(8)]
    + [
        Register("fctrl", 4, X.UC_X86_REG_FPCW),
        Register("fstat", 4, X.UC_X86_REG_FPSW),
        Register("ftag", 4, X.UC_X86_REG_FPTAG),
        Register("fiseg", 4, X.UC_X86_REG_FCS),
        Register("fioff", 4, X.UC_X86_REG_FIP),
        Register("foseg", 4, X.UC_X86_REG_FDS),
        Register("fooff", 4, X.UC_X86_REG_FDP),
        Register("fop", 4, X.UC_X86_REG_FOP),
    ]
    + [Register(f"xmm{i}", 16, X.UC_X86_REG_XMM0 + i) for i in range(16)]
    + [Register("mxcsr", 4, X.UC_X86_REG_MXCSR)]
    + [Register("fs_base", 8, X.UC_X86_REG_FS_BASE), Register("gs_base", 8, X.UC_X86_REG_GS_BASE)]
)

# What a stop reply carries so that gdb needs no `g` to show where it stopped.
EXPEDITED = ("rbp", "rsp", "rip")


def index_of(layout: tuple[Register, ...], name: str) -> int:
    for number, register in enumerate(layout):
        if register.name == name:
            return number
    raise KeyError(name)


def read_value(regs, register: Register) -> int:
    """The register's value as an unsigned integer; regs is a Uc or a UcContext."""
    if register.uc_id is None:
        return 0
    value = regs._reg_read(register.uc_id, _value_type(register.uc_id), None)
    if register.x87:
        mantissa, exponent = value
        return mantissa | (exponent << 64)
    return value & ((1 << (8 * register.size)) - 1)


def write_value(regs, register: Register, value: int) -> None:
    if register.uc_id is None:
        return
    if register.x87:
        value = (value & ((1 << 64) - 1), value >> 64)
    regs._reg_write(register.uc_id, _value_type(register.uc_id), value)


@functools.cache
def _value_type(uc_id: int):
    # A unicorn context, unlike the engine, reads every register as 64 bits
    # unless told the x86 type (128-bit xmm, 80-bit x87). The binding works
    # the type out by searching at every call: remember it.
    return UcIntel._select_reg_class(uc_id)


def encode(regs, layout) -> bytes:
    """All registers of a layout, little-endian, as in a `g` reply."""
    return b"".join(read_value(regs, r).to_bytes(r.size, "little") for r in layout)


def decode_into(regs, layout, data: bytes) -> None:
    """Write a `G` payload (raw bytes) into regs; data must cover the whole layout."""
    offset = 0
    for register in layout:
        chunk = data[offset : offset + register.size]
        write_value(regs, register, int.from_bytes(chunk, "little"))
        offset += register.size


def layout_size(layout) -> int:
    return sum(r.size for r in layout)
