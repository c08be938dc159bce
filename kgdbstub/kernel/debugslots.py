"""Who holds each debug register of each CPU: the one place DRs are written.

perf events (and through them ptrace) are installed here when they are
scheduled on a CPU, kgdb's breakpoints when the debugger is left; every
install takes the first DR nobody holds, as arch_install_hw_breakpoint does.
"""
from __future__ import annotations

from ..x86.cpu import Processor
from ..x86.debugregs import SLOTS, Access


class DebugSlots:
    def __init__(self, processor: Processor):
        self.processor = processor
        self.registers = processor.debug_registers
        self.owners: list[list[object | None]] = [[None] * SLOTS for _ in self.registers]

    def install(self, cpu: int, owner: object, address: int, length: int, access: Access) -> int | None:
        """Put owner's breakpoint in the first free DR of a CPU; None if all are held."""
        for index, holder in enumerate(self.owners[cpu]):
            if holder is None:
                self.registers[cpu].install(index, address, access, length)
                self.owners[cpu][index] = owner
                self.processor.debug_registers_changed(cpu)
                return index
        return None

    def uninstall(self, cpu: int, owner: object) -> None:
        for index, holder in enumerate(self.owners[cpu]):
            if holder is owner:
                self.registers[cpu].clear(index)
                self.owners[cpu][index] = None
        self.processor.debug_registers_changed(cpu)

    def owner(self, cpu: int, index: int) -> object | None:
        return self.owners[cpu][index]

    def held_by(self, cpu: int, owner: object) -> list[int]:
        return [i for i, holder in enumerate(self.owners[cpu]) if holder is owner]
