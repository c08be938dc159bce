"""perf hw_breakpoint events: registered under the slot accounting, installed
when their task or CPU runs, counting every hit.

A CPU-bound event sits in a DR of its CPU from registration on; a per-task
event is installed into the first free DR of the CPU its task is switched
in on and removed when the task is switched out, so its physical DR may
change from one run to the next. A disabled event keeps its slot in the
accounting but is never installed, so it counts nothing.
"""
from __future__ import annotations

from collections.abc import Callable

from ..x86.debugregs import Access
from .debugslots import DebugSlots
from .hw_breakpoint import Breakpoint, BreakpointType, SlotAccounting, register_length

ACCESS_OF = {BreakpointType.EXECUTE: Access.EXECUTE, BreakpointType.WRITE: Access.WRITE,
             BreakpointType.READ_WRITE: Access.READ_WRITE}


class PerfEvents:
    def __init__(self, accounting: SlotAccounting, slots: DebugSlots, running_task: Callable[[int], int | None]):
        self.accounting = accounting
        self.slots = slots
        self._running_task = running_task  # cpu -> pid of the task on it, None when idle
        self.wide_groups: dict[int, list[Breakpoint]] = {}  # first event id -> the per-CPU events

    # -- registration -----------------------------------------------------------

    def register(self, *, address: int, length: int, type: BreakpointType, cpu: int | None,
                 task: int | None, owner: str = "perf", enabled: bool = True) -> Breakpoint:
        event = self.accounting.register(address=address, length=length, type=type, cpu=cpu, task=task,
                                         owner=owner, enabled=enabled)
        self._schedule(event)
        return event

    def register_wide(self, *, address: int, length: int, type: BreakpointType, owner: str = "perf") -> list[Breakpoint]:
        events = self.accounting.register_wide(address=address, length=length, type=type, owner=owner, enabled=True)
        self.wide_groups[events[0].id] = events
        for event in events:
            self._schedule(event)
        return events

    def modify(self, event: Breakpoint, **changes) -> None:
        self._unschedule(event)
        try:
            self.accounting.modify(event, **changes)
        finally:
            self._schedule(event)

    def unregister(self, event: Breakpoint) -> None:
        self._unschedule(event)
        self.accounting.unregister(event)
        for first, group in list(self.wide_groups.items()):
            if event in group:
                group.remove(event)
                if not group:
                    del self.wide_groups[first]

    def events(self) -> list[Breakpoint]:
        return [e for e in self.accounting.breakpoints if e.owner != "kgdb"]

    def is_wide(self, event: Breakpoint) -> bool:
        return any(event in group for group in self.wide_groups.values())

    # -- scheduling -------------------------------------------------------------

    def _cpus_running(self, event: Breakpoint) -> list[int]:
        cpus = range(len(self.slots.owners)) if event.cpu is None else [event.cpu]
        if event.task is None:
            return list(cpus)
        return [c for c in cpus if self._running_task(c) == event.task]

    def _schedule(self, event: Breakpoint) -> None:
        if not event.enabled:
            return
        for cpu in self._cpus_running(event):
            self._install(cpu, event)

    def _unschedule(self, event: Breakpoint) -> None:
        for cpu in range(len(self.slots.owners)):
            if self.slots.held_by(cpu, event):
                self.slots.uninstall(cpu, event)

    def _install(self, cpu: int, event: Breakpoint) -> None:
        if self.slots.held_by(cpu, event):
            return
        length = register_length(event.type, event.length)
        if self.slots.install(cpu, event, event.address, length, ACCESS_OF[event.type]) is None:
            # The accounting guarantees room; running out means a bug, not bad input.
            raise RuntimeError(f"no free debug register on CPU {cpu} for perf event {event.id}")

    def task_switched_in(self, cpu: int, pid: int) -> None:
        for event in self.accounting.breakpoints:
            if event.task == pid and event.enabled and event.cpu in (None, cpu):
                self._install(cpu, event)

    def task_switched_out(self, cpu: int, pid: int) -> None:
        for event in self.accounting.breakpoints:
            if event.task == pid and self.slots.held_by(cpu, event):
                self.slots.uninstall(cpu, event)

    def task_exited(self, pid: int) -> None:
        for event in [e for e in self.accounting.breakpoints if e.task == pid]:
            self.unregister(event)
