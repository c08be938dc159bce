"""Debuggers that vanish at every point of a session, over TCP and over a pty
(issue 8, item 2).

kgdb's rule: a debugger that goes away without `detach` leaves the machine
stopped where it was, for the next one; everything it set is given back at
once (no breakpoint left in memory, no debug-register slot held), so perf
and ptrace count every hit when the machine runs again. `detach` lets the
machine run on. Both dialects follow it.

Each test: a client captures the accounting at boot and detaches (the
machine runs); a debugger attaches, sets things up and vanishes at one
point; the next debugger then checks, before its first `?` (which would
itself remove every breakpoint, as kgdb's does):

- `monitor slots` shows no kgdb owner and is what it was at boot (task-bound
  ptrace slots, which are in a DR only while their task runs, aside);
- as many hardware breakpoints fit as fitted at boot (the slot accounting);
- perf hits == jiffies - jiffies at registration (perf-watch), and the
  tracer's hits == looper_iterations (ptrace-loop; exact at do_fork stops);
- the machine stayed stopped: jiffies, the registers and the stop (the
  answer to `?`) are those the vanished debugger saw;
- it attaches cleanly: a stop reply, registers, hardware and software
  breakpoints at do_fork that are hit.

`?` removes every breakpoint, so a software breakpoint the stub kept would
go unseen; each test therefore ends with a second vanish, stopped with a
software breakpoint on looper_tick, after which the next debugger runs the
machine before its `?`.
"""
from __future__ import annotations

import contextlib
import os
import errno
import re
import termios
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from gdbtools import (
    GDB,
    RESUMED_MARKER,
    LineServer,
    OpenWatch,
    continue_command,
    parse_values,
    run_gdb,
    spawn_gdb,
)
from gdbtools import serving as serving_transport

from kgdbstub.client import RemoteError, BreakpointRefused, connect
from kgdbstub.client.connection import Connection
from kgdbstub.client.target import OFFER
from kgdbstub.client.transport import open_stream
from kgdbstub.kernel.image import Image
from kgdbstub.rsp import Packet, RemoteProtocol, encode_frame

TIMEOUT = 20.0  # for every reply, stop and connection
# A software breakpoint hit all the time: in the looper, or (Linux's kgdb
# refuses user addresses) in the tick.
HIT_OFTEN = {"modern": "looper_tick", "kgdb": "do_timer"}
SYMBOLS = ("do_timer", "do_fork", "jiffies", "total_forks", "looper_iterations", "looper_tick", "start_kernel", "smp_init",
           "nr_cpus_online", "kgdbwait")
# start_kernel and smp_init run at boot only; nr_cpus_online and kgdbwait are
# touched at boot only: breakpoints there hold their slots without stopping.
KGDB_SLOT = re.compile(r"^cpu=\d+ dr=\d+ owner=kgdb ", re.MULTILINE)
TASK_SLOT = re.compile(r"owner=ptrace:\d+ addr=0x[0-9a-f]+ type=\S+ len=\d+")
HALF_FRAME = b"$m%x,8"  # a memory read cut before its '#'
# gdb says so once what it printed is out, and waits until it is killed.
WAITING = "gdb waits to be killed"
WAIT_TO_BE_KILLED = f"python gdb.write('{WAITING}\\n'); gdb.flush(); import select; select.select([], [], [])"


# -- the machine and its accounting -----------------------------------------------


# ptrace-loop with a tracer whose continues outlast any of these tests: they
# let the machine run between debuggers, and the 1,000,000 continues of the
# shipped scenario take it a tenth of a second; its tracer would be done, and
# its slot given back, before the next debugger checks that it is still held.
LASTING_PTRACE_LOOP = Path(__file__).with_name("lasting-ptrace-loop.toml")


def serving(transport: str, scenario: str, dialect: str):
    path = str(LASTING_PTRACE_LOOP) if scenario == "ptrace-loop" else scenario
    return serving_transport(transport, "--scenario", path, "--dialect", dialect)


def symbols(server) -> dict[str, int]:
    image = Image(server.elf)
    return {name: image.address_of(name) for name in SYMBOLS}


