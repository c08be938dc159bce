"""kgdb's software breakpoint table, kgdb_break[] of kernel/debug/debug_core.c.

1000 entries, each UNDEFINED, SET (gdb asked for it), ACTIVE (its int3 is
in memory while the machine runs) or REMOVED (gdb took it out; the entry
keeps its address and is reused only for that address). As in Linux,
REMOVED entries go back to UNDEFINED only when every breakpoint is removed
at once (`?`, `D`, `k`): a debugger that sets and removes breakpoints at
more than 1000 places in between runs out of entries. With `keep_removed`
False (the `modern` dialect) a removed breakpoint frees its entry at once.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from enum import Enum

KGDB_MAX_BREAKPOINTS = 1000


class State(Enum):
    UNDEFINED = 0
    SET = 1
    ACTIVE = 2
    REMOVED = 3


@dataclass
class Entry:
    state: State = State.UNDEFINED
    address: int = 0
    saved: bytes = b""  # the byte the int3 replaced, while ACTIVE


class BreakpointError(Exception):
    def __init__(self, code: int):
        super().__init__(errno.errorcode.get(code, str(code)))
        self.errno = code


class SoftwareBreakpoints:
    def __init__(self, size: int = KGDB_MAX_BREAKPOINTS, *, keep_removed: bool = True):
        self.entries = [Entry() for _ in range(size)]
        self._keep_removed = keep_removed
        self._by_address: dict[int, Entry] = {}  # SET or ACTIVE entries

    def set(self, address: int) -> None:
        """dbg_set_sw_break, once the address is validated."""
        if address in self._by_address:
            raise BreakpointError(errno.EEXIST)
        entry = next((e for e in self.entries if e.state is State.REMOVED and e.address == address), None)
        if entry is None:
            entry = next((e for e in self.entries if e.state is State.UNDEFINED), None)
        if entry is None:
            raise BreakpointError(errno.E2BIG)
        entry.state, entry.address = State.SET, address
        self._by_address[address] = entry

    def remove(self, address: int) -> None:
        """dbg_remove_sw_break: only a SET entry can be removed (the machine is stopped)."""
        entry = self._by_address.get(address)
        if entry is None or entry.state is not State.SET:
            raise BreakpointError(errno.ENOENT)
        entry.state = State.REMOVED if self._keep_removed else State.UNDEFINED
        del self._by_address[address]

    def remove_all(self) -> list[Entry]:
        """dbg_remove_all_break: every entry UNDEFINED; returns the ACTIVE ones to restore."""
        active = [Entry(e.state, e.address, e.saved) for e in self.entries if e.state is State.ACTIVE]
        for entry in self.entries:
            entry.state = State.UNDEFINED
        self._by_address.clear()
        return active

    def addresses(self) -> list[int]:
        return list(self._by_address)

    def entry_at(self, address: int) -> Entry | None:
        return self._by_address.get(address)

    def __contains__(self, address: int) -> bool:
        return address in self._by_address

    def __len__(self) -> int:
        return len(self._by_address)
