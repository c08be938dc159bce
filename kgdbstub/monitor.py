"""`monitor` commands (qRcmd): what kdb would show, one record per line."""
from __future__ import annotations

from .debugger import Debugger
from .kernel.kernel import Kernel


class Monitor:
    def __init__(self, kernel: Kernel, debugger: Debugger):
        self.kernel = kernel
        self.debugger = debugger
        self.commands = {"help": self.help, "ps": self.ps}

    def __call__(self, line: str) -> str:
        name, *args = line.split() or ["help"]
        command = self.commands.get(name)
        if command is None:
            return f"unknown command {name!r}; try 'monitor help'\n"
        return command(*args)

    def help(self, *_):
        return "".join(f"{name}\n" for name in self.commands)

    def ps(self, *_):
        tasks = [*(self.kernel.idle[c] for c in range(self.kernel.ncpus) if self.kernel.online[c]), *self.kernel.task_list()]
        return "".join(
            f"pid={t.pid} comm={t.comm} cpu={'-' if t.cpu is None else t.cpu} state={t.state.value}\n" for t in tasks
        )
