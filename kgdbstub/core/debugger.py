"""The debugger core: kgdb's own state in front of the machine.

It owns the software breakpoints, decides what a stop means (signal, thread,
CPU), maps gdb's thread ids to tasks and CPUs, and runs or steps the machine.
It knows nothing of packets: the session turns its answers into replies.
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass

from unicorn import x86_const as X

from .breakinfo import BreakpointRefused, BreakTable, Hit, Kind, Request
from .conditions import HARDWARE, SOFTWARE, Actions, BreakpointConditions
from ..kernel.kernel import GuestError, Kernel, Stop
from ..kernel.tasks import Task
from .policy import SlotPolicy
from .swbreak import BreakpointError, SoftwareBreakpoints, State
from . import arch_x86
from ..x86 import cpu as x86
from ..x86.debugregs import SLOTS
from ..x86.memory import MemoryFault

SIGINT, SIGILL, SIGTRAP, SIGFPE, SIGSEGV = 2, 4, 5, 8, 11

_SIGNAL_OF_VECTOR = {
    x86.DIVIDE_ERROR: SIGFPE,
    x86.BREAKPOINT: SIGTRAP,
    x86.INVALID_OPCODE: SIGILL,
    x86.GENERAL_PROTECTION: SIGSEGV,
    x86.PAGE_FAULT: SIGSEGV,
}


class DebuggerError(Exception):
    """A request the debugger refuses; errno says why, as kgdb would."""

    def __init__(self, code: int, message: str = ""):
        super().__init__(message or errno.errorcode.get(code, str(code)))
        self.errno = code


# What Linux's kprobe blocklist (kgdb_within_blocklist) covers in the image:
# the entry code, which Linux keeps in .entry.text.
BLOCKLISTED = ("entry_SYSCALL_64", "common_interrupt")


def _count(entries) -> int:
    return sum(entry is not None for entry in entries)


def shadow_thread(cpu: int) -> int:
    """kgdb's thread id for what runs on a CPU: -(cpu + 2)."""
    return -(cpu + 2)


@dataclass(frozen=True)
class StopEvent:
    """What the debugger reports when the machine stops."""

    signal: int
    cpu: int
    thread: int
    software_breakpoint: bool = False
    hardware: Hit | None = None  # the hardware breakpoint or watchpoint that fired


