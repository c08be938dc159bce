"""What Linux's x86-64 kgdb defines for its architecture, in its terms.

arch/x86/include/asm/kgdb.h and arch/x86/kernel/kgdb.c: the register image
gdb reads and writes (`dbg_reg_def`, `dbg_get_reg`, `dbg_set_reg`,
`sleeping_thread_to_gdb_regs`), and arch/x86/mm/maccess.c: which addresses
the debugger may touch at all (`copy_from_kernel_nofault_allowed`).

A task's registers are a unicorn context standing in for its `pt_regs`.
"""
from __future__ import annotations

from dataclasses import dataclass

from unicorn import x86_const as X

BUFMAX = 1024  # asm/kgdb.h: the size of kgdb's packet buffers
NUMREGBYTES = 17 * 8 + 5 * 4  # asm/kgdb.h: what `g` sends and `G` takes
DBG_MAX_REG_NUM = 24
GDB_ORIG_AX = 57
GDB_SP = 7

# kgdb.c's gdb_regs[] is an array of longs big enough for NUMREGBYTES.
GDB_REGS_SIZE = (NUMREGBYTES + 7) // 8 * 8

# Selectors as Linux's entry code leaves them in pt_regs (asm/segment.h).
# The emulated CPUs run without descriptor tables, so their own are 0.
KERNEL_CS, KERNEL_DS, USER_CS, USER_DS = 0x10, 0x18, 0x33, 0x2B
USER_SPACE_END = 1 << 47  # TASK_SIZE_MAX + PAGE_SIZE with 4-level paging
VSYSCALL_PAGE = 0xFFFFFFFFFF600000
PAGE_SIZE = 0x1000


@dataclass(frozen=True)
class RegDef:
    """One entry of dbg_reg_def[]: `uc_id` None is kgdb's offset -1 (no pt_regs field)."""

    name: str
    size: int
    uc_id: int | None


def _def(name: str, size: int, uc: str | None) -> RegDef:
    return RegDef(name, size, getattr(X, f"UC_X86_REG_{uc}") if uc else None)


DBG_REG_DEF = (
    *(_def(n, 8, n.upper()) for n in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp")),
    *(_def(f"r{i}", 8, f"R{i}") for i in range(8, 16)),
    _def("rip", 8, "RIP"),
    _def("eflags", 4, "EFLAGS"),
    _def("cs", 4, "CS"),
    _def("ss", 4, "SS"),
    _def("ds", 4, None),
    _def("es", 4, None),
    _def("fs", 4, None),
    _def("gs", 4, None),
)
OFFSETS = tuple(sum(d.size for d in DBG_REG_DEF[:i]) for i in range(DBG_MAX_REG_NUM))


def _pt_regs_value(regs, regdef: RegDef) -> int:
    if regdef.name in ("cs", "ss"):
        user = regs.reg_read(X.UC_X86_REG_RIP) < USER_SPACE_END
        return {("cs", False): KERNEL_CS, ("ss", False): KERNEL_DS,
                ("cs", True): USER_CS, ("ss", True): USER_DS}[regdef.name, user]
    return regs.reg_read(regdef.uc_id) & ((1 << (8 * regdef.size)) - 1)


def dbg_get_reg(regno: int, mem: bytearray, offset: int, regs) -> str | None:
    """Copy register `regno` of pt_regs into mem[offset:]; its name, or None if there is none.

    As in Linux, orig_rax (57) exists here although `p` never reaches it:
    gdb_cmd_reg_set only asks whether the register exists.
    """
    if regno == GDB_ORIG_AX:
        return "orig_ax"
    if not 0 <= regno < DBG_MAX_REG_NUM:
        return None
    regdef = DBG_REG_DEF[regno]
    if regdef.uc_id is not None:
        mem[offset : offset + regdef.size] = _pt_regs_value(regs, regdef).to_bytes(regdef.size, "little")
    return regdef.name


def dbg_set_reg(regno: int, mem: bytes, regs) -> None:
    """Write register `regno` of pt_regs from mem; rsp and orig_rax are accepted and ignored.

    cs and ss are ignored too (Linux stores them in the exception frame): the
    emulated CPUs have no descriptor tables a selector could name.
    """
    if regno in (GDB_SP, GDB_ORIG_AX) or not 0 <= regno < DBG_MAX_REG_NUM:
        return
    regdef = DBG_REG_DEF[regno]
    if regdef.uc_id is None or regdef.name in ("cs", "ss"):
        return
    value = int.from_bytes(mem[: regdef.size], "little")
    if regdef.size < 8:  # a 4-byte memcpy into a long leaves its upper half
        value |= regs.reg_read(regdef.uc_id) & ~0xFFFFFFFF & (2**64 - 1)
    regs.reg_write(regdef.uc_id, value)


def pt_regs_to_gdb_regs(gdb_regs: bytearray, regs) -> None:
    """Fill gdb_regs from a task that is on a CPU; ds, es, fs and gs keep what the buffer held."""
    for regno in range(DBG_MAX_REG_NUM):
        dbg_get_reg(regno, gdb_regs, OFFSETS[regno], regs)


def gdb_regs_to_pt_regs(gdb_regs: bytes, regs) -> None:
    for regno in range(DBG_MAX_REG_NUM):
        dbg_set_reg(regno, gdb_regs[OFFSETS[regno]:], regs)


def sleeping_thread_to_gdb_regs(gdb_regs: bytearray, saved) -> None:
    """A task on no CPU: what switch_to saved, and zeros.

    rip is 0, the general registers are 0, rbp comes from the task's
    inactive frame and rsp is its saved kernel stack pointer. Linux's x86-64
    version also means to set eflags, cs and ss, but writes them through a
    u32 pointer indexed by their register numbers, which lands in r8 and r9
    (zeroed just after): those three keep whatever gdb_regs held before.
    """
    put = lambda regno, value: gdb_regs.__setitem__(  # noqa: E731
        slice(OFFSETS[regno], OFFSETS[regno] + 8), value.to_bytes(8, "little"))
    for regno in (0, 1, 2, 3, 4, 5):
        put(regno, 0)
    put(6, saved.reg_read(X.UC_X86_REG_RBP))
    for regno in range(8, 16):
        put(regno, 0)
    put(16, 0)
    put(GDB_SP, saved.reg_read(X.UC_X86_REG_RSP))


def copy_from_kernel_nofault_allowed(address: int) -> bool:
    """arch/x86/mm/maccess.c: no user addresses, no vsyscall page, canonical only."""
    if address < USER_SPACE_END:
        return False
    if address & ~(PAGE_SIZE - 1) == VSYSCALL_PAGE:
        return False
    return address >= 0xFFFF800000000000  # canonical with 48 virtual address bits
