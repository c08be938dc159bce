"""Soak the stub: random gdb and monitor operations across reconnects, every invariant checked as it goes.

    python tools/soak.py --seconds N [--seed S] [--json FILE] [--epoch-seconds 60] [--replay 60]
                         [--skip OPERATION] [--epoch N] [--verbose]

Runs `kgdbstub serve` in epochs, each with a configuration drawn at random
(dialect, slot policy, scenario, CPUs), and drives it as debuggers do, from
one seeded random.Random: Z0-Z4 of every kind, length and place on the
image's real functions and variables, continues (interrupted with Ctrl-C
when nothing stops them), single steps, memory and register reads and
writes, thread switches, `?`, host I/O, `monitor perf`/`ptrace` add and del,
policy switches, detach, kill, vanishing without a word, reconnecting (in
ack or no-ack mode), and now and then a short session of the real gdb.
Hostile use too: registers written with 0, all ones and odd values (taken,
or refused with E22 and nothing changed), floods of software breakpoints
past kgdb's 1000 and of one hardware request, and, in some epochs, a
`--trace` log that cannot be written (/dev/full: one line on stderr, the
stub serves on). And hostile clients: floods of requests never
acknowledged and of '-' (the server's resident memory may not grow),
newcomers that send nothing, dribble or are refused while a debugger is
attached (closed in time, refused with an `E.` reply, the session
undisturbed), and a second server on a pty whose slave gets echo turned on
and storms of programs opening it (one answer a packet, a debugger
attaches after the storm).

After every operation it checks, and prints each violation it finds:

- slots: every DR has one owner; perf and ptrace owners are exactly the
  events registered, in the DRs of the CPUs they are bound to or their
  task runs on; kgdb's are pieces of the breakpoints the session holds
  (all of them once the machine has run), none after a detach or a
  disconnect. Replies to registrations and inserts follow Linux's slot rule
  and the policy's (a model of the accounting predicts each OK and ENOSPC),
  so no reservation outlives its session.
- counts: every perf event and ptrace DR counts what the machine did since
  it was registered (jiffies, total_forks, looper_iterations, calls of
  looper_tick, read back from the machine), and every registration that
  was answered OK is listed, none that was refused, until its owner lets
  go of it (a tracer detaches when its continues are used up).
- determinism: each epoch first runs the same operations (no detach, Ctrl-C
  or gdb: nothing that depends on time) on two fresh servers; their packet
  streams must be identical byte for byte.
- liveness: the server process lives and answers every request in time.
- bounds: what hostile clients do costs the server no lasting memory.

Prints the figures at the end, writes them to --json; exits 1 on any violation.
A violation names its epoch: `--seed S --epoch N --verbose` runs that epoch
again, its first --replay operations exactly as before.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kgdbstub import targets
from kgdbstub.client import ClientError, Stop, Target, Timeout, Unsupported, connect
from kgdbstub.kernel.image import Image
from kgdbstub.server import FIRST_PACKET_PATIENCE, HANDOVER_PATIENCE

import fuzz  # noqa: E402 - tools/fuzz.py: its raw client and hostile clients

GDB = shutil.which("gdb")
SLOTS = 4  # debug registers per CPU
REPLY_SECONDS = 10.0  # a request unanswered for longer is a hang
FLOOD_MEMORY = 8 << 20  # what a flood may add to the server's resident memory
STARTUP_SECONDS = 30.0
GDB_SECONDS = 60.0
INIT, LOOPER = 1, 2
USER_SPACE_END = 1 << 47
POLICIES = ("leftover", "session", "boot")

# Counters the machine keeps, each written by known code: the timer on CPU 0
# (jiffies), do_fork in the looper's system calls (total_forks), the looper
# (looper_iterations, and its calls of looper_tick).
COUNTERS = ("jiffies", "total_forks", "looper_iterations")
WATCHABLE = (*COUNTERS, "last_fork", "looper_forks")
KERNEL_FUNCTIONS = ("do_fork", "do_timer", "timer_interrupt", "schedule", "schedule_timeout", "sys_clone")
# Software breakpoints stay off looper_tick: a perf or ptrace execute
# breakpoint there would fire again when gdb steps over the int3, as on
# real hardware, and the calls would no longer tell the hits.
EXECUTE_TARGETS = (*KERNEL_FUNCTIONS, "looper_tick")
# What always stops a continue: the timer runs every round.
SURE_STOPS = ("do_timer", "timer_interrupt")

# Seed cases 1 and 2 at once: a perf user and a ptrace user from the start.
PERF_AND_PTRACE = """\
description = "Seed cases 1 and 2 together: perf watches jiffies, a tracer breaks on looper_tick."

[[perf]]
kind = "wide"
address = "jiffies"
type = "w"
length = 8

[[ptrace]]
task = "looper"
address = "looper_tick"
type = "x"
length = 1
continues = 1000000
"""


# -- the image ------------------------------------------------------------------------------


class Machine:
    """What the soak knows of the image: addresses, code ranges, the bytes of its file."""

    def __init__(self, elf: Path):
        self.image = Image(elf)
        self.elf_bytes = elf.read_bytes()
        self.looper_return = self._return_address("looper_main", "looper_tick")

    def address(self, name: str) -> int:
        return self.image.address_of(name)

    def inside(self, address: int, function: str) -> bool:
        symbol = self.image.symbols[function]
        return symbol.address <= address < symbol.address + max(symbol.size, 1)

    def file_bytes(self, address: int, length: int) -> bytes | None:
        """The image's bytes at [address, address + length), if its file holds all of them."""
        for segment in self.image.segments:
            if segment.address <= address and address + length <= segment.address + len(segment.data):
                return segment.data[address - segment.address :][:length]
        return None

    def _return_address(self, caller: str, callee: str) -> int:
        """Where `caller` goes on after its `call callee` (e8 rel32) returns."""
        start, size = self.image.symbols[caller].address, self.image.symbols[caller].size
        code, target = self.file_bytes(start, size), self.address(callee)
        for i in range(len(code) - 4):
            if code[i] == 0xE8 and start + i + 5 + int.from_bytes(code[i + 1 : i + 5], "little", signed=True) == target:
                return start + i + 5
        raise ValueError(f"{caller} does not call {callee}")


# -- monitor listings -----------------------------------------------------------------------


def records(text: str) -> list[dict[str, str]]:
    """The `key=value ...` lines of a monitor listing, one dict each."""
    return [dict(re.findall(r"(\w+)=(\S+)", line)) for line in text.splitlines() if "=" in line]


# -- what the machine did: the ground truth of the counts ------------------------------------


@dataclass(frozen=True)
class Truth:
    """Read from the stopped machine: its counters, where the looper and each CPU are."""

    counters: dict[str, int]  # without looper_iterations in the kgdb dialect, which reads no user memory
    looper_pc: int
    cpu_pcs: tuple[int, ...]


def accesses(machine: Machine, truth: Truth, watched: str, dr_type: str) -> tuple[int, int] | None:
    """How many times, since boot, a breakpoint of `dr_type` on `watched` can have fired
    anywhere, as (least, most): a stop inside the code that makes two accesses may
    fall between them, and the looper stopped at looper_tick may have had that
    call's hit counted already or not. None when the counter it needs could not be read."""
    if watched == "nothing" or (watched == "looper_tick") != (dr_type == "x"):
        return 0, 0  # code is not written; data is not executed
    if (watched if watched in COUNTERS else "looper_iterations") not in truth.counters:
        return None
    if watched == "looper_tick":
        iterations = truth.counters["looper_iterations"]
        if truth.looper_pc >= USER_SPACE_END:
            # In an interrupt or a system call: where it left its loop is kept by
            # the host, out of sight; it may be between the call and the count.
            return iterations, iterations + 1
        calls = iterations + (truth.looper_pc == machine.looper_return)
        return calls, calls + (truth.looper_pc == machine.address("looper_tick"))
    count = truth.counters[watched]
    if dr_type == "w" or watched == "looper_iterations":
        return count, count  # one write (or one read-modify-write) per step
    # Two accesses per step: do_timer loads jiffies, then stores it one higher;
    # do_fork increments total_forks, then loads it. Stopped between the two,
    # the first one has happened: one more than twice jiffies, one fewer than
    # twice total_forks.
    # SysRq-G stops CPU 0 in kgdb_breakpoint, called from an interrupt that
    # may have come between the two: in it, or stepped on to its return
    # (irq_return), CPU 0 may be halfway without showing it.
    hidden = any(machine.inside(truth.cpu_pcs[0], f) for f in ("kgdb_breakpoint", "irq_return"))
    if watched == "jiffies":
        return 2 * count, 2 * count + (machine.inside(truth.cpu_pcs[0], "do_timer") or hidden)
    halfway = sum(machine.inside(pc, "do_fork") for pc in truth.cpu_pcs)
    return 2 * count - halfway - hidden, 2 * count


