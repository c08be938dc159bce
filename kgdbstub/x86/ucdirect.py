"""Unicorn's C functions called straight, where the host calls them at every exit.

The binding's generic wrappers work out each register's type and turn
every error into an exception; on the paths taken at every run of the
engine (a CPU's state loaded and stored, its rip and rflags, the run
itself, and the watched-page step's copies) that costs as much as the
calls. The register functions come from a handle of our own on the
library that declares no argument types: each argument is passed as it is
(a ctypes object, a register number), where checking it against declared
types would cost as much as the call.
"""
from __future__ import annotations

import ctypes

from unicorn import Uc
from unicorn.unicorn_py3.unicorn import uclib

_undeclared = ctypes.CDLL(uclib._name)
context_reg_read, context_reg_write = _undeclared.uc_context_reg_read, _undeclared.uc_context_reg_write
reg_read, reg_write = _undeclared.uc_reg_read, _undeclared.uc_reg_write
context_save, context_restore = uclib.uc_context_save, uclib.uc_context_restore


def emu_start(uc: Uc, start: int, count: int) -> int:
    """Run the engine from `start` (`count` instructions, or 0 for no limit): unicorn's UC_ERR_*.

    An exception a hook of the binding's raised (its syscall and interrupt
    hooks stop the engine and keep it) is raised here, first, as the
    binding's emu_start does.
    """
    uc._hook_exception = None
    status = uclib.uc_emu_start(uc._uch, start, 0, 0, count)
    if uc._hook_exception is not None:
        raise uc._hook_exception
    return status
