"""Scenarios: which perf events and ptrace breakpoints exist, as TOML files.

A scenario names addresses by symbol (or gives a number) and registers its
events when kgdb has started, right before the machine waits for the
debugger; an event marked `early = true` is registered before kgdb's late
init instead (to see kgdb find no slot free).

A file is checked whole when it is loaded: every key known, every value of
its type (a length is an integer, not 8.0 or "8"; a task is a pid or a
name, never `true`), every required key present. The first problem is
one ScenarioError naming the entry. What the kernel then refuses (no slot
left, a length perf does not take) is not an error in the file: `apply`
returns one line for each refused event and registers the rest.
"""
from __future__ import annotations

import errno
import json
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
PERF_KINDS = ("wide", "cpu", "task")


class ScenarioError(Exception):
    pass


def parse_type(text: str, types: dict[str, BreakpointType] = TYPES) -> BreakpointType:
    try:
        return types[text]
    except KeyError:
        raise ScenarioError(f"type {text!r} is not one of {', '.join(types)}") from None


def resolve_address(image: Image, value) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
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
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        for task in kernel.task_list():
            if task.pid == value or task.comm == value:
                return task.pid
    raise ScenarioError(f"no task {value!r}")


# -- what a file may say ------------------------------------------------------------


@dataclass(frozen=True)
class PerfSpec:
    address: int | str
    kind: str = "wide"
    type: str = "w"
    length: int = 8
    cpu: int | None = None
    task: int | str | None = None
    early: bool = False

    def __str__(self) -> str:
        binding = {"wide": "wide", "cpu": f"cpu={self.cpu}", "task": f"task={self.task}"}[self.kind]
        if self.kind == "task" and self.cpu is not None:
            binding += f" cpu={self.cpu}"
        return f"perf {binding} {_shown_address(self.address)} {self.type} len={self.length}"


@dataclass(frozen=True)
class PtraceSpec:
    task: int | str
    address: int | str
    type: str = "x"
    length: int = 1
    continues: int = 0

    def __str__(self) -> str:
        return (f"ptrace task={self.task} {_shown_address(self.address)} {self.type} len={self.length} "
                f"continues={self.continues}")


def _shown_address(address: int | str) -> str:
    return f"{address:#x}" if isinstance(address, int) else address


class _Entry:
    """One [[perf]] or [[ptrace]] table, read key by key with its type checked."""

    def __init__(self, table, where: str):
        if not isinstance(table, dict):
            raise ScenarioError(f"{where}: must be a table, not {_shown(table)}")
        self.table = table
        self.where = where

    def check_keys(self, known: tuple[str, ...]) -> None:
        unknown = sorted(set(self.table) - set(known))
        if unknown:
            raise ScenarioError(f"{self.where}: unknown key {unknown[0]!r} (known: {', '.join(known)})")

    def get(self, key: str, kinds: tuple[type, ...], description: str, default=None, *, required: bool = False):
        if key not in self.table:
            if required:
                raise ScenarioError(f"{self.where}: {key!r} is missing")
            return default
        value = self.table[key]
        # TOML's true and false are Python bools, which are ints too.
        if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
            raise ScenarioError(f"{self.where}: {key!r} must be {description}, not {_shown(value)}")
        return value

    def integer(self, key: str, default=None, *, minimum: int = 0, required: bool = False):
        value = self.get(key, (int,), "an integer", default, required=required)
        if value is not None and value < minimum:
            raise ScenarioError(f"{self.where}: {key!r} must be at least {minimum}, not {value}")
        return value

    def choice(self, key: str, choices, default: str) -> str:
        value = self.get(key, (str,), f"one of {', '.join(choices)}", default)
        if value not in choices:
            raise ScenarioError(f"{self.where}: {key!r} must be one of {', '.join(choices)}, not {_shown(value)}")
        return value

    def address(self) -> int | str:
        value = self.get("address", (int, str), "a symbol or a number", required=True)
        if isinstance(value, int) and value < 0:
            raise ScenarioError(f"{self.where}: 'address' must be at least 0, not {value}")
        if isinstance(value, str) and value.startswith("0x"):
            try:
                int(value, 16)
            except ValueError:
                raise ScenarioError(f"{self.where}: 'address' {_shown(value)} is not a hexadecimal number") from None
        return value

    def task(self, *, required: bool):
        value = self.get("task", (int, str), "a pid or a task name", required=required)
        if isinstance(value, int) and value <= 0:
            raise ScenarioError(f"{self.where}: 'task' must be a pid above 0, not {value}")
        return value