def share(watched: str, cpus: int, cpu: int | None, task: int | None) -> str:
    """How much of the accesses to `watched` a breakpoint bound to `cpu` or `task` sees:
    'all', 'some' or 'none'."""
    if cpu is None and task is None:
        return "all"  # a wide event's CPUs together
    if watched == "jiffies":  # the timer: on CPU 0, in whatever task runs there
        return "some" if task is not None else ("all" if cpu == 0 else "none")
    if task is not None:  # the rest is the looper's doing, wherever it runs
        return "all" if task == LOOPER else "none"
    return "all" if cpus == 1 else "some"


@dataclass
class Registration:
    """A perf event or a ptrace DR the stub accepted, and what it must count."""

    owner: str  # as `monitor slots` names it: perf:ID or ptrace:PID
    key: tuple  # ("perf", id) or ("ptrace", pid, dr)
    cpu: int | None
    task: int | None
    address: int
    length: int
    type: str  # x, w or rw
    watched: str | None  # the counter it sees, "nothing", or None when the soak cannot tell
    listing: dict[str, str]  # what `monitor perf`/`monitor ptrace` must say of it
    group: int | None = None  # the first id of its wide group
    base: tuple[int, int] | None = None  # accesses() when registered; set at the next check
    hits_at_base: int = 0  # hits it had then (a scenario's events ran before the soak saw them)
    hits: int = 0  # as last seen

    def cpus_holding(self, cpu_of: dict[int, int | None]) -> list[int]:
        """The CPUs whose DRs hold it now: its own, or the one its task runs on."""
        if self.task is None:
            return [self.cpu]
        return [] if cpu_of.get(self.task) is None else [cpu_of[self.task]]

    def dr(self) -> tuple[str, str, str, str]:
        """As `monitor slots` shows it: an execute DR watches one instruction (DR7 LEN 00)."""
        return self.owner, f"{self.address:#x}", self.type, "1" if self.type == "x" else str(self.length)


def watched_by(machine: Machine, address: int, length: int, dr_type: str) -> str | None:
    """Which counter a breakpoint sees: one it overlaps, "nothing", or None when the soak cannot tell."""
    if dr_type == "x":
        return "looper_tick" if address == machine.address("looper_tick") else "nothing"
    for name in (*COUNTERS, "looper_tick"):
        start = machine.address(name)
        if address < start + (1 if name == "looper_tick" else 8) and start < address + length:
            return name
    return None


def expected_hits(registrations: list[Registration], machine: Machine, truth: Truth,
                  cpus: int, cpu: int | None, task: int | None) -> tuple[int, int] | None:
    """The (least, most) hits of registrations made together, bound as given; None if unknown."""
    first = registrations[0]
    now = None if first.watched is None else accesses(machine, truth, first.watched, first.type)
    if now is None or first.base is None:
        return None
    least_now, most_now = now
    least_then, most_then = first.base
    since = max(0, least_now - most_then), max(0, most_now - least_then)
    had = sum(r.hits_at_base for r in registrations)
    low, high = {"all": since, "some": (0, since[1]), "none": (0, 0)}[share(first.watched, cpus, cpu, task)]
    return had + low, had + high


# -- the checks (pure: text and model in, violations out) ---------------------------------------


def check_slot_table(text: str, cpus: int) -> list[str]:
    """One line per CPU and DR, each with one owner."""
    lines = records(text)
    problems = []
    seen = Counter((line.get("cpu"), line.get("dr")) for line in lines)
    for (cpu, dr), count in sorted(seen.items()):
        if count > 1:
            owners = [line["owner"] for line in lines if (line.get("cpu"), line.get("dr")) == (cpu, dr)]
            problems.append(f"cpu={cpu} dr={dr} has {count} owners: {', '.join(owners)}")
    wanted = {(str(c), str(d)) for c in range(cpus) for d in range(SLOTS)}
    for cpu, dr in sorted(wanted - set(seen)):
        problems.append(f"cpu={cpu} dr={dr} is missing from monitor slots")
    for cpu, dr in sorted(set(seen) - wanted):
        problems.append(f"monitor slots shows cpu={cpu} dr={dr}, which does not exist")
    for line in lines:
        owner = line.get("owner", "")
        if not re.fullmatch(r"free|kgdb|perf:\d+|ptrace:\d+", owner):
            problems.append(f"cpu={line.get('cpu')} dr={line.get('dr')}: unknown owner {owner!r}")
    return problems


def check_slot_owners(text: str, cpus: int, registrations: list[Registration], cpu_of: dict[int, int | None],
                      kgdb_pieces: Counter, settled: bool) -> list[str]:
    """perf and ptrace DRs are exactly the registrations that must be in, kgdb's are its pieces."""
    lines = records(text)
    problems = []
    for cpu in range(cpus):
        here = [line for line in lines if line.get("cpu") == str(cpu)]
        others = Counter((line["owner"], line["addr"], line["type"], line["len"]) for line in here
                         if line.get("owner", "free") not in ("free", "kgdb"))
        wanted = Counter(r.dr() for r in registrations if cpu in r.cpus_holding(cpu_of))
        for dr, count in sorted((others - wanted).items()):
            problems.append(f"cpu {cpu}: {count} DR(s) held by {' '.join(dr)}, which should not be there")
        for dr, count in sorted((wanted - others).items()):
            problems.append(f"cpu {cpu}: {' '.join(dr)} should hold {count} more DR(s): lost")
        # A DR kgdb reserved and holds no breakpoint in shows no address (type -).
        kgdb = Counter((int(line["addr"], 16), int(line["len"]), line["type"]) for line in here
                       if line.get("owner") == "kgdb" and line.get("type") != "-")
        for piece, count in sorted((kgdb - kgdb_pieces).items()):
            problems.append(f"cpu {cpu}: kgdb holds {count} DR(s) for {piece[0]:#x} len {piece[1]} {piece[2]}, "
                            "which no breakpoint of the session asks for")
        if settled:
            for piece, count in sorted((kgdb_pieces - kgdb).items()):
                problems.append(f"cpu {cpu}: kgdb's piece {piece[0]:#x} len {piece[1]} {piece[2]} is not in a DR "
                                "after the machine ran")
    return problems


def check_registrations(registrations: list[Registration], perf_text: str, ptrace_text: str,
                        machine: Machine, truth: Truth, cpus: int) -> list[str]:
    """Everything registered is listed as registered and counts what it saw; nothing else is listed."""
    listed = {("perf", int(r["id"])): r for r in records(perf_text)}
    listed |= {("ptrace", int(r["pid"]), int(r["dr"])): r for r in records(ptrace_text)}
    problems = []
    known = {r.key: r for r in registrations}
    for key in sorted(set(known) - set(listed)):
        problems.append(f"{known[key].owner} {key[1:]} was registered and is no longer listed: silently lost")
    for key in sorted(set(listed) - set(known)):
        problems.append(f"{key[0]} {key[1:]} is listed but was never registered: {listed[key]}")
    for key in sorted(set(known) & set(listed)):
        registration, line = known[key], listed[key]
        wrong = {k: line.get(k) for k, v in registration.listing.items() if line.get(k) != v}
        if wrong:
            problems.append(f"{registration.owner} {key[1:]} is listed with {wrong}, registered with "
                            f"{ {k: registration.listing[k] for k in wrong} }")
        hits = int(line.get("hits", -1))
        if hits < registration.hits:
            problems.append(f"{registration.owner} {key[1:]}: hits went down from {registration.hits} to {hits}")
        expected = expected_hits([registration], machine, truth, cpus, registration.cpu, registration.task)
        if expected is not None and not expected[0] <= hits <= expected[1]:
            problems.append(f"{registration.owner} {key[1:]} on {registration.watched} ({registration.type}): "
                            f"hits={hits}, the machine says {_span(expected)} {_why(registration, truth)}")
    groups: dict[int, list[Registration]] = {}
    for registration in registrations:
        if registration.group is not None:
            groups.setdefault(registration.group, []).append(registration)
    for group in groups.values():
        if len(group) == cpus and all(r.key in listed for r in group):  # a wide event with all its CPUs
            hits = sum(int(listed[r.key]["hits"]) for r in group)
            expected = expected_hits(group, machine, truth, cpus, None, None)
            if expected is not None and not expected[0] <= hits <= expected[1]:
                problems.append(f"wide perf event {group[0].group} on {group[0].watched} ({group[0].type}): "
                                f"hits={hits} over its CPUs, the machine says {_span(expected)} "
                                f"{_why(group[0], truth)}")
    return problems


def stop_problems(stop: Stop, *, modern: bool, stepped: bool, interrupted: bool,
                  requests: list[tuple[int, int, int]], software: set[int]) -> list[str]:
    """A stop reply that kgdb would send, for a reason the session asked for."""
    if stop.signal not in ((5, 2) if interrupted else (5,)):
        return [f"stopped with signal {stop.signal}: {stop.raw!r}"]
    if not modern:  # gdb_serial_stub: the thread packed by pack_threadid; SysRq-G stops with SIGTRAP
        ok = re.fullmatch(rb"T05thread:(?:[0-9a-f]{2}){1,4};", stop.raw)
        return [] if ok else [f"not a kgdb stop reply: {stop.raw!r}"]
    if stepped or stop.signal == 2:
        return []
    kinds = {"watch": 2, "rwatch": 3, "awatch": 4}
    if stop.reason in kinds:
        if any(k == kinds[stop.reason] and a <= stop.address < a + n for k, a, n in requests):
            return []
    elif stop.reason == "hwbreak":
        if any(k == 1 and a == stop.pc for k, a, _ in requests):
            return []
    elif stop.reason == "swbreak" and stop.pc in software:
        return []
    return [f"a stop no breakpoint of the session explains: {stop.raw!r}"]


