"""What LLDB asks a stub beyond gdb's packets, as session extensions.

LLDB probes each of these by sending it and takes an empty reply for "not
supported" (lldb/docs/lldb-gdb-remote.txt; GDBRemoteCommunicationClient.cpp);
none is announced in qSupported. Each one here either tells LLDB what it
cannot learn otherwise or saves round trips at every stop:

- `qHostInfo`, `qProcessInfo`: the triple and pointer size, so that
  `gdb-remote` with no file knows it debugs x86-64.
- `qWatchpointSupportInfo`: how many hardware watchpoints the debugger could
  hold now, which depends on what perf and ptrace hold (LLDB asks once per
  connection and refuses every watchpoint when the answer is 0).
- `QThreadSuffixSupported`: `g`, `G`, `p`, `P` name their thread with a
  `;thread:T;` suffix instead of an `Hg` packet before them.
- `QListThreadsInStopReply`: stop replies list every thread with its PC
  (`threads:`, `thread-pcs:`), and every thread's stop reason and
  expedited registers (`jstopinfo:`), so LLDB asks neither the thread list
  nor each thread why it stopped; with them go the words at the top of
  every thread's stack and its frame chain (`memory:`) and all the general
  registers of the thread that stopped, which LLDB would otherwise read at
  each stop to unwind and to show the frame.

LLDB reads at each stop, with all of these, only what the user's commands
need (a watched value, a frame's arguments). It also asks for `jThreadsInfo`
and `qThreadStopInfo`, which would tell it nothing the stop reply has not.
"""
from __future__ import annotations

import json
from collections.abc import Callable

from ..core.debugger import DebuggerError
from ..rsp import encode_hex
from ..x86 import registers
from .actions import PACKET_SIZE, Action, Reply
from .extensions import Extension

# An x86-64 kernel: no OS whose user-space conventions (a dynamic loader,
# auxv) LLDB would try to apply.
TRIPLE = "x86_64-unknown-none"
POINTER_SIZE = 8
# How many frames of each thread's frame-pointer chain a stop reply carries.
EXPEDITED_FRAMES = 16
# What LLDB's fields may add to a stop reply: the rest of the packet size is
# ample for the standard fields before them.
STOP_FIELDS_ROOM = PACKET_SIZE // 2


def _thread_id(thread: int) -> int:
    """A thread id as LLDB holds it: the 32-bit number the stub's hex digits spell."""
    return thread & 0xFFFFFFFF


def _parse_thread(text: bytes) -> int | None:
    """A thread id LLDB sends (plain hex of the 32-bit number), as the session numbers threads."""
    try:
        value = int(text, 16)
    except ValueError:
        return None
    if not 0 < value < 1 << 32 or text.startswith((b"-", b"+")):
        return None
    return value - (1 << 32) if value >= 0x80000000 else value


class HostInfo(Extension):
    """`qHostInfo` and `qProcessInfo`: what machine the debugged program runs on."""

    def handlers(self, session) -> dict[str, Callable[[bytes], Action]]:
        triple = encode_hex(TRIPLE.encode()).decode()
        host = f"triple:{triple};ptrsize:{POINTER_SIZE};endian:little;watchpoint_exceptions_received:after;"
        # qProcessInfo's numbers are hex (GetCurrentProcessInfo), qHostInfo's
        # decimal. The machine is one process to LLDB: without a pid LLDB
        # takes for one the thread id `qC` names.
        process = f"pid:1;triple:{triple};ptrsize:{POINTER_SIZE:x};endian:little;"

        def host_info(args: bytes) -> Action:
            return Reply(host.encode() if not args else b"")

        def process_info(args: bytes) -> Action:
            return Reply(process.encode() if not args else b"")

        return {"qHostInfo": host_info, "qProcessInfo": process_info}


class WatchpointSupportInfo(Extension):
    """`qWatchpointSupportInfo`: the slots the debugger could hold now, as the slot accounting says."""

    def handlers(self, session):
        def count(args: bytes) -> Action:
            if args not in (b"", b":"):
                return Reply(b"")
            return Reply(b"num:%d;" % session.debugger.hardware_capacity())

        return {"qWatchpointSupportInfo": count}