def _shown(value) -> str:
    """A value as the TOML file wrote it."""
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def _perf_spec(table, where: str) -> PerfSpec:
    entry = _Entry(table, where)
    entry.check_keys(("kind", "cpu", "task", "address", "type", "length", "early"))
    kind = entry.choice("kind", PERF_KINDS, "wide")
    spec = PerfSpec(address=entry.address(), kind=kind, type=entry.choice("type", tuple(TYPES), "w"),
                    length=entry.integer("length", 8), cpu=entry.integer("cpu", required=kind == "cpu"),
                    task=entry.task(required=kind == "task"),
                    early=entry.get("early", (bool,), "true or false", False))
    if kind == "wide" and (spec.cpu is not None or spec.task is not None):
        raise ScenarioError(f"{where}: a wide event is on every CPU for every task: no 'cpu' or 'task'")
    if kind == "cpu" and spec.task is not None:
        raise ScenarioError(f"{where}: a cpu event counts every task: no 'task' (or kind = \"task\")")
    return spec


def _ptrace_spec(table, where: str) -> PtraceSpec:
    entry = _Entry(table, where)
    entry.check_keys(("task", "address", "type", "length", "continues"))
    return PtraceSpec(task=entry.task(required=True), address=entry.address(),
                      type=entry.choice("type", tuple(TYPES), "x"), length=entry.integer("length", 1),
                      continues=entry.integer("continues", 0))


# -- a scenario ---------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    description: str = ""
    perf: list[PerfSpec] = field(default_factory=list)
    ptrace: list[PtraceSpec] = field(default_factory=list)

    def apply_early(self, kernel: Kernel) -> list[str]:
        """Register the early perf events; one line for each the kernel refused."""
        return [refusal for number, spec in enumerate(self.perf, 1) if spec.early
                if (refusal := self._perf(kernel, number, spec))]

    def apply(self, kernel: Kernel) -> list[str]:
        """Register the other events; one line for each the kernel refused."""
        refused = [refusal for number, spec in enumerate(self.perf, 1) if not spec.early
                   if (refusal := self._perf(kernel, number, spec))]
        refused += [refusal for number, spec in enumerate(self.ptrace, 1)
                    if (refusal := self._ptrace(kernel, number, spec))]
        return refused

    def _perf(self, kernel: Kernel, number: int, spec: PerfSpec) -> str | None:
        try:
            add_perf_event(kernel, spec.kind, spec.cpu, spec.task, spec.address, spec.type, spec.length)
        except ScenarioError as error:
            raise ScenarioError(f"scenario {self.name}: [[perf]] {number}: {error}") from None
        except OSError as error:
            return _refusal(f"[[perf]] {number} ({spec})", error)
        return None

    def _ptrace(self, kernel: Kernel, number: int, spec: PtraceSpec) -> str | None:
        try:
            add_ptrace_breakpoint(kernel, find_task(kernel, spec.task), spec.address, spec.type, spec.length,
                                  spec.continues)
        except ScenarioError as error:
            raise ScenarioError(f"scenario {self.name}: [[ptrace]] {number}: {error}") from None
        except OSError as error:
            return _refusal(f"[[ptrace]] {number} ({spec})", error)
        return None


def _refusal(what: str, error: OSError) -> str:
    name = errno.errorcode.get(error.errno, str(error.errno))
    return f"{what} refused: {error.strerror} ({name})"


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

    It continues the tracee `continues` times and then detaches, its
    breakpoints with it; with 0 it stops the tracee at the first hit and
    keeps it stopped (until `monitor ptrace del`).

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
    kernel.ptrace.cont(pid, continues, then_detach=True)
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
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"{path}: cannot read it: {getattr(error, 'strerror', None) or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: {error}") from None
    return parse(path.stem, data, where=str(path))


def parse(name: str, data: dict, *, where: str = "") -> Scenario:
    """A scenario from a TOML document's data; ScenarioError on the first problem."""
    where = where or name
    unknown = sorted(set(data) - {"description", "perf", "ptrace"})
    if unknown:
        raise ScenarioError(f"{where}: unknown key {unknown[0]!r} (known: description, perf, ptrace)")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError(f"{where}: 'description' must be a string, not {_shown(description)}")
    tables = {}
    for key in ("perf", "ptrace"):
        tables[key] = data.get(key, [])
        if not isinstance(tables[key], list):
            raise ScenarioError(f"{where}: '{key}' must be [[{key}]] tables, not {_shown(tables[key])}")
    perf = [_perf_spec(table, f"{where}: [[perf]] {n}") for n, table in enumerate(tables["perf"], 1)]
    ptrace = [_ptrace_spec(table, f"{where}: [[ptrace]] {n}") for n, table in enumerate(tables["ptrace"], 1)]
    return Scenario(name, description, perf, ptrace)


def available(target_dir: Path) -> list[str]:
    return sorted(p.stem for p in (target_dir / "scenarios").glob("*.toml"))
