"""A booted minikernel driven from Python, for the tests in this folder.

The machine is run only through Debugger.resume, so that kgdb's entry and
exit work (disarming DR7, putting kgdb's pieces into free DRs) happens as
it does under a server. How long it runs is decided by a condition checked
between two CPU turns, never by the wall clock: the condition is evaluated
where Kernel.run asks whether it is interrupted, and when it holds the test
requests the interrupt the way a debugger's Ctrl-C would.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from kgdbstub.core.breakinfo import Piece
from kgdbstub.core.debugger import SIGINT, SIGTRAP, Debugger, StopEvent
from kgdbstub.gdbstub.dialects import DIALECTS
from kgdbstub.kernel.hw_breakpoint import Breakpoint, BreakpointType, register_length
from kgdbstub.kernel.image import Image
from kgdbstub.kernel.kernel import Kernel
from kgdbstub.kernel.ptrace import dr7_for
from kgdbstub.kernel.tasks import State
from kgdbstub.x86.debugregs import Access
from unicorn.x86_const import UC_X86_REG_EFLAGS as EFLAGS
from unicorn.x86_const import UC_X86_REG_RIP as RIP

ELF = Path(__file__).resolve().parents[2] / "targets" / "minikernel" / "minikernel.elf"
INIT, LOOPER = 1, 2
RESUME_FLAG = 1 << 16  # RFLAGS.RF
X, W, RW = BreakpointType.EXECUTE, BreakpointType.WRITE, BreakpointType.READ_WRITE
ACCESS_OF = {X: Access.EXECUTE, W: Access.WRITE, RW: Access.READ_WRITE}
# Rounds a run may take before the test gives up on its condition: a
# failing condition must fail the test, not hang it.
RUN_LIMIT = 2000


@functools.cache
def image() -> Image:
    """The ELF is parsed once; an Image is only read from."""
    return Image(ELF)


class Machine:
    """A two-CPU minikernel booted to kgdbwait, past kgdb's late init."""

    def __init__(self, *, policy: str = "leftover", cpus: int = 2,
                 early: Callable[[Kernel], object] | None = None, late_init: bool = True,
                 dialect: str = "modern"):
        self.kernel = Kernel(image(), cpus=cpus)
        self.dialect = DIALECTS[dialect]
        self.debugger = Debugger(self.kernel, policy=policy, **self.dialect.core)
        if early is not None:
            early(self.kernel)
        boot = self.resume()
        assert (boot.signal, boot.thread) == (SIGTRAP, INIT), f"boot did not stop in kgdbwait: {boot}"
        if late_init:
            self.debugger.late_init()

    def session(self, **options):
        """A session of the machine's dialect (its own class: kgdb.py's for `kgdb`)."""
        return self.dialect.session(self.debugger, self.dialect, **options)

    # -- the image ------------------------------------------------------------

    def address(self, symbol: str) -> int:
        return self.kernel.image.address_of(symbol)

    def u64(self, symbol: str) -> int:
        return self.kernel.read_u64(self.address(symbol))

    @property
    def jiffies(self) -> int:
        return self.u64("jiffies")

    @property
    def iterations(self) -> int:
        return self.u64("looper_iterations")

    @property
    def looper(self):
        return self.kernel.tasks[LOOPER]

    def looper_cpu(self) -> int | None:
        return self.looper.cpu

    def looper_mid_iteration(self) -> bool:
        """Whether the looper's latest call of looper_tick hit but its iteration is not yet counted.

        Its user state (the oldest frame when an interrupt or system call
        runs in its context) is then at the return from looper_tick, or at
        looper_tick with the breakpoint's RF pending: a turn can end, and
        the tracer can stop it, between any two blocks.
        """
        looper = self.looper
        user = looper.frames[0] if looper.frames else looper.regs
        rip, tick = user.reg_read(RIP), self.address("looper_tick")
        # At looper_tick the call has hit only if its breakpoint stopped it there (RF is set).
        return rip == self.looper_tick_return() or (rip == tick and bool(user.reg_read(EFLAGS) & RESUME_FLAG))

    def looper_calls(self) -> int:
        """looper_tick calls that have hit so far."""
        return self.iterations + self.looper_mid_iteration()

    @functools.cache
    def looper_tick_return(self) -> int:
        """Where looper_main's call of looper_tick returns to."""
        main, tick = self.address("looper_main"), self.address("looper_tick")
        code = self.kernel.read(main, 0x100)
        for offset in range(len(code) - 5):
            if code[offset] == 0xE8 and main + offset + 5 + int.from_bytes(code[offset + 1:offset + 5], "little",
                                                                            signed=True) == tick:
                return main + offset + 5
        raise AssertionError("looper_main does not call looper_tick")

    # -- running ----------------------------------------------------------------

    def run(self, until: Callable[[], bool], *, observe: Callable[[], None] | None = None,
            limit: int = RUN_LIMIT) -> list[StopEvent]:
        """Resume until until() holds between two CPU turns; the debugger stops met on the way.

        observe() is called between every two CPU turns (and after every
        debugger stop). Fails if until() does not hold within `limit` rounds.
        """
        kernel, debugger = self.kernel, self.debugger
        deadline = kernel.ticks + limit
        reached = False
        stops: list[StopEvent] = []

        def between_turns() -> None:
            nonlocal reached
            if observe is not None:
                observe()
            if not reached and (until() or kernel.ticks > deadline):
                reached = True
                debugger.request_interrupt()

        def run(interrupted=lambda: False, *rest, **options):
            def checked() -> bool:
                between_turns()
                return interrupted()
            return type(kernel).run(kernel, checked, *rest, **options)

        kernel.run = run  # this instance only; removed below
        try:
            while True:
                event = debugger.resume()
                if event.signal == SIGINT and reached:
                    break
                stops.append(event)
                between_turns()
        finally:
            del kernel.run
        assert kernel.ticks <= deadline, f"still not there after {limit} rounds"
        return stops

    def resume(self, *, limit: int = RUN_LIMIT, expect_stop: bool = True) -> StopEvent:
        """Debugger.resume, failing (not hanging) if nothing stops the machine within `limit` rounds.

        With expect_stop=False the run just ends there, with the SIGINT stop of an interrupt.
        """
        kernel, debugger = self.kernel, self.debugger
        deadline = kernel.ticks + limit

        def run(interrupted=lambda: False, *rest, **options):
            def checked() -> bool:
                if kernel.ticks > deadline:
                    debugger.request_interrupt()
                return interrupted()
            return type(kernel).run(kernel, checked, *rest, **options)

        kernel.run = run
        try:
            event = debugger.resume()
        finally:
            del kernel.run
        assert not (expect_stop and event.signal == SIGINT and kernel.ticks > deadline), f"no stop within {limit} rounds"
        return event

    def on_debug_exception(self, callback: Callable[[int], None]) -> None:
        """Call callback(cpu) at every debug exception, as the CPU raises it (before its owners see it).

        A run can go many hits without reaching a turn boundary; this sees
        each one on the CPU it happens on.
        """
        processor = self.kernel.processor
        handler = processor.debug_handler

        def observed(cpu, exception):
            callback(cpu)
            return handler(cpu, exception)

        processor.debug_handler = observed

    def run_rounds(self, rounds: int, **options) -> list[StopEvent]:
        end = self.kernel.ticks + rounds
        return self.run(lambda: self.kernel.ticks >= end, **options)

    # -- looking at the slots -----------------------------------------------------

    def drs_of(self, cpu: int, owner: object) -> list[int]:
        return self.kernel.debug_slots.held_by(cpu, owner)

    def kgdb_drs(self, cpu: int) -> list[int]:
        return [i for i, owner in enumerate(self.kernel.debug_slots.owners[cpu]) if isinstance(owner, Piece)]

    def check_register_matches(self, cpu: int, dr: int, event: Breakpoint) -> None:
        """The DR really holds the event: its address, type, length, enabled in DR7."""
        slot = self.kernel.processor.debug_registers[cpu].slot(dr)
        assert slot.enabled, (cpu, dr)
        length = register_length(event.type, event.length)  # an execute one: DR7 LEN 00
        assert (slot.address, slot.access, slot.length) == (event.address, ACCESS_OF[event.type], length)

    # -- ptrace ---------------------------------------------------------------------

    def trace(self, index: int = 0, symbol: str = "looper_tick", type: BreakpointType = X, length: int = 1,
              pid: int = LOOPER):
        """A tracer sets one hardware breakpoint in a virtual DR, as gdb does with POKEUSER."""
        ptrace = self.kernel.ptrace
        tracee = ptrace.attach(pid)
        ptrace.poke_dr(pid, index, self.address(symbol))
        ptrace.poke_dr7(pid, tracee.dr7 | dr7_for(index, type, length))
        return tracee

    def stopped(self, pid: int = LOOPER) -> bool:
        return self.kernel.tasks[pid].state is State.STOPPED
