"""How kgdb gets debug-register slots next to perf and ptrace (DESIGN.md, FACTS.md §5).

- leftover: a slot on every CPU is reserved when gdb inserts a hardware
  breakpoint and released when it is removed (what mainline does).
- session: when a debugger attaches, every slot still free on every CPU is
  reserved, without pre-empting anyone, and all are given back when it goes.
- boot: all four slots of every CPU are reserved when kgdb starts.

Reservations go through the slot accounting as dbg_reserve_bp_slot does, so a
slot is never promised twice.
"""
from __future__ import annotations

import errno

from ..kernel.hw_breakpoint import Breakpoint, SlotAccounting

POLICIES = ("leftover", "session", "boot")


class SlotPolicy:
    def __init__(self, name: str, accounting: SlotAccounting, cpus: int):
        if name not in POLICIES:
            raise ValueError(f"unknown policy {name!r} (one of {', '.join(POLICIES)})")
        self.name = name
        self.accounting = accounting
        self.cpus = cpus
        self.held: list[list[Breakpoint]] = [[] for _ in range(cpus)]
        self.in_use = 0  # breakinfo entries gdb's breakpoints occupy

    # -- lifetime ----------------------------------------------------------------

    def boot(self) -> None:
        """kgdb's late init: it must be able to take all four slots of every CPU.

        Under `boot` it keeps them; otherwise it gives them back at once and
        holds nothing at rest. Raises OSError(ENOSPC) when it cannot.
        """
        self._reserve_all_free()
        if any(len(held) < 4 for held in self.held):
            self._release_all()
            raise OSError(errno.ENOSPC, "Could not allocate hw breakpoints")
        if self.name != "boot":
            self._release_all()

    def attach(self) -> None:
        if self.name == "session":
            self._reserve_all_free()

    def detach(self) -> None:
        """The debugger went away: give back what it took (boot keeps its four)."""
        self.in_use = 0
        if self.name == "boot":
            return
        self._release_all()

    def reserved(self, cpu: int) -> int:
        """Slots kgdb holds on a CPU, filled with a breakpoint or kept for one."""
        return len(self.held[cpu])

    # -- gdb's breakpoints -------------------------------------------------------

    def acquire(self, entries: int) -> None:
        """Slots for `entries` more breakinfo entries on every CPU, or OSError(ENOSPC)."""
        if self.name == "leftover":
            made: list[tuple[int, Breakpoint]] = []
            try:
                for _ in range(entries):
                    for cpu in range(self.cpus):
                        made.append((cpu, self.accounting.reserve_debugger(cpu)))
            except OSError:
                for cpu, reservation in made:
                    self.accounting.release(reservation)
                raise
            for cpu, reservation in made:
                self.held[cpu].append(reservation)
        elif self.in_use + entries > min(len(held) for held in self.held):
            raise OSError(errno.ENOSPC, "no reserved debug register left")
        self.in_use += entries

    def capacity(self, limit: int) -> int:
        """How many breakinfo entries (of `limit`) gdb could hold now, those it holds included.

        An entry needs a slot on every CPU: under `leftover` one more is a
        reservation on each of them (dbg_reserve_bp_slot), so the CPU with
        the fewest free slots decides; the other policies hold theirs already.
        """
        if self.name == "leftover":
            free = min(self.accounting.slots - self.accounting.slots_needed(cpu) for cpu in range(self.cpus))
            return min(limit, self.in_use + free)
        return min(limit, min(len(held) for held in self.held))

    def release(self, entries: int) -> None:
        self.in_use -= entries
        if self.name == "leftover":
            for held in self.held:
                for _ in range(entries):
                    self.accounting.release(held.pop())

    # -- switching ---------------------------------------------------------------

    def switch_to(self, name: str, *, attached: bool) -> "SlotPolicy":
        """The same reservations under another policy, or OSError with nothing changed."""
        if self.in_use:
            raise OSError(errno.EBUSY, "remove the hardware breakpoints first")
        successor = SlotPolicy(name, self.accounting, self.cpus)
        # boot needs every slot that kgdb does not hold already. Refused before
        # anything is released: released and taken back, `session` would take
        # the slots perf freed since it attached as well.
        held_by_others = [self.accounting.slots_needed(cpu) - len(held) for cpu, held in enumerate(self.held)]
        if name == "boot" and any(held_by_others):
            raise OSError(errno.ENOSPC, "Could not allocate hw breakpoints")
        self._release_all()
        if name == "boot":
            successor.boot()
        if attached:
            successor.attach()
        return successor

    def _reserve_all_free(self) -> None:
        for cpu in range(self.cpus):
            while len(self.held[cpu]) < 4:
                try:
                    self.held[cpu].append(self.accounting.reserve_debugger(cpu))
                except OSError:
                    break

    def _release_all(self) -> None:
        for held in self.held:
            while held:
                self.accounting.release(held.pop())