async def attach(server, **options):
    """connect() to the server. On a pty, what waits unread in it (console
    text) is dropped first, as gdb does when it opens a port."""
    held = None
    if isinstance(server, LineServer):
        held = os.open(server.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        termios.tcflush(held, termios.TCIFLUSH)
    try:
        return await connect(server.address, elf=server.elf, timeout=TIMEOUT, **options)
    finally:
        if held is not None:
            os.close(held)




async def hang_up(server, target, *, at_once: bool = False) -> None:
    """A debugger vanishes: its end of the connection is closed, no `D`.

    On a pty, this returns once the stub has seen it go: the pty reports the
    close of the slave, and the stub opens the slave again to hold the line.
    The next debugger then finds the session over, as over TCP. `at_once`
    does not wait: a debugger that comes sooner ends the session with its
    qSupported, as on a serial line, which shows no hang-up.
    """
    if at_once or not isinstance(server, LineServer):
        await target.close()
        return
    with OpenWatch(server.path) as watch:
        await target.close()
        await watch.opened(TIMEOUT)


def wire(target) -> trio.abc.Stream:
    """The byte stream under a client, for what a well-behaved client never does."""
    return target.connection._stream


def settled_slots(text: str) -> str:
    """`monitor slots` with task-bound ptrace slots shown free: their DR is
    loaded only while their task runs, so it depends on where the machine stopped."""
    return TASK_SLOT.sub("owner=free addr=0x0 type=- len=0", text)


async def hardware_capacity(target, sym) -> int:
    """How many hardware breakpoints kgdb gets now (then removed): what the slot accounting leaves it."""
    placed = []
    try:
        for offset in range(5):
            try:
                placed.append(await target.insert_breakpoint(sym["do_fork"] + offset, "hardware"))
            except BreakpointRefused:
                break
        return len(placed)
    finally:
        for breakpoint in placed:
            await target.remove_breakpoint(breakpoint)


@dataclass
class Baseline:
    slots: str  # settled `monitor slots` at boot
    capacity: int  # hardware breakpoints kgdb got at boot
    registered_at: int  # jiffies when perf's event was registered (perf-watch)


async def take_baseline(server, sym, scenario: str) -> Baseline:
    """The accounting at boot, before any debugger set anything; then `detach`: the machine runs."""
    target = await attach(server)
    slots = await target.monitor("slots")
    assert not KGDB_SLOT.search(slots), slots
    capacity = await hardware_capacity(target, sym)
    assert capacity == 3, "perf or ptrace holds one slot per CPU, kgdb gets the other three"
    hits, _ = await counts(target, sym, scenario)
    registered_at = await target.read_int(sym["jiffies"]) - hits
    await target.detach()
    return Baseline(settled_slots(slots), capacity, registered_at)


async def counts(target, sym, scenario: str) -> tuple[int, int]:
    """(perf hits on jiffies, jiffies) for perf-watch; (tracer hits, looper_iterations) for ptrace-loop."""
    if scenario == "perf-watch":
        listing = await target.monitor("perf")
        hits = sum(int(m["hits"]) for m in re.finditer(r"addr=(?P<addr>0x[0-9a-f]+) type=w len=8 hits=(?P<hits>\d+)",
                                                        listing) if int(m["addr"], 16) == sym["jiffies"])
        assert listing.count("kind=wide") == 2, listing
        return hits, await target.read_int(sym["jiffies"])
    listing = await target.monitor("ptrace")
    found = re.fullmatch(r"pid=2 dr=\d addr=0x[0-9a-f]+ type=x hits=(\d+) ignore_left=\d+ state=running\n", listing)
    assert found, listing
    try:
        return int(found[1]), await target.read_int(sym["looper_iterations"])
    except RemoteError as refused:
        # Linux's kgdb reads no user memory (copy_from_kernel_nofault_allowed).
        assert refused.errno == errno.EINVAL
        return int(found[1]), None


async def check_counts(target, sym, scenario: str, baseline: Baseline, *, at_do_fork: bool) -> None:
    hits, measure = await counts(target, sym, scenario)
    if measure is None:
        return  # the kgdb dialect cannot read the looper's counter
    if scenario == "perf-watch":
        assert hits == measure - baseline.registered_at, (hits, measure, baseline.registered_at)
    elif at_do_fork:
        assert hits == measure, (hits, measure)
    else:
        # Stopped anywhere, the looper may be in looper_tick (counted) before its increment.
        assert measure <= hits <= measure + 1, (hits, measure)


# -- what a vanished debugger leaves, and the next one ----------------------------------------


@dataclass
class Left:
    """What the vanished debugger last saw of the stopped machine (None: it did not see)."""

    stop: bytes | None = None  # its last stop reply: what `?` must answer again
    signal: int | None = None  # else the signal of the stop the next debugger finds
    registers: bytes | None = None  # `g` at that stop
    jiffies: int | None = None
    pc: int | None = None


async def check_next_debugger(server, sym, scenario: str, dialect: str, baseline: Baseline, left: Left, *,
                              run_first: bool = False) -> None:
    """Everything the vanished debugger held is given back, the machine is
    where it left it, and this debugger gets on with it.

    `?` removes every breakpoint (kgdb's gdb_cmd_status does), so a
    software breakpoint the stub failed to remove shows only in a run before
    it: `run_first` runs to do_fork first, and then `?` answers that stop.
    """
    target = await attach(server, handshake=False)
    try:
        await greet(target, dialect)
        slots = await target.monitor("slots")
        assert not KGDB_SLOT.search(slots), slots
        assert settled_slots(slots) == baseline.slots, (slots, baseline.slots)
        assert await hardware_capacity(target, sym) == baseline.capacity

        jiffies = await target.read_int(sym["jiffies"])
        if left.jiffies is not None:
            assert jiffies == left.jiffies, "the machine ran between the debuggers"
        if left.registers is not None:
            assert await target.request(b"g") == left.registers
        if left.pc is not None:
            assert await target.read_register("rip") == left.pc
        await check_counts(target, sym, scenario, baseline, at_do_fork=False)

        if run_first:
            # Before any `?`: a software breakpoint left in the table would stop this run.
            left = Left(stop=(await run_to_do_fork(target, sym, scenario, baseline)).raw)
        status = await target.request(b"?")
        if dialect == "kgdb":
            assert status == b"S05"
        elif left.stop is not None:
            assert status == left.stop, "the stop the vanished debugger saw is the one the next finds"
        elif left.signal is not None:
            assert status.startswith(b"T%02x" % left.signal), status

        registers = await target.read_registers()
        assert registers["rip"] and registers["rsp"], registers
        if not run_first:
            await run_to_do_fork(target, sym, scenario, baseline)
        assert not KGDB_SLOT.search(await target.monitor("slots"))
        await target.detach()
    finally:
        await target.close()


async def run_to_do_fork(target, sym, scenario: str, baseline: Baseline):
    """Hardware, then software breakpoints at do_fork are hit; the counts are exact there. The last stop."""
    for kind in ("hardware", "software"):
        breakpoint = await target.insert_breakpoint(sym["do_fork"], kind)
        stop = await target.resume()
        assert stop.signal == 5, stop
        assert await target.read_register("rip") == sym["do_fork"], stop
        await check_counts(target, sym, scenario, baseline, at_do_fork=True)
        await target.remove_breakpoint(breakpoint)
    return stop


async def greet(target, dialect: str) -> None:
    """qSupported, gdb's first packet; nothing before `?` removes a breakpoint.
    Its answer comes first: nothing written to the vanished debugger is left."""
    reply = await target.request(OFFER)
    if dialect == "modern":
        assert reply.startswith(b"PacketSize="), reply
    else:
        assert reply == b"", reply


async def observe(target, sym, stop) -> Left:
    """What the debugger sees at a stop, for the next one to compare."""
    return Left(stop=stop.raw, registers=await target.request(b"g"), jiffies=await target.read_int(sym["jiffies"]))


async def stop_off_the_wire(target) -> bytes:
    """The stop reply of the run under way, read off the wire without acknowledging it.

    In ack mode, console output (`O` packets) that comes first is
    acknowledged: the stub would hold the stop reply back behind it.
    """
    stream = wire(target)
    acking = target.connection.codec.ack_mode
    codec = RemoteProtocol(max_packet_size=1 << 20)
    codec.start_no_ack_mode()  # it only parses: nothing of it goes on the wire
    with trio.fail_after(TIMEOUT):
        while True:
            data = await stream.receive_some(65536)
            assert data, "the stub hung up before the stop"
            codec.receive_data(data)
            for event in codec.events():
                if not isinstance(event, Packet):
                    continue
                if event.payload[:1] in (b"S", b"T"):
                    return event.payload
                if acking:
                    await stream.send_all(b"+")


# -- the disconnect points ------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """How the vanishing debugger talks, and how soon the next one comes."""

    dialect: str = "modern"
    no_ack: bool = True  # it asks for no-ack mode (the kgdb dialect has none)
    at_once: bool = False  # on a pty, the next one opens it before the stub saw the hang-up

    def __str__(self) -> str:
        return f"{self.dialect}-{'noack' if self.no_ack else 'ack'}" + ("-at-once" if self.at_once else "")


async def vanish_with_half_a_frame_first(server, sym, case: Case) -> Left:
    """Half a packet and nothing else. Over TCP the connection stopped the machine."""
    stream = await open_stream(server.address)
    await stream.send_all(HALF_FRAME % sym["jiffies"])
    await stream.aclose()
    # Over TCP the connection stopped the machine; on a line half a frame
    # starts no session, and the machine runs until the next debugger comes.
    return Left(signal=None if isinstance(server, LineServer) else 2)


async def start_session(server, sym, case: Case):
    target = await attach(server, no_ack=case.no_ack)
    assert target.connection.codec.ack_mode == (case.dialect == "kgdb" or not case.no_ack)
    if case.dialect == "modern" and not isinstance(server, LineServer):
        # (On a line a debugger that comes at once may find the machine not
        # yet running again: see test_after_detach_the_machine_runs_on.)
        assert target.stop.signal == 2, "after `detach` the machine ran on: the new debugger interrupted it"
    return target


async def vanish_with_half_a_frame_in_session(server, sym, case: Case) -> Left:
    target = await start_session(server, sym, case)
    await target.insert_breakpoint(sym["do_fork"], "hardware")
    left = await observe(target, sym, await target.resume())
    await target.insert_breakpoint(sym[HIT_OFTEN[case.dialect]], "software")  # hit at once, if it stayed
    await wire(target).send_all(HALF_FRAME % sym["jiffies"])
    await hang_up(server, target, at_once=case.at_once)
    return left


async def vanish_while_running(server, sym, case: Case) -> Left:
    target = await start_session(server, sym, case)
    await target.insert_breakpoint(sym["start_kernel"], "hardware")
    await target.insert_breakpoint(sym["smp_init"], "software")
    await target.watch(sym["nr_cpus_online"], 8, "write")
    await target.watch(sym["kgdbwait"], 8, "access")
    await target.resume_nowait()
    await hang_up(server, target, at_once=case.at_once)
    return Left(signal=2)  # the hang-up interrupted the run


async def vanish_stopped_with_breakpoints(server, sym, case: Case) -> Left:
    target = await start_session(server, sym, case)
    await target.insert_breakpoint(sym["do_fork"], "hardware")
    await target.watch(sym["nr_cpus_online"], 8, "write")
    await target.watch(sym["kgdbwait"], 8, "access")
    await target.insert_breakpoint(sym["smp_init"], "software")
    stop = await target.resume()
    assert stop.signal == 5 and await target.read_register("rip") == sym["do_fork"], stop
    # Hit at every loop iteration, if it stayed in memory.
    await target.insert_breakpoint(sym[HIT_OFTEN[case.dialect]], "software")
    slots = await target.monitor("slots")
    assert len(KGDB_SLOT.findall(slots)) == 6, slots  # three DRs on each CPU are kgdb's
    left = await observe(target, sym, stop)
    await hang_up(server, target, at_once=case.at_once)
    return left


async def vanish_before_reading_a_watch_stop(server, sym, case: Case) -> Left:
    target = await start_session(server, sym, case)
    await target.watch(sym["total_forks"], 8, "write")
    await target.insert_breakpoint(sym["start_kernel"], "hardware")
    await target.insert_breakpoint(sym["smp_init"], "software")
    await target.resume_nowait()
    stop = await stop_off_the_wire(target)  # in ack mode it stays unacknowledged
    if case.dialect == "modern":
        assert b";watch:%x;" % sym["total_forks"] in stop, stop
    await hang_up(server, target, at_once=case.at_once)
    return Left(stop=stop)


async def vanish_while_removing_breakpoints_at_a_watch_stop(server, sym, case: Case) -> Left:
    """As gdb takes its breakpoints out at a stop; the last removal's reply is never read."""
    target = await start_session(server, sym, case)
    watch = await target.watch(sym["total_forks"], 8, "write")
    await target.insert_breakpoint(sym["start_kernel"], "hardware")
    await target.insert_breakpoint(sym["smp_init"], "software")
    stop = await target.resume()
    assert stop.signal == 5, stop
    if case.dialect == "modern":
        assert (stop.reason, stop.address) == ("watch", sym["total_forks"]), stop
    left = await observe(target, sym, stop)
    await target.insert_breakpoint(sym[HIT_OFTEN[case.dialect]], "software")  # hit at once, if it stayed
    await target.remove_breakpoint(watch)
    await target.connection.send_packet(b"z1,%x,1" % sym["start_kernel"])
    await hang_up(server, target, at_once=case.at_once)
    return left


POINTS = {
    "half-frame-first": vanish_with_half_a_frame_first,
    "half-frame-in-session": vanish_with_half_a_frame_in_session,
    "running": vanish_while_running,
    "stopped-with-breakpoints": vanish_stopped_with_breakpoints,
    "watch-stop-unread": vanish_before_reading_a_watch_stop,
    "watch-stop-removing": vanish_while_removing_breakpoints_at_a_watch_stop,
}
CASES = [
    ("half-frame-first", Case()),
    ("half-frame-in-session", Case()),
    ("running", Case()),
    ("stopped-with-breakpoints", Case()),
    ("stopped-with-breakpoints", Case(no_ack=False)),
    ("stopped-with-breakpoints", Case("kgdb", no_ack=False)),
    ("watch-stop-unread", Case()),
    ("watch-stop-unread", Case(no_ack=False)),
    ("watch-stop-unread", Case("kgdb", no_ack=False)),
    ("watch-stop-removing", Case()),
    ("watch-stop-removing", Case(no_ack=False)),
]
# On a pty, the next debugger may also come before the stub saw the hang-up.
AT_ONCE = [
    ("half-frame-in-session", Case(at_once=True)),
    ("stopped-with-breakpoints", Case(at_once=True)),
    ("stopped-with-breakpoints", Case("kgdb", no_ack=False, at_once=True)),
]


def case_params():
    for index, (point, case) in enumerate(CASES):
        # Each point meets both scenarios: one over TCP, the other over the pty.
        scenarios = ("perf-watch", "ptrace-loop") if index % 2 == 0 else ("ptrace-loop", "perf-watch")
        for transport, scenario in zip(("tcp", "pty"), scenarios):
            yield pytest.param(transport, point, case, scenario, id=f"{transport}-{point}-{case}-{scenario}")
    for index, (point, case) in enumerate(AT_ONCE):
        scenario = ("perf-watch", "ptrace-loop")[index % 2]
        yield pytest.param("pty", point, case, scenario, id=f"pty-{point}-{case}-{scenario}")


@pytest.mark.parametrize("transport, point, case, scenario", list(case_params()))
async def test_a_vanished_debugger_leaves_nothing_held_and_the_machine_stopped(transport, point, case, scenario):
    dialect = case.dialect
    with serving(transport, scenario, dialect) as server:
        sym = symbols(server)
        baseline = await take_baseline(server, sym, scenario)
        left = await POINTS[point](server, sym, case)
        await check_next_debugger(server, sym, scenario, dialect, baseline, left)
        # Once more, stopped with a software breakpoint that the looper hits
        # at once: the next debugger runs before any `?`.
        target = await attach(server)
        await target.insert_breakpoint(sym["do_fork"], "hardware")
        left = await observe(target, sym, await target.resume())
        await target.insert_breakpoint(sym[HIT_OFTEN[dialect]], "software")
        await hang_up(server, target, at_once=case.at_once)
        await check_next_debugger(server, sym, scenario, dialect, baseline, left, run_first=True)


@pytest.mark.parametrize("transport", ["tcp", "pty"])
@pytest.mark.parametrize("dialect", ["modern", "kgdb"])
async def test_after_detach_the_machine_runs_on(transport, dialect):
    with serving(transport, "perf-watch", dialect) as server:
        sym = symbols(server)
        baseline = await take_baseline(server, sym, "perf-watch")
        target = await attach(server)
        detached_at = await target.read_int(sym["jiffies"])
        await target.detach()
        # Each debugger stops the machine and detaches; in between it runs.
        with trio.fail_after(TIMEOUT):
            while True:
                target = await attach(server)
                if dialect == "modern" and transport == "tcp":
                    assert target.stop.signal == 2, "the machine was running: the debugger interrupted it"
                await check_counts(target, sym, "perf-watch", baseline, at_do_fork=False)
                now = await target.read_int(sym["jiffies"])
                await target.detach()
                if now > detached_at:
                    break


# -- the real gdb, killed -------------------------------------------------------------

GDB_CASES = [
    pytest.param("tcp", "perf-watch", "modern", "stopped", id="tcp-stopped-modern-perf-watch"),
    pytest.param("pty", "ptrace-loop", "kgdb", "stopped", id="pty-stopped-kgdb-ptrace-loop"),
    pytest.param("tcp", "ptrace-loop", "kgdb", "running", id="tcp-running-kgdb-ptrace-loop"),
    pytest.param("pty", "perf-watch", "modern", "running", id="pty-running-modern-perf-watch"),
]


@pytest.mark.skipif(GDB is None, reason="gdb is not installed")
@pytest.mark.parametrize("transport, scenario, dialect, when", GDB_CASES)
def test_a_gdb_killed_with_hbreak_and_watch_set_leaves_nothing_held(transport, scenario, dialect, when):
    with serving(transport, scenario, dialect) as server:
        sym = symbols(server)
        baseline = trio.run(take_baseline, server, sym, scenario)
        if when == "stopped":
            # Its breakpoints stay inserted at the stop, where gdb waits to be killed. (The
            # watch is set at do_fork's entry: gdb's arrival may find the machine anywhere,
            # between a do_fork's entry and its write to total_forks too.)
            commands = ["set breakpoint always-inserted on", "hbreak do_fork", "continue", "watch total_forks",
                        "monitor slots", "print jiffies", "print/x $pc", WAIT_TO_BE_KILLED]
            ready = WAITING
        else:
            # gdb inserts them to continue; the machine runs when gdb is killed.
            commands = ["hbreak start_kernel", "watch nr_cpus_online", "break smp_init", *continue_command()]
            ready = RESUMED_MARKER
        with spawn_gdb(server, commands) as gdb:
            gdb.output.wait_count(ready, 1, timeout=TIMEOUT)
            with OpenWatch(server.path) if transport == "pty" else contextlib.nullcontext() as watch:
                gdb.proc.kill()
                if watch is not None:
                    trio.run(watch.opened)  # the stub saw gdb go
            gdb.wait(timeout=TIMEOUT)
        output = gdb.output.text
        assert "Hardware watchpoint 2: " in output and "detached" not in output, output
        if when == "stopped":
            assert re.search(r"Breakpoint 1, (?:0x[0-9a-f]+ in )?do_fork \(", output), output
            assert len(KGDB_SLOT.findall(output)) == 4, output  # hbreak and watch, on both CPUs
            values = parse_values(output)
            left = Left(signal=5, jiffies=int(values[1]), pc=int(values[2], 16))
            assert left.pc == sym["do_fork"], output
        else:
            left = Left(signal=2)
        trio.run(check_next_debugger, server, sym, scenario, dialect, baseline, left)
        # The next gdb attaches as usual.
        output = run_gdb(server, ["hbreak do_fork", "continue", "info registers rip", "detach"], timeout=TIMEOUT)
        assert re.search(r"Breakpoint 1, (?:0x[0-9a-f]+ in )?do_fork \(", output), output
        assert re.search(r"^\[Inferior 1 \(.*\) detached\]$", output, re.MULTILINE), output


async def test_on_a_line_the_machine_runs_on_after_detach_even_if_the_next_debugger_comes_with_it():
    """`D` and the next debugger's qSupported in one write: the next debugger
    must find the machine stopped anew (SIGINT), not where `D` left it."""
    with serving("pty", "perf-watch", "modern") as server:
        sym = symbols(server)
        target = await attach(server)
        breakpoint = await target.insert_breakpoint(sym["do_fork"], "hardware")
        assert (await target.resume()).reason == "hwbreak"
        await target.remove_breakpoint(breakpoint)
        stream = wire(target)
        await stream.send_all(encode_frame(b"D") + encode_frame(OFFER))
        next_one = Connection(stream, peer=server.path)  # a new debugger: ack mode
        with trio.fail_after(TIMEOUT):
            assert await next_one.receive() == b"OK"  # the detach
            assert (await next_one.receive()).startswith(b"PacketSize=")
            await next_one.send_packet(b"?")
            status = await next_one.receive()
        await target.close()
        assert status.startswith(b"T02"), status