class Debugger:
    def __init__(self, kernel: Kernel, *, split_regions: bool = True, policy: str = "leftover",
                 user_memory: bool = True, rewind_int3: bool = True, keep_removed: bool = False):
        """`user_memory`: software breakpoints may go in user space (else ERANGE, as in Linux).
        `rewind_int3`: a software breakpoint's stop reports the breakpoint's address
        (else the pc after the int3, as Linux does and gdb expects of it).
        `keep_removed`: a removed software breakpoint keeps its entry until every
        breakpoint goes, as kgdb_break[] does (see swbreak.py).
        """
        self.kernel = kernel
        self.breakpoints = SoftwareBreakpoints(keep_removed=keep_removed)
        self.user_memory = user_memory
        self.rewind_int3 = rewind_int3
        self._inserted = False
        self._blocklist = [(s.address, s.address + s.size) for name in BLOCKLISTED
                           if (s := kernel.image.symbols.get(name))]
        self.conditions = BreakpointConditions(kernel.processor)
        kernel.debugger_slot_condition = self.conditions.hardware_hit
        self.hardware = BreakTable(split_regions=split_regions)
        self._debug_registers = kernel.processor.debug_registers
        self._installed: list[list[object]] = [[] for _ in self._debug_registers]  # kgdb's pieces per CPU
        self.policy = SlotPolicy(policy, kernel.accounting, kernel.ncpus)
        self.hardware_enabled = True
        self.attached = False
        self.stop: StopEvent | None = None

    def late_init(self) -> None:
        """kgdb's late init: without its slots it runs with no hardware breakpoints."""
        try:
            self.policy.boot()
        except OSError:
            self.hardware_enabled = False
            self.kernel.console_write(b"kgdb: Could not allocate hw breakpoints\n"
                                      b"kgdb: Hardware breakpoints disabled\n")

    def attach(self) -> None:
        self.attached = True
        self.policy.attach()

    def detach(self) -> None:
        """A debugger left, cleanly or not: nothing it set stays behind."""
        self.remove_all_breakpoints()
        self.policy.detach()
        self.attached = False

    def set_policy(self, name: str) -> None:
        self.policy = self.policy.switch_to(name, attached=self.attached)

    # -- threads -------------------------------------------------------------

    def thread_of(self, cpu: int) -> int:
        task = self.kernel.current[cpu]
        return shadow_thread(cpu) if task.idle else task.pid

    def threads(self) -> list[int]:
        online = [cpu for cpu in range(self.kernel.ncpus) if self.kernel.online[cpu]]
        return [shadow_thread(cpu) for cpu in online] + [t.pid for t in self.kernel.task_list()]

    def thread_name(self, thread: int) -> str:
        if thread < 0:
            return f"shadowCPU{self._cpu_of_shadow(thread)}"
        return self._task(thread).comm

    def thread_alive(self, thread: int) -> bool:
        try:
            self.registers_of(thread)
        except DebuggerError:
            return False
        return True

    def registers_of(self, thread: int):
        """The register state gdb sees for a thread: a CPU's, or a sleeping task's saved one."""
        if thread < 0:
            return self.kernel.current[self._cpu_of_shadow(thread)].regs
        return self._task(thread).regs

    def task_of(self, thread: int) -> Task:
        """The task a thread id names, a shadow id naming its CPU's idle task (swapper/N).

        Unlike kgdb's reading of a shadow id (whatever runs on the CPU), this
        never names a task twice.
        """
        if thread < 0:
            return self.kernel.idle[self._cpu_of_shadow(thread)]
        return self._task(thread)

    def _thread_id(self, task: Task) -> int:
        return shadow_thread(self.kernel.idle.index(task)) if task.idle else task.pid

    def _cpu_of_shadow(self, thread: int) -> int:
        cpu = -thread - 2
        if not (0 <= cpu < self.kernel.ncpus and self.kernel.online[cpu]):
            raise DebuggerError(errno.EINVAL, f"no thread {thread}")
        return cpu

    def _task(self, pid: int) -> Task:
        try:
            return self.kernel.tasks[pid]
        except KeyError:
            raise DebuggerError(errno.EINVAL, f"no thread {pid}") from None

    # -- memory ----------------------------------------------------------------

    def read_memory(self, address: int, length: int) -> bytes:
        """Bytes as the debugger sees them (breakpoints are out while stopped)."""
        try:
            return self.kernel.read(address, length)
        except MemoryFault:
            raise DebuggerError(errno.EFAULT) from None

    def write_memory(self, address: int, data: bytes) -> None:
        try:
            self.kernel.write(address, data)
        except MemoryFault:
            raise DebuggerError(errno.EFAULT) from None

    def copy_from_kernel_nofault(self, address: int, length: int) -> bytes:
        """mm/maccess.c: ERANGE for what is not kernel memory, EFAULT for what is not mapped."""
        if not arch_x86.copy_from_kernel_nofault_allowed(address):
            raise DebuggerError(errno.ERANGE)
        return self.read_memory(address, length)

    def copy_to_kernel_nofault(self, address: int, data: bytes) -> None:
        """mm/maccess.c: EFAULT for what is not mapped writable in the kernel (its text among it).

        No check of the address itself: SMAP makes a user address fault.
        """
        if not data:
            return
        if address < arch_x86.USER_SPACE_END or not self._writable(address, len(data)):
            raise DebuggerError(errno.EFAULT)
        self.write_memory(address, data)

    def _writable(self, address: int, length: int) -> bool:
        end = address + length
        for segment in self.kernel.image.segments:
            top = segment.address + segment.memory_size
            if segment.address <= address < top and not segment.writable:
                return False
            if address < segment.address < end and not segment.writable:
                return False
        return True

    # -- software breakpoints (kernel/debug/debug_core.c) --------------------

    def insert_breakpoint(self, address: int, actions: Actions | None = None) -> None:
        """dbg_set_sw_break: EINVAL blocklisted, ERANGE not kernel memory, EFAULT unmapped.

        With actions (gdb's conditions and commands, possibly none), as
        gdbserver: inserting again at the same address replaces them.
        """
        if actions is None or address not in self.breakpoints:
            if any(start <= address < end for start, end in self._blocklist):
                raise DebuggerError(errno.EINVAL)
            # kgdb_validate_break_address reads the byte; the int3 goes in with
            # text_poke where the page is read-only, so that never refuses it.
            if self.user_memory:
                self.read_memory(address, 1)
            else:
                self.copy_from_kernel_nofault(address, 1)
            try:
                self.breakpoints.set(address)
            except BreakpointError as refused:
                raise DebuggerError(refused.errno) from None
        if actions is not None:
            self.conditions.set(SOFTWARE, address, actions)

    def remove_breakpoint(self, address: int) -> None:
        try:
            self.breakpoints.remove(address)
        except BreakpointError as refused:
            raise DebuggerError(refused.errno) from None
        self.conditions.discard(SOFTWARE, address)

    def remove_all_breakpoints(self) -> None:
        self._deactivate_breakpoints()
        self.breakpoints.remove_all()
        self.conditions.clear()
        self.policy.release(len(self.hardware.active()))
        self.hardware.clear()
        self._uninstall_removed_pieces()

    def _activate_breakpoints(self) -> None:
        """dbg_activate_sw_breakpoints: each int3 in, the byte it replaces kept.

        A breakpoint with conditions is a probe: no int3 to plant.
        """
        for address in self.breakpoints.addresses():
            if self.conditions.probed(address):
                continue
            entry = self.breakpoints.entry_at(address)
            try:
                entry.saved = self.kernel.read(address, 1)
                self.kernel.write(address, b"\xcc")
            except MemoryFault:
                continue  # "BP install failed": it stays SET
            entry.state = State.ACTIVE
        self._inserted = True

    def _deactivate_breakpoints(self) -> None:
        if self._inserted:
            for address in self.breakpoints.addresses():
                entry = self.breakpoints.entry_at(address)
                if entry.state is State.ACTIVE:
                    self.kernel.write(address, entry.saved)
                    entry.state = State.SET
            self._inserted = False

    # -- hardware breakpoints and watchpoints (kgdb_set_hw_break) -------------

    def insert_hardware(self, kind: int, address: int, length: int, actions: Actions | None = None) -> None:
        """kgdb_set_hw_break: the table and the slots change together or not at all.

        With actions (a breakpoint's conditions and commands, possibly
        none), an execute breakpoint inserted again at the same address
        keeps its slot and has its actions replaced, as gdbserver does.
        """
        if not self.hardware_enabled:
            raise DebuggerError(errno.ENODEV, "kgdb has no hardware breakpoints")
        if actions is not None and kind == Kind.EXECUTE:
            if not self._executes_at(address):
                self.insert_hardware(kind, address, length)
            self.conditions.set(HARDWARE, address, actions)
            return
        try:
            request = Request(Kind(kind), address, length)
            entries = self.hardware.with_request(request)
            self.policy.acquire(_count(entries) - _count(self.hardware.entries))
        except (BreakpointRefused, OSError) as refused:
            raise DebuggerError(refused.errno, str(refused)) from None
        self.hardware.insert(request, entries)

    def remove_hardware(self, kind: int, address: int, length: int) -> None:
        try:
            request, entries = self.hardware.without_request(Kind(kind), address, length)
        except BreakpointRefused as refused:
            raise DebuggerError(refused.errno, str(refused)) from None
        self.policy.release(_count(self.hardware.entries) - _count(entries))
        self.hardware.remove(request, entries)
        self._uninstall_removed_pieces()
        if kind == Kind.EXECUTE and not self._executes_at(address):
            self.conditions.discard(HARDWARE, address)

    def holds_exactly(self, kind: int, address: int, length: int) -> bool:
        """Whether remove_hardware(kind, address, length) would remove a request of just this
        kind, address and length (kgdb matches on the address alone), and succeed."""
        try:
            request = self.hardware.request_for(Kind(kind), address, length)
        except (BreakpointRefused, ValueError):
            return False
        return (request.kind, request.address, request.length) == (Kind(kind), address, length)

    def _executes_at(self, address: int) -> bool:
        return any(r.kind is Kind.EXECUTE and r.address == address for r in self.hardware.requests)

    def hardware_capacity(self) -> int:
        """How many hardware breakpoints and watchpoints gdb could hold now, those it holds included."""
        return self.policy.capacity(SLOTS) if self.hardware_enabled else 0

    def slot_table(self):
        """(cpu, dr, owner, slot) for every debug register, as the machine runs them."""
        return [
            (cpu, index, self.kernel.debug_slots.owner(cpu, index), slot)
            for cpu, registers in enumerate(self._debug_registers)
            for index, slot in enumerate(registers.slots())
        ]

    def _leave_debugger_hardware(self) -> None:
        """Put kgdb's pieces in free DRs, bypassing perf, and arm every CPU's DR7 again."""
        slots = self.kernel.debug_slots
        pieces = self.hardware.active()
        count = len(pieces)
        for cpu, installed in enumerate(self._installed):
            # Pieces removed from the table have left their DRs already; the
            # ones still installed stay where they are.
            if len(installed) == count:
                continue  # every piece has its DR on this CPU
            for piece in pieces:
                if not any(piece is p for p in installed) and slots.install(
                        cpu, piece, piece.address, piece.length, piece.access) is not None:
                    installed.append(piece)
        self.kernel.processor.arm_debug_registers(True)

    def _uninstall_removed_pieces(self) -> None:
        """Take pieces gone from the table out of the DRs now, as kgdb_remove_hw_break does.

        Their slots went back to perf and ptrace with the reservation; left in
        place until the next resume, they would keep a DR the accounting
        already promised to someone else.
        """
        active = self.hardware.active()
        slots = self.kernel.debug_slots
        for cpu, installed in enumerate(self._installed):
            kept = [p for p in installed if any(p is a for a in active)]
            for piece in installed:
                if not any(piece is k for k in kept):
                    slots.uninstall(cpu, piece)
            self._installed[cpu] = kept

    def _enter_debugger_hardware(self) -> None:
        """Every CPU disables its DR7 so that the debugger does not trip over breakpoints."""
        self.kernel.processor.arm_debug_registers(False)

    # -- running -------------------------------------------------------------

    def request_interrupt(self) -> None:
        """Thread-safe: stop the running machine wherever it is, as kgdb_roundup_cpus does."""
        self.kernel.request_break_in()

    def request_sysrq_g(self, *, announce: bool = True) -> None:
        """Thread-safe: SysRq-G. CPU 0 takes it as the serial port's interrupt,
        whose handler (sysrq_handle_dbg) calls kgdb_breakpoint(), so the
        machine stops with SIGTRAP inside kgdb_breakpoint; a CPU that keeps
        interrupts disabled (a panic spinning) never takes it, as in Linux.

        `announce` False is a stop made for a debugger that arrives or goes,
        where no key was pressed: nothing is printed, and it comes as an NMI,
        so that no state of the guest can keep the next debugger out.
        """
        if not announce:
            if not self.kernel.raise_nmi("kgdb_breakpoint"):
                self.request_interrupt()  # no CPU can take one: stop it as it is
            return
        # __handle_sysrq, then sysrq_handle_dbg as a kernel without kdb
        # prints it (with kdb: "KGDB or $3#33 for KDB", which on a line
        # shared with gdb reads as a packet).
        self.kernel.console_write(b"sysrq: DEBUG\n" + (b"" if self.attached else b"KGDB: Entering KGDB\n"))
        self.kernel.raise_interrupt(0, "kgdb_breakpoint")

    def forget_interrupt(self) -> None:
        """Drop an interrupt that arrived while the machine was stopped.

        Called before a resume starts, so that an interrupt arriving
        after that point is never lost.
        """
        self.kernel.withdraw_break_in()
        self.kernel.withdraw_interrupts()

    def resume(self, *, step: bool = False, cpu: int | None = None, address: int | None = None,
               thread: int | None = None) -> StopEvent:
        """Run (or single-step one CPU) until the machine stops again. Blocking."""
        with self.resumed(step=step, cpu=cpu, address=address, thread=thread) as run:
            return run()

    def resumed(self, *, step: bool = False, cpu: int | None = None, address: int | None = None,
                thread: int | None = None) -> Resumed:
        """The machine out of the debugger for a `with` block, and a function that runs it.

        `run()` runs until the machine stops and returns the stop. With a
        deadline (time.monotonic()), `run(deadline)` also returns None once it
        has passed, and `run(deadline, pause)` when pause() says so before a
        CPU runs, so that a caller can run the machine in slices; the next
        call goes on exactly where that one left off.

        A step with `thread` steps that thread (`task_of`) and reports it,
        wherever it runs: a thread on no CPU is first run to its next turn,
        the other CPUs running meanwhile, as the task would need them to.
        """
        task = self.task_of(thread) if step and thread is not None else None
        if cpu is None:
            cpu = self.stop.cpu if self.stop else 0
        if address is not None:
            self.kernel.current[cpu].regs.reg_write(X.UC_X86_REG_RIP, address)

        def run(deadline: float | None = None, pause: Callable[[], bool] | None = None) -> StopEvent | None:
            while True:
                stepped = None
                if task is not None and task.cpu is None:
                    stop = self.kernel.run(deadline=deadline,
                                           pause=lambda: task.cpu is not None or bool(pause and pause()))
                    if stop is None:
                        if task.cpu is None:
                            return None
                        continue  # its turn has come: step it
                elif task is not None:
                    stop, stepped = self.kernel.step(task.cpu), self._thread_id(task)
                elif step:
                    stop = self.kernel.step(cpu)
                else:
                    stop = self.kernel.run(deadline=deadline, pause=pause)
                    if stop is None:
                        return None
                event = self._enter(stop, stepped)
                if event is not None:
                    return event

        return Resumed(self, run)

    def _enter(self, stop: Stop, thread: int | None = None) -> StopEvent | None:
        """What the stop means to gdb, or None when it means nothing (go on)."""
        exit = stop.exit
        signal, software, hardware = SIGTRAP, False, None
        if isinstance(exit, x86.DebugException):
            # A fault (an instruction breakpoint) is told apart by the pc; a trap by its accesses.
            rip = None if exit.trap else x86.read_register(self.kernel.current[stop.cpu].regs, X.UC_X86_REG_RIP)
            hardware = self.hardware.hit(exit, rip)
            if hardware is None:
                return None
        elif isinstance(exit, x86.Probed):
            software = True  # a software breakpoint whose conditions held (or failed)
        elif exit is None:
            signal = SIGINT
        elif isinstance(exit, GuestError):
            signal = exit.signal  # kgdb_handle_exception's signo
        elif isinstance(exit, x86.CpuException):
            signal = _SIGNAL_OF_VECTOR.get(exit.vector, SIGTRAP)
            if exit.vector == x86.BREAKPOINT:
                regs = self.kernel.current[stop.cpu].regs
                address = x86.read_register(regs, X.UC_X86_REG_RIP) - 1
                if address in self.breakpoints:
                    software = True
                    if self.rewind_int3:
                        # Report the PC at the breakpoint, as if it had not run.
                        x86.write_register(regs, X.UC_X86_REG_RIP, address)
        if thread is None:
            thread = self.thread_of(stop.cpu)
        self.stop = StopEvent(signal, stop.cpu, thread, software, hardware)
        return self.stop


class Resumed:
    """What Debugger.resumed returns: the machine leaves the debugger as the
    `with` block begins, with `run` for it, and is back in it when the block ends.

    A class rather than a generator: it is made at every resume.
    """

    def __init__(self, debugger: Debugger, run: Callable[..., StopEvent | None]):
        self._debugger, self._run = debugger, run

    def __enter__(self) -> Callable[..., StopEvent | None]:
        debugger = self._debugger
        debugger._activate_breakpoints()
        debugger._leave_debugger_hardware()
        return self._run

    def __exit__(self, *_exception) -> None:
        debugger = self._debugger
        debugger._enter_debugger_hardware()
        debugger._deactivate_breakpoints()
