"""Breakpoint conditions and commands: what the stub does at a hit before gdb hears of it.

gdb's Z0 and Z1 may carry agent expressions (the `ConditionalBreakpoints`
and `BreakpointCommands` features): a breakpoint with conditions is reported
only when one of them holds, and one with commands (the printf of an
agent-style `dprintf`) runs them and is not reported at all -- what
gdbserver does (its linux-low.cc reports a breakpoint only when
gdb_condition_true_at_breakpoint and gdb_no_commands_at_breakpoint).

An expression that cannot be evaluated -- memory that is not there, a
division by zero -- makes the breakpoint report a plain hit, as in
gdbserver, which takes a failed condition as true "to force GDB to
reevaluate": gdb evaluates a breakpoint's condition itself at every stop,
meets the same error and tells the user.

A software breakpoint with conditions or commands is not an int3 in memory
but a probe: the machine asks before it runs the instruction, with no stop
at all when the answer is to go on. A hardware breakpoint's conditions are
asked when its debug register fires.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..x86 import cpu as x86
from ..x86 import registers
from ..x86.debugregs import Access
from ..x86.memory import MemoryFault
from . import agent

SOFTWARE, HARDWARE = 0, 1  # gdb's Z types for code breakpoints

# Output waiting for the debugger beyond which a dprintf makes its CPU
# wait (when someone drains the output; see BreakpointConditions.output_limit).
OUTPUT_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Actions:
    """The agent expressions gdb attached to one code breakpoint."""

    conditions: tuple[agent.Expression, ...] = ()
    commands: tuple[agent.Expression, ...] = ()
    persist: bool = False  # gdb's wish that commands go on after it disconnects

    def __bool__(self) -> bool:
        return bool(self.conditions or self.commands)


NO_ACTIONS = Actions()

# Register numbers an expression may read: the target description's, and
# only those that fit in one 64-bit stack element.
READABLE_REGISTERS = frozenset(n for n, r in enumerate(registers.MODERN) if r.size <= 8 and not r.x87)


def compile_condition(bytecode: bytes) -> agent.Expression:
    return agent.compile(bytecode, READABLE_REGISTERS, value=True)


def compile_command(bytecode: bytes) -> agent.Expression:
    return agent.compile(bytecode, READABLE_REGISTERS, value=False)


class BreakpointConditions:
    """The conditions and commands of every code breakpoint, and their evaluation at hits."""

    def __init__(self, processor: x86.Processor):
        self._processor = processor
        self._actions: dict[tuple[int, int], Actions] = {}
        self.output = bytearray()  # printf output the debugger has not taken yet
        # Set by whoever drains `output` while the machine runs; None lets it grow.
        self.output_limit: int | None = None
        self.hits = 0  # hits evaluated, stops or not
        self._layout = registers.MODERN
        self._read_int = self._make_read_int()

    def set(self, kind: int, address: int, actions: Actions) -> None:
        """Give a breakpoint its conditions and commands, replacing what it had."""
        key = (kind, address)
        if actions:
            self._actions[key] = actions
        else:
            self._actions.pop(key, None)
        if kind == SOFTWARE:
            self._processor.set_probe(address, self._probe(address, actions) if actions else None)

    def discard(self, kind: int, address: int) -> None:
        self.set(kind, address, NO_ACTIONS)

    def clear(self) -> None:
        for kind, address in list(self._actions):
            self.discard(kind, address)

    def probed(self, address: int) -> bool:
        """Whether a software breakpoint is a probe rather than an int3."""
        return (SOFTWARE, address) in self._actions

    def of(self, kind: int, address: int) -> Actions:
        return self._actions.get((kind, address), NO_ACTIONS)

    def take_output(self) -> bytes:
        data = bytes(self.output)
        self.output.clear()
        return data

    # -- at a hit, inside the running machine ----------------------------------------

    def _probe(self, address: int, actions: Actions):
        """The question a software breakpoint asks at every hit: made once for its lists."""
        run, stop, pause = x86.ProbeVerdict.RUN, x86.ProbeVerdict.STOP, x86.ProbeVerdict.PAUSE
        if len(actions.conditions) == 1 and not actions.commands:
            # The common case, kept short: one condition, as `break ... if`.
            evaluate = actions.conditions[0].evaluate
            read_int, read_string, register = self._read_int, self._read_string, self._register

            def probe(cpu: int) -> x86.ProbeVerdict:
                self.hits += 1
                try:
                    return stop if evaluate(read_int, read_string, register) else run
                except agent.EvaluationError:
                    return stop

            return probe

        def probe(cpu: int) -> x86.ProbeVerdict:
            if (actions.commands and self.output_limit is not None
                    and len(self.output) >= self.output_limit):
                return pause  # asked again once the output has gone out
            return stop if self._stops(actions, address) else run

        return probe

    def hardware_hit(self, _cpu: int, piece) -> bool:
        """Whether a debug register the debugger owns stops the CPU (asked when it fires)."""
        if getattr(piece, "access", None) is not Access.EXECUTE:
            return True
        actions = self._actions.get((HARDWARE, piece.address))
        return actions is None or self._stops(actions, piece.address)

    def _stops(self, actions: Actions, address: int) -> bool:
        self.hits += 1
        if actions.conditions:
            try:
                for condition in actions.conditions:
                    if condition.evaluate(self._read_int, self._read_string, self._register):
                        break
                else:
                    return False
            except agent.EvaluationError:
                return True
        if not actions.commands:
            return True
        for command in actions.commands:
            try:
                command.evaluate(self._read_int, self._read_string, self._register, self.output.extend)
            except agent.EvaluationError as error:
                # gdb expects no stop where commands run (an agent-style dprintf):
                # it would resume at once, and the CPU would fail here again.
                self.output += b"kgdbstub: commands at %#x: %s\n" % (address, str(error).encode())
                break
        return False

    # -- the machine as expressions see it -------------------------------------------

    def _make_read_int(self):
        read_int = self._processor.read_int

        def checked(address: int, size: int) -> int:
            try:
                return read_int(address, size)
            except MemoryFault:
                raise agent.MemoryFault(address) from None

        return checked

    def _read_string(self, address: int, limit: int) -> bytes:
        data = bytearray()
        while len(data) < limit:
            # Up to the end of the page at a time: the next page may not exist.
            chunk = min(limit - len(data), 0x1000 - ((address + len(data)) & 0xFFF))
            try:
                piece = self._processor.read(address + len(data), chunk)
            except MemoryFault:
                raise agent.MemoryFault(address + len(data)) from None
            end = piece.find(b"\0")
            if end >= 0:
                return bytes(data + piece[:end])
            data += piece
        return bytes(data)

    def _register(self, number: int) -> int:
        # While the machine runs, the engine holds the running CPU's registers.
        return registers.read_value(self._processor.uc, self._layout[number])
