"""Tasks as the host keeps them."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class State(Enum):
    RUNNING = "R"  # on a CPU or in the run queue
    SLEEPING = "S"
    STOPPED = "T"


@dataclass(eq=False)
class Task:
    pid: int
    comm: str
    slot: int  # which pair of stacks the task owns
    regs: object  # a unicorn context: the task's registers while it is off a CPU
    user: bool
    state: State = State.RUNNING
    cpu: int | None = None  # the CPU it is current on, if any
    wake_at: int = 0
    # Register states to return to: the user context under a system call,
    # the interrupted context under an interrupt.
    frames: list = field(default_factory=list)
    # Inside HC_KGDB_TRAP: the handler's registers, while regs shows the faulting context.
    kgdb_handler_regs: object = None

    @property
    def idle(self) -> bool:
        return self.pid == 0
