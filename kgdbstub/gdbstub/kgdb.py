"""The `kgdb` dialect: Linux 6.x's kernel/debug/gdbstub.c, command by command.

Each handler is named after the C function it follows and parses its packet
the way that function does: numbers with kgdb_hex2long (an optional '-',
then as many hex digits as there are, whatever follows), hex data with
kgdb_hex2mem (a non-hex digit counts as all ones), checks in the same order.
Linux keeps its packet and register buffers from one packet to the next,
and some answers depend on that (a short `G`, a sleeping task's eflags):
so does this session, with `in_buffer` (remcom_in_buffer) and `gdb_regs`.
Where Linux has a quirk a tool can meet, it is kept and the comment says so.
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core import arch_x86 as arch
from ..core.breakinfo import Kind
from ..core.debugger import Debugger, DebuggerError, StopEvent
from ..kernel.tasks import Task
from ..rsp import encode_hex
from .actions import Action, Detach, NoReply, Reply, Resume

KGDB_MAX_THREAD_QUERY = 17
# getthread() takes -2 ... -(NR_CPUS + 1) for CPUs' shadow threads; 64 is
# x86-64's default CONFIG_NR_CPUS.
NR_CPUS = 64
# What kgdb_msg_write says to a `C` with a signal other than 9 and 15.
EXCEPTION_PASS_MESSAGE = (b"KGDB only knows signal 9 (pass) and 15 (pass and disconnect)\n"
                          b"Executing a continue without signal passing\n")
# The largest `m` answered: Linux writes any length into its 1024-byte
# buffer, past its end; here a read stops at what a reply can carry.
MAX_READ = 0x2000


def hex_to_bin(byte: int) -> int:
    if 0x30 <= byte <= 0x39:
        return byte - 0x30
    if 0x61 <= byte <= 0x66 or 0x41 <= byte <= 0x46:
        return (byte | 0x20) - 0x61 + 10
    return -1


def int32(value: int) -> int:
    """A C `(int)` cast of an unsigned long."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def pack_threadid(tid: int) -> bytes:
    """pack_threadid: the id as 4 big-endian bytes, leading zero bytes dropped (at least one kept)."""
    packed = (tid & 0xFFFFFFFF).to_bytes(4, "big").lstrip(b"\0") or b"\0"
    return packed.hex().encode()


