"""The CPUs: one unicorn engine that runs whichever CPU's registers are loaded.

CPUs take turns on a single engine, so all of them share one memory and one
translation cache and the machine stays deterministic. A CPU's register
state lives in a unicorn context between turns; `run` loads it, executes
until the CPU leaves to the host (a hypercall, a system call, an exception)
and stores it back.
"""
from __future__ import annotations

from dataclasses import dataclass

from unicorn import (
    UC_ARCH_X86,
    UC_CTL_IO_WRITE,
    UC_CTL_TLB_FLUSH,
    UC_ERR_EXCEPTION,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_INSN_INVALID,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_INSN,
    UC_HOOK_INTR,
    UC_HOOK_TLB_FILL,
    UC_MODE_64,
    UC_PROT_ALL,
    UC_TLB_VIRTUAL,
    Uc,
    UcError,
)
from unicorn import x86_const as X

from .memory import PAGE_MASK, AddressSpace, MemoryFault

HLT = 0xF4
INT3 = 0xCC

# Exception vectors the host reports.
DIVIDE_ERROR = 0
BREAKPOINT = 3
INVALID_OPCODE = 6
GENERAL_PROTECTION = 13
PAGE_FAULT = 14


@dataclass(frozen=True)
class Hypercall:
    """The CPU executed `hlt`: a request to the host, rip is past it."""


@dataclass(frozen=True)
class SystemCall:
    """The CPU executed `syscall`: rip is past it."""


@dataclass(frozen=True)
class Stepped:
    """A single-step finished the one instruction it was asked to run."""


@dataclass(frozen=True)
class CpuException:
    """An exception the image does not handle; rip is where x86 leaves it.

    For a breakpoint (int3) rip is past the int3; for a fault it is at the
    faulting instruction, and address is the page-fault address if any.
    """

    vector: int
    address: int | None = None


@dataclass(frozen=True)
class HookStop:
    """A hook asked the CPU to stop; reason is whatever the hook gave."""

    reason: object


Exit = Hypercall | SystemCall | Stepped | CpuException | HookStop


class Processor:
    def __init__(self, address_space: AddressSpace):
        self.address_space = address_space
        uc = self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        for mapping in address_space.mappings:
            uc.mem_map(mapping.physical, mapping.size, UC_PROT_ALL)
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        uc.hook_add(UC_HOOK_TLB_FILL, self._fill_tlb)
        uc.hook_add(UC_HOOK_INSN, self._on_syscall, None, 1, 0, X.UC_X86_INS_SYSCALL)
        uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        self._blank = uc.context_save()
        self._stop: Exit | None = None
        self._unmapped: int | None = None
        self.running_cpu: int | None = None

    # -- register states -------------------------------------------------

    def new_context(self, **registers: int):
        """A fresh register state (64-bit mode, flat segments) with some registers set."""
        self.uc.context_restore(self._blank)
        context = self.uc.context_save()
        for name, value in registers.items():
            context.reg_write(getattr(X, f"UC_X86_REG_{name.upper()}"), value)
        return context

    def copy_context(self, context):
        self.uc.context_restore(context)
        return self.uc.context_save()

    # -- memory ------------------------------------------------------------

    def read(self, address: int, size: int) -> bytes:
        return b"".join(
            bytes(self.uc.mem_read(physical, length))
            for _, physical, length in self.address_space.pieces(address, size)
        )

    def write(self, address: int, data: bytes) -> None:
        pieces = list(self.address_space.pieces(address, len(data)))  # fault before writing anything
        offset = 0
        for _, physical, length in pieces:
            self.uc.mem_write(physical, bytes(data[offset : offset + length]))
            offset += length
        # Code may live there: drop translations made from the old bytes.
        self.uc.ctl_remove_cache(address, address + len(data))

    def readable(self, address: int) -> bool:
        return self.address_space.translate(address) is not None

    # -- execution -----------------------------------------------------------

    def run(self, cpu: int, context, *, step: bool = False) -> Exit:
        """Run one CPU from the state in context until it leaves to the host."""
        uc = self.uc
        uc.context_restore(context)
        start = uc.reg_read(X.UC_X86_REG_RIP)
        self._stop = None
        self._unmapped = None
        self.running_cpu = cpu
        try:
            if step:
                # Translations made without an instruction count would run on
                # past the one instruction (unicorn issue 1606).
                uc.ctl_remove_cache(start, start + 1)
                uc.emu_start(start, 0, count=1)
            else:
                uc.emu_start(start, 0)
            exit = self._stop or self._finished(start, step)
        except UcError as error:
            exit = self._stop or self._fault(error)
        finally:
            self.running_cpu = None
            uc.context_update(context)
        return exit

    def stop(self, reason: object) -> None:
        """From inside a hook: stop the running CPU before the hooked instruction."""
        self._stop = HookStop(reason)
        self.uc.emu_stop()

    def flush_tlb(self) -> None:
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    def _finished(self, start: int, step: bool) -> Exit:
        rip = self.uc.reg_read(X.UC_X86_REG_RIP)
        if step:
            executed_hlt = rip == start + 1 and self._byte(start) == HLT
            return Hypercall() if executed_hlt else Stepped()
        if self._byte(rip - 1) == HLT:
            return Hypercall()
        # emu_start's `until` address 0: the code jumped to address 0.
        return CpuException(PAGE_FAULT, rip)

    def _fault(self, error: UcError) -> Exit:
        if error.errno in (UC_ERR_FETCH_UNMAPPED, UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_ERR_EXCEPTION):
            return CpuException(PAGE_FAULT, self._unmapped)
        if error.errno == UC_ERR_INSN_INVALID:
            return CpuException(INVALID_OPCODE)
        return CpuException(GENERAL_PROTECTION)

    def _byte(self, address: int) -> int | None:
        try:
            return self.read(address, 1)[0]
        except MemoryFault:
            return None

    # -- hooks -------------------------------------------------------------

    def _fill_tlb(self, uc, address, access, entry, _):
        physical = self.address_space.translate(address)
        if physical is None:
            self._unmapped = address
            return False
        entry.paddr = physical & PAGE_MASK
        entry.perms = UC_PROT_ALL
        return True

    def _on_syscall(self, uc, _):
        self._stop = SystemCall()
        uc.emu_stop()

    def _on_interrupt(self, uc, vector, _):
        self._stop = CpuException(vector)
        uc.emu_stop()
