"""Breakpoint conditions and dprintf evaluated in the stub, timed against gdbserver and gdb itself.

    python tools/bench_conditions.py [--hits N] [--host-hits N] [--lines N]

A breakpoint on a function called once per loop iteration, with a
condition true only at the last of N hits, continued once: the time to
that stop, as hits per second. Measured in one run for kgdbstub and for
gdbserver on a native process (the same loop in C), each with the
condition evaluated by the target (`set breakpoint condition-evaluation
target`) and by gdb (`host`; fewer hits, since each is a stop). Then an
agent-style dprintf at the same place: lines per second until a
conditional breakpoint further on stops the run. gdbserver is skipped
with a note when it is not installed (`apt-get install gdbserver`).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

import bench_machine  # noqa: E402
from kgdbstub import targets  # noqa: E402

GDB = shutil.which("gdb")

# Run inside gdb: a breakpoint on TICK whose condition holds at the HITS-th
# call from here, or a dprintf on TICK and a breakpoint at DONE, then one
# timed `continue`.
TIMED = """
python
import time
start = int(gdb.parse_and_eval("{counter}"))
{setup}
started = time.perf_counter()
gdb.execute("continue")
elapsed = time.perf_counter() - started
reached = int(gdb.parse_and_eval("{counter}"))
print("ELAPSED %f COUNT %d" % (elapsed, reached - start))
end
"""

BREAK = 'gdb.execute("break {tick} if {counter} == %d" % (start + {hits} - 1))'
DPRINTF = ('gdb.execute(\'dprintf {tick},"{line} %lu\\\\n", {counter}\')\n'
           'gdb.execute("break {done} if {counter} == %d" % (start + {hits}))')

NATIVE = """\
volatile unsigned long counter;
__attribute__((noinline)) void tick(void) { __asm__ __volatile__("" : : : "memory"); }
int main(void) { for (;;) { tick(); counter++; } }
"""


def timed(connect: list[str], where: dict[str, str], setup: str, hits: int, *, evaluation: str,
          dprintf_style: str = "gdb") -> tuple[float, int, int]:
    """(seconds, calls counted, dprintf lines seen) for one timed continue."""
    script = TIMED.format(setup=setup.format(hits=hits, **where), **where)
    commands = ["set pagination off", "set confirm off", *connect,
                f"set breakpoint condition-evaluation {evaluation}", f"set dprintf-style {dprintf_style}",
                script, "kill", "quit"]
    with tempfile.NamedTemporaryFile("w", suffix=".gdb", delete=False) as f:
        f.write("\n".join(commands))
    try:
        out = subprocess.run([GDB, "-nx", "-batch", "-x", f.name], capture_output=True, text=True, timeout=900)
    finally:
        os.unlink(f.name)
    match = re.search(r"ELAPSED ([\d.]+) COUNT (\d+)", out.stdout)
    if not match:
        raise RuntimeError(f"gdb did not finish: {out.stdout[-2000:]} {out.stderr[-2000:]}")
    # gdb prints the target's console output (O packets) on stderr.
    lines = len(re.findall(rf"^{where['line']} \d+$", out.stdout + out.stderr, re.M))
    return float(match[1]), int(match[2]), lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A peer that says nothing when it is ready: gdb keeps trying to connect.
RETRY = ["set tcp auto-retry on", "set tcp connect-timeout 30"]


@contextlib.contextmanager
def native_under_gdbserver(source: str, optimization: str) -> Iterator[tuple[list[str], int] | None]:
    """A native program built from C source, run under gdbserver on a free port.

    Yields (the gdb commands that load it and connect, gdbserver's pid), or
    None when gdbserver or a C compiler is missing.
    """
    server_binary, cc = shutil.which("gdbserver"), shutil.which("cc") or shutil.which("gcc")
    if not server_binary or not cc:
        yield None
        return
    with tempfile.TemporaryDirectory() as work:
        source_path, program = Path(work, "native.c"), Path(work, "native")
        source_path.write_text(source)
        subprocess.run([cc, "-g", optimization, "-o", str(program), str(source_path)], check=True)
        port = free_port()
        server = subprocess.Popen([server_binary, f"127.0.0.1:{port}", str(program)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield [f"file {program}", *RETRY, f"target remote 127.0.0.1:{port}"], server.pid
        finally:
            server.kill()
            server.wait(10)


KGDBSTUB = {"tick": "looper_tick", "counter": "looper_iterations", "done": "user/looper.c:54", "line": "tick"}
GDBSERVER = {"tick": "tick", "counter": "counter", "done": "main", "line": "tick"}


def kgdbstub(setup: str, hits: int, **options) -> tuple[float, int, int]:
    process, host, port = bench_machine.serve()
    try:
        elf = targets.resolve(targets.DEFAULT_TARGET)
        return timed([f"file {elf}", f"target remote {host}:{port}"], KGDBSTUB, setup, hits, **options)
    finally:
        process.terminate()
        process.wait(10)


def gdbserver(setup: str, hits: int, **options) -> tuple[float, int, int] | None:
    with native_under_gdbserver(NATIVE, "-O1") as native:
        if native is None:
            return None
        attach, _ = native
        return timed(attach, GDBSERVER, setup, hits, **options)


def rates(hits: int, host_hits: int, lines: int) -> dict[str, float | None]:
    """Conditional hits/s each way, and dprintf lines/s; None for a peer not installed."""

    def rate(result, expected):
        if result is None:
            return None
        seconds, counted, _ = result
        if abs(counted - expected) > 1:
            raise RuntimeError(f"the run stopped after {counted} calls, not {expected}")
        return expected / seconds

    measured = {
        "kgdbstub target": rate(kgdbstub(BREAK, hits, evaluation="target"), hits),
        "gdbserver target": rate(gdbserver(BREAK, hits, evaluation="target"), hits),
        "kgdbstub host": rate(kgdbstub(BREAK, host_hits, evaluation="host"), host_hits),
        "gdbserver host": rate(gdbserver(BREAK, host_hits, evaluation="host"), host_hits),
    }
    for name, run in (("kgdbstub", kgdbstub), ("gdbserver", gdbserver)):
        result = run(DPRINTF, lines, evaluation="target", dprintf_style="agent")
        # gdbserver prints an agent dprintf on its own stdout, not to gdb: only ours can be counted.
        if result is not None and name == "kgdbstub" and abs(result[2] - lines) > 1:
            raise RuntimeError(f"gdb printed {result[2]} dprintf lines, not {lines}")
        measured[f"{name} dprintf"] = None if result is None else lines / result[0]
    return measured


def table(measured: dict[str, float | None], hits: int, host_hits: int, lines: int):
    """(name, rate, note) rows of what rates() measured."""
    ours, native = measured["kgdbstub target"], measured["gdbserver target"]
    ours_host, native_host = measured["kgdbstub host"], measured["gdbserver host"]
    return [
        (f"conditional breakpoint, {hits} hits, target evaluates: kgdbstub hits/s", ours,
         f"{ours / native:.1f}x gdbserver" if native else ""),
        (f"conditional breakpoint, {hits} hits, target evaluates: gdbserver (native) hits/s", native, ""),
        (f"conditional breakpoint, {host_hits} hits, gdb evaluates: kgdbstub hits/s", ours_host,
         f"target evaluation {ours / ours_host:.0f}x faster"),
        (f"conditional breakpoint, {host_hits} hits, gdb evaluates: gdbserver (native) hits/s", native_host,
         f"target evaluation {native / native_host:.1f}x faster" if native else ""),
        (f"dprintf, agent style, {lines} lines: kgdbstub lines/s", measured["kgdbstub dprintf"],
         "printed by gdb (O packets)"),
        (f"dprintf, agent style, {lines} lines: gdbserver (native) lines/s", measured["gdbserver dprintf"],
         "printed by gdbserver itself"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hits", type=int, default=20_000)
    parser.add_argument("--host-hits", type=int, default=1_000)
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args()
    for name, value, note in table(rates(args.hits, args.host_hits, args.lines), args.hits, args.host_hits,
                                   args.lines):
        shown = "skipped (peer not installed)" if value is None else f"{value:,.0f}"
        print(f"{name:<80} {shown:>28}  {note}")


if __name__ == "__main__":
    main()
