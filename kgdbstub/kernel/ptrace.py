"""ptrace users: tracers that set hardware breakpoints in their tracees.

A tracer writes its tracee's virtual DR0-3 and DR7 as PTRACE_POKEUSER does
(arch/x86/kernel/ptrace.c): writing DRn registers a disabled per-task,
all-CPU perf event; writing DR7 enables or changes them all, and undoes
every change if one fails. A hit stops the tracee with SIGTRAP; the tracer
reads the virtual DR6 (numbered by its own DR index), counts it and
continues, as many times as it was told (gdb's `continue N`). Then it
either keeps the tracee stopped, as a tracer waiting on its user does, or
detaches and lets it run on, as `gdb -batch -p PID -ex 'continue N'` does
when its commands run out (PTRACE_DETACH; its breakpoints go with it).
"""
from __future__ import annotations

import errno
from dataclasses import dataclass, field

from .hw_breakpoint import EXECUTE_LENGTH, Breakpoint, BreakpointType
from .perf import PerfEvents

_TYPE_OF_RW = {0b00: BreakpointType.EXECUTE, 0b01: BreakpointType.WRITE, 0b11: BreakpointType.READ_WRITE}
_LENGTH_OF_LEN = {0b00: 1, 0b01: 2, 0b11: 4, 0b10: 8}
_LEN_OF_LENGTH = {v: k for k, v in _LENGTH_OF_LEN.items()}
_RW_OF_TYPE = {v: k for k, v in _TYPE_OF_RW.items()}


def generic_fields(field: int) -> tuple[BreakpointType, int]:
    """arch_bp_generic_fields: a DR7 R/W and LEN field as perf's bp_type and bp_len.

    An execute breakpoint must have LEN 00 and becomes bp_len sizeof(long);
    the I/O type (R/W 10) is EINVAL.
    """
    rw, length = field & 0b11, _LENGTH_OF_LEN[field >> 2]
    if rw not in _TYPE_OF_RW:
        raise OSError(errno.EINVAL, "I/O breakpoints are not supported")
    if _TYPE_OF_RW[rw] is BreakpointType.EXECUTE:
        if length != 1:
            raise OSError(errno.EINVAL, "an execute breakpoint has DR7 LEN 00")
        return BreakpointType.EXECUTE, EXECUTE_LENGTH
    return _TYPE_OF_RW[rw], length


def dr7_for(index: int, type: BreakpointType, length: int, enabled: bool = True) -> int:
    """The DR7 bits a tracer writes to enable one virtual DR (local enable, as gdb does)."""
    field = _RW_OF_TYPE[type] | (_LEN_OF_LENGTH[length] << 2)
    return (field << (16 + 4 * index)) | (int(enabled) << (2 * index))


@dataclass
class Tracee:
    pid: int
    events: list[Breakpoint | None] = field(default_factory=lambda: [None] * 4)
    dr7: int = 0
    dr6: int = 0
    hits: list[int] = field(default_factory=lambda: [0] * 4)
    continues_left: int = 0
    stopped: bool = False  # the tracer has stopped it, or is done with it
    detach_when_done: bool = False  # after its last continue the tracer detaches
    last_exception: int | None = None  # the debug exception its latest stop came from


