"""The `kgdbstub` command."""
from __future__ import annotations

import argparse
import ipaddress
import contextlib
import os
import signal
import sys

import trio

from . import scenario, targets
from .core.debugger import Debugger
from .kernel.image import Image, ImageError
from .kernel.kernel import Kernel
from .monitor import Monitor
from .core.policy import POLICIES
from .server import Trace, serve_line, serve_listener
from .gdbstub.dialects import DIALECTS
from .transport import ConsoleBuffer, LineLost, PtyLine, SerialLine
from .transport.serial import DEFAULT_BAUD


class UsageError(Exception):
    pass


def _host_port(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kgdbstub", description="A kgdb-like GDB stub for an emulated x86-64 machine.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the target and serve one debugger at a time")
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--tcp", type=_host_port, default=("127.0.0.1", 1234), metavar="HOST:PORT",
                       help="listen on this address (default 127.0.0.1:1234; port 0 picks a free one)")
    where.add_argument("--pty", action="store_true",
                       help="serve on a new pseudo-terminal, shared with the kernel console; its slave is printed")
    where.add_argument("--serial", metavar="DEVICE",
                       help="serve on a serial line (opened with pyserial), shared with the kernel console")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow --tcp on an address other than loopback: whoever connects controls the machine")
    serve.add_argument("--link", metavar="PATH", help="with --pty: keep a symlink PATH to the pty's slave")
    serve.add_argument("--baud", type=int, metavar="N", help=f"with --serial: line speed (default {DEFAULT_BAUD})")
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
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        if args.link is not None and not args.pty:
            parser.error("--link goes with --pty")
        if args.baud is not None and args.serial is None:
            parser.error("--baud goes with --serial")
        if args.baud is not None and args.baud <= 0:
            parser.error("--baud must be a positive number")
        if not 1 <= args.cpus <= 8:
            parser.error("--cpus takes 1 to 8")
        if not args.pty and args.serial is None and not _loopback(args.tcp[0]) and not args.allow_remote:
            parser.error(f"{args.tcp[0]} is not a loopback address: whoever connects controls the machine; "
                         "add --allow-remote to listen there anyway")
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
    debugger = Debugger(kernel, policy=args.policy, **DIALECTS[args.dialect].core)
    setup.apply_early(kernel)
    # Boot runs until the image waits for the debugger (kgdbwait).
    debugger.resume()
    debugger.late_init()
    setup.apply(kernel)
    options = dict(once=args.once, dialect=args.dialect, trace=Trace(args.trace), monitor=Monitor(kernel, debugger))
    if args.pty or args.serial:
        await _serve_line(args, elf, kernel, debugger, options)
        return 0
    host, port = args.tcp
    if not _loopback(host):
        print(f"kgdbstub: warning: listening on {host}, not loopback: whoever connects controls the machine",
              file=sys.stderr, flush=True)
    listeners = await trio.open_tcp_listeners(port, host=host)
    address = listeners[0].socket.getsockname()
    print(f"listening on tcp:{address[0]}:{address[1]}", flush=True)
    print(f"symbols: {elf}", flush=True)
    print(f"attach with: gdb {elf} -ex 'target remote {address[0]}:{address[1]}'", flush=True)
    await serve_listener(listeners[0], debugger, **options)
    return 0


async def _serve_line(args, elf, kernel: Kernel, debugger: Debugger, options: dict) -> None:
    """Serve on a pty or a serial line, which carries the kernel console too."""
    line = PtyLine(link=args.link) if args.pty else SerialLine(args.serial, args.baud or DEFAULT_BAUD)
    console = ConsoleBuffer()
    try:
        # What the machine printed while it booted is the line's first text:
        # on a pty it waits in the pty's buffer for whoever opens it first.
        console.attach(kernel, backlog=True)
        console.consume(line.send_nowait(console.peek()))
        print(f"listening on {line.address}", flush=True)
        print(f"symbols: {elf}", flush=True)
        if args.pty:
            print(f"attach with: gdb {elf} -ex 'target remote {line.link or line.path}'", flush=True)
        else:
            print(f"attach with: gdb {elf} -ex 'set serial baud {line.baud}' -ex 'target remote PORT'"
                  f" (PORT: the far end of {line.path})", flush=True)
        with _removing_link_on_signals(line):
            try:
                await serve_line(line, debugger, console, **options)
            except BaseExceptionGroup as group:
                lost, _ = group.split(LineLost)
                if lost is None:
                    raise
                while isinstance(lost, BaseExceptionGroup):
                    lost = lost.exceptions[0]
                raise lost from None  # a plain OSError: main reports it
    finally:
        console.detach()
        line.close()


@contextlib.contextmanager
def _removing_link_on_signals(line):
    """With --link, a signal that ends the stub removes the symlink first."""
    if getattr(line, "link", None) is None:
        yield
        return
    signals = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

    def remove_and_die(number, _frame):
        line.remove_link()
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)

    previous = {number: signal.signal(number, remove_and_die) for number in signals}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
