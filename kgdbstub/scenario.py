"""Scenarios: which perf events and ptrace breakpoints exist, as TOML files.

A scenario names addresses by symbol (or gives a number) and registers its
events when kgdb has started, right before the machine waits for the
debugger; an event marked `early = true` is registered before kgdb's late
init instead (to see kgdb find no slot free).
"""
from __future__ import annotations

import errno
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .kernel.hw_breakpoint import BreakpointType
from .kernel.image import Image
from .kernel.kernel import Kernel
from .kernel.ptrace import dr7_for
from .targets import TargetError

TYPES = {"x": BreakpointType.EXECUTE, "w": BreakpointType.WRITE, "rw": BreakpointType.READ_WRITE}
# perf's bp_type may also say "reads alone", which x86 refuses only once a
# slot is found (arch_build_bp_info); DR7 cannot say it at all.
PERF_TYPES = {**TYPES, "r": BreakpointType.READ}
TYPE_NAMES = {v: k for k, v in PERF_TYPES.items()}


class ScenarioError(Exception):
    pass


def parse_type(text: str, types: dict[str, BreakpointType] = TYPES) -> BreakpointType:
    try:
        return types[text]
    except KeyError:
        raise ScenarioError(f"type {text!r} is not one of {', '.join(types)}") from None


def resolve_address(image: Image, value) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value.startswith("0x"):
            try:
                return int(value, 16)
            except ValueError:
                pass
        elif value in image.symbols:
            return image.symbols[value].address
    raise ScenarioError(f"unknown symbol or address {value!r}")


def find_task(kernel: Kernel, value) -> int:
    for task in kernel.task_list():
        if task.pid == value or task.comm == value:
            return task.pid
    raise ScenarioError(f"no task {value!r}")


@dataclass
class Scenario:
    name: str
    description: str = ""
    perf: list[dict] = field(default_factory=list)
    ptrace: list[dict] = field(default_factory=list)

    def apply_early(self, kernel: Kernel) -> None:
        for spec in self.perf:
            if spec.get("early", False):
                self._perf(kernel, spec)

    def apply(self, kernel: Kernel) -> None:
        for spec in self.perf:
            if not spec.get("early", False):
                self._perf(kernel, spec)
        for spec in self.ptrace:
            self._ptrace(kernel, spec)

    def _perf(self, kernel: Kernel, spec: dict) -> None:
        try:
            add_perf_event(kernel, spec.get("kind", "wide"), spec.get("cpu"), spec.get("task"),
                           spec["address"], spec.get("type", "w"), spec.get("length", 8))
        except OSError as error:
            kernel.console_write(f"perf: cannot register breakpoint at {spec['address']}: {error.strerror}\n".encode())

    def _ptrace(self, kernel: Kernel, spec: dict) -> None:
        try:
            add_ptrace_breakpoint(kernel, find_task(kernel, spec["task"]), spec["address"], spec.get("type", "x"),
                                  spec.get("length", 1), spec.get("continues", 0))
        except OSError as error:
            kernel.console_write(f"ptrace: cannot set breakpoint at {spec['address']}: {error.strerror}\n".encode())


def add_perf_event(kernel: Kernel, kind: str, cpu, task, address, type_name: str, length: int):
    """Register a perf breakpoint: `wide`, `cpu` (bound to cpu) or `task` (of a task, on cpu or all)."""
    options = dict(address=resolve_address(kernel.image, address), length=length,
                   type=parse_type(type_name, PERF_TYPES))
    if kind == "wide":
        return kernel.perf.register_wide(**options)
    if kind == "cpu":
        return [kernel.perf.register(cpu=cpu, task=None, **options)]
    if kind == "task":
        return [kernel.perf.register(cpu=cpu, task=find_task(kernel, task), **options)]
    raise ScenarioError(f"perf kind {kind!r} is not one of wide, cpu, task")


def add_ptrace_breakpoint(kernel: Kernel, pid: int, address, type_name: str, length: int, continues: int) -> int:
    """A tracer sets a breakpoint in its tracee's first free virtual DR and continues it.

    What no tracer could ask for (no such task, a type or length DR7 cannot
    say, a negative count) is refused before anything is registered.
    """
    find_task(kernel, pid)
    dr_type = parse_type(type_name)
    if length not in (1, 2, 4, 8):
        raise OSError(errno.EINVAL, f"length {length}: a debug register covers 1, 2, 4 or 8 bytes")
    if continues < 0:
        raise ScenarioError(f"cannot continue a tracee {continues} times")
    tracee = kernel.ptrace.attach(pid)
    index = next((i for i, e in enumerate(tracee.events) if e is None), None)
    if index is None:
        raise OSError(errno.ENOSPC, "all four debug registers of the tracee are in use")
    kernel.ptrace.poke_dr(pid, index, resolve_address(kernel.image, address))
    try:
        kernel.ptrace.poke_dr7(pid, tracee.dr7 | dr7_for(index, dr_type, length))
    except OSError:
        kernel.perf.unregister(tracee.events[index])
        tracee.events[index] = None
        raise
    kernel.ptrace.cont(pid, continues)
    if continues:
        kernel.resume_task(pid)
    return index


def load(target_dir: Path, name_or_path: str | None) -> Scenario:
    if name_or_path is None:
        return Scenario("default")
    path = target_dir / "scenarios" / f"{name_or_path}.toml"
    if "/" in name_or_path or not path.is_file():
        path = Path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(available(target_dir)) or "none"
        raise TargetError(f"no scenario {name_or_path!r} (known: {known}; or give a path)") from None
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: {error}") from None
    unknown = set(data) - {"description", "perf", "ptrace"}
    if unknown:
        raise ScenarioError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    return Scenario(path.stem, data.get("description", ""), data.get("perf", []), data.get("ptrace", []))


def available(target_dir: Path) -> list[str]:
    return sorted(p.stem for p in (target_dir / "scenarios").glob("*.toml"))