def _why(registration: Registration, truth: Truth) -> str:
    return (f"(accesses then {_span(registration.base)}, hits then {registration.hits_at_base}; now {truth.counters}, "
            f"looper at {truth.looper_pc:#x}, CPUs at {', '.join(f'{pc:#x}' for pc in truth.cpu_pcs)})")


def _span(expected: tuple[int, int]) -> str:
    return str(expected[0]) if expected[0] == expected[1] else f"{expected[0]}..{expected[1]}"


def _pack_threadid(thread: int) -> bytes:
    """kgdb's pack_threadid: four big-endian bytes, leading zero bytes dropped."""
    return ((thread & 0xFFFFFFFF).to_bytes(4, "big").lstrip(b"\0") or b"\0").hex().encode()


# -- the model: what the stub must answer ----------------------------------------------------------


def pieces_of(kind: int, address: int, length: int, split: bool) -> list[tuple[int, int, str]]:
    """The DR pieces of a Z1-Z4 request: (address, length, type). The modern dialect
    splits a region into aligned 1/2/4/8-byte pieces; kgdb takes it whole."""
    dr_type = {1: "x", 2: "w", 3: "rw", 4: "rw"}[kind]
    if kind == 1:
        return [(address, 1, "x")]
    if not split:
        return [(address, length, dr_type)]
    pieces = []
    while length > 0:
        size = next(s for s in (8, 4, 2, 1) if address % s == 0 and s <= length)
        pieces.append((address, size, dr_type))
        address, length = address + size, length - size
    return pieces


class Model:
    """The session's breakpoints and Linux's slot rule (kernel/events/hw_breakpoint.c) over
    what the soak registered, with kgdb's reservations by policy: from it, the reply
    every registration and insert must get."""

    def __init__(self, cpus: int, policy: str, modern: bool):
        self.cpus, self.policy, self.modern = cpus, policy, modern
        self.registrations: dict[tuple, Registration] = {}
        self.held = [SLOTS if policy == "boot" else 0] * cpus  # kgdb's reservations on each CPU
        self.requests: list[tuple[int, int, int]] = []  # Z1-Z4: (kind, address, length)
        self.software: set[int] = set()
        # kgdb: removed software breakpoints, whose kgdb_break[] entries stay
        # theirs (reused for their own address alone) until every one goes.
        self.removed: set[int] = set()
        self.settled = True  # the machine ran since the requests last changed
        self.tracers_leave: dict[int, bool] = {}  # pid -> its tracer detaches when its continues are used up

    # -- the slot rule --

    def _pinned(self, cpu: int) -> int:
        return sum(r.cpu == cpu for r in self.registrations.values()) + self.held[cpu]

    def _of_task(self, task: int) -> int:
        return sum(r.task == task for r in self.registrations.values())

    def _need(self, cpu: int) -> int:
        tasks = {r.task for r in self.registrations.values() if r.task is not None}
        return self._pinned(cpu) + max((self._of_task(t) for t in tasks), default=0)

    def room(self, *, cpu: int | None, task: int | None) -> bool:
        """Would one more breakpoint bound so be accepted?"""
        cpus = range(self.cpus) if cpu is None else (cpu,)
        if task is None:
            return all(self._need(c) + 1 <= SLOTS for c in cpus)
        return all(self._pinned(c) + self._of_task(task) + 1 <= SLOTS for c in cpus)

    def _free_for_kgdb(self, cpu: int) -> int:
        return SLOTS - (self._need(cpu) - self.held[cpu])

    # -- sessions --

    def attach(self) -> None:
        if self.policy == "session":
            self.held = [self._free_for_kgdb(c) for c in range(self.cpus)]

    def clear_breakpoints(self) -> None:
        """`?`, detach or a vanished debugger: kgdb removes every breakpoint."""
        self.requests, self.software, self.removed, self.settled = [], set(), set(), True
        self._leftover_holds_what_it_uses()

    # -- software breakpoints (kgdb_break[], 1000 entries) --

    def software_insert_reply(self, address: int) -> bytes:
        if address in self.software:  # modern, as gdbserver, replaces the breakpoint's lists
            return b"OK" if self.modern else b"E17"
        held = len(self.software) + len(self.removed - {address})
        return b"OK" if address in self.removed or held < 1000 else b"E07"

    def software_inserted(self, address: int) -> None:
        self.software.add(address)
        self.removed.discard(address)

    def software_removed(self, address: int) -> None:
        self.software.discard(address)
        if not self.modern:
            self.removed.add(address)

    def detach(self) -> None:
        self.clear_breakpoints()
        if self.policy != "boot":
            self.held = [0] * self.cpus

    # -- kgdb's hardware breakpoints --

    def pieces(self, requests: list[tuple[int, int, int]] | None = None) -> Counter:
        """breakinfo's entries: one per distinct piece (modern) or one per request (kgdb)."""
        pieces = [p for r in (self.requests if requests is None else requests)
                  for p in pieces_of(*r, split=self.modern)]
        return Counter(set(pieces)) if self.modern else Counter(pieces)

    def _in_use(self) -> int:
        return sum(self.pieces().values())

    def _leftover_holds_what_it_uses(self) -> None:
        if self.policy == "leftover":
            self.held = [self._in_use()] * self.cpus

    def insert_reply(self, kind: int, address: int, length: int) -> bytes:
        def refused(code: int) -> bytes:
            return b"E%02d" % code if self.modern else b"E01"  # kgdb answers every refusal alike

        if self.modern and kind == 1 and (1, address, 1) in self.requests:
            return b"OK"  # inserted again, as gdbserver takes it: the breakpoint's lists are replaced
        if self.modern and kind != 1 and length <= 0:
            return refused(errno.EINVAL)
        if self.modern and kind != 1 and length > SLOTS * 8:
            return refused(errno.ENOSPC)
        if not self.modern and kind == 3:
            return refused(errno.EPERM)
        if not self.modern and kind != 1 and length not in (1, 2, 4, 8):
            return refused(errno.EINVAL)
        more = sum(self.pieces(self.requests + [(kind, address, length)]).values()) - self._in_use()
        if self._in_use() + more > SLOTS:
            return refused(errno.ENOSPC)
        if self.policy == "leftover":
            fits = all(self._need(c) + more <= SLOTS for c in range(self.cpus))
        else:
            fits = self._in_use() + more <= min(self.held)
        return b"OK" if fits else refused(errno.ENOSPC)

    def insert(self, kind: int, address: int, length: int) -> None:
        if self.modern and kind == 1 and (1, address, 1) in self.requests:
            return
        self.requests.append((kind, address, length))
        self._leftover_holds_what_it_uses()
        self.settled = False

    def matching_request(self, kind: int, address: int, length: int) -> tuple[int, int, int] | None:
        if self.modern:
            wanted = (kind, address, 1 if kind == 1 else length)
            return wanted if wanted in self.requests else None
        return next((r for r in self.requests if r[1] == address), None)  # kgdb matches the address alone

    def remove(self, request: tuple[int, int, int]) -> None:
        self.requests.remove(request)
        self._leftover_holds_what_it_uses()

    def sure_stop(self, machine: Machine) -> bool:
        """Will a continue certainly stop? The timer ticks every round."""
        jiffies = machine.address("jiffies")
        sure = {machine.address(f) for f in SURE_STOPS}
        return bool(self.software & sure) or any(
            (kind == 1 and address in sure) or (kind != 1 and address < jiffies + 8 and jiffies < address + length)
            for kind, address, length in self.requests)

    # -- policies --

    def policy_outcome(self, name: str) -> str:
        if self._in_use():
            return "EBUSY"  # asked before the name is looked at
        if name not in POLICIES:
            return "invalid"
        if name == "boot" and any(self._free_for_kgdb(c) < SLOTS for c in range(self.cpus)):
            return "ENOSPC"
        return "ok"

    def switch_policy(self, name: str) -> None:
        self.policy = name
        self.held = [self._free_for_kgdb(c) if name != "leftover" else 0 for c in range(self.cpus)]

    # -- perf and ptrace --

    def register(self, registration: Registration) -> None:
        self.registrations[registration.key] = registration

    def unregister(self, key: tuple) -> None:
        del self.registrations[key]

    def tracee_drs(self, pid: int) -> list[int]:
        return sorted(key[2] for key in self.registrations if key[:2] == ("ptrace", pid))

    def tracers_gone(self, listed: set[int]) -> list[int]:
        """Tracees whose tracer detached since the last look: it had continues, it is no longer listed.

        Their DRs go with the tracer; a tracer told to keep its tracee never leaves by itself.
        """
        gone = [pid for pid, leaves in self.tracers_leave.items() if leaves and pid not in listed]
        for pid in gone:
            for dr in self.tracee_drs(pid):
                self.unregister(("ptrace", pid, dr))
            del self.tracers_leave[pid]
        return gone


