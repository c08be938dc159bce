"""Seed case 1 of the kgdb/perf debate, from a script: perf watches `jiffies`
with a wide hardware breakpoint while kgdb holds a hardware breakpoint at
`do_fork`. At every stop perf must have counted every write to `jiffies`
since it started watching: hits == jiffies - baseline.

    python examples/seed_case_1.py [ADDRESS] [--stops N]

Against `kgdbstub serve --scenario perf-watch` it uses the scenario's perf
event; against any other server it adds one with `monitor perf add` and
deletes it at the end. Prints a table; exits with 1 if a count is off.
"""
from __future__ import annotations

import argparse
import re
import sys

import trio

from kgdbstub.client import connect


async def jiffies_events(target, jiffies: int) -> dict[int, int]:
    """{perf event id: hits} of the wide events that watch writes to jiffies."""
    listing = await target.monitor("perf")
    return {int(m["id"]): int(m["hits"]) for m in re.finditer(
        r"id=(?P<id>\d+) kind=wide \S+ \S+ addr=(?P<addr>0x[0-9a-f]+) type=w \S+ hits=(?P<hits>\d+)", listing)
        if int(m["addr"], 16) == jiffies}


async def main(address: str, stops: int, timeout: float) -> int:
    async with await connect(address, timeout=timeout) as target:
        jiffies, do_fork = await target.symbol("jiffies"), await target.symbol("do_fork")
        added: list[str] = []
        if not await jiffies_events(target, jiffies):
            added = re.findall(r"id=(\d+)", await target.monitor(f"perf add wide {jiffies:#x} w 8"))
            print(f"added perf events {', '.join(added)}: a wide write watch on jiffies")
        hits = sum((await jiffies_events(target, jiffies)).values())
        baseline = await target.read_int(jiffies) - hits
        print(f"jiffies={baseline + hits} perf hits={hits}: baseline {baseline}")

        breakpoint = await target.insert_breakpoint(do_fork, kind="hardware")
        print(f"{'stop':>4} {'thread':>6} {'cpu':>3} {'jiffies':>8} {'perf hits':>9} {'expected':>8}  ok")
        failures = 0
        for number in range(1, stops + 1):
            stop = await target.resume()
            if number == 1:
                slots = await target.monitor("slots")
                owners = sorted(set(re.findall(r"owner=(kgdb|perf:\d+)", slots)))
                print(f"     (slots in use at the first stop: {', '.join(owners)})")
            hits = sum((await jiffies_events(target, jiffies)).values())
            now = await target.read_int(jiffies)
            pc = stop.pc if stop.pc is not None else await target.read_register("rip")
            ok = pc == do_fork and hits == now - baseline
            failures += not ok
            print(f"{number:>4} {stop.thread:>6} {stop.cpu if stop.cpu is not None else '-':>3} "
                  f"{now:>8} {hits:>9} {now - baseline:>8}  {'yes' if ok else 'NO'}")
        await target.remove_breakpoint(breakpoint)
        for event in added:
            await target.monitor(f"perf del {event}")
    print("every write to jiffies was counted" if not failures else f"{failures} stops with a wrong count")
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", nargs="?", default="127.0.0.1:1234")
    parser.add_argument("--stops", type=int, default=10, help="how many do_fork stops (default 10)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each reply or stop")
    args = parser.parse_args()
    sys.exit(trio.run(main, args.address, args.stops, args.timeout))
