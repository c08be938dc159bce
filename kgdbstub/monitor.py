"""`monitor` commands (qRcmd): what kdb would show, one record per line."""
from __future__ import annotations

import errno

from . import scenario
from .core.debugger import Debugger
from .kernel.kernel import Kernel
from .kernel.hw_breakpoint import Breakpoint
from .x86.debugregs import Access

_TYPE_NAMES = {Access.EXECUTE: "x", Access.WRITE: "w", Access.READ_WRITE: "rw", Access.IO: "io"}


def _owner_name(owner) -> str:
    if isinstance(owner, Breakpoint):
        if owner.owner == "guest":
            return "guest"  # the image's own MOV DRn
        return f"ptrace:{owner.task}" if owner.owner == "ptrace" else f"perf:{owner.id}"
    return "kgdb"


class Monitor:
    def __init__(self, kernel: Kernel, debugger: Debugger):
        self.kernel = kernel
        self.debugger = debugger
        self.commands = {"help": self.help, "ps": self.ps, "slots": self.slots, "perf": self.perf,
                         "ptrace": self.ptrace, "policy": self.policy}

    def __call__(self, line: str) -> str:
        name, *args = line.split() or ["help"]
        command = self.commands.get(name)
        if command is None:
            return f"unknown command {name!r}; try 'monitor help'\n"
        try:
            return command(*args)
        except OSError as error:
            return f"error: {_errno_name(error.errno)}: {error.strerror}\n"
        except (scenario.ScenarioError, ValueError) as error:
            return f"error: {error}\n"

    def slots(self, *_):
        """Each DR and its owner. A DR kgdb has reserved but holds no breakpoint in
        (`session` and `boot` reserve ahead) is kgdb's with no address: perf and
        ptrace are refused it as they would be a DR in use."""
        table = self.debugger.slot_table()
        unfilled = {cpu: self.debugger.policy.reserved(cpu) for cpu in range(self.kernel.ncpus)}
        for cpu, _, owner, _ in table:
            if owner is not None and not isinstance(owner, Breakpoint):
                unfilled[cpu] -= 1
        lines = []
        for cpu, dr, owner, slot in table:
            if owner is None and unfilled[cpu] > 0:
                unfilled[cpu] -= 1
                lines.append(f"cpu={cpu} dr={dr} owner=kgdb addr=0x0 type=- len=0\n")
            elif owner is None:
                lines.append(f"cpu={cpu} dr={dr} owner=free addr=0x0 type=- len=0\n")
            else:
                lines.append(f"cpu={cpu} dr={dr} owner={_owner_name(owner)} addr={slot.address:#x} "
                             f"type={_TYPE_NAMES[slot.access]} len={slot.length}\n")
        return "".join(lines)

    def perf(self, *args):
        if args[:1] == ("add",) and len(args) == 5:
            binding, address, kind, length = args[1:]
            where = dict(kind="wide", cpu=None, task=None)
            if binding.startswith("cpu="):
                where = dict(kind="cpu", cpu=_number(binding[4:]), task=None)
            elif binding.startswith("task="):
                where = dict(kind="task", cpu=None, task=_number(binding[5:]))
            elif binding != "wide":
                return "usage: perf add wide|cpu=N|task=PID ADDRESS x|w|r|rw LENGTH\n"
            events = scenario.add_perf_event(self.kernel, where["kind"], where["cpu"], where["task"],
                                             _address(address), kind, _number(length))
            return "".join(f"id={e.id}\n" for e in events)
        if args[:1] == ("del",) and len(args) == 2:
            event = next((e for e in self.kernel.perf.events() if e.id == _number(args[1])), None)
            if event is None or event.owner != "perf":
                return f"no perf event {args[1]}\n"
            self.kernel.perf.unregister(event)
            return ""
        if args:
            return "usage: perf [add wide|cpu=N|task=PID ADDRESS x|w|r|rw LENGTH | del ID]\n"
        lines = []
        for event in self.kernel.perf.events():
            if event.owner != "perf":
                continue
            kind = "wide" if self.kernel.perf.is_wide(event) else ("cpu" if event.task is None else "task")
            lines.append(f"id={event.id} kind={kind} cpu={'all' if event.cpu is None else event.cpu} "
                         f"task={'-' if event.task is None else event.task} addr={event.address:#x} "
                         f"type={scenario.TYPE_NAMES[event.type]} len={event.length} hits={event.hits}\n")
        return "".join(lines)

    def ptrace(self, *args):
        if args[:1] == ("add",) and len(args) in (5, 6):
            pid, address, kind, length = args[1:5]
            continues = _number(args[5]) if len(args) == 6 else 0
            index = scenario.add_ptrace_breakpoint(self.kernel, _number(pid), _address(address), kind,
                                                   _number(length), continues)
            return f"dr={index}\n"
        if args[:1] == ("del",) and len(args) == 2:
            pid = _number(args[1])
            traced = pid in self.kernel.ptrace.tracees
            self.kernel.ptrace.detach(pid)
            if traced and pid in self.kernel.tasks:
                self.kernel.resume_task(pid)  # PTRACE_DETACH restarts a tracee it leaves stopped
            return ""
        if args:
            return "usage: ptrace [add PID ADDRESS x|w|rw LENGTH [CONTINUES] | del PID]\n"
        lines = []
        for tracee in self.kernel.ptrace.tracees.values():
            for index, event in enumerate(tracee.events):
                if event is None:
                    continue
                lines.append(f"pid={tracee.pid} dr={index} addr={event.address:#x} "
                             f"type={scenario.TYPE_NAMES[event.type]} hits={tracee.hits[index]} "
                             f"ignore_left={tracee.continues_left} state={'stopped' if tracee.stopped else 'running'}\n")
        return "".join(lines)

    def policy(self, *args):
        if args:
            self.debugger.set_policy(args[0])
        return f"policy={self.debugger.policy.name}\n"

    def help(self, *_):
        return (
            "ps                                  tasks\n"
            "slots                               every CPU's debug registers and their owners\n"
            "perf                                perf breakpoint events\n"
            "perf add wide|cpu=N|task=PID ADDRESS x|w|r|rw LENGTH\n"
            "perf del ID\n"
            "ptrace                              traced tasks' hardware breakpoints\n"
            "ptrace add PID ADDRESS x|w|rw LENGTH [CONTINUES]\n"
            "ptrace del PID\n"
            "policy [leftover|session|boot]      how kgdb gets slots\n"
        )

    def ps(self, *_):
        tasks = [*(self.kernel.idle[c] for c in range(self.kernel.ncpus) if self.kernel.online[c]), *self.kernel.task_list()]
        return "".join(
            f"pid={t.pid} comm={t.comm} cpu={'-' if t.cpu is None else t.cpu} state={t.state.value}\n" for t in tasks
        )


def _number(text: str) -> int:
    return int(text, 0)


def _address(text: str):
    try:
        return int(text, 0)
    except ValueError:
        return text  # a symbol


def _errno_name(code: int) -> str:
    # Python names 95 ENOTSUP; the kernel's perf code says EOPNOTSUPP (the same number on Linux).
    return "EOPNOTSUPP" if code == errno.EOPNOTSUPP else errno.errorcode.get(code, str(code))
