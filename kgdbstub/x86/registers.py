"""x86-64 register layouts as debuggers number them.

A layout is the order and size of the registers in a `g` packet. The
`modern` layout is the one our target description announces (gdb's amd64
core and SSE features plus the segment bases). Linux's x86-64 kgdb's own,
which gdb reads without a target description, is kgdb's dbg_reg_def
(core/arch_x86.py).
"""
from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass

from unicorn import UcError
from unicorn import x86_const as X
from unicorn.unicorn import UcContext
from unicorn.unicorn_py3.arch.intel import UcIntel


class RegisterRefused(ValueError):
    """The machine cannot hold this value in this register; nothing was changed.

    A segment register takes only a selector the CPU could load: with no
    descriptor table in the machine that is a null selector (0 to 3) for fs
    and gs, as a real CPU raises #GP for any other.
    """

    def __init__(self, register: "Register", value: int):
        super().__init__(f"{register.name} cannot hold {value:#x}")
        self.register = register
        self.value = value


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
    """Write one register, or raise RegisterRefused with regs unchanged."""
    if register.uc_id is None:
        return
    stored = (value & ((1 << 64) - 1), value >> 64) if register.x87 else value
    try:
        regs._reg_write(register.uc_id, _value_type(register.uc_id), stored)
    except UcError:
        raise RegisterRefused(register, value) from None


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
    """Write a `G` payload (raw bytes) into regs; data must cover the whole layout.

    All or nothing: if one register refuses its value, regs gets back the
    state it had before (segment bases included, which a selector write
    changes) and RegisterRefused is raised.
    """
    before = _snapshot(regs)
    offset = 0
    try:
        for register in layout:
            write_value(regs, register, int.from_bytes(data[offset : offset + register.size], "little"))
            offset += register.size
    except RegisterRefused:
        _restore(regs, before)
        raise


def _snapshot(regs):
    return bytes(regs) if isinstance(regs, UcContext) else regs.context_save()


def _restore(regs, snapshot) -> None:
    if isinstance(regs, UcContext):
        ctypes.memmove(regs.context, snapshot, regs.size)
    else:
        regs.context_restore(snapshot)


def layout_size(layout) -> int:
    return sum(r.size for r in layout)
