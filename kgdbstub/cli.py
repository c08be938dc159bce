"""The `kgdbstub` command."""
from __future__ import annotations

import argparse
import sys

import trio

from . import scenario, targets
from .debugger import Debugger
from .kernel.image import Image, ImageError
from .kernel.kernel import Kernel
from .monitor import Monitor
from .policy import POLICIES
from .server import Trace, serve_listener
from .session import DIALECTS


class UsageError(Exception):
    pass


def _host_port(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kgdbstub", description="A kgdb-like GDB stub for an emulated x86-64 machine.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the target and serve one debugger at a time")
    serve.add_argument("--tcp", type=_host_port, default=("127.0.0.1", 1234), metavar="HOST:PORT",
                       help="listen on this address (default 127.0.0.1:1234; port 0 picks a free one)")
    serve.add_argument("--target", default=targets.DEFAULT_TARGET, metavar="NAME|PATH")
    serve.add_argument("--scenario", metavar="NAME|PATH", help="perf events and ptrace users to set up (default: none)")
    serve.add_argument("--cpus", type=int, default=2, metavar="N")
    serve.add_argument("--policy", choices=POLICIES, default="leftover", help="how kgdb gets debug-register slots")
    serve.add_argument("--dialect", choices=sorted(DIALECTS), default="modern")
    serve.add_argument("--once", action="store_true", help="exit when the first debugger disconnects")
    serve.add_argument("--trace", type=argparse.FileType("w"), metavar="FILE", help="log every packet in and out")
    commands.add_parser("targets", help="list the targets")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "targets":
            for name in targets.available():
                scenarios = ", ".join(scenario.available(targets.TARGETS_DIR / name))
                print(f"{name}: scenarios {scenarios}")
            return 0
        return trio.run(_serve, args)
    except (targets.TargetError, scenario.ScenarioError, ImageError, UsageError, OSError, ValueError) as problem:
        print(f"kgdbstub: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _serve(args) -> int:
    elf = targets.resolve(args.target)
    setup = scenario.load(elf.parent, args.scenario)
    kernel = Kernel(Image(elf), cpus=args.cpus)
    debugger = Debugger(kernel, split_regions=args.dialect == "modern", policy=args.policy)
    setup.apply_early(kernel)
    # Boot runs until the image waits for the debugger (kgdbwait).
    debugger.resume()
    debugger.late_init()
    setup.apply(kernel)
    host, port = args.tcp
    listeners = await trio.open_tcp_listeners(port, host=host)
    address = listeners[0].socket.getsockname()
    print(f"listening on tcp:{address[0]}:{address[1]}", flush=True)
    print(f"symbols: {elf}", flush=True)
    print(f"attach with: gdb {elf} -ex 'target remote {address[0]}:{address[1]}'", flush=True)
    await serve_listener(
        listeners[0], debugger, once=args.once, dialect=args.dialect,
        trace=Trace(args.trace), monitor=Monitor(kernel, debugger),
    )
    return 0
