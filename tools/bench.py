"""kgdbstub's benchmarks, with its peers measured in the same run.

    python tools/bench.py [--json FILE] [--stops N] [--rounds N] [--break-ins N] [--only PART ...]

Prints a table and writes JSON; `--only stops` (or machine, conditions,
break-in, protocol) measures one part of it. Ratios compare numbers taken in this run:
the machine against plain unicorn running the same code; stops that gdb
sees, and breakpoint conditions and dprintf evaluated in the stub
(tools/bench_conditions.py), against gdbserver (a native process, real
debug registers) and udbserver (gdbstub over unicorn). A missing peer is skipped with a note:
`apt-get install gdbserver`, `pip install udbserver`.

Break-in: N times, a raw socket sends `c`, waits 5 to 30 ms (a random
point of the run, looper busy in its loop) and sends a 0x03; the latency
is from the 0x03 to the whole stop reply, p50 and p99. Where the stops
land is checked against where the machine spends its instructions, both
counted the same way:

- stops inside looper's loop: the share of the break-ins whose stop names
  looper's thread with its pc in looper's own code (looper_main and
  looper_tick), that is, whose break-in found looper executing there;
- its share of instructions: of every instruction the machine executes
  in the same kind of run (both CPUs, the kernel's system calls, forks,
  ticks and scheduling included), the share that are looper's own, counted
  one by one by a code hook on every address (the translation cache is
  flushed when the hook is added, so no block escapes it).

Break-ins come at random wall-clock times, so the two agree only if the
host's own work (Python between two engine runs, a third of the time)
draws no stops: a break-in that comes during it is placed in the engine's
time (docs/host-interface.md, "Break-ins"). The goal is the shares within
10 points. The latency depends on the machine's load:
on a shared machine the tail is time the server's threads and the client
wait for a CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import bench_conditions  # noqa: E402
import bench_machine  # noqa: E402
from kgdbstub import targets  # noqa: E402
from kgdbstub.kernel.image import Image  # noqa: E402

GDB = shutil.which("gdb")


free_port, RETRY = bench_conditions.free_port, bench_conditions.RETRY


# -- stops that gdb sees ---------------------------------------------------------------

GDB_LOOP = """
python
import os, time
cpu, started = os.times(), time.perf_counter()
for _ in range({stops}):
    gdb.execute("continue", to_string=True)
elapsed, cpu = time.perf_counter() - started, [b - a for a, b in zip(cpu, os.times())]
print("ELAPSED %f GDBCPU %f" % (elapsed, cpu[0] + cpu[1]))
end
"""

GDB_IGNORE = """
ignore 1 {ignores}
python
import os, time
cpu, started = os.times(), time.perf_counter()
gdb.execute("continue", to_string=True)
elapsed, cpu = time.perf_counter() - started, [b - a for a, b in zip(cpu, os.times())]
print("ELAPSED %f GDBCPU %f" % (elapsed, cpu[0] + cpu[1]))
end
"""


class Stops(NamedTuple):
    """A run of watch stops: seconds in all, and the CPU seconds the server and gdb took (best first)."""

    seconds: float
    server_cpu: float
    gdb_cpu: float


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has taken so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gdb_stops(setup: list[str], stops: int, mode: str, server: int) -> Stops:
    """`stops` watchpoint stops, with gdb continuing from Python or an ignore count, against process `server`."""
    script = (GDB_LOOP if mode == "loop" else GDB_IGNORE).format(stops=stops, ignores=stops - 1)
    with tempfile.NamedTemporaryFile("w", suffix=".gdb", delete=False) as f:
        f.write("\n".join(["set pagination off", "set confirm off", *setup, script, "kill", "quit"]))
    try:
        before = cpu_seconds(server)
        out = subprocess.run([GDB, "-nx", "-batch", "-x", f.name], capture_output=True, text=True, timeout=600)
        server_cpu = cpu_seconds(server) - before  # attach and kill included: a few ms
    finally:
        os.unlink(f.name)
    match = re.search(r"ELAPSED ([\d.]+) GDBCPU ([\d.]+)", out.stdout)
    if not match:
        raise RuntimeError(f"gdb did not finish: {out.stdout[-2000:]} {out.stderr[-2000:]}")
    return Stops(float(match[1]), server_cpu, float(match[2]))


def kgdbstub_stops(stops: int, mode: str) -> Stops:
    process, host, port = bench_machine.serve()
    try:
        elf = targets.resolve(targets.DEFAULT_TARGET)
        return gdb_stops([f"file {elf}", f"target remote {host}:{port}", "watch looper_iterations"], stops, mode,
                         process.pid)
    finally:
        process.terminate()
        process.wait(10)


NATIVE = "volatile long counter;\nint main(void) { for (;;) counter++; }\n"


def gdbserver_stops(stops: int, mode: str) -> Stops | None:
    with bench_conditions.native_under_gdbserver(NATIVE, "-O0") as native:
        if native is None:
            return None
        attach, pid = native
        return gdb_stops([*attach, "watch counter"], stops, mode, pid)


UDB_SCRIPT = textwrap.dedent("""
    import sys
    from unicorn import Uc, UC_ARCH_X86, UC_MODE_64
    from unicorn.x86_const import UC_X86_REG_RBX, UC_X86_REG_RSP
    from udbserver import udbserver
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0x400000, 0x10000)
    uc.mem_write(0x400000, bytes.fromhex("48ff03" "ebfb"))  # 1: inc qword [rbx]; jmp 1
    uc.reg_write(UC_X86_REG_RBX, 0x408000)
    uc.reg_write(UC_X86_REG_RSP, 0x40f000)
    udbserver(uc, int(sys.argv[1]), 0x400000)  # waits for gdb when execution gets there
    uc.emu_start(0x400000, 0)