def error_packet(code: int) -> bytes:
    """error_packet: 'E' and the errno's two decimal digits, each through hex_asc."""
    digits = "0123456789abcdef"
    return b"E" + (digits[(code // 10) % 16] + digits[code % 10]).encode()


def msg_packets(data: bytes) -> tuple[bytes, ...]:
    """gdbstub_msg_write: text for gdb as `O` packets of (BUFMAX - 2) / 2 bytes at most."""
    chunk = (arch.BUFMAX - 2) // 2
    return tuple(b"O" + encode_hex(data[i : i + chunk]) for i in range(0, len(data), chunk))


def monitor_output(text: str) -> tuple[bytes, ...]:
    """What a monitor command prints, as kdb sends it: kdb_printf writes each line as it goes."""
    return tuple(p for line in text.encode().splitlines(keepends=True) for p in msg_packets(line))


@dataclass
class KgdbSession:
    debugger: Debugger
    dialect: object = None
    monitor: Callable[[str], str] | None = None
    in_buffer: bytearray = field(default_factory=lambda: bytearray(arch.BUFMAX))
    # gdb_regs[], and the four bytes after it that `p` of gs reads (Linux
    # reads whatever follows the array in memory there).
    gdb_regs: bytearray = field(default_factory=lambda: bytearray(arch.GDB_REGS_SIZE + 4))
    usethread: Task | None = None  # kgdb_usethread
    contthread: Task | None = None  # kgdb_contthread
    thr_query: int = 0
    _entered_for: StopEvent | None = None

    # -- the connection layer's interface ------------------------------------

    def handle(self, payload: bytes) -> Action:
        self._enter()
        self._load(payload)
        try:
            return self._dispatch()
        except DebuggerError as failure:
            return Reply(error_packet(failure.errno))

    def stop_reply(self, stop: StopEvent) -> bytes:
        """gdb_serial_stub on entry: 'T', the signal, and the current thread."""
        self._enter()
        return b"T%02xthread:%s;" % (stop.signal & 0xFF, pack_threadid(self._shadow_pid(self._current())))

    def too_large(self) -> Action:
        # get_packet stops at BUFMAX - 1 characters without a '#' and
        # waits for the next '$': the packet gets no answer.
        return NoReply()

    def _enter(self) -> None:
        """What every entry into the debugger resets (kgdb_cpu_enter, gdb_serial_stub)."""
        stop = self.debugger.stop
        if stop is not self._entered_for:
            self._entered_for = stop
            self.usethread = self.contthread = self._current()
            self.thr_query = 0

    def _load(self, payload: bytes) -> None:
        """get_packet: the packet into remcom_in_buffer, NUL-terminated; what lay beyond stays."""
        payload = payload[: arch.BUFMAX - 1]
        self.in_buffer[: len(payload)] = payload
        self.in_buffer[len(payload)] = 0
        self._length = len(payload)

    # -- buffers and numbers -----------------------------------------------------

    def _byte(self, pos: int) -> int:
        return self.in_buffer[pos] if pos < len(self.in_buffer) else 0

    def _hex2long(self, pos: int) -> tuple[int, int, int]:
        """kgdb_hex2long: (value as an unsigned long, digits read, position after them)."""
        negate = self._byte(pos) == ord("-")
        pos += negate
        value = digits = 0
        while (digit := hex_to_bin(self._byte(pos))) >= 0:
            value = ((value << 4) | digit) & (2**64 - 1)
            digits += 1
            pos += 1
        if negate:
            value = -value & (2**64 - 1)
        return value, digits, pos

    def _hex2mem(self, pos: int, count: int) -> bytes:
        """kgdb_hex2mem: `count` bytes from 2*count hex characters.

        It converts in place, into the second half of the text it reads:
        that part of remcom_in_buffer is left holding the raw bytes.
        """
        raw = bytearray()
        for i in range(count):
            high, low = hex_to_bin(self._byte(pos + 2 * i)), hex_to_bin(self._byte(pos + 2 * i + 1))
            raw.append((low & 0xFF) | ((high << 4) & 0xFF))
        end = min(pos + 2 * count, len(self.in_buffer))
        start = max(pos + count, 0)
        if start < end:
            self.in_buffer[start:end] = raw[len(raw) - (end - start):]
        return bytes(raw)

    def _ebin2mem(self, pos: int, count: int) -> bytes:
        """kgdb_ebin2mem: `count` bytes of binary data, a '}' making the next byte ^ 0x20.

        It unescapes in place: remcom_in_buffer is left holding the bytes.
        """
        raw = bytearray()
        read = pos
        for _ in range(count):
            byte, read = self._byte(read), read + 1
            if byte == 0x7D:
                byte, read = self._byte(read) ^ 0x20, read + 1
            raw.append(byte)
        end = min(pos + count, len(self.in_buffer))
        self.in_buffer[pos:end] = raw[: end - pos]
        return bytes(raw)

    def _text(self, start: int, end: int) -> bytes:
        return bytes(self.in_buffer[start:end])

    # -- threads -------------------------------------------------------------------

    def _master(self) -> int:
        return self.debugger.stop.cpu if self.debugger.stop else 0

    def _current(self) -> Task:
        return self.debugger.kernel.current[self._master()]

    def _shadow_pid(self, task: Task) -> int:
        """shadow_pid: a task's pid, or -(cpu + 2) for an idle task."""
        return task.pid if task.pid else -task.slot - 2

    def _getthread(self, tid: int) -> Task | None:
        """getthread: 0 and -1 are the current CPU's shadow thread, -(cpu + 2) a CPU's, else a pid."""
        tid = int32(tid)
        kernel = self.debugger.kernel
        if tid in (0, -1):
            tid = -self._master() - 2
        if -NR_CPUS - 2 < tid < -1:
            cpu = -tid - 2
            if cpu >= kernel.ncpus:
                return None  # a CPU the machine cannot have
            return kernel.current[cpu] if kernel.online[cpu] else kernel.idle[cpu]
        if tid <= 0:
            return None
        return kernel.tasks.get(tid)

    def _regs_helper(self) -> None:
        """gdb_get_regs_helper: gdb_regs filled for kgdb_usethread."""
        kernel = self.debugger.kernel
        thread = self.usethread or self._current()
        on_cpu = [cpu for cpu in range(kernel.ncpus) if kernel.online[cpu] and kernel.current[cpu] is thread]
        if on_cpu:
            arch.pt_regs_to_gdb_regs(self.gdb_regs, thread.regs)
        else:
            arch.sleeping_thread_to_gdb_regs(self.gdb_regs, thread.regs)

    # -- dispatch (gdb_serial_stub) ----------------------------------------------

    def _dispatch(self) -> Action:
        command = chr(self.in_buffer[0]) if self._length else ""
        handler = {
            "?": self.gdb_cmd_status, "g": self.gdb_cmd_getregs, "G": self.gdb_cmd_setregs,
            "m": self.gdb_cmd_memread, "M": self.gdb_cmd_memwrite, "p": self.gdb_cmd_reg_get,
            "P": self.gdb_cmd_reg_set, "X": self.gdb_cmd_binwrite, "D": self.gdb_cmd_detachkill,
            "k": self.gdb_cmd_detachkill, "R": self.gdb_cmd_reboot, "q": self.gdb_cmd_query,
            "H": self.gdb_cmd_task, "T": self.gdb_cmd_thread, "z": self.gdb_cmd_break,
            "Z": self.gdb_cmd_break, "3": self.kdb_escape, "C": self.gdb_cmd_exception_pass,
            "c": self.continue_or_step, "s": self.continue_or_step,
        }.get(command)
        return handler() if handler else Reply(b"")  # kgdb_arch_handle_exception: -1, empty reply

    def gdb_cmd_status(self) -> Action:
        # "only sent during initial connect": every breakpoint goes, in case gdb is reconnecting.
        self.debugger.remove_all_breakpoints()
        return Reply(b"S%02x" % (self.debugger.stop.signal & 0xFF))

    def gdb_cmd_getregs(self) -> Action:
        self._regs_helper()
        return Reply(encode_hex(bytes(self.gdb_regs[: arch.NUMREGBYTES])))

    def gdb_cmd_setregs(self) -> Action:
        """G: NUMREGBYTES taken whatever the packet's length (a short one reads the buffer's old
        contents); E22 unless the registers are the current task's."""
        self.gdb_regs[: arch.NUMREGBYTES] = self._hex2mem(1, arch.NUMREGBYTES)
        if self.usethread is not None and self.usethread is not self._current():
            return Reply(error_packet(errno.EINVAL))
        arch.gdb_regs_to_pt_regs(self.gdb_regs, self._current().regs)
        return Reply(b"OK")

    def gdb_cmd_memread(self) -> Action:
        """m: any failure, a parse error or a fault, is EINVAL; whatever follows the length is ignored."""
        address, digits, pos = self._hex2long(1)
        if digits and self._byte(pos) == ord(","):
            length, digits, _ = self._hex2long(pos + 1)
            if digits:
                count = int32(length)  # kgdb_mem2hex takes an int
                try:
                    if count < 0:
                        raise DebuggerError(errno.EFAULT)
                    data = self.debugger.copy_from_kernel_nofault(address, min(count, MAX_READ))
                except DebuggerError:
                    return Reply(error_packet(errno.EINVAL))
                return Reply(encode_hex(data))
        return Reply(error_packet(errno.EINVAL))

    def _write_mem_msg(self, binary: bool) -> Action:
        address, digits, pos = self._hex2long(1)
        if digits and self._byte(pos) == ord(","):
            length, digits, pos = self._hex2long(pos + 1)
            if digits and self._byte(pos) == ord(":"):
                pos += 1
                count = max(int32(length), 0)
                if pos + (count if binary else 2 * count) > arch.BUFMAX:
                    # Linux takes the data from past remcom_in_buffer's end, from
                    # whatever kernel memory lies there (and converts hex in
                    # place): nothing to reproduce. Refused, nothing written.
                    return Reply(error_packet(errno.EINVAL))
                data = self._ebin2mem(pos, count) if binary else self._hex2mem(pos, count)
                self.debugger.copy_to_kernel_nofault(address, data)
                return Reply(b"OK")
        return Reply(error_packet(errno.EINVAL))

    def gdb_cmd_memwrite(self) -> Action:
        return self._write_mem_msg(binary=False)

    def gdb_cmd_binwrite(self) -> Action:
        return self._write_mem_msg(binary=True)

    def gdb_cmd_reg_get(self) -> Action:
        """p: a missing number is register 0; 24 and up (orig_rax too) are EINVAL."""
        regnum, _, _ = self._hex2long(1)
        if regnum >= arch.DBG_MAX_REG_NUM:
            return Reply(error_packet(errno.EINVAL))
        self._regs_helper()
        offset, size = arch.OFFSETS[regnum], arch.DBG_REG_DEF[regnum].size
        return Reply(encode_hex(bytes(self.gdb_regs[offset : offset + size])))

    def gdb_cmd_reg_set(self) -> Action:
        """P: orig_rax (57) and rsp are accepted and ignored, as are ds, es, fs and gs.

        The value is read from the start of a zeroed gdb_regs, as many whole
        bytes as there are hex digits, and the register takes its size from there.
        """
        regnum, _, pos = self._hex2long(1)
        regno = int32(regnum)  # dbg_get_reg takes an int
        if (self._byte(pos) != ord("=")
                or (self.usethread is not None and self.usethread is not self._current())
                or arch.dbg_get_reg(regno, bytearray(arch.GDB_REGS_SIZE), 0, self._current().regs) is None):
            return Reply(error_packet(errno.EINVAL))
        pos += 1
        self.gdb_regs[: arch.GDB_REGS_SIZE] = bytes(arch.GDB_REGS_SIZE)
        digits = 0
        while digits < arch.GDB_REGS_SIZE * 2 and hex_to_bin(self._byte(pos + digits)) >= 0:
            digits += 1
        self.gdb_regs[: digits // 2] = self._hex2mem(pos, digits // 2)
        arch.dbg_set_reg(regno, bytes(self.gdb_regs), self._current().regs)
        return Reply(b"OK")

    def gdb_cmd_detachkill(self) -> Action:
        """D answers OK; k answers nothing. Both remove every breakpoint and resume."""
        self.debugger.remove_all_breakpoints()
        return Detach(b"OK" if self.in_buffer[0] == ord("D") else None)

    def gdb_cmd_reboot(self) -> Action:
        # R0 reboots the machine, which this one cannot do: it and every
        # other R get the empty reply Linux gives the others.
        return Reply(b"")

    def gdb_cmd_query(self) -> Action:
        kind = chr(self._byte(1))
        if kind in "sf" and self._text(2, 12) == b"ThreadInfo":
            return self._thread_info(first=kind == "f")
        if kind == "C":
            return Reply(b"QC" + pack_threadid(self._shadow_pid(self._current())))
        if kind == "T" and self._text(1, 17) == b"ThreadExtraInfo,":
            return self._thread_extra_info()
        if kind == "R" and self._text(0, 6) == b"qRcmd,":
            return self._rcmd()
        return Reply(b"")

    def _thread_info(self, first: bool) -> Action:
        """qfThreadInfo: every online CPU's shadow thread, then 17 tasks; qs the next 17.

        The list ends with an empty reply (an 'm' with nothing after it, cut).
        """
        ids = []
        i = 0
        kernel = self.debugger.kernel
        if first:
            for cpu in range(kernel.ncpus):
                if kernel.online[cpu]:
                    self.thr_query = 0
                    ids.append(-cpu - 2)
                    i += 1
        finished = False
        for task in kernel.task_list():
            if i >= self.thr_query and not finished:
                ids.append(task.pid)
                self.thr_query += 1
                if self.thr_query % KGDB_MAX_THREAD_QUERY == 0:
                    finished = True
            i += 1
        return Reply(b"m" + b",".join(pack_threadid(t) for t in ids) if ids else b"")

    def _thread_extra_info(self) -> Action:
        threadid, _, _ = self._hex2long(17)
        thread = self._getthread(threadid)
        if thread is None:
            return Reply(error_packet(errno.EINVAL))
        if int32(threadid) > 0:
            comm = thread.comm.encode("latin-1")[:15]
            return Reply(encode_hex(comm + bytes(16 - len(comm))))  # all of comm[TASK_COMM_LEN]
        # (int)(-threadid - 2): for thread 0 that is "shadowCPU-2".
        return Reply(encode_hex(b"shadowCPU%d" % int32(-threadid - 2)))

    def _rcmd(self) -> Action:
        """qRcmd: to kdb; an odd number of hex digits is E01 (no errno: a literal).

        The digits are counted with strlen: a NUL in the packet ends them.
        """
        length = self.in_buffer.index(0, 6) - 6
        if length % 2:
            return Reply(b"E01")
        command = self._hex2mem(6, length)[: length // 2].split(b"\0")[0]
        output = self.monitor(command.decode("latin-1")) if self.monitor else ""
        return Reply(b"OK", output=monitor_output(output))

    def gdb_cmd_task(self) -> Action:
        """Hg and Hc; any other H gets the empty reply."""
        kind = chr(self._byte(1))
        if kind not in "gc" or not self._byte(1):
            return Reply(b"")
        threadid, _, _ = self._hex2long(2)
        if kind == "c" and threadid == 0:
            self.contthread = None
            return Reply(b"OK")
        thread = self._getthread(threadid)
        if thread is None and threadid > 0:
            return Reply(error_packet(errno.EINVAL))
        if kind == "g":
            self.usethread = thread
        else:
            self.contthread = thread
        return Reply(b"OK")

    def gdb_cmd_thread(self) -> Action:
        threadid, _, _ = self._hex2long(1)
        return Reply(b"OK" if self._getthread(threadid) is not None else error_packet(errno.EINVAL))

    def gdb_cmd_break(self) -> Action:
        """Z/z: types 0-4; anything else (a bare Z among it) gets the empty reply.

        Every refusal of a hardware breakpoint is kgdb_set_hw_break's -1: E01.
        """
        insert = self.in_buffer[0] == ord("Z")
        bpt_type = self._byte(1)
        if bpt_type >= ord("1"):
            if bpt_type > ord("4"):
                return Reply(b"")
        elif bpt_type != ord("0"):
            return Reply(b"")
        if self._byte(2) != ord(","):
            return Reply(error_packet(errno.EINVAL))
        address, digits, pos = self._hex2long(3)
        if not digits:
            return Reply(error_packet(errno.EINVAL))
        if self._byte(pos) != ord(","):
            return Reply(error_packet(errno.EINVAL))
        length, digits, _ = self._hex2long(pos + 1)
        if not digits:
            return Reply(error_packet(errno.EINVAL))
        if bpt_type == ord("0"):
            if insert:
                self.debugger.insert_breakpoint(address)
            else:
                self.debugger.remove_breakpoint(address)
            return Reply(b"OK")
        operation = self.debugger.insert_hardware if insert else self.debugger.remove_hardware
        try:
            operation(Kind(bpt_type - ord("0")), address, int32(length))
        except DebuggerError:
            return Reply(b"E01")
        return Reply(b"OK")

    def kdb_escape(self) -> Action:
        """'3' alone leaves for kdb: breakpoints removed, no reply, the machine stays stopped.

        This machine has no kdb: the next packet is read by this session as kdb
        would hand it back. '3' with more after it is taken as a `C` packet.
        """
        if self._length == 1:
            self.debugger.remove_all_breakpoints()
            return NoReply()
        return self.gdb_cmd_exception_pass()

    def gdb_cmd_exception_pass(self) -> Action:
        """C09 passes the exception and continues, C15 also detaches; others say so and continue.

        Linux then handles the packet as `c` with the rest as an address, so
        `C09` resumes at 0x9 and `C05` at 0x5 (kgdb_arch_handle_exception).
        """
        signal = self._text(1, 3)
        output: tuple[bytes, ...] = ()
        if signal == b"15":
            self.debugger.remove_all_breakpoints()
            return Detach(None)
        if signal != b"09":
            output = msg_packets(EXCEPTION_PASS_MESSAGE)
        self.in_buffer[0] = ord("c")
        action = self.continue_or_step()
        if output:
            if isinstance(action, Reply):
                return Reply(action.payload, output=output + action.output)
            return Resume(action.step, action.cpu, action.address, output=output)
        return action

    def continue_or_step(self) -> Action:
        """c and s, with an optional address; EINVAL when Hc chose another task."""
        if self.contthread is not None and self.contthread is not self._current():
            return Reply(error_packet(errno.EINVAL))
        address, digits, _ = self._hex2long(1)
        step = self.in_buffer[0] == ord("s")
        return Resume(step=step, cpu=None, address=address if digits else None)
