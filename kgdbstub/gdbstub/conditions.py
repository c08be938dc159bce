"""Conditions and commands on Z0/Z1: gdb's `ConditionalBreakpoints` and `BreakpointCommands`.

The GDB manual's "Packets" section extends the code breakpoint packets:

    Z0,addr,kind[;cond_list...][;cmds:persist,cmd_list...]
    Z1,addr,kind[;cond_list...][;cmds:persist,cmd_list...]

where each list is agent expressions `X<len>,<hex bytecode>` written one
after another with no separator (gdb's remote.c writes them so), and
persist is 0 or 1. A breakpoint stops only when one of its conditions
holds; its commands run in the stub instead of a stop. gdb sends the
packet again for a breakpoint already inserted when its condition or
commands change: the new lists replace the old ones.

gdb compiles conditions itself and sends only what it could compile; an
expression this stub cannot run (an opcode it does not implement,
tracing, a register it does not have) is refused with an error reply and
nothing changes, never accepted and silently ignored.
"""
from __future__ import annotations

import re

from ..core import agent
from ..core.conditions import Actions, compile_command, compile_condition
from .extensions import Extension


class ConditionalBreakpoints(Extension):
    def advertise(self, offered):
        return "ConditionalBreakpoints+"


class BreakpointCommands(Extension):
    def advertise(self, offered):
        return "BreakpointCommands+"


class BadOptions(Exception):
    """The options after `Z0,addr,kind` do not parse, or hold a program the stub cannot run."""

    def __init__(self, message: str, *, unsupported: bool = False):
        super().__init__(message)
        self.unsupported = unsupported


_LENGTH = re.compile(rb"X([0-9a-fA-F]{1,8}),")


def parse_options(text: bytes, *, conditions: bool, commands: bool) -> Actions:
    """The conditions and commands in what follows `Z0,addr,kind` (text starts after it).

    Raises BadOptions for anything but well-formed lists of programs this
    stub runs, and for a list the dialect does not offer.
    """
    found_conditions: list[agent.Expression] = []
    found_commands: list[agent.Expression] = []
    persist = False
    seen_commands = False
    position = 0
    while position < len(text):
        if text[position : position + 1] != b";":
            raise BadOptions(f"expected ';' at {position} of {text!r}")
        position += 1
        if text.startswith(b"cmds:", position):
            if not commands or seen_commands:
                raise BadOptions("unexpected command list")
            seen_commands = True
            flag = text[position + 5 : position + 7]
            if flag not in (b"0,", b"1,"):
                raise BadOptions(f"bad persist flag in {text!r}")
            persist = flag == b"1,"
            position = _expressions(text, position + 7, compile_command, found_commands)
        elif text.startswith(b"X", position):
            if not conditions:
                raise BadOptions("unexpected condition list")
            position = _expressions(text, position, compile_condition, found_conditions)
        else:
            raise BadOptions(f"unknown breakpoint option at {position} of {text!r}")
    return Actions(tuple(found_conditions), tuple(found_commands), persist)


def _expressions(text: bytes, position: int, compile_one, into: list) -> int:
    """Parse `X<len>,<hex>` expressions from position up to the next ';' or the end."""
    before = len(into)
    while position < len(text) and text[position : position + 1] != b";":
        match = _LENGTH.match(text, position)
        if not match:
            raise BadOptions(f"expected an agent expression at {position} of {text!r}")
        length = int(match.group(1), 16)
        start = match.end()
        hex_text = text[start : start + 2 * length]
        if length == 0 or len(hex_text) != 2 * length:
            raise BadOptions(f"agent expression at {position} is not {length} bytes long")
        try:
            bytecode = bytes.fromhex(hex_text.decode("ascii"))
        except ValueError:
            raise BadOptions(f"agent expression at {position} is not hex") from None
        try:
            into.append(compile_one(bytecode))
        except agent.Unsupported as refused:
            raise BadOptions(str(refused), unsupported=True) from None
        except agent.Malformed as refused:
            raise BadOptions(str(refused)) from None
        position = start + 2 * length
    if len(into) == before:
        raise BadOptions("an empty list")
    return position
