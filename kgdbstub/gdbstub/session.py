"""The `modern` dialect's session: RSP requests in, replies out, in kgdb's terms
with gdbserver's extensions.

The session is sans-I/O like the codec beneath it: `handle` takes a packet
payload and returns what to do -- a reply, or a resume the connection layer
runs before asking `stop_reply` for the answer. Its optional features are
the dialect's extensions, from which the qSupported answer is derived. The
`kgdb` dialect has a session of its own, Linux's gdbstub.c (kgdb.py); what
the two share (error replies, the thread batch, monitor output) is stated
there.
"""
from __future__ import annotations

import errno
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.breakinfo import Kind
from ..core.debugger import Debugger, DebuggerError, StopEvent
from ..rsp import decode_hex, encode_hex
from ..x86 import registers
from ..x86.cpu import read_registers
from .actions import PACKET_SIZE, Action, Detach, Reply, Resume
from .conditions import BadOptions, BreakpointCommands, ConditionalBreakpoints, parse_options
from .extensions import Extension
from .kgdb import KGDB_MAX_THREAD_QUERY, error_packet, monitor_output

if TYPE_CHECKING:
    from .dialects import Dialect

HARDWARE_KINDS = frozenset(kind.value for kind in Kind)


# How many memory reads a stop keeps the answers of: the latest few, which
# are the ones gdb asks again (a `dump memory` that reads megabytes keeps no more).
MEMORY_ANSWERS = 8
# Packets that only ask: reads of memory and registers, thread queries.
# Any other packet forgets the memory answers of this stop, breakpoints
# included: while stopped their int3s are out of memory, but whether they
# are is the debugger's policy, not something the answers should rely on.
_LEAVE_MEMORY_ALONE = (b"m", b"g", b"p", b"H", b"T", b"qfThreadInfo", b"qsThreadInfo",
                       b"qThreadExtraInfo", b"qXfer:threads:read:", b"qC", b"qAttached")


# Removals of watchpoints, which carry no conditions or commands.
_WATCH_REMOVALS = (b"z2", b"z3", b"z4")


class Malformed(Exception):
    """The packet does not parse: answered with E22 (EINVAL)."""


# -- encoding helpers ----------------------------------------------------------------


def format_thread(thread: int) -> bytes:
    """kgdb's thread ids: 32-bit two's complement, eight hex digits."""
    return b"%08x" % (thread & 0xFFFFFFFF)


def parse_thread(text: bytes) -> int | None:
    """A thread id from gdb; None for -1 (all threads) and 0 (any)."""
    if text in (b"-1", b"0", b""):
        return None
    if text.startswith(b"-"):
        return -_hex(text[1:])
    value = _hex(text)
    return value - (1 << 32) if 0x80000000 <= value < (1 << 32) else value


_HEX_NUMBER = re.compile(rb"[0-9a-fA-F]{1,16}")


def _hex(text: bytes) -> int:
    if not _HEX_NUMBER.fullmatch(text):
        raise Malformed(text)
    return int(text, 16)


def _address_length(text: bytes) -> tuple[int, int]:
    address, _, length = text.partition(b",")
    return _hex(address), _hex(length)


def error(code: int) -> Reply:
    return Reply(error_packet(code))


# -- the session -------------------------------------------------------------------


