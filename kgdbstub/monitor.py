"""`monitor` commands (qRcmd): what kdb would show, one record per line."""
from __future__ import annotations

from .debugger import Debugger
from .kernel.kernel import Kernel
from .x86.debugregs import Access

_TYPE_NAMES = {Access.EXECUTE: "x", Access.WRITE: "w", Access.READ_WRITE: "rw", Access.IO: "io"}


class Monitor:
    def __init__(self, kernel: Kernel, debugger: Debugger):
        self.kernel = kernel
        self.debugger = debugger
        self.commands = {"help": self.help, "ps": self.ps, "slots": self.slots}

    def __call__(self, line: str) -> str:
        name, *args = line.split() or ["help"]
        command = self.commands.get(name)
        if command is None:
            return f"unknown command {name!r}; try 'monitor help'\n"
        return command(*args)

    def slots(self, *_):
        lines = []
        for cpu, dr, owner, slot in self.debugger.slot_table():
            if owner == "free" and not slot.enabled:
                lines.append(f"cpu={cpu} dr={dr} owner=free addr=0x0 type=- len=0\n")
                continue
            kind = _TYPE_NAMES[slot.access]
            lines.append(f"cpu={cpu} dr={dr} owner={owner} addr={slot.address:#x} type={kind} len={slot.length}\n")
        return "".join(lines)

    def help(self, *_):
        return "".join(f"{name}\n" for name in self.commands)

    def ps(self, *_):
        tasks = [*(self.kernel.idle[c] for c in range(self.kernel.ncpus) if self.kernel.online[c]), *self.kernel.task_list()]
        return "".join(
            f"pid={t.pid} comm={t.comm} cpu={'-' if t.cpu is None else t.cpu} state={t.state.value}\n" for t in tasks
        )