""")


def udbserver_stops(stops: int, mode: str) -> Stops | None:
    try:
        import udbserver  # noqa: F401
    except ImportError:
        return None
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", UDB_SCRIPT, str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return gdb_stops(["set architecture i386:x86-64", *RETRY, f"target remote 127.0.0.1:{port}",
                          "watch *(long *)0x408000"], stops, mode, server.pid)
    finally:
        server.kill()
        server.wait(10)


# -- protocol ------------------------------------------------------------------------


def protocol_rates(count: int) -> tuple[float, float, float]:
    process, host, port = bench_machine.serve()
    image = Image(targets.resolve(targets.DEFAULT_TARGET))
    try:
        wire = bench_machine.Wire(host, port)
        address = image.address_of("jiffies")
        read = bench_machine.Wire.frame(b"m%x,8" % address)
        started = time.perf_counter()
        for _ in range(count):
            wire.request_frame(read)
        reads = count / (time.perf_counter() - started)
        do_fork = image.address_of("do_fork")
        insert, remove = bench_machine.Wire.frame(b"Z1,%x,1" % do_fork), bench_machine.Wire.frame(b"z1,%x,1" % do_fork)
        started = time.perf_counter()
        for _ in range(count):
            assert wire.request_frame(insert) == b"OK"
            assert wire.request_frame(remove) == b"OK"
        pairs = count / (time.perf_counter() - started)
        wire.sock.close()
        elf = targets.resolve(targets.DEFAULT_TARGET)
        start = image.address_of("start_kernel") & ~0xFFF
        with tempfile.TemporaryDirectory() as work:
            out = subprocess.run(
                [GDB, "-nx", "-batch", "-ex", f"file {elf}", "-ex", f"target remote {host}:{port}", "-ex",
                 "python import time; t = time.perf_counter(); "
                 f"gdb.execute('dump memory {work}/mem {start:#x} {start + (1 << 20):#x}'); "
                 "print('ELAPSED %f' % (time.perf_counter() - t))"],
                capture_output=True, text=True, timeout=300)
        dump = float(re.search(r"ELAPSED ([\d.]+)", out.stdout)[1])
        return reads, pairs, dump
    finally:
        process.terminate()
        process.wait(10)


def attach_seconds() -> float:
    """From starting `kgdbstub serve` to gdb showing where the machine stopped, with symbols."""
    started = time.perf_counter()
    process, host, port = bench_machine.serve()
    try:
        elf = targets.resolve(targets.DEFAULT_TARGET)
        subprocess.run([GDB, "-nx", "-batch", "-ex", f"file {elf}", "-ex", f"target remote {host}:{port}"],
                       capture_output=True, timeout=120, check=True)
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(10)


def best_rates(rounds: int, requests: int) -> tuple[float, float, float]:
    """The best m-read and Z1/z1 rates and the shortest dump over several rounds."""
    rates = [protocol_rates(requests) for _ in range(rounds)]
    return max(r[0] for r in rates), max(r[1] for r in rates), min(r[2] for r in rates)


def machine_rows(args, image: Image, row) -> None:
    plain = bare = armed = 0.0
    million = float("inf")
    for _ in range(args.rounds):
        plain = max(plain, bench_machine.plain_unicorn(image, args.iterations))
        bare = max(bare, bench_machine.machine(image, args.iterations))
        armed = max(armed, bench_machine.machine(image, args.iterations, watches=4))
        million = min(million, bench_machine.ptrace_million(image))
    row("plain unicorn: looper iterations/s", plain, "")
    row("machine, nothing armed: iterations/s", bare, "", f"{bare / plain:.2f} of plain unicorn")
    row("machine, four watches armed: iterations/s", armed, "", f"{armed / plain:.2f} of plain unicorn")
    row("ptrace-loop: 1,000,000 ptrace hits", million, "s", f"{million / 1e6 * 1e6:.2f} us/hit")
    perf = bench_machine.perf_rate(image, None, "looper_iterations", 20000)
    row("perf hits/s (watch written every iteration)", perf, "")
    bare_step = bench_machine.step_seconds(image, 0)
    full_step = bench_machine.step_seconds(image, 1000)
    row("one step, 1000 software breakpoints set", full_step * 1e3, "ms", f"{full_step / bare_step:.0f} x a step with none")


PARTS = ("machine", "stops", "conditions", "break-in", "protocol")


def best_of(rounds: int, measure) -> tuple:
    """The best (shortest) of each of several things timed together, over interleaved rounds."""
    best = None
    for _ in range(rounds):
        times = measure()
        best = times if best is None else tuple(None if b is None else min(b, t) for b, t in zip(best, times))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="bench.json", metavar="FILE")
    parser.add_argument("--stops", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--iterations", type=int, default=3_000_000)
    parser.add_argument("--rounds", type=int, default=5, help="timed runs interleaved; the best counts")
    parser.add_argument("--break-ins", type=int, default=100, help="Ctrl-Cs timed for the break-in latency")
    parser.add_argument("--condition-hits", type=int, default=20_000)
    parser.add_argument("--condition-host-hits", type=int, default=1_000, help="with gdb evaluating: a stop each")
    parser.add_argument("--dprintf-lines", type=int, default=20_000)
    parser.add_argument("--only", action="append", choices=PARTS, metavar="PART",
                        help=f"measure only this part (repeatable): {', '.join(PARTS)}")
    args = parser.parse_args()
    parts = set(args.only or PARTS)
    image = Image(targets.resolve(targets.DEFAULT_TARGET))
    results: dict[str, float | None] = {}
    rows: list[tuple[str, str, str]] = []

    def row(name, value, unit, ratio=""):
        results[name] = value
        shown = "skipped (peer not installed)" if value is None else f"{value:,.3f} {unit}".strip()
        rows.append((name, shown, ratio))

    # Best of interleaved rounds: a busy machine slows a run, never speeds it up.
    if "machine" in parts:
        machine_rows(args, image, row)
    for mode, label in (("ignore", "ignore count"), ("loop", "gdb Python continue loop")):
        if "stops" not in parts:
            break
        runs = best_of(args.rounds, lambda mode=mode: (kgdbstub_stops(args.stops, mode),
                                                        gdbserver_stops(args.stops, mode),
                                                        udbserver_stops(args.stops, mode)))
        ours, native, udb = (None if run is None else run.seconds for run in runs)
        row(f"{args.stops} watch stops, {label}: kgdbstub", ours, "s")
        row(f"{args.stops} watch stops, {label}: gdbserver (native)", native, "s",
            f"kgdbstub/gdbserver {ours / native:.2f}" if native else "")
        row(f"{args.stops} watch stops, {label}: udbserver", udb, "s",
            f"kgdbstub/udbserver {ours / udb:.2f}" if udb else "")
        # Where a stop's time goes, in the best run: the stub's CPU and gdb's own.
        for peer, run in zip(("kgdbstub", "gdbserver (native)"), runs):
            if run is not None:
                row(f"  CPU per stop, {label}: {peer}", run.server_cpu / args.stops * 1e6, "us",
                    f"gdb's own {run.gdb_cpu / args.stops * 1e6:,.0f} us")
    if "conditions" in parts:
        sizes = (args.condition_hits, args.condition_host_hits, args.dprintf_lines)
        best: dict[str, float | None] = {}
        for _ in range(args.rounds):
            for name, rate in bench_conditions.rates(*sizes).items():
                best[name] = rate if best.get(name) is None else max(best[name], rate)
        for name, rate, note in bench_conditions.table(best, *sizes):
            row(name, rate, "", note)
    if "break-in" in parts:
        latencies, landed = bench_machine.break_ins(image, args.break_ins)
        share = bench_machine.instruction_share(image)
        row(f"break-in latency p50 ({len(latencies)} Ctrl-Cs, looper busy)", bench_machine.percentile(latencies, 0.5) * 1e3, "ms")
        row(f"break-in latency p99 ({len(latencies)} Ctrl-Cs, looper busy)", bench_machine.percentile(latencies, 0.99) * 1e3, "ms")
        row("stops inside looper's loop", landed * 100, "%", f"its share of instructions {share:.1%}: {abs(landed - share) * 100:.1f} points apart")
        row("looper's loop: share of instructions", share * 100, "%")
    if "protocol" in parts:
        reads, pairs, dump = best_rates(args.rounds, args.requests)
        row("m reads/s (raw client, loopback)", reads, "")
        row("Z1/z1 pairs/s (raw client, loopback)", pairs, "", f"{2 * pairs:,.0f} round trips/s")
        row("gdb dump memory, 1 MiB", dump, "s")
        row("attach: serve start to gdb showing the stop", min(attach_seconds() for _ in range(args.rounds)), "s")

    width = max(len(r[0]) for r in rows)
    machine_line = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"# {machine_line}")
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:>28}  {ratio}")
    Path(args.json).write_text(json.dumps({"machine": machine_line, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