@dataclass
class Session:
    debugger: Debugger
    dialect: "Dialect"
    monitor: Callable[[str], str] | None = None
    offered: set[str] = field(default_factory=set)
    requested: set[str] = field(default_factory=set)  # features the client turned on by a packet of their own
    register_thread: int | None = None  # Hg; None: the thread that stopped
    _thread_batches: list = field(default_factory=list)
    # Answers to memory reads while the machine is stopped, until a packet
    # that may change memory (a write, a resume, a monitor command) comes.
    _memory_answers: dict = field(default_factory=dict)
    # A watchpoint removal answered but not yet made: gdb takes its
    # watchpoints out at each stop it shows and puts them back before it
    # resumes, with only queries in between. Made before any other packet,
    # or not at all when the same watchpoint comes back, which spares two
    # rewrites of every CPU's debug registers. (On a disconnect, detaching
    # removes everything anyway.)
    _held_removal: bytes | None = None
    _handlers: dict = field(init=False)
    _commands: dict = field(init=False)
    _conditions: bool = field(init=False)  # Z0/Z1 may carry conditions
    _point_commands: bool = field(init=False)  # ... and commands

    def __post_init__(self):
        self._conditions = any(isinstance(e, ConditionalBreakpoints) for e in self.dialect.extensions)
        self._point_commands = any(isinstance(e, BreakpointCommands) for e in self.dialect.extensions)
        self._handlers = {}
        for extension in self.dialect.extensions:
            for prefix, handler in extension.handlers(self).items():
                self._handlers[prefix.encode()] = handler
        # The extensions' packets by their first byte, in the order above:
        # a packet is compared with the few that could be it.
        self._handlers_by_first_byte = {}
        for prefix, handler in self._handlers.items():
            self._handlers_by_first_byte.setdefault(prefix[0], []).append((prefix, handler))
        # Only extensions that add to stop replies are asked at each stop.
        self._stop_field_extensions = [e for e in self.dialect.extensions
                                       if type(e).stop_fields is not Extension.stop_fields]
        layout = self.dialect.layout
        self._expedited = [registers.index_of(layout, name) for name in registers.EXPEDITED]
        # Read from the thread's saved register state in one go: they are 64-bit registers.
        assert all(layout[n].size == 8 and layout[n].uc_id is not None for n in self._expedited)
        self._expedited_ids = [layout[n].uc_id for n in self._expedited]
        self._commands = {
            b"?": self._status, b"g": self._read_registers, b"G": self._write_registers,
            b"p": self._read_register, b"P": self._write_register, b"m": self._read_memory,
            b"M": self._write_memory, b"X": self._write_binary, b"H": self._set_thread,
            b"T": self._thread_alive, b"Z": self._insert, b"z": self._remove,
            b"c": self._continue, b"s": self._step, b"q": self._query, b"v": self._v_packet,
            b"D": lambda _: self._detach(b"OK"), b"k": lambda _: self._detach(None),
        }

    def negotiated(self, feature: str) -> bool:
        return f"{feature}+" in self.dialect.negotiated(self.offered)

    # -- dispatch ------------------------------------------------------------

    def handle(self, payload: bytes) -> Action:
        if self._held_removal is not None and not payload.startswith(_LEAVE_MEMORY_ALONE):
            held, self._held_removal = self._held_removal, None
            if payload == b"Z" + held:
                return Reply(b"OK")  # the same watchpoint back before anything could tell it was gone
            self._handle(b"z" + held)  # checked when it came: it succeeds
        if payload[:1] == b"m":
            # gdb reads a watched value up to three times at a stop: the
            # memory has not changed in between, and neither has the answer.
            if (answer := self._memory_answers.get(payload)) is None:
                if len(self._memory_answers) >= MEMORY_ANSWERS:
                    del self._memory_answers[next(iter(self._memory_answers))]  # the oldest
                answer = self._memory_answers[payload] = self._handle(payload)
            return answer
        if not payload.startswith(_LEAVE_MEMORY_ALONE):
            if payload[:2] in _WATCH_REMOVALS and self._can_hold(payload[1:]):
                self._held_removal = payload[1:]
                return Reply(b"OK")  # nothing changes yet: the answers stand
            self._memory_answers.clear()
        return self._handle(payload)

    def _can_hold(self, args: bytes) -> bool:
        try:
            kind, address, length, options = self._breakpoint_args(args)
        except Malformed:
            return False
        return not options and self.debugger.holds_exactly(kind, address, length)

    def _handle(self, payload: bytes) -> Action:
        try:
            return self._dispatch(payload)
        except (Malformed, registers.RegisterRefused):
            return error(errno.EINVAL)
        except DebuggerError as failure:
            return error(failure.errno)

    def _dispatch(self, payload: bytes) -> Action:
        for prefix, handler in self._handlers_by_first_byte.get(payload[0], ()) if payload else ():
            if payload.startswith(prefix):
                return handler(payload[len(prefix):])
        handler = self._commands.get(payload[:1])
        return handler(payload[1:]) if handler else Reply(b"")

    def too_large(self) -> Reply:
        """The answer to a packet that arrived intact but longer than PacketSize allows."""
        return error(errno.EMSGSIZE)

    # -- stops ---------------------------------------------------------------

    def stop_reply(self, stop: StopEvent) -> bytes:
        self.register_thread = None
        reply = b"T%02xthread:%s;core:%x;" % (stop.signal, format_thread(stop.thread), stop.cpu)
        reply += b"".join(b"%02x:%s;" % pair for pair in self.expedited_registers(stop.thread))
        if stop.software_breakpoint and self.negotiated("swbreak"):
            reply += b"swbreak:;"
        if stop.hardware:
            reply += self._hardware_reason(stop.hardware)
        for extension in self._stop_field_extensions:
            reply += extension.stop_fields(self, stop)
        return reply

    def expedited_registers(self, thread: int) -> list[tuple[int, bytes]]:
        """(number, value in hex) of the registers a stop reply carries for a thread, as `p` reads them."""
        values = read_registers(self.registers_of(thread), *self._expedited_ids)
        return [(number, encode_hex(value.to_bytes(8, "little"))) for number, value in zip(self._expedited, values)]

    def _hardware_reason(self, hit) -> bytes:
        if hit.request.kind is Kind.EXECUTE:
            return b"hwbreak:;" if self.negotiated("hwbreak") else b""
        name = {Kind.WRITE: b"watch", Kind.READ: b"rwatch", Kind.ACCESS: b"awatch"}[hit.request.kind]
        return b"%s:%x;" % (name, hit.address)

    def _status(self, _):
        self.debugger.remove_all_breakpoints()
        stop = self.debugger.stop
        return Reply(self.stop_reply(stop) if stop else b"S05")

    def _current_thread(self) -> int:
        if self.register_thread is not None:
            return self.register_thread
        stop = self.debugger.stop
        return stop.thread if stop else self.debugger.thread_of(0)

    # -- registers -----------------------------------------------------------

    def as_thread(self, thread: int | None, payload: bytes) -> Action:
        """A register packet (g, G, p, P) for `thread`, as if `Hg` had selected it for this packet alone."""
        if thread is not None and not self.debugger.thread_alive(thread):
            return error(errno.EINVAL)
        selected = self.register_thread
        if thread is not None:
            self.register_thread = thread
        try:
            return self._commands[payload[:1]](payload[1:])
        finally:
            self.register_thread = selected

    def registers_of(self, thread: int):
        """A shadow thread -(N + 2) is CPU N's idle task alone: a task shows under its own pid."""
        return self.debugger.task_of(thread).regs

    def _regs(self):
        return self.registers_of(self._current_thread())

    def _read_registers(self, _):
        return Reply(encode_hex(registers.encode(self._regs(), self.dialect.layout)))

    def _write_registers(self, args):
        data = self._decode(args)
        if len(data) != registers.layout_size(self.dialect.layout):
            raise Malformed(args)
        registers.decode_into(self._regs(), self.dialect.layout, data)
        return Reply(b"OK")

    def _register(self, number_text: bytes) -> registers.Register:
        number = _hex(number_text)
        if number >= len(self.dialect.layout):
            raise Malformed(number_text)
        return self.dialect.layout[number]

    def _read_register(self, args):
        register = self._register(args)
        value = registers.read_value(self._regs(), register)
        return Reply(encode_hex(value.to_bytes(register.size, "little")))

    def _write_register(self, args):
        number, _, value = args.partition(b"=")
        register = self._register(number)
        data = self._decode(value)
        if len(data) != register.size:
            raise Malformed(args)
        registers.write_value(self._regs(), register, int.from_bytes(data, "little"))
        return Reply(b"OK")

    @staticmethod
    def _decode(text: bytes) -> bytes:
        try:
            return decode_hex(text)
        except ValueError:
            raise Malformed(text) from None

    # -- memory --------------------------------------------------------------

    def _read_memory(self, args):
        address, length = _address_length(args)
        length = min(length, (PACKET_SIZE - 8) // 2)
        return Reply(encode_hex(self.debugger.read_memory(address, length)))

    def _write_memory(self, args):
        where, _, data = args.partition(b":")
        address, length = _address_length(where)
        data = self._decode(data)
        if len(data) != length:
            raise Malformed(args)
        self.debugger.write_memory(address, data)
        return Reply(b"OK")

    def _write_binary(self, args):
        where, colon, data = args.partition(b":")
        address, length = _address_length(where)
        if not colon or len(data) != length:
            raise Malformed(args)
        if length:
            self.debugger.write_memory(address, data)
        return Reply(b"OK")

    # -- threads -------------------------------------------------------------

    def _set_thread(self, args):
        kind, thread = args[:1], parse_thread(args[1:])
        if kind not in (b"g", b"c"):
            raise Malformed(args)
        if thread is not None and not self.debugger.thread_alive(thread):
            return error(errno.EINVAL)
        if kind == b"g":
            self.register_thread = thread
        return Reply(b"OK")

    def _thread_alive(self, args):
        thread = parse_thread(args)
        if thread is None or not self.debugger.thread_alive(thread):
            return error(errno.EINVAL)
        return Reply(b"OK")

    # -- breakpoints ---------------------------------------------------------

    def _breakpoint_args(self, args) -> tuple[int, int, int, bytes]:
        """type, address and kind, and the options after them (from their ';')."""
        head = args.split(b";")[0]
        parts = head.split(b",")
        if len(parts) != 3:
            raise Malformed(args)
        return _hex(parts[0]), _hex(parts[1]), _hex(parts[2]), args[len(head):]

    def _point_actions(self, kind: int, options: bytes):
        """A code breakpoint's conditions and commands; None where the dialect offers neither."""
        if not (self._conditions or self._point_commands):
            return None
        if kind not in (0, 1):
            if options:
                raise Malformed(options)
            return None
        try:
            return parse_options(options, conditions=self._conditions, commands=self._point_commands)
        except BadOptions as bad:
            # gdb takes any error as a failed insert, whatever the number.
            raise DebuggerError(errno.EOPNOTSUPP if bad.unsupported else errno.EINVAL, str(bad)) from None

    def _insert(self, args):
        kind, address, length, options = self._breakpoint_args(args)
        if kind == 0:
            self.debugger.insert_breakpoint(address, self._point_actions(kind, options))
        elif kind in HARDWARE_KINDS:
            self.debugger.insert_hardware(kind, address, length, self._point_actions(kind, options))
        else:
            return Reply(b"")
        return Reply(b"OK")

    def _remove(self, args):
        kind, address, length, _ = self._breakpoint_args(args)
        if kind == 0:
            self.debugger.remove_breakpoint(address)
        elif kind in HARDWARE_KINDS:
            self.debugger.remove_hardware(kind, address, length)
        else:
            return Reply(b"")
        return Reply(b"OK")

    # -- running -------------------------------------------------------------

    def _continue(self, args):
        return Resume(step=False, cpu=None, address=_hex(args) if args else None)

    def _step(self, args):
        return self._step_thread(None, address=_hex(args) if args else None)

    def _step_thread(self, thread: int | None, address: int | None = None) -> Resume:
        """A step of `thread` (None: the one that stopped)."""
        if thread is None:
            thread = self.debugger.stop.thread if self.debugger.stop else None
        elif not self.debugger.thread_alive(thread):
            raise DebuggerError(errno.ESRCH, f"no thread {thread}")
        return Resume(step=True, cpu=None, address=address, thread=thread)

    def _v_packet(self, args):
        if args == b"Cont?":
            return Reply(b"vCont;c;C;s;S")
        if args.startswith(b"Cont;"):
            actions = [a.partition(b":") for a in args[5:].split(b";")]
            if not actions or any(a[:1] not in b"cCsS" or not a for a, _, _ in actions):
                raise Malformed(args)
            steps = [thread for action, _, thread in actions if action[:1] in b"sS"]
            if not steps:
                return Resume(step=False, cpu=None, address=None)
            return self._step_thread(parse_thread(steps[0]))
        return Reply(b"")

    def _detach(self, reply):
        self.debugger.remove_all_breakpoints()
        return Detach(reply)

    # -- queries -------------------------------------------------------------

    def _query(self, args):
        name, _, rest = args.partition(b":")
        if name == b"Supported":
            self.offered = set(rest.decode("ascii", "replace").split(";"))
            return Reply(";".join([f"PacketSize={PACKET_SIZE:x}"] + self.dialect.negotiated(self.offered)).encode())
        if args == b"C":
            return Reply(b"QC" + format_thread(self._current_thread()))
        if args == b"Attached":
            return Reply(b"1")
        if args == b"fThreadInfo":
            ids = self.debugger.threads()
            batch = KGDB_MAX_THREAD_QUERY  # as kgdb sends them
            self._thread_batches = [ids[i : i + batch] for i in range(0, len(ids), batch)]
            return self._next_threads()
        if args == b"sThreadInfo":
            return self._next_threads()
        if args.startswith(b"ThreadExtraInfo,"):
            thread = parse_thread(args[len(b"ThreadExtraInfo,"):])
            if thread is None:
                raise Malformed(args)
            return Reply(encode_hex(self.debugger.thread_name(thread).encode()))
        if args.startswith(b"Rcmd,") and self.monitor:
            command = self._decode(args[5:]).decode("utf-8", "replace")
            return Reply(b"OK", output=monitor_output(self.monitor(command)))
        return Reply(b"")

    def _next_threads(self):
        if not self._thread_batches:
            return Reply(b"l")
        batch = self._thread_batches.pop(0)
        return Reply(b"m" + b",".join(format_thread(t) for t in batch))
