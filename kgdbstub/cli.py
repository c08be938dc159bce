"""The `kgdbstub` command."""
from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import shlex
import signal
import sys
from importlib import metadata

import trio

from . import scenario, targets
from .core.debugger import Debugger
from .kernel.image import Image, ImageError
from .kernel.kernel import Kernel
from .monitor import Monitor
from .core.policy import POLICIES
from .server import serve_line, serve_listener
from .gdbstub.dialects import DIALECTS
from .trace import Trace, TraceError
from .transport import ConsoleBuffer, LineLost, PtyLine, SerialLine
from .transport.console import copy_to_file
from .transport.serial import DEFAULT_BAUD

# The exit status of a command ended by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """A bad option is one line on stderr and exit status 2, not the whole usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _host_port(text: str) -> tuple[str, int]:
    """HOST:PORT, with an IPv6 host in brackets as gdb writes it ([::1]:1234)."""
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535 or "[" in host or "]" in host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (an IPv6 host in brackets: [::1]:PORT), got {text!r}")
    return host or "127.0.0.1", int(port)


def _tcp_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _version() -> str:
    try:
        return metadata.version("kgdbstub")
    except metadata.PackageNotFoundError:
        return "unknown"


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The command's parser and its `serve` parser."""
    parser = _Parser(prog="kgdbstub", description="A kgdb-like GDB stub for an emulated x86-64 machine.")
    parser.add_argument("--version", action="version", version=f"kgdbstub {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="start the target and serve one debugger at a time",
                                description="Start the target and serve one debugger at a time.")
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--tcp", type=_host_port, default=("127.0.0.1", 1234), metavar="HOST:PORT",
                       help="listen on this address (default 127.0.0.1:1234; port 0 picks a free one; "
                            "an IPv6 host in brackets: [::1]:1234)")
    where.add_argument("--pty", action="store_true",
                       help="serve on a new pseudo-terminal, shared with the kernel console; its slave is printed")
    where.add_argument("--serial", metavar="DEVICE",
                       help="serve on a serial line (opened with pyserial), shared with the kernel console")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow --tcp on an address other than loopback: whoever connects controls the machine")
    serve.add_argument("--link", metavar="PATH", help="with --pty: keep a symlink PATH to the pty's slave")
    serve.add_argument("--baud", type=int, metavar="N", help=f"with --serial: line speed (default {DEFAULT_BAUD})")
    serve.add_argument("--target", default=targets.DEFAULT_TARGET, metavar="NAME|PATH",
                       help=f"a target in targets/ (default {targets.DEFAULT_TARGET}; "
                            "`kgdbstub targets` lists them) or the path of an x86-64 ELF")
    serve.add_argument("--scenario", metavar="NAME|PATH",
                       help="perf events and ptrace users to set up: a scenario of the target or a TOML file "
                            "(default: none)")
    serve.add_argument("--cpus", type=int, default=2, metavar="N", help="number of CPUs, 1 to 8 (default 2)")
    serve.add_argument("--policy", choices=POLICIES, default="leftover",
                       help="how kgdb gets debug-register slots: leftover (default) takes one when gdb sets a "
                            "hardware breakpoint; session reserves every free one while a debugger is attached; "
                            "boot holds all four from boot on")
    serve.add_argument("--dialect", choices=sorted(DIALECTS), default="modern",
                       help="modern (default): kgdb plus what a modern stub offers; "
                            "kgdb: Linux x86-64 kgdb's replies byte for byte")
    serve.add_argument("--once", action="store_true", help="exit when the first debugger disconnects")
    serve.add_argument("--trace", metavar="FILE",
                       help="log every packet in and out to FILE, a new file made readable by you alone "
                            "(an existing file or a symbolic link is refused; a device or fifo is written to)")
    commands.add_parser("targets", help="list the targets and their scenarios",
                        description="List the targets and their scenarios.")
    return parser, serve


