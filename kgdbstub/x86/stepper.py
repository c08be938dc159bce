"""One instruction at a time, with every memory access it makes seen.

A data breakpoint traps after the instruction that touched its range, so
the processor runs such an instruction on its own and looks at what it
read and wrote. Doing that in the processor's own engine costs about
150 µs: its TLB must let the watched page through and then be flushed
again, instruction counting must be switched on, which throws away
translations made without it (unicorn issue 1606), and a memory hook must
come and go, since any memory hook slows every access. The stepper is a
second engine over the same memory that always counts instructions,
always records accesses and never watches a page, so a step is a copy of
the registers each way and one instruction: about 10 µs.
"""
from __future__ import annotations

import ctypes
from collections.abc import Callable

from unicorn import (
    UC_ARCH_X86,
    UC_ERR_OK,
    UC_HOOK_INSN,
    UC_HOOK_INTR,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_WRITE,
    UC_HOOK_TLB_FILL,
    UC_MEM_FETCH,
    UC_MEM_WRITE,
    UC_MODE_64,
    UC_PROT_ALL,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
    UC_TLB_VIRTUAL,
    Uc,
)
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import HOOK_MEM_ACCESS_CFUNC as _HOOK_MEM_CFUNC
from unicorn.unicorn_py3.unicorn import HOOK_TLB_FILL_CFUNC as _HOOK_TLB_FILL_CFUNC

from . import ucdirect
from .memory import PAGE_MASK, AddressSpace

# (physical address, size, whether it was a write)
Access = tuple[int, int, bool]

DEBUG = 1  # #DB
DR6_BS = 1 << 14

class Stepper:
    def __init__(self, address_space: AddressSpace, host_memory: dict[int, int],
                 fetching: Callable[[int], None]):
        """`host_memory` maps each mapping's physical address to the host memory backing it.

        `fetching(page)` is told of each page it fills its TLB with for an
        instruction fetch, before it runs code there.
        """
        self._address_space = address_space
        self._fetching = fetching
        self._accesses: list[Access] = []
        self._traced = False
        self._context = None
        uc = self._uc = Uc(UC_ARCH_X86, UC_MODE_64)
        for mapping in address_space.mappings:
            uc.mem_map_ptr(mapping.physical, mapping.size, UC_PROT_ALL, host_memory[mapping.physical])
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        # Raw callbacks: these run on every step.
        self._hooks = (_HOOK_TLB_FILL_CFUNC(self._fill_tlb), _HOOK_MEM_CFUNC(self._record))
        uc._Uc__do_hook_add(UC_HOOK_TLB_FILL, self._hooks[0], 1, 0)
        uc._Uc__do_hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._hooks[1], 1, 0)
        # A system call or an interrupt is the host's to handle: not a step here.
        self._left = False
        uc.hook_add(UC_HOOK_INSN, self._leave, None, 1, 0, X.UC_X86_INS_SYSCALL)
        uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        self._rip = ctypes.c_uint64()
        self._rip_reference = ctypes.byref(self._rip)

    def step(self, engine: Uc) -> tuple[list[Access], bool] | None:
        """Run the instruction at `engine`'s RIP, in `engine`'s register state (one iteration of a rep string).

        On success `engine` holds the state after the instruction, and this
        returns its accesses and whether the guest's TF trapped after it. None
        when the instruction did not simply complete (a system call, an
        interrupt or exception, memory with no mapping): `engine` is then
        untouched and the caller runs the instruction itself, where every
        exit is handled. The single-step trap of a guest that set TF is
        not an exit: the instruction completed, and unicorn's own rules
        (no trap after a MOV SS, say) decided whether the trap follows.
        """
        if self._context is None:
            self._context = engine.context_save()
        # The registers are copied each way straight through unicorn (ucdirect.py).
        uc, context = self._uc, self._context._context
        ucdirect.context_save(engine._uch, context)
        ucdirect.context_restore(uc._uch, context)
        ucdirect.reg_read(uc._uch, X.UC_X86_REG_RIP, self._rip_reference)
        start = self._rip.value
        self._accesses = []
        self._left = self._traced = False
        if ucdirect.emu_start(uc, start, 1) != UC_ERR_OK:
            return None
        if self._left:
            return None
        ucdirect.context_save(uc._uch, context)
        ucdirect.context_restore(engine._uch, context)
        return self._accesses, self._traced

    def forget_code(self, begin: int, end: int) -> None:
        """Drop translations of [begin, end): the code there was written to."""
        self._uc.ctl_remove_cache(begin, end)

    def _fill_tlb(self, _engine, address, access, entry_pointer, _) -> bool:
        physical = self._address_space.translate(address)
        if physical is None:
            return False
        entry = entry_pointer.contents
        entry.paddr = physical & PAGE_MASK
        if access == UC_MEM_FETCH:
            self._fetching(address & PAGE_MASK)
            entry.perms = UC_PROT_READ | UC_PROT_EXEC
        else:
            # Never writable and executable at once: unicorn keeps such an
            # entry on its slow write path (see the processor's TLB).
            entry.perms = UC_PROT_READ | UC_PROT_WRITE
        return True

    def _leave(self, uc, *_) -> None:
        self._left = True
        uc.emu_stop()

    def _on_interrupt(self, uc, vector, _) -> None:
        dr6 = uc.reg_read(X.UC_X86_REG_DR6)
        if vector == DEBUG and dr6 & DR6_BS:
            uc.reg_write(X.UC_X86_REG_DR6, 0)  # unicorn's own DR6 only ever says this
            self._traced = True
            uc.emu_stop()
        else:
            self._leave(uc)

    def _record(self, _engine, kind, physical, size, _value, _) -> None:
        self._accesses.append((physical, size, kind == UC_MEM_WRITE))
