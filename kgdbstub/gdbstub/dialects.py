"""The two dialects: what differs between `modern` and Linux's kgdb lies here."""
from __future__ import annotations

from dataclasses import dataclass

from ..x86 import registers
from .conditions import BreakpointCommands, ConditionalBreakpoints
from .extensions import Extension, NoAckMode, StopReason, TargetDescription, ThreadList, VContSupported
from .hostio import ExecFile, HostIO
from .lldb import EXTENSIONS as LLDB_EXTENSIONS


@dataclass(frozen=True)
class Dialect:
    name: str
    extensions: tuple[Extension, ...]
    layout: tuple
    expedite: bool  # registers and CPU in stop replies
    status_reply_is_stop: bool  # `?` answers the last stop (else kgdb's bare S05)
    hardware_error: int | None = None  # kgdb answers every refused hardware breakpoint alike
    # kgdb's shadow thread -(N + 2) is whatever runs on CPU N, so it shows the
    # registers of a task listed under its own pid too, and a step runs the CPU
    # that stopped whatever thread it names. With idle_shadows the shadow id is
    # CPU N's idle task alone, and a step steps the thread it names.
    idle_shadows: bool = False

    def negotiated(self, offered: set[str]) -> list[str]:
        return [a for e in self.extensions if (a := e.advertise(offered))]


MODERN = Dialect(
    "modern",
    (NoAckMode(), TargetDescription(), ThreadList(), StopReason("swbreak"), StopReason("hwbreak"), VContSupported(),
     ConditionalBreakpoints(), BreakpointCommands(), ExecFile(), HostIO(), *LLDB_EXTENSIONS),
    registers.MODERN,
    expedite=True,
    status_reply_is_stop=True,
    idle_shadows=True,
)
KGDB = Dialect("kgdb", (), registers.KGDB, expedite=False, status_reply_is_stop=False, hardware_error=1)
DIALECTS = {d.name: d for d in (MODERN, KGDB)}