def main(argv: list[str] | None = None) -> int:
    parser, serve = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        if args.link is not None and not args.pty:
            serve.error("--link goes with --pty")
        if args.baud is not None and args.serial is None:
            serve.error("--baud goes with --serial")
        if args.baud is not None and args.baud <= 0:
            serve.error("--baud must be a positive number")
        if not 1 <= args.cpus <= 8:
            serve.error("--cpus takes 1 to 8")
        if not args.pty and args.serial is None and not _loopback(args.tcp[0]) and not args.allow_remote:
            serve.error(f"{args.tcp[0]} is not a loopback address: whoever connects controls the machine; "
                        "add --allow-remote to listen there anyway")
    trace = Trace()
    try:
        if args.command == "targets":
            for name in targets.available():
                scenarios = ", ".join(scenario.available(targets.TARGETS_DIR / name))
                print(f"{name}: scenarios {scenarios}")
            return 0
        if args.trace is not None:
            trace = Trace.open(args.trace)
        return trio.run(_serve_until_interrupted, args, trace)
    except (targets.TargetError, scenario.ScenarioError, ImageError, UsageError, TraceError, OSError,
            ValueError) as problem:
        print(f"kgdbstub: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return INTERRUPTED
    finally:
        trace.close()


async def _serve_until_interrupted(args, trace: Trace) -> int:
    """_serve, which Ctrl-C (SIGINT) ends as a cancellation: the machine is
    stopped, every slot given back, the line closed and its link removed,
    and the status is 130. A second Ctrl-C while that happens kills at once."""
    with trio.open_signal_receiver(signal.SIGINT) as interrupts:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_interrupt, interrupts, nursery.cancel_scope)
                status = await _serve(args, trace)
                nursery.cancel_scope.cancel()
                return status
        except BaseExceptionGroup as group:
            while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
                group = group.exceptions[0]
            raise group from None  # one error: main reports it as the error it is
    return INTERRUPTED


async def _cancel_on_interrupt(interrupts, scope: trio.CancelScope) -> None:
    async for _ in interrupts:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        scope.cancel()
        return


async def _serve(args, trace: Trace) -> int:
    elf = targets.resolve(args.target)
    setup = scenario.load(elf.parent, args.scenario)
    kernel = Kernel(Image(elf), cpus=args.cpus)
    debugger = Debugger(kernel, policy=args.policy, **DIALECTS[args.dialect].core)
    refused = setup.apply_early(kernel)
    # Boot runs until the image waits for the debugger (kgdbwait).
    debugger.resume()
    debugger.late_init()
    refused += setup.apply(kernel)
    for refusal in refused:
        print(f"kgdbstub: scenario {setup.name}: {refusal}", file=sys.stderr, flush=True)
    options = dict(once=args.once, dialect=args.dialect, trace=trace, monitor=Monitor(kernel, debugger))
    if args.pty or args.serial:
        await _serve_line(args, elf, kernel, debugger, options)
        return 0
    host, port = args.tcp
    if not _loopback(host):
        print(f"kgdbstub: warning: listening on {host}, not loopback: whoever connects controls the machine",
              file=sys.stderr, flush=True)
    listeners = await trio.open_tcp_listeners(port, host=host)
    address = _tcp_address(*listeners[0].socket.getsockname()[:2])
    print(f"listening on tcp:{address}", flush=True)
    print(f"symbols: {elf}", flush=True)
    print(f"attach with: {_gdb_command(elf, address)}", flush=True)
    # The console shows on the terminal, from the boot messages on, as an
    # emulator's serial console does.
    console = ConsoleBuffer()
    console.attach(kernel, backlog=True)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(copy_to_file, console, sys.stdout.fileno())
            await serve_listener(listeners[0], debugger, **options)
            nursery.cancel_scope.cancel()
    finally:
        console.detach()
    return 0


def _gdb_command(elf, target: str, *before: str) -> str:
    """The gdb command line that attaches, to be pasted as it is.

    The image's debug info names its sources relative to the directory it
    was built in, which a reproducible build cannot know; gdb finds them
    with `directory`, given before `target remote` so that the first stop
    shows its source line.
    """
    commands = [*before]
    if elf.is_relative_to(targets.TARGETS_DIR):
        commands.append(f"directory {_gdb_quoted(elf.parent)}")
    commands.append(f"target remote {target}")
    return shlex.join(["gdb", str(elf), *(word for command in commands for word in ("-ex", command))])


def _gdb_quoted(path) -> str:
    """A path as gdb's `directory` takes it: whitespace would split it in two."""
    text = str(path)
    return f'"{text}"' if any(c.isspace() for c in text) else text


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
            print(f"attach with: {_gdb_command(elf, line.link or line.path)}", flush=True)
        else:
            print(f"attach with: {_gdb_command(elf, 'PORT', f'set serial baud {line.baud}')}"
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
    signals = (signal.SIGTERM, signal.SIGHUP)  # SIGINT ends the stub by cancellation, which removes it

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