class Ptrace:
    def __init__(self, perf: PerfEvents):
        self.perf = perf
        self.tracees: dict[int, Tracee] = {}

    def attach(self, pid: int) -> Tracee:
        return self.tracees.setdefault(pid, Tracee(pid))

    def detach(self, pid: int) -> None:
        tracee = self.tracees.pop(pid, None)
        if tracee:
            for event in tracee.events:
                if event is not None:
                    self.perf.unregister(event)

    def poke_dr(self, pid: int, index: int, address: int) -> None:
        """PTRACE_POKEUSER of DR0-3: may fail with ENOSPC."""
        if not 0 <= index < 4:
            raise OSError(errno.EIO, "only DR0-DR3 hold addresses")
        tracee = self.tracees[pid]
        event = tracee.events[index]
        if event is None:
            tracee.events[index] = self.perf.register(address=address, length=1, type=BreakpointType.WRITE,
                                                      cpu=None, task=pid, owner="ptrace", enabled=False)
        else:
            self.perf.modify(event, address=address)

    def poke_dr7(self, pid: int, value: int) -> None:
        """PTRACE_POKEUSER of DR7: every enabled DR is changed, or none is."""
        tracee = self.tracees[pid]
        before = []
        try:
            for index, event in enumerate(tracee.events):
                enabled = bool(value & (0b11 << (2 * index)))
                field = (value >> (16 + 4 * index)) & 0xF
                if event is None:
                    if enabled:
                        raise OSError(errno.EINVAL, f"DR{index} holds no address")
                    continue
                state = dict(type=event.type, length=event.length, enabled=event.enabled)
                if enabled:
                    type, length = generic_fields(field)
                    changes = dict(type=type, length=length, enabled=True)
                else:
                    changes = dict(enabled=False)
                self.perf.modify(event, **changes)
                before.append((event, state))
        except OSError:
            for event, state in reversed(before):
                self.perf.modify(event, **state)
            raise
        tracee.dr7 = value

    def cont(self, pid: int, count: int, *, then_detach: bool = False) -> None:
        """The tracer continues the tracee, and again after each of the next count-1 stops.

        At the count-th stop it keeps the tracee stopped, or with then_detach
        lets go of it (see lets_go).
        """
        tracee = self.tracees[pid]
        tracee.continues_left = count
        tracee.stopped = count == 0
        tracee.detach_when_done = then_detach and count > 0

    def lets_go(self, pid: int) -> bool:
        """Whether the tracer of a tracee that just stopped is done and detaches instead of keeping it."""
        tracee = self.tracees.get(pid)
        return tracee is not None and tracee.stopped and tracee.detach_when_done

    def owner_of(self, event: Breakpoint) -> tuple[Tracee, int] | None:
        tracee = self.tracees.get(event.task)
        if tracee is None:
            return None
        for index, candidate in enumerate(tracee.events):
            if candidate is event:
                return tracee, index
        return None

    def counted(self, pid: int, hits: dict[Breakpoint, int], exceptions: int, last: list[Breakpoint],
                last_exception: int) -> None:
        """Stops of a tracee that its tracer continued through, counted in bulk (see hit).

        `hits`: the hits of breakpoints (any task's: those of others are
        skipped); `exceptions`: the debug exceptions they made, none of them
        the tracee's last continue; `last`: the breakpoints of the last one,
        whose DR6 the tracer read, numbered `last_exception`.
        """
        tracee = self.tracees.get(pid)
        if tracee is None:
            return
        events = tracee.events
        for index, event in enumerate(events):
            if event is not None and event in hits:
                tracee.hits[index] += hits[event]
        tracee.continues_left -= exceptions
        tracee.dr6 = sum(1 << index for index, event in enumerate(events) if event is not None and event in last)
        tracee.last_exception = last_exception

    def hit(self, event: Breakpoint, exception: int | None = None) -> bool:
        """A tracee's breakpoint fired: True if the tracee must now stay stopped.

        `exception` numbers the debug exception: when several of a tracee's
        DRs match one instruction, that is one SIGTRAP and one stop, with a
        DR6 bit for each (exc_debug_user collects them in virtual_dr6).

        This runs once per hit from the emulator's hook (a million times in
        the ptrace-loop scenario), so it does no more than it must.
        """
        tracee = self.tracees.get(event.task)
        if tracee is None:
            return False
        events = tracee.events
        index = 0 if events[0] is event else 1 if events[1] is event else 2 if events[2] is event else 3
        if events[index] is not event:
            return False
        tracee.hits[index] += 1
        if exception is not None and tracee.last_exception == exception:
            tracee.dr6 |= 1 << index  # another DR matched the same instruction: the same stop
            return tracee.stopped
        tracee.last_exception = exception
        tracee.dr6 = 1 << index
        if tracee.continues_left > 0:
            tracee.continues_left -= 1
        if tracee.continues_left == 0:
            tracee.stopped = True
        return tracee.stopped
