"""gdb and LLDB on the same watch loop: packets per stop and stops per second.

    python tools/clients_bench.py [--stops N] [--rounds N] [--dialect modern|kgdb]

Each client, in batch mode, attaches to a fresh `kgdbstub serve --trace`,
watches writes to total_forks and continues N times, as a user would type
it. Packets per stop are counted in the trace between two stops (the
resume and the stop reply included); stops per second are one over the
time between two stop replies, which a relay between client and stub
notes as they pass. Both are the median over the stops after the first
two; the machine is shared, so each figure is the best of the rounds.
"""
from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ELF = ROOT / "targets" / "minikernel" / "minikernel.elf"
CLIENTS = {"gdb": shutil.which("gdb"), "lldb": shutil.which("lldb")}


def argv(client: str, address: str, stops: int) -> list[str]:
    if client == "gdb":
        commands = ["set confirm off", "set pagination off", f"target remote {address}",
                    "watch total_forks", *["continue"] * stops, "detach"]
        return [CLIENTS["gdb"], "-nx", "-batch", "-iex", "set debuginfod enabled off", str(ELF),
                *[arg for command in commands for arg in ("-ex", command)]]
    commands = [f"gdb-remote {address}", "watchpoint set variable total_forks", *["continue"] * stops,
                "process detach"]
    return [CLIENTS["lldb"], "--no-lldbinit", "-b", str(ELF), *[arg for c in commands for arg in ("-o", c)]]


class Relay:
    """A TCP relay between client and stub that notes when each stop reply passes."""

    def __init__(self, stub: str):
        host, port = stub.rsplit(":", 1)
        self.stub = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.stops: list[float] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        stub = socket.create_connection(self.stub)
        ends = {client: stub, stub: client}
        while True:
            for ready in select.select(list(ends), [], [])[0]:
                data = ready.recv(65536)
                if not data:
                    client.close(), stub.close()
                    return
                if ready is stub:
                    self.stops += [time.perf_counter()] * data.count(b"$T05")
                ends[ready].sendall(data)


def run(client: str, stops: int, dialect: str, trace: Path) -> list[float]:
    """The times at which the stop replies reached the client; the packets go to `trace`."""
    server = subprocess.Popen([sys.executable, "-m", "kgdbstub", "serve", "--tcp", "127.0.0.1:0",
                               "--dialect", dialect, "--trace", str(trace)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        relay = Relay(re.fullmatch(r"listening on tcp:(\S+)\n", server.stdout.readline())[1])
        done = subprocess.run(argv(client, relay.address, stops), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=600, env={**os.environ, "TERM": "dumb"})
        hits = len(re.findall(r"Hardware watchpoint \d+: total_forks|Watchpoint \d+ hit", done.stdout))
        if hits < stops:
            raise SystemExit(f"{client}: {hits} of {stops} stops:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        relay.thread.join(timeout=10)
        return relay.stops
    finally:
        server.terminate()
        server.wait()


def packets_per_stop(trace: Path) -> float:
    lines = trace.read_text().splitlines()
    stops = [i for i, line in enumerate(lines) if line.startswith("-> 'T05")]
    counts = [sum(line.startswith("<- ") for line in lines[a + 1 : b + 1]) for a, b in zip(stops[2:], stops[3:])]
    return statistics.median(counts)


def measure(client: str, stops: int, dialect: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as scratch:
        trace = Path(scratch) / "trace"
        times = run(client, stops, dialect, trace)
        packets = packets_per_stop(trace)
    intervals = [b - a for a, b in zip(times[2:], times[3:])]
    return packets, 1 / statistics.median(intervals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stops", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dialect", default="modern", choices=("modern", "kgdb"))
    options = parser.parse_args()
    print(f"{'client':8} {'packets/stop':>12} {'stops/s':>9}   ({options.stops} watch stops, "
          f"{options.dialect}, best of {options.rounds})")
    for client, path in CLIENTS.items():
        if path is None:
            print(f"{client:8} not installed: skipped")
            continue
        results = [measure(client, options.stops, options.dialect) for _ in range(options.rounds)]
        print(f"{client:8} {min(p for p, _ in results):12g} {max(r for _, r in results):9.1f}")


if __name__ == "__main__":
    main()