# -- servers and gdb ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    dialect: str
    policy: str
    scenario: str | None  # a name, or the path of the perf-and-ptrace scenario
    cpus: int
    trace: str | None = None  # --trace to a log that cannot be written: one line on stderr, the stub serves on

    def __str__(self) -> str:
        scenario = Path(self.scenario).stem if self.scenario else "default"
        return f"{self.dialect} {self.policy} {scenario} cpus={self.cpus}" + (f" trace={self.trace}" if self.trace else "")


def random_config(rng: random.Random, perf_and_ptrace: Path) -> Config:
    return Config(dialect=rng.choice(["modern", "modern", "kgdb"]), policy=rng.choice(POLICIES),
                  scenario=rng.choice([str(perf_and_ptrace), str(perf_and_ptrace), "perf-watch", "ptrace-loop", None]),
                  cpus=rng.choice([2, 2, 1, 3]),
                  trace=rng.choice([None, None, None, "/dev/full"]) if os.path.exists("/dev/full") else None)


class EpochOver(Exception):
    """The server died or stopped answering, or its machine broke: the epoch ends."""


@dataclass
class Server:
    process: trio.Process
    address: str
    elf: Path
    stderr: object  # a binary temporary file

    def alive(self) -> bool:
        return self.process.poll() is None

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-3000:].decode("utf-8", "replace")


@contextlib.asynccontextmanager
async def serving(config: Config, *, pty: bool = False):
    """`kgdbstub serve` for the block, once its two contract lines are out (on a pty: its slave is the address)."""
    argv = [sys.executable, "-m", "kgdbstub", "serve", *(["--pty"] if pty else ["--tcp", "127.0.0.1:0"]),
            "--cpus", str(config.cpus), "--policy", config.policy, "--dialect", config.dialect]
    if config.scenario:
        argv += ["--scenario", config.scenario]
    if config.trace:
        argv += ["--trace", config.trace]
    with tempfile.TemporaryFile() as stderr:
        process = await trio.lowlevel.open_process(argv, cwd=ROOT, stdin=subprocess.DEVNULL,
                                                   stdout=subprocess.PIPE, stderr=stderr)
        try:
            said = b""
            with trio.fail_after(STARTUP_SECONDS):
                while said.count(b"\n") < 2:
                    chunk = await process.stdout.receive_some()
                    if not chunk:
                        stderr.seek(0)
                        raise RuntimeError(f"{' '.join(argv)} ended: {said!r} {stderr.read()!r}")
                    said += chunk
            first, second = said.decode().splitlines()[:2]
            address = re.fullmatch(r"listening on (?:tcp|pty):(\S+)", first)[1]
            elf = ROOT / re.fullmatch(r"symbols: (.+)", second)[1]
            yield Server(process, address, elf, stderr)
        finally:
            with trio.CancelScope(shield=True):
                process.terminate()
                with trio.move_on_after(5):
                    await process.wait()
                if process.poll() is None:
                    process.kill()
                    with trio.move_on_after(5):
                        await process.wait()
                await process.stdout.aclose()


async def run_gdb(address: str, elf: Path, commands: list[str]) -> tuple[int, str] | None:
    """gdb in batch mode against the stub: its exit status and output, or None if it did not finish in time."""
    argv = [GDB, "-nx", "-batch", "-iex", "set debuginfod enabled off", "-ex", "set confirm off",
            "-ex", "set pagination off", "-ex", "set width 0", "-ex", f"file {elf}", "-ex", f"target remote {address}"]
    for command in commands:
        argv += ["-ex", command]
    environment = dict(os.environ, TERM="dumb")
    environment.pop("DEBUGINFOD_URLS", None)
    with tempfile.TemporaryDirectory(prefix="kgdbstub-soak-gdb-") as where:  # for the core of a gdb that crashes
        with trio.move_on_after(GDB_SECONDS):
            done = await trio.run_process(argv, capture_stdout=True, stderr=subprocess.STDOUT, check=False,
                                          env=environment, cwd=where)
            return done.returncode, done.stdout.decode("utf-8", "replace")
    return None


KGDB_AMBIGUOUS_STOP = re.compile(r"multi-threaded target stopped without sending a thread-id")
GDB_STEP_OVER = re.compile(r"internal-error: finish_step_over")
GDB_TROUBLE = re.compile(r"Remote connection closed|Remote communication error|Ignoring packet error|"
                         r"Protocol error|internal-error|Malformed|Remote replied unexpectedly")


# -- the soak ---------------------------------------------------------------------------------------


@dataclass
class Figures:
    seconds: float = 0.0
    epochs: int = 0
    operations: int = 0
    reconnects: int = 0
    packets: int = 0
    stops: int = 0
    interrupts: int = 0
    gdb_sessions: int = 0
    gdb_kgdb_quirks: int = 0
    hostile_clients: int = 0
    checks: int = 0
    determinism_compared: int = 0
    violations: int = 0
    configurations: list[str] = field(default_factory=list)


