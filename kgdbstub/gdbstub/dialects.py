"""The two dialects: what differs between `modern` and Linux's kgdb lies here.

`modern` is the session of session.py with its extensions; `kgdb` is
Linux's gdbstub.c itself (kgdb.py). Besides the session, a dialect says how
the debugger core behaves under it and how its connection treats the wire.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..core import arch_x86
from ..rsp import RemoteProtocol
from ..x86 import registers
from .actions import PACKET_SIZE
from .conditions import BreakpointCommands, ConditionalBreakpoints
from .extensions import Extension, NoAckMode, StopReason, TargetDescription, ThreadList, VContSupported
from .hostio import ExecFile, HostIO
from .kgdb import KgdbSession
from .lldb import EXTENSIONS as LLDB_EXTENSIONS
from .session import Session


@dataclass(frozen=True)
class Dialect:
    name: str
    session: type  # what answers the packets: called (debugger, dialect, monitor=...)
    extensions: tuple[Extension, ...] = ()  # the optional features qSupported offers
    layout: tuple = ()  # the registers of a `g` packet, in order
    core: dict = field(default_factory=dict)  # the Debugger's options under this dialect
    run_length_encoding: bool = True  # in replies
    max_packet_size: int = PACKET_SIZE  # the longest packet taken
    interrupt_byte_stops: bool = True  # a 0x03 from gdb stops the running machine (SIGINT)
    # A '$' where the ack of a reply was due: Linux's put_packet answers '-'
    # and drops the reply (gdb is reconnecting, or has given up on it).
    frame_for_ack_naks: bool = False
    decode_bodies: bool = True  # escapes and runs undone in every packet (Linux: in none)
    # How a debugger's arrival stops the running machine: an interrupt
    # (SIGINT), or as SysRq-G does (SIGTRAP in kgdb_breakpoint).
    break_in: str = "interrupt"

    def codec(self) -> RemoteProtocol:
        """The wire as this dialect speaks it."""
        return RemoteProtocol(max_packet_size=self.max_packet_size, run_length_encode=self.run_length_encoding,
                              strict_acks=self.frame_for_ack_naks, decode_bodies=self.decode_bodies)

    def negotiated(self, offered: set[str]) -> list[str]:
        return [a for e in self.extensions if (a := e.advertise(offered))]


MODERN = Dialect(
    "modern",
    Session,
    (NoAckMode(), TargetDescription(), ThreadList(), StopReason("swbreak"), StopReason("hwbreak"), VContSupported(),
     ConditionalBreakpoints(), BreakpointCommands(), ExecFile(), HostIO(), *LLDB_EXTENSIONS),
    registers.MODERN,
    core=dict(split_regions=True, user_memory=True, rewind_int3=True),
)
KGDB = Dialect(
    "kgdb",
    KgdbSession,
    # dbg_reg_def up to NUMREGBYTES: fs and gs are there for `p` alone.
    layout=tuple(registers.Register(d.name, d.size, d.uc_id) for d in arch_x86.DBG_REG_DEF[:22]),
    core=dict(split_regions=False, user_memory=False, rewind_int3=False, keep_removed=True),
    run_length_encoding=False,
    max_packet_size=arch_x86.BUFMAX - 1,
    interrupt_byte_stops=False,
    frame_for_ack_naks=True,
    decode_bodies=False,
    break_in="sysrq-g",
)
DIALECTS = {d.name: d for d in (MODERN, KGDB)}