class ThreadSuffix(Extension):
    """`QThreadSuffixSupported`, then `;thread:T;` at the end of g, G, p and P."""

    def handlers(self, session):
        def register_packet(command: bytes) -> Callable[[bytes], Action]:
            def handle(args: bytes) -> Action:
                args, found, suffix = args.partition(b";thread:")
                thread = _parse_thread(suffix.removesuffix(b";")) if found else None
                if found and thread is None:
                    return Reply(b"E22")  # EINVAL, as the session answers a malformed packet
                return session.as_thread(thread, command + args)
            return handle

        def supported(args: bytes) -> Action:
            return Reply(b"" if args else b"OK")  # the suffix is taken from then on, and before

        return {"QThreadSuffixSupported": supported,
                **{letter: register_packet(letter.encode()) for letter in "gGpP"}}


class ThreadsInStopReply(Extension):
    """`QListThreadsInStopReply`: every thread, its PC and its stop reason in each stop reply."""

    def handlers(self, session):
        def enable(args: bytes) -> Action:
            if args:
                return Reply(b"")
            session.requested.add("threads-in-stop-reply")
            return Reply(b"OK")

        return {"QListThreadsInStopReply": enable}

    def stop_fields(self, session, stop) -> bytes:
        if "threads-in-stop-reply" not in session.requested:
            return b""
        threads = session.debugger.threads()
        expedited = {number for number, _ in session.expedited_registers(stop.thread)}
        regs, layout = session.registers_of(stop.thread), session.dialect.layout
        general = b"".join(
            b"%02x:%s;" % (number, encode_hex(registers.read_value(regs, register).to_bytes(register.size, "little")))
            for number, register in enumerate(layout[: registers.index_of(layout, "eflags") + 1])
            if number not in expedited)
        listed = b"threads:%s;thread-pcs:%s;" % (
            b",".join(b"%x" % _thread_id(t) for t in threads),
            b",".join(b"%x" % _pc(session, thread) for thread in threads))
        reasons = b"jstopinfo:%s;" % encode_hex(_json([_thread_info(session, thread) for thread in threads]))
        # Expedited memory fills LLDB's memory cache: with the top of every
        # thread's stack and its frame chain here, LLDB's unwinding of each
        # thread's first frame at this stop reads nothing more.
        memory = [b"memory:0x%x=%s;" % (address, encode_hex(data))
                  for thread in threads for address, data in _stack_words(session, thread)]
        # Each part saves LLDB round trips, the first ones the most; the
        # reply stays within the packet size the stub advertises, and what
        # does not fit LLDB reads as it would without it.
        fields, room = b"", STOP_FIELDS_ROOM
        for part in (general, listed, reasons, *memory):
            if len(fields) + len(part) <= room:
                fields += part
        return fields


def _thread_info(session, thread: int) -> dict:
    """A thread's stop information as LLDB reads it from JSON (SetThreadStopInfo).

    The thread the stop names carries its signal; the others carry none, so
    they have no stop reason. The registers are those a stop reply expedites
    (their numbers in decimal here). Through `jstopinfo` they reach LLDB
    before it unwinds each thread's first frame at a stop.
    """
    stop = session.debugger.stop
    info = {"tid": _thread_id(thread), "name": session.debugger.thread_name(thread)}
    if stop is not None and stop.thread == thread:
        info["signal"] = stop.signal
    info["registers"] = {str(n): value.decode() for n, value in session.expedited_registers(thread)}
    return info


def _json(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _pc(session, thread: int) -> int:
    regs = session.registers_of(thread)
    layout = session.dialect.layout
    return registers.read_value(regs, layout[registers.index_of(layout, "rip")])


def _stack_words(session, thread: int) -> list[tuple[int, bytes]]:
    """(address, bytes) of the two words at the stack pointer, and of the saved
    frame pointer and return address of each frame of the frame-pointer chain."""
    regs, layout = session.registers_of(thread), session.dialect.layout
    value = {name: registers.read_value(regs, layout[registers.index_of(layout, name)]) for name in ("rsp", "rbp")}
    chunks = []
    try:
        chunks.append((value["rsp"], session.debugger.read_memory(value["rsp"], 2 * POINTER_SIZE)))
    except DebuggerError:
        pass
    frame = value["rbp"]
    for _ in range(EXPEDITED_FRAMES):
        if frame == 0 or frame % 8:
            break
        try:
            data = session.debugger.read_memory(frame, 2 * POINTER_SIZE)
        except DebuggerError:
            break
        chunks.append((frame, data))
        caller = int.from_bytes(data[:POINTER_SIZE], "little")
        if caller <= frame:
            break
        frame = caller
    return chunks


EXTENSIONS = (HostInfo(), WatchpointSupportInfo(), ThreadSuffix(), ThreadsInStopReply())
