"""The image's own MOV DRn: a view of DR0-DR7 for each CPU, and the slots what it enables holds.

The machine's debug registers are shared by kgdb, perf and ptrace, so the
image -- the kernel itself -- cannot have them to itself. Its MOV DRn is
intercepted (x86/cpu.py) and works on a view of its own, as a hypervisor
gives a guest its own: it reads back what it wrote, and its DR6 says which
of its own breakpoints fired. Each breakpoint it enables takes a slot the
way a kernel's own breakpoint does: the slot accounting
(kernel/events/hw_breakpoint.c, in hw_breakpoint.py) must find room for a
breakpoint bound to that CPU, and it goes into the first free DR, as
arch_install_hw_breakpoint puts it, so that perf, ptrace and kgdb are then
refused that slot instead of losing theirs. When there is no room the
image's breakpoint is not installed and the console says so, as Linux
warns "Can't find any breakpoint slot". A hit is a #DB no perf event
claims: the machine stops for the debugger with SIGTRAP.
"""
from __future__ import annotations

from collections.abc import Callable

from ..x86.debugregs import SLOTS, Access, DebugRegisters, Slot
from .hw_breakpoint import Breakpoint, BreakpointType
from .perf import PerfEvents

GUEST = "guest"
_TYPE_OF_ACCESS = {Access.EXECUTE: BreakpointType.EXECUTE, Access.WRITE: BreakpointType.WRITE,
                   Access.READ_WRITE: BreakpointType.READ_WRITE}


def _wanted(slot: Slot) -> tuple[int, int, BreakpointType] | None:
    """What an enabled slot of the image's DR7 asks for: (address, length, type) as the hardware matches it."""
    if not slot.enabled or slot.access is Access.IO:
        return None
    if slot.access is Access.EXECUTE:
        return slot.address, 1, BreakpointType.EXECUTE  # a length other than 1 is undefined: taken as 1
    return slot.start, slot.length, _TYPE_OF_ACCESS[slot.access]  # the hardware ignores the low bits


class GuestDebugRegisters:
    def __init__(self, perf: PerfEvents, cpus: int, console: Callable[[bytes], None]):
        self.perf = perf
        self.views = [DebugRegisters() for _ in range(cpus)]
        self._console = console
        # The event each of the image's DR0-DR3 holds on each CPU, and what it was made for.
        self._events: list[list[tuple[Breakpoint, tuple] | None]] = [[None] * SLOTS for _ in range(cpus)]

    def written(self, cpu: int) -> None:
        """The image wrote one of its debug registers on a CPU: its breakpoints follow."""
        view = self.views[cpu]
        for index in range(SLOTS):
            slot = view.slot(index)
            wanted = _wanted(slot)
            held = self._events[cpu][index]
            if held is not None and held[1] == wanted:
                continue
            if held is not None:
                self.perf.unregister(held[0])
                self._events[cpu][index] = None
            if wanted is None:
                if slot.enabled:
                    self._refuse(cpu, index, "I/O breakpoints are not supported")
                continue
            address, length, type = wanted
            try:
                event = self.perf.register(address=address, length=length, type=type, cpu=cpu, task=None,
                                           owner=GUEST)
            except OSError as refused:
                self._refuse(cpu, index, refused.strerror or str(refused))
                continue
            self._events[cpu][index] = (event, wanted)

    def _refuse(self, cpu: int, index: int, why: str) -> None:
        self._console(f"hw_breakpoint: CPU{cpu}: Can't find any breakpoint slot for the kernel's "
                      f"own DR{index}: {why}\n".encode())

    def fired(self, cpu: int, events: list[Breakpoint]) -> None:
        """The image's breakpoints that one #DB reports: their B bits in the image's DR6."""
        b_bits = sum(1 << index for index, held in enumerate(self._events[cpu])
                     if held is not None and any(held[0] is event for event in events))
        self.views[cpu].report(b_bits)
