"""Attach, watch `total_forks`, continue 100 times: print each value and the thread that wrote it.

    python examples/watch_total_forks.py [ADDRESS] [--count N] [--elf PATH]

ADDRESS is what `kgdbstub serve` printed (`127.0.0.1:1234`, `tcp:HOST:PORT`)
or the path of a pty or serial line. The symbols come from the stub itself
(qXfer:exec-file:read and host I/O); give --elf for a stub that cannot send
them, such as one in the kgdb dialect.
"""
from __future__ import annotations

import argparse

from kgdbstub.client import SyncTarget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", nargs="?", default="127.0.0.1:1234")
    parser.add_argument("--count", type=int, default=100, help="how many stops (default 100)")
    parser.add_argument("--elf", help="take the symbols from this file")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each reply or stop")
    args = parser.parse_args()

    with SyncTarget(args.address, elf=args.elf, timeout=args.timeout) as target:
        names = {thread.id: thread.name for thread in target.threads()}
        print("threads:", ", ".join(f"{thread} ({name})" for thread, name in names.items()))
        total_forks = target.symbol("total_forks")
        print(f"total_forks is at {total_forks:#x}, now {target.read_int(total_forks)}")
        watch = target.watch(total_forks, 8, kind="write")
        for number in range(1, args.count + 1):
            stop = target.resume()
            if stop.thread not in names:  # a task forked since: ask for the names again
                names = {thread.id: thread.name for thread in target.threads()}
            pc = stop.pc if stop.pc is not None else target.read_register("rip")
            print(f"{number:4}  total_forks={target.read_int(total_forks):<6} "
                  f"thread={stop.thread} ({names.get(stop.thread)}) cpu={stop.cpu} "
                  f"reason={stop.reason} pc={pc:#x}")
        target.remove_breakpoint(watch)
    # Leaving the `with` block detached: the machine runs on.


if __name__ == "__main__":
    main()