def resident(server: Server) -> int:
    """The server's resident memory, in bytes."""
    with open(f"/proc/{server.process.pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def report(figures: Figures, where: str, problem: str) -> None:
    figures.violations += 1
    print(f"VIOLATION [{where}] {problem}", flush=True)


class Soak:
    """One server driven by one sequence of operations, checked after each."""

    def __init__(self, server: Server, config: Config, machine: Machine, seed: int, figures: Figures,
                 label: str, *, skip: frozenset[str] = frozenset(), verbose: bool = False,
                 background: trio.Nursery | None = None):
        self.server, self.config, self.machine, self.figures = server, config, machine, figures
        self.background = background  # checks that go on while the soak does (a newcomer closed in time)
        self.rng = random.Random(seed)
        self.label, self.skip, self.verbose = label, skip, verbose
        self.modern = config.dialect == "modern"
        self.model = Model(config.cpus, config.policy, self.modern)
        self.deterministic = True
        self.target: Target | None = None
        self.stop_pc: int | None = None
        self.sent, self.received = bytearray(), bytearray()  # every byte of every session
        self.operation, self.doing = 0, "start"

    # -- plumbing --

    def violation(self, problem: str) -> None:
        report(self.figures, f"{self.label} op {self.operation}: {self.doing}", problem)

    def _record(self, direction: str, data: bytes) -> None:
        (self.sent if direction == "->" else self.received).extend(data)

    async def request(self, payload: bytes) -> bytes:
        return await self.target.request(payload)

    async def expect(self, payload: bytes, wanted: bytes | set[bytes]) -> bytes:
        self.doing = payload.decode("latin-1")[:60]
        reply = await self.request(payload)
        wanted = {wanted} if isinstance(wanted, bytes) else wanted
        if reply not in wanted:
            self.violation(f"answered {reply[:80]!r}, expected {' or '.join(map(repr, sorted(wanted)))}")
        return reply

    async def monitor(self, command: str) -> str:
        self.doing = f"monitor {command}"
        return await self.target.monitor(command)

    async def connect(self) -> None:
        self.sent += b"\n--connect--\n"
        self.received += b"\n--connect--\n"
        self.target = await connect(self.server.address, timeout=REPLY_SECONDS, no_ack=self.rng.random() < 0.6,
                                    elf=self.server.elf, trace=self._record)
        self.stop_pc = await self._stopped_pc(self.target.stop)

    async def disconnect(self, how: str) -> None:
        """Leave as gdb does: detach, kill, or vanish (close without a word)."""
        self.doing = how
        if how == "detach":
            await self.target.detach()
        elif how == "kill":
            await self.target.request(b"k")
        await self.target.close()
        self.target = None
        self.model.detach()

    async def start(self) -> None:
        """Connect, and take the scenario's perf events and ptrace DRs as the first registrations."""
        await self.connect()
        perf, ptrace = await self.monitor("perf"), await self.monitor("ptrace")
        groups: dict[tuple, int] = {}
        for line in records(perf):
            cpu = None if line["cpu"] == "all" else int(line["cpu"])
            task = None if line["task"] == "-" else int(line["task"])
            group = groups.setdefault((line["addr"], line["type"], line["len"]), int(line["id"])) \
                if line["kind"] == "wide" else None
            listing = {k: line[k] for k in ("kind", "cpu", "task", "addr", "type", "len")}
            self._adopt(f"perf:{line['id']}", ("perf", int(line["id"])), cpu, task, int(line["len"]), line,
                        listing, group)
        for line in records(ptrace):  # the listing has no length: the scenarios' DRs execute
            self._adopt(f"ptrace:{line['pid']}", ("ptrace", int(line["pid"]), int(line["dr"])), None,
                        int(line["pid"]), 1, line, {"addr": line["addr"], "type": line["type"]}, None)
            self.model.tracers_leave[int(line["pid"])] = int(line["ignore_left"]) > 0
        self.model.attach()
        await self.check()

    def _adopt(self, owner: str, key: tuple, cpu: int | None, task: int | None, length: int,
               line: dict[str, str], listing: dict[str, str], group: int | None) -> None:
        address = int(line["addr"], 16)
        registration = Registration(owner, key, cpu, task, address, length, line["type"],
                                    watched_by(self.machine, address, length, line["type"]), listing, group,
                                    hits_at_base=int(line["hits"]))
        self.model.register(registration)

    async def _stopped_pc(self, stop: Stop | None) -> int:
        if stop is not None and stop.pc is not None:
            return stop.pc
        return await self.target.read_register("rip")

    # -- the loop --

    def operations(self):
        """(weight, operation, allowed in the deterministic part)."""
        return [
            (10, self.insert_hardware, True), (5, self.remove_hardware, True),
            (4, self.insert_software, True), (3, self.remove_software, True),
            (12, self.resume, True), (5, self.step, True),
            (5, self.memory, True), (4, self.registers, True), (4, self.threads, True),
            (5, self.perf_add, True), (3, self.perf_del, True),
            (3, self.ptrace_add, True), (1, self.ptrace_del, True),
            (2, self.policy, True), (1, self.status, True), (1, self.probe_capacity, True),
            (2, self.hostile_register, True), (1, self.breakpoint_flood, True),
            (1, self.host_io, True), (3, self.reconnect, True),
            (1, self.gdb_session, False), (1, self.floods, False), (1, self.newcomers, False),
            (1, self.pty_line, False),
        ]

    async def run(self, *, count: int | None = None, until: float | None = None) -> None:
        skip = self.skip | ({"gdb_session"} if GDB is None else set())
        choices = [(w, op) for w, op, deterministic in self.operations()
                   if (deterministic or not self.deterministic) and op.__name__ not in skip]
        operations, weights = zip(*[(op, w) for w, op in choices])
        done = 0
        while (count is None or done < count) and (until is None or time.monotonic() < until):
            done += 1
            self.operation += 1
            self.figures.operations += 1
            operation = self.rng.choices(operations, weights)[0]
            if not self.deterministic and done == 1 and "gdb_session" not in skip:
                operation = self.gdb_session  # at least one real gdb in each epoch
            if self.verbose:
                print(f"{self.label} op {self.operation}: {operation.__name__}", flush=True)
            try:
                await operation()
                await self.check()
            except ClientError as error:
                self.violation(f"{type(error).__name__}: {error}")
                await self.recover()

    async def recover(self) -> None:
        """After a failed request: drop the connection and come back, if the server lives."""
        if self.target is not None:
            await self.target.close()
            self.target = None
            self.model.detach()
        if not self.server.alive():
            self.violation(f"the server died (status {self.server.process.returncode}):\n{self.server.stderr_tail()}")
            raise EpochOver
        try:
            await self.connect()
            self.model.attach()
        except ClientError as error:
            self.violation(f"cannot reconnect: {error}")
            raise EpochOver from None

    # -- the invariants --

    async def check(self) -> None:
        self.figures.checks += 1
        what = self.doing
        if not self.server.alive():
            self.violation(f"the server died (status {self.server.process.returncode}):\n{self.server.stderr_tail()}")
            raise EpochOver
        slots, perf = await self.monitor("slots"), await self.monitor("perf")
        ptrace, ps = await self.monitor("ptrace"), await self.monitor("ps")
        self.doing = f"check after {what}"
        tasks = {int(r["pid"]): r for r in records(ps) if r.get("pid") != "0"}
        if tasks.get(INIT, {}).get("comm") != "init" or tasks.get(LOOPER, {}).get("comm") != "looper":
            self.violation(f"init and looper are not both in monitor ps:\n{ps}")
            return
        truth = await self.read_truth()
        self.doing = f"check after {what}"
        for pid in self.model.tracers_gone({int(r["pid"]) for r in records(ptrace)}):
            if tasks.get(pid, {}).get("state") == "T":
                self.violation(f"the tracer of pid {pid} detached and left it stopped")
        registrations = list(self.model.registrations.values())
        for registration in registrations:
            if registration.base is None:
                registration.base = accesses(self.machine, truth, registration.watched or "nothing", registration.type)
        cpu_of = {pid: None if r["cpu"] == "-" else int(r["cpu"]) for pid, r in tasks.items()}
        problems = check_slot_table(slots, self.config.cpus)
        problems += check_slot_owners(slots, self.config.cpus, registrations, cpu_of, self.model.pieces(),
                                      self.model.settled)
        problems += check_registrations(registrations, perf, ptrace, self.machine, truth, self.config.cpus)
        if self.config.trace and (said := self.server.stderr_tail()).count("tracing stopped") != 1:
            problems.append(f"--trace {self.config.trace} cannot be written: one line on stderr expected, got:\n{said}")
        for problem in problems:
            self.violation(problem)
        hits = {("perf", int(r["id"])): int(r["hits"]) for r in records(perf)}
        hits |= {("ptrace", int(r["pid"]), int(r["dr"])): int(r["hits"]) for r in records(ptrace)}
        for registration in registrations:
            registration.hits = hits.get(registration.key, registration.hits)

    async def read_truth(self) -> Truth:
        # Linux's kgdb reads no user memory (copy_from_kernel_nofault_allowed): the looper's counter is out of reach.
        readable = COUNTERS if self.modern else [c for c in COUNTERS if c != "looper_iterations"]
        counters = {name: await self.target.read_int(self.machine.address(name)) for name in readable}
        looper_pc = await self.target.read_register("rip", thread=LOOPER)
        cpu_pcs = tuple([await self.target.read_register("rip", thread=-(cpu + 2)) for cpu in range(self.config.cpus)])
        return Truth(counters, looper_pc, cpu_pcs)

    # -- breakpoints --

    def _watch_region(self) -> tuple[int, int]:
        base = self.machine.address(self.rng.choice(WATCHABLE))
        shape = self.rng.random()
        if shape < 0.6:  # what gdb asks for a variable: aligned, inside it
            length = self.rng.choice((1, 2, 4, 8))
            return base + self.rng.randrange(0, 8, length), length
        if shape < 0.95:  # a region: split over slots, or too long
            return base + self.rng.randint(-4, 12), self.rng.randint(1, 40)
        return base, 0

    async def insert_hardware(self) -> None:
        kind = self.rng.choice((1, 2, 2, 3, 4))
        if self.model.requests and self.rng.random() < 0.15:
            kind, address, length = self.rng.choice(self.model.requests)  # the same again: shared
        elif kind == 1:
            address, length = self.machine.address(self.rng.choice(EXECUTE_TARGETS)), 1
        else:
            address, length = self._watch_region()
        reply = await self.expect(b"Z%d,%x,%x" % (kind, address, length),
                                  self.model.insert_reply(kind, address, length))
        if reply == b"OK":
            self.model.insert(kind, address, length)

    async def remove_hardware(self) -> None:
        if self.model.requests and self.rng.random() < 0.8:
            kind, address, length = self.rng.choice(self.model.requests)
        else:
            kind, (address, length) = self.rng.choice((2, 3, 4)), self._watch_region()
        request = self.model.matching_request(kind, address, length)
        wanted = b"OK" if request else (b"E02" if self.modern else b"E01")
        if await self.expect(b"z%d,%x,%x" % (kind, address, length), wanted) == b"OK" and request:
            self.model.remove(request)

    async def insert_software(self, address: int | None = None) -> None:
        if address is None:
            address = self.machine.address(self.rng.choice(KERNEL_FUNCTIONS))
        if await self.expect(b"Z0,%x,1" % address, self.model.software_insert_reply(address)) == b"OK":
            self.model.software_inserted(address)

    async def remove_software(self) -> None:
        address = self.machine.address(self.rng.choice(KERNEL_FUNCTIONS))
        if self.model.software and self.rng.random() < 0.8:
            address = self.rng.choice(sorted(self.model.software))
        wanted = b"OK" if address in self.model.software else b"E02"  # ENOENT
        if await self.expect(b"z0,%x,1" % address, wanted) == b"OK":
            self.model.software_removed(address)

    # -- running --

    async def _step_over_software_breakpoint(self) -> bool:
        """What gdb does to go on from a software breakpoint: take it out, step, put it back."""
        address = self.stop_pc
        if address not in self.model.software:
            return False
        await self.expect(b"z0,%x,1" % address, b"OK")
        self.model.software_removed(address)
        self.doing = "s (over a software breakpoint)"
        await self._stopped(await self.target.step(), stepped=True)
        await self.expect(b"Z0,%x,1" % address, b"OK")
        self.model.software_inserted(address)
        return True

    async def _stopped(self, stop: Stop, *, stepped: bool = False, interrupted: bool = False) -> None:
        self.figures.stops += 1
        self.model.settled = True
        for problem in stop_problems(stop, modern=self.modern, stepped=stepped, interrupted=interrupted,
                                     requests=self.model.requests, software=self.model.software):
            self.violation(problem)
        if stop.signal not in (2, 5):  # the machine faulted: what follows would be its wreck
            raise EpochOver
        self.stop_pc = await self._stopped_pc(stop)
        if not self.modern and not stepped and self.stop_pc - 1 in self.model.software:
            # Linux leaves the pc after the int3; gdb puts it back on the breakpoint.
            self.stop_pc -= 1
            await self.expect(b"P10=%s" % self.stop_pc.to_bytes(8, "little").hex().encode(), b"OK")

    async def resume(self) -> None:
        if self.deterministic and not self.model.sure_stop(self.machine):
            await self.insert_software(self.machine.address(self.rng.choice(SURE_STOPS)))
        await self._step_over_software_breakpoint()
        self.doing = "c"
        await self.target.resume_nowait()
        if self.deterministic:  # something will stop it: no wall clock in what happens
            await self._stopped(await self.target.wait_stop(timeout=REPLY_SECONDS))
            return
        try:
            stop = await self.target.wait_stop(timeout=self.rng.choice((0.01, 0.05, 0.2, 0.5)))
            await self._stopped(stop)
        except Timeout:  # nothing stopped it yet: Ctrl-C
            self.doing = "c, then Ctrl-C"
            self.figures.interrupts += 1
            sequence = "Ctrl-C" if self.modern else "BREAK-g"  # kgdb ignores a 0x03
            await self._stopped(await self.target.interrupt(timeout=REPLY_SECONDS, sequence=sequence),
                                interrupted=True)

    async def step(self) -> None:
        for _ in range(self.rng.randint(1, 4)):
            if not await self._step_over_software_breakpoint():
                self.doing = "s"
                await self._stopped(await self.target.step(timeout=REPLY_SECONDS), stepped=True)

    async def status(self) -> None:
        await self.expect(b"?", self.target.stop.raw if self.modern else b"S05")
        self.model.clear_breakpoints()  # kgdb's `?` removes them all

    # -- memory, registers, threads --

    async def memory(self) -> None:
        choice = self.rng.random()
        if choice < 0.1:  # nothing is mapped there (gdb_cmd_memread answers EINVAL for any failure)
            await self.expect(b"m%x,40" % self.rng.choice((0x10, 0xDEAD00000000)), b"E14" if self.modern else b"E22")
            return
        name = self.rng.choice((*WATCHABLE, *EXECUTE_TARGETS))
        address = self.machine.address(name) + self.rng.randint(0, 16)
        self.doing = f"m {name}+{address - self.machine.address(name)}"
        if not self.modern and (address < USER_SPACE_END or name in KERNEL_FUNCTIONS):
            await self._kgdb_out_of_reach(address, choice)
            return
        data = await self.target.read_memory(address, self.rng.choice((1, 8, 64, 300)))
        image = self.machine.file_bytes(address, len(data))
        if name in EXECUTE_TARGETS and image is not None and data != image:  # an int3 left in, say
            self.violation(f"the code at {address:#x} reads {data.hex()}, the image has {image.hex()}")
        if choice < 0.5:
            return
        if choice < 0.6:  # a variable nothing reads
            address, data = self.machine.address("looper_last_child"), self.rng.randbytes(8)
            if not self.modern:  # the looper's, out of kgdb's reach
                await self._kgdb_out_of_reach(address, choice)
                return
        # Otherwise what is there is written back: the counters must not change under the soak.
        binary = choice < 0.8
        await self.expect((b"X%x,%x:" % (address, len(data)) + data) if binary
                          else b"M%x,%x:%s" % (address, len(data), data.hex().encode()), b"OK")
        self.doing = "read back"
        if (back := await self.target.read_memory(address, len(data))) != data:
            self.violation(f"wrote {data.hex()} at {address:#x}, read back {back.hex()}")

    async def _kgdb_out_of_reach(self, address: int, choice: float) -> None:
        """Linux's kgdb reads no user memory (copy_from_kernel_nofault_allowed: E22) and writes
        neither it nor kernel text (copy_to_kernel_nofault faults: E14)."""
        if address < USER_SPACE_END:
            await self.expect(b"m%x,8" % address, b"E22")
        if choice >= 0.5:
            await self.expect(b"M%x,1:cc" % address, b"E14")

    async def registers(self) -> None:
        if not self.modern:
            # kgdb writes the registers of the task it stopped in alone (E22 for
            # another's): Hg0 selects it, as a new stop does.
            await self.expect(b"Hg0", b"OK")
        self.doing = "g"
        layout = await self.target.registers_layout()
        reply = await self.request(b"g")
        if len(reply) != 2 * sum(r.size for r in layout):
            self.violation(f"g: {len(reply)} hex digits for a layout of {sum(r.size for r in layout)} bytes")
            return
        if self.rng.random() < 0.5:
            await self.expect(b"G" + reply, b"OK")
        else:
            register = self.rng.choice(layout)
            offset = 2 * sum(r.size for r in layout[: layout.index(register)])
            value = reply[offset : offset + 2 * register.size]
            await self.expect(b"p%x" % register.number, value)
            await self.expect(b"P%x=%s" % (register.number, value), b"OK")
        await self.expect(b"g", reply)

    async def hostile_register(self) -> None:
        """A register written with 0, all ones or an odd value: taken, or refused with nothing changed.
        The registers are put back after, so that the machine runs on as the model has it."""
        if not self.modern:
            await self.expect(b"Hg0", b"OK")  # kgdb writes the registers of the task it stopped in alone
        self.doing = "g"
        layout = await self.target.registers_layout()
        before = await self.request(b"g")
        register = self.rng.choice(layout)
        top = (1 << (8 * register.size)) - 1
        value = self.rng.choice((0, top, 8, 0x2B, 0xFFFF & top, self.rng.randrange(top + 1)))
        reply = await self.expect(b"P%x=%s" % (register.number, value.to_bytes(register.size, "little").hex().encode()),
                                  {b"OK", b"E22"})
        if reply == b"E22":
            await self.expect(b"g", before)  # a refused write changed nothing
        await self.expect(b"G" + before, b"OK")
        await self.expect(b"g", before)

    async def breakpoint_flood(self) -> None:
        """More software breakpoints than kgdb holds (1000: the rest get E07), and one hardware request
        made again and again; all taken out again, so that the model is as it was."""
        text = self.machine.address("start_kernel")
        added = []
        for address in range(text, text + 1000 + self.rng.randrange(1, 50)):
            if address in self.model.software:
                continue
            if await self.expect(b"Z0,%x,1" % address, self.model.software_insert_reply(address)) == b"OK":
                self.model.software_inserted(address)
                added.append(address)
        for address in added:
            await self.expect(b"z0,%x,1" % address, b"OK")
            self.model.software_removed(address)
        if not self.modern:
            # Their entries stay theirs (dbg_remove_sw_break) until `?` frees every one.
            await self.expect(b"?", b"S05")
            self.model.clear_breakpoints()
        if not self.modern:
            return  # kgdb gives each request an entry of its own: four at most, as insert_hardware tries
        kind, (address, length) = self.rng.choice((2, 4)), self._watch_region()
        wanted = self.model.insert_reply(kind, address, length)
        if self.model.matching_request(kind, address, length):
            return  # one of the session's own: removing the copies would take it out too
        times = self.rng.randrange(2, 2000)
        for _ in range(times):
            await self.expect(b"Z%d,%x,%x" % (kind, address, length), wanted)
        if wanted == b"OK":
            for _ in range(times):
                await self.expect(b"z%d,%x,%x" % (kind, address, length), b"OK")
        await self.expect(b"z%d,%x,%x" % (kind, address, length), b"E02")

    async def threads(self) -> None:
        self.doing = "thread list"
        threads = await self.target.threads()
        names = {t.id: t.name for t in threads}
        wanted = {-(cpu + 2): f"shadowCPU{cpu}" for cpu in range(self.config.cpus)} | {INIT: "init", LOOPER: "looper"}
        if any(names.get(thread) != name for thread, name in wanted.items()):
            self.violation(f"threads: {names}, expected at least {wanted}")
        thread = self.rng.choice(threads).id
        await self.expect(b"T%08x" % (thread & 0xFFFFFFFF), b"OK")
        await self.expect(b"Hg%08x" % (thread & 0xFFFFFFFF), b"OK")
        if self.modern:
            await self.expect(b"qC", b"QC%08x" % (thread & 0xFFFFFFFF))
        elif self.target.stop is not None and self.target.stop.thread is not None:
            # gdb_cmd_query: the task kgdb stopped in, whatever Hg chose.
            await self.expect(b"qC", b"QC" + _pack_threadid(self.target.stop.thread))
        await self.expect(b"Hc%08x" % (thread & 0xFFFFFFFF), b"OK")
        if not self.modern:
            # kgdb resumes only the task it stopped in (c and s answer E22
            # after Hc of another): gdb sends Hc0 before it resumes.
            await self.expect(b"Hc0", b"OK")
        await self.expect(b"Hg7777", b"E22")
        await self.expect(b"T7777", b"E22")
        if self.rng.random() < 0.5:
            await self.expect(b"Hg0", b"OK")

    async def host_io(self) -> None:
        self.doing = "host I/O: the image"
        try:
            data = await self.target.read_file(await self.target.exec_file())
        except Unsupported:
            if self.modern:
                self.violation("the modern dialect does not serve the image")
            return
        if data != self.machine.elf_bytes:
            self.violation(f"host I/O served {len(data)} bytes that are not the image's")

    # -- perf and ptrace --

    async def perf_add(self) -> None:
        watched = self.rng.choice((*COUNTERS, "looper_tick"))
        address = self.machine.address(watched)
        # perf's bp_len of an execute breakpoint is sizeof(long).
        dr_type, length = ("x", 8) if watched == "looper_tick" else (self.rng.choice(("w", "w", "rw")), 8)
        if watched != "looper_tick":
            length = self.rng.choice((1, 2, 4, 8))
            address += self.rng.randrange(0, 8, length)
        if self.rng.random() < 0.1:  # refused once a slot is found (EINVAL, EOPNOTSUPP for w 16)
            dr_type, length = self.rng.choice((("r", 8), ("w", 3), ("x", 1), ("w", 16)))
        where = self.rng.choice(("wide", "wide", "cpu", "task"))
        cpu = task = None
        if where == "cpu":
            cpu = self.rng.randrange(self.config.cpus + (self.rng.random() < 0.1))
        elif where == "task":
            task = self.rng.choice((LOOPER, LOOPER, INIT, 999))
        await self.add_perf(where, cpu, task, address, dr_type, length)

    async def add_perf(self, where: str, cpu: int | None, task: int | None, address: int, dr_type: str,
                       length: int) -> list[int]:
        binding = {"wide": "wide", "cpu": f"cpu={cpu}", "task": f"task={task}"}[where]
        bound = (cpu is None or cpu < self.config.cpus) and task in (None, INIT, LOOPER)
        parsed = (dr_type == "x" and length == 8) or (dr_type in ("w", "rw") and length in (1, 2, 4, 8)
                                                        and address % length == 0)
        # register_perf_hw_breakpoint reserves the slot, then parses; a wide
        # request registers CPU by CPU and stops at the first refusal.
        if not bound:
            wanted = "invalid"
        elif not self.model.room(cpu=0 if where == "wide" else cpu, task=task):
            wanted = "ENOSPC"
        else:
            wanted = "invalid" if not parsed else "ok" if self.model.room(cpu=cpu, task=task) else "ENOSPC"
        said = await self.monitor(f"perf add {binding} {address:#x} {dr_type} {length}")
        ids = [int(i) for i in re.findall(r"^id=(\d+)$", said, re.MULTILINE)]
        got = "ok" if ids else "ENOSPC" if said.startswith("error: ENOSPC") else "invalid"
        if got != wanted or (ids and len(ids) != (self.config.cpus if where == "wide" else 1)):
            self.violation(f"answered {said!r}, expected {wanted}")
        for index, event in enumerate(ids):
            bound = index if where == "wide" else cpu
            listing = {"kind": where, "cpu": "all" if bound is None else str(bound), "task": str(task or "-"),
                       "addr": f"{address:#x}", "type": dr_type, "len": str(length)}
            self.model.register(Registration(
                f"perf:{event}", ("perf", event), bound, task, address, length, dr_type,
                watched_by(self.machine, address, length, dr_type), listing, ids[0] if where == "wide" else None))
        return ids

    async def perf_del(self) -> None:
        events = sorted(key[1] for key in self.model.registrations if key[0] == "perf")
        event = self.rng.choice(events) if events and self.rng.random() < 0.8 else self.rng.randint(1, 40)
        await self.delete_perf(event)

    async def delete_perf(self, event: int) -> None:
        known = ("perf", event) in self.model.registrations
        said = await self.monitor(f"perf del {event}")
        if said != ("" if known else f"no perf event {event}\n"):
            self.violation(f"answered {said!r}")
        if known:
            self.model.unregister(("perf", event))

    async def ptrace_add(self) -> None:
        pid = self.rng.choice((LOOPER, LOOPER, LOOPER, INIT, 999))
        if self.rng.random() < 0.5:
            watched, dr_type, length = "looper_tick", "x", 1
        else:
            watched, dr_type, length = "looper_iterations", self.rng.choice(("w", "rw")), self.rng.choice((1, 2, 4, 8))
        address = self.machine.address(watched) + (self.rng.randrange(0, 8, length) if dr_type != "x" else 0)
        if self.rng.random() < 0.15:  # refused: kernel space, a length DR7 cannot say, unaligned, not a type
            address, dr_type, length = self.rng.choice((
                (self.machine.address("jiffies"), "w", 8), (address, "w", 3), (address | 1, "w", 2), (address, "r", 1)))
        continues = self.rng.choice((0, 1, 5, 100, 10_000, 1_000_000, 10_000_000))
        invalid = (pid not in (INIT, LOOPER) or dr_type not in ("x", "w", "rw") or length not in (1, 2, 4, 8)
                   or address % length != 0 or address >= USER_SPACE_END or (dr_type == "x" and length != 1))
        full = len(self.model.tracee_drs(pid)) == SLOTS or not self.model.room(cpu=None, task=pid)
        wanted = ({"invalid"} if invalid else set()) | ({"ENOSPC"} if full else set()) or {"ok"}
        said = await self.monitor(f"ptrace add {pid} {address:#x} {dr_type} {length} {continues}")
        index = re.fullmatch(r"dr=(\d)\n", said)
        got = "ok" if index else "ENOSPC" if said.startswith("error: ENOSPC") else "invalid"
        if got not in wanted:
            self.violation(f"answered {said!r}, expected {' or '.join(sorted(wanted))}")
        if index:
            dr = int(index[1])
            free = next(i for i in range(SLOTS) if i not in self.model.tracee_drs(pid))
            if dr != free:
                self.violation(f"the tracer got DR{dr}; its first free one is DR{free}")
            self.model.register(Registration(
                f"ptrace:{pid}", ("ptrace", pid, dr), None, pid, address, length, dr_type,
                watched_by(self.machine, address, length, dr_type), {"addr": f"{address:#x}", "type": dr_type}))
            self.model.tracers_leave[pid] = continues > 0  # the latest count is the tracer's, for all its DRs

    async def ptrace_del(self) -> None:
        tracees = sorted({key[1] for key in self.model.registrations if key[0] == "ptrace"})
        pid = self.rng.choice(tracees) if tracees and self.rng.random() < 0.8 else self.rng.choice((LOOPER, 999))
        said = await self.monitor(f"ptrace del {pid}")
        if said:
            self.violation(f"answered {said!r}")
        for dr in self.model.tracee_drs(pid):
            self.model.unregister(("ptrace", pid, dr))
        self.model.tracers_leave.pop(pid, None)

    async def policy(self) -> None:
        name = self.rng.choice((*POLICIES, "greedy"))
        wanted = self.model.policy_outcome(name)
        said = await self.monitor(f"policy {name}")
        got = ("ok" if said == f"policy={name}\n" else "EBUSY" if said.startswith("error: EBUSY")
               else "ENOSPC" if said.startswith("error: ENOSPC") else "invalid")
        if got != wanted:
            self.violation(f"answered {said!r}, expected {wanted}")
        if got == "ok":
            self.model.switch_policy(name)

    async def probe_capacity(self) -> None:
        """Fill one CPU's slots with perf events until ENOSPC, then free them: the count the
        model predicts shows that no reservation outlived what held it."""
        cpu = self.rng.randrange(self.config.cpus)
        added: list[int] = []
        for _ in range(SLOTS + 1):
            ids = await self.add_perf("cpu", cpu, None, self.machine.address("jiffies"), "w", 8)
            if not ids:
                break
            added += ids
        for event in added:
            await self.delete_perf(event)

    # -- hostile clients --

    async def floods(self) -> None:
        """A raw client in place of the session floods the server with requests it never acknowledges and with '-'."""
        await self.disconnect("vanish")
        self.figures.reconnects += 1
        self.figures.hostile_clients += 1
        self.doing = "floods of unacknowledged requests and of '-'"
        before = resident(self.server)
        host, port = self.server.address.rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        try:
            await fuzz.flood_client(fuzz.Client(stream), self.rng, modern=self.modern)
        except (AssertionError, trio.TooSlowError) as problem:
            self.violation(f"{type(problem).__name__}: {problem}")
        finally:
            await stream.aclose()
        if (grown := resident(self.server) - before) > FLOOD_MEMORY:
            self.violation(f"the server's resident memory grew by {grown:,} bytes")
        await self.connect()
        self.model.attach()

    async def newcomers(self) -> None:
        """While the session goes on, connections come that say nothing, dribble, or are debuggers refused."""
        self.figures.hostile_clients += 1
        host, port = self.server.address.rsplit(":", 1)
        port = int(port)
        for kind in ["silent"] * self.rng.randint(0, 2) + ["dribbler"] * self.rng.randint(0, 1):
            self.background.start_soon(self._closed_in_time, kind, fuzz.Client(await trio.open_tcp_stream(host, port)),
                                       self.rng.getrandbits(32))
        refused = fuzz.Client(await trio.open_tcp_stream(host, port))
        self.doing = "a second debugger"
        try:
            with trio.fail_after(HANDOVER_PATIENCE + REPLY_SECONDS):
                reply = await refused.request(b"qSupported:swbreak+")
                await refused.until_closed("the refused one closed")
            if not reply.startswith(b"E.") or b"another debugger" not in reply:
                self.violation(f"a second debugger was answered {reply!r}")
        except (AssertionError, trio.TooSlowError) as problem:
            self.violation(f"a second debugger: {type(problem).__name__}: {problem}")
        finally:
            await refused.stream.aclose()
        self.doing = "the session, after the newcomers"
        await self.request(b"qC")  # undisturbed: answered in time

    async def _closed_in_time(self, kind: str, client, seed: int) -> None:
        rng = random.Random(seed)
        try:
            with trio.fail_after(FIRST_PACKET_PATIENCE + REPLY_SECONDS):
                while True:
                    if kind == "dribbler":
                        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                            await client.send(bytes([rng.choice(b"$m0,1x+-")]))
                    with trio.move_on_after(rng.uniform(0.2, 2)):
                        if not await client.receive():
                            return
        except trio.TooSlowError:
            report(self.figures, self.label, f"a {kind} connection was not closed within "
                                             f"{FIRST_PACKET_PATIENCE + REPLY_SECONDS:g} s")
        finally:
            await client.stream.aclose()

    async def pty_line(self) -> None:
        """A second server of this epoch's configuration on a pty: echo turned on at the slave, then a storm."""
        self.figures.hostile_clients += 1
        self.doing = "a pty with echo on, then a storm on it"
        async with serving(self.config, pty=True) as line_server:
            try:
                await fuzz.echo_and_storm_client(line_server.address, self.rng)
            except (AssertionError, trio.TooSlowError) as problem:
                self.violation(f"{type(problem).__name__}: {problem}")
            if "echo" not in line_server.stderr_tail():
                self.violation(f"echo on the slave was not reported: {line_server.stderr_tail()!r}")


    # -- sessions --

    async def reconnect(self) -> None:
        how = "vanish" if self.deterministic else self.rng.choice(("detach", "kill", "vanish"))
        await self.disconnect(how)
        self.figures.reconnects += 1
        self.doing = f"reconnect after {how}"
        await self.connect()
        self.model.attach()
        await self.check()  # nothing of the last session may be left
        await self.probe_capacity()

    async def gdb_session(self) -> None:
        """A short session of the real gdb in the middle of the soak, as users drive the stub."""
        await self.disconnect(self.rng.choice(("detach", "vanish")))
        self.figures.gdb_sessions += 1
        what = self.rng.choice(("hbreak do_fork", f"hbreak *{self.machine.looper_return:#x}", "watch jiffies",
                                "rwatch total_forks", "awatch looper_iterations", "watch last_fork",
                                "hbreak schedule_timeout"))
        always_inserted = self.rng.random() < 0.3
        commands = ["set breakpoint always-inserted on"] if always_inserted else []
        commands += ["break timer_interrupt", what, *["continue"] * self.rng.randint(1, 3), "info threads", "bt",
                     "monitor slots", "delete"]
        commands += [] if self.rng.random() < 0.2 else ["detach"]  # else batch mode's end kills the session
        self.doing = f"gdb: {', '.join(commands)}"
        ran = await run_gdb(self.server.address, self.server.elf, commands)
        if ran is None:
            self.violation(f"gdb did not finish within {GDB_SECONDS:g} s")
        elif self.config.dialect == "kgdb" and KGDB_AMBIGUOUS_STOP.search(ran[1]) and GDB_STEP_OVER.search(ran[1]):
            # Linux's kgdb answers `?` with a bare S05: gdb guesses the first
            # thread stopped, and stepping that one over a breakpoint while
            # another reports the step trips gdb's own assertion, as it does
            # against a real kgdb (README, Dialects). Counted, not a violation.
            self.figures.gdb_kgdb_quirks += 1
        elif ran[0] < 0 or GDB_TROUBLE.search(ran[1]):
            self.violation(f"gdb (exit status {ran[0]}) says:\n{ran[1][-2000:]}")
        else:
            self.figures.stops += len(re.findall(r"\bhit (?:Breakpoint|Hardware|Read|Watchpoint)", ran[1]))
            slots = "\n".join(re.findall(r"^cpu=\d+ dr=.*$", ran[1], re.MULTILINE))
            problems = check_slot_table(slots, self.config.cpus)
            # gdb takes its breakpoints out at a stop; what kgdb reserved ahead shows no address (type -).
            if re.search(r"owner=kgdb addr=\S+ type=(?!-)", slots) and not always_inserted:
                problems.append("kgdb holds a DR while gdb has no breakpoint inserted")
            for problem in problems:
                self.violation(f"gdb's monitor slots: {problem}")
        self.model.detach()  # whatever gdb set went with its session
        self.figures.reconnects += 1
        await self.connect()
        self.model.attach()


# -- epochs and the whole run ------------------------------------------------------------------


def first_difference(a: bytes, b: bytes) -> str | None:
    if a == b:
        return None
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"at byte {at}: {bytes(a[max(0, at - 80) : at + 80])!r}\n  vs {bytes(b[max(0, at - 80) : at + 80])!r}"


async def run_epoch(number: int, config: Config, seed: int, until: float, args, machine: Machine,
                    figures: Figures) -> None:
    """The first `replay` operations on two fresh servers, compared; then random ones until `until`."""
    streams = []
    for run in ("reference", "main"):
        label = f"epoch {number} {run} ({config})"
        try:
            async with serving(config) as server, trio.open_nursery() as background:
                soak = Soak(server, config, machine, seed, figures, label, skip=frozenset(args.skip),
                            verbose=args.verbose, background=background)
                try:
                    await soak.start()
                    await soak.run(count=args.replay)
                    streams.append((bytes(soak.sent), bytes(soak.received)))
                    if run == "main" and len(streams) == 2:
                        figures.determinism_compared += 1
                        for direction, (first, second) in zip(("sent", "received"), zip(*streams)):
                            if (difference := first_difference(first, second)) is not None:
                                soak.violation(f"two runs of the same operations differ in what was {direction} "
                                               f"{difference}")
                    if run == "main":
                        soak.deterministic = False
                        await soak.run(until=until)
                except ClientError as error:  # when connecting at the start
                    soak.violation(f"{type(error).__name__}: {error}")
                except EpochOver:
                    pass
                finally:
                    figures.packets += soak.sent.count(b"$")
        except (RuntimeError, trio.TooSlowError) as error:
            report(figures, label, f"the server did not start: {error}")
            return
    compared = f", the first {args.replay} compared over {sum(map(len, streams[0]))} bytes" if len(streams) == 2 else ""
    print(f"epoch {number} ({config}): {soak.operation} operations on the main server{compared}", flush=True)


async def main_async(args) -> Figures:
    figures = Figures()
    machine = Machine(targets.resolve(targets.DEFAULT_TARGET))
    started = time.monotonic()
    deadline = started + args.seconds
    with tempfile.TemporaryDirectory(prefix="kgdbstub-soak-") as work:
        perf_and_ptrace = Path(work) / "perf-and-ptrace.toml"
        perf_and_ptrace.write_text(PERF_AND_PTRACE)
        number = args.epoch or 1
        while time.monotonic() < deadline:
            # Each epoch's draw depends on the seed and its number alone: `--epoch N` replays it.
            draw = random.Random(f"{args.seed}/{number}")
            config = random_config(draw, perf_and_ptrace)
            figures.epochs += 1
            figures.configurations.append(str(config))
            until = min(deadline, time.monotonic() + args.epoch_seconds)
            await run_epoch(number, config, draw.getrandbits(32), until, args, machine, figures)
            if args.epoch:
                break
            number += 1
    figures.seconds = round(time.monotonic() - started, 1)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="how long to soak (default 60)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--epoch-seconds", type=float, default=60, help="how long one server lives (default 60)")
    parser.add_argument("--replay", type=int, default=60,
                        help="operations run on two servers and compared, in each epoch (default 60)")
    parser.add_argument("--skip", action="append", default=[], metavar="OPERATION",
                        help="leave an operation out (step, gdb_session, ...); may be repeated")
    parser.add_argument("--epoch", type=int, help="run epoch N of the seed alone (to replay a violation)")
    parser.add_argument("--verbose", action="store_true", help="print every operation")
    args = parser.parse_args()
    figures = trio.run(main_async, args)
    print(f"seconds {figures.seconds}, epochs {figures.epochs}, operations {figures.operations:,}, "
          f"reconnects {figures.reconnects:,}, packets {figures.packets:,}, stops {figures.stops:,} "
          f"({figures.interrupts:,} by Ctrl-C), gdb sessions {figures.gdb_sessions} "
          f"({figures.gdb_kgdb_quirks} hit kgdb's bare S05), hostile clients {figures.hostile_clients}, "
          f"invariant checks {figures.checks:,}, determinism compared {figures.determinism_compared}, "
          f"violations {figures.violations}")
    if args.json:
        args.json.write_text(json.dumps(asdict(figures), indent=2) + "\n")
    return 1 if figures.violations else 0


if __name__ == "__main__":
    sys.exit(main())
