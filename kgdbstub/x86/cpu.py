"""The CPUs: one unicorn engine that runs whichever CPU's registers are loaded.

CPUs take turns on a single engine, so all of them share one memory and one
translation cache and the machine stays deterministic. A CPU's register
state lives in a unicorn context between turns; `run` loads it, executes
until the CPU leaves to the host (a hypercall, a system call, an exception)
and stores it back.
"""
from __future__ import annotations

import ctypes
import mmap
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import cached_property

from unicorn import (
    UC_ARCH_X86,
    UC_CTL_IO_WRITE,
    UC_CTL_TLB_FLUSH,
    UC_ERR_EXCEPTION,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_INSN_INVALID,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_CODE,
    UC_HOOK_INSN,
    UC_HOOK_INTR,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_WRITE,
    UC_HOOK_TLB_FILL,
    UC_MEM_FETCH,
    UC_MEM_READ,
    UC_MEM_WRITE,
    UC_MODE_64,
    UC_PROT_ALL,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_TLB_VIRTUAL,
    Uc,
    UcError,
)
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import HOOK_CODE_CFUNC as _HOOK_CODE_CFUNC
from unicorn.unicorn_py3.unicorn import HOOK_MEM_ACCESS_CFUNC as _HOOK_MEM_CFUNC
from unicorn.unicorn_py3.unicorn import HOOK_TLB_FILL_CFUNC as _HOOK_TLB_FILL_CFUNC
from unicorn.unicorn_py3.unicorn import uclib as _uclib

from .debugregs import DR6_RESERVED_ONES, Access, DebugRegisters
from .hothooks import STOPPED_BY_LIMIT, GuestClock
from .memory import PAGE_MASK, PAGE_SIZE, AddressSpace, MemoryFault
from .stepper import Stepper

HLT = 0xF4
INT3 = 0xCC

# Exception vectors the host reports.
DIVIDE_ERROR = 0
DEBUG = 1
BREAKPOINT = 3
INVALID_OPCODE = 6
GENERAL_PROTECTION = 13
PAGE_FAULT = 14

# Page-fault error code bits.
PF_WRITE = 1 << 1
PF_USER = 1 << 2
PF_INSTR = 1 << 4
_PF_ERROR_OF_ACCESS = {UC_MEM_WRITE: PF_WRITE, UC_MEM_FETCH: PF_INSTR}


@dataclass(frozen=True)
class Hypercall:
    """The CPU executed `hlt`: a request to the host, rip is past it."""


@dataclass(frozen=True)
class SystemCall:
    """The CPU executed `syscall`: rip is past it."""


@dataclass(frozen=True)
class Stepped:
    """A single-step finished the one instruction it was asked to run."""


@dataclass(frozen=True)
class CpuException:
    """An exception the image does not handle; rip is where x86 leaves it.

    For a breakpoint (int3) rip is past the int3; for a fault it is at the
    faulting instruction, and address is the page-fault address if any.
    error_code is the page fault's: PF_WRITE for a write, PF_INSTR for a
    fetch (the host adds PF_USER).
    """

    vector: int
    address: int | None = None
    error_code: int = 0


@dataclass(frozen=True)
class DataAccess:
    """One memory access an instruction made that a data slot matched."""

    slot: int
    address: int
    size: int
    write: bool


@dataclass(frozen=True)
class DebugException:
    """A debug-register slot fired (#DB); DR6 of the CPU says which.

    An execute breakpoint is a fault: rip is at the instruction, which has
    not run. A data breakpoint is a trap: the instruction ran once and rip
    is past it.
    """

    slots: tuple[int, ...]
    accesses: tuple[DataAccess, ...] = ()

    @property
    def trap(self) -> bool:
        return bool(self.accesses)

    @cached_property
    def dr6(self) -> int:
        """DR6 as the CPU sets it for this exception: a B bit for every slot."""
        return DR6_RESERVED_ONES | sum(1 << slot for slot in self.slots)


@dataclass(frozen=True)
class Preempted:
    """The host asked the CPU to stop between two instructions; nothing happened.

    A stop request (GuestClock.request_stop) or the run's wall-clock
    deadline: the CPU is at an instruction boundary and goes on exactly
    there when it runs again.
    """


@dataclass(frozen=True)
class TimeUp:
    """The CPU ran the guest time its run was given; it is at an instruction boundary."""


@dataclass(frozen=True)
class Probed:
    """A probe asked the CPU to stop before the instruction at its address; nothing ran."""

    address: int


class ProbeVerdict(Enum):
    """What a probe answers when a CPU reaches its address."""

    RUN = "run"  # the instruction runs on
    STOP = "stop"  # the CPU stops before it (Probed)
    PAUSE = "pause"  # the CPU stops before it as if preempted; the probe is asked again on resume


@dataclass(frozen=True)
class _WatchedPageTouched:
    """Internal: an access hit a page some data slot watches."""


Exit = Hypercall | SystemCall | Stepped | CpuException | DebugException | Preempted | TimeUp | Probed


# The host reads and writes the 64-bit registers of saved states at every
# exit to it: straight to unicorn, a third of what the binding's generic
# reg_read costs (which works out each register's type at every call).
_context_reg_read, _context_reg_write = _uclib.uc_context_reg_read, _uclib.uc_context_reg_write
_engine_reg_read = _uclib.uc_reg_read


def read_registers(context, *registers: int) -> list[int]:
    """64-bit registers (general, rip, rflags) of a saved register state."""
    handle, value = context._context, ctypes.c_uint64()
    reference = ctypes.byref(value)
    values = []
    for register in registers:
        _context_reg_read(handle, register, reference)
        values.append(value.value)
    return values


def read_register(context, register: int) -> int:
    value = ctypes.c_uint64()
    _context_reg_read(context._context, register, ctypes.byref(value))
    return value.value


def write_register(context, register: int, value: int) -> None:
    """Set a 64-bit register (general, rip, rflags) of a saved register state."""
    _context_reg_write(context._context, register, ctypes.byref(ctypes.c_uint64(value & 0xFFFF_FFFF_FFFF_FFFF)))


class Processor:
    def __init__(self, address_space: AddressSpace, cpus: int = 1):
        self.address_space = address_space
        self.debug_registers = [DebugRegisters() for _ in range(cpus)]
        # Derived from the debug registers alone (see debug_registers_changed).
        self._execute_hooks: dict[int, int] = {}
        self._execute_slots: list[dict[int, DebugException]] = [{} for _ in range(cpus)]
        self._watched_pages: list[dict[int, bool]] = [{} for _ in range(cpus)]  # page -> reads too
        self._data_slots: list[list] = [[] for _ in range(cpus)]
        self._derived_from: list[tuple | None] = [None] * cpus  # (DR0-3, DR7) the above came from
        self._tlb_holds: int | None = None  # whose watched pages the TLB reflects
        self._watch_fault: int | None = None
        self._resume_at: list[int | None] = [None] * cpus  # RF, per CPU
        self._resume_flag: int | None = None
        self._probes: dict[int, Callable[[int], ProbeVerdict]] = {}
        self._hooks_done_at: int | None = None  # an instruction run again after its hooks ran
        # Called with (cpu, DebugException) when a slot fires; False means the
        # owner dealt with it (a perf count, say) and the CPU runs on.
        self.debug_handler = None
        self._armed = True
        self._tlb_armed = True  # whether the TLB holds watched pages as armed
        uc = self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        # Memory of our own, so that the stepper's engine can share it.
        self._memory = {m.physical: mmap.mmap(-1, m.size) for m in address_space.mappings}
        host_memory = {physical: ctypes.addressof(ctypes.c_char.from_buffer(memory))
                       for physical, memory in self._memory.items()}
        for mapping in address_space.mappings:
            uc.mem_map_ptr(mapping.physical, mapping.size, UC_PROT_ALL, host_memory[mapping.physical])
        # The guest's memory as the host holds it, by virtual address, for read_int.
        self._host_views = [(m.virtual, m.virtual + m.size, memoryview(self._memory[m.physical]))
                            for m in address_space.mappings]
        self._code_pages: set[int] = set()
        self._stepper = Stepper(address_space, host_memory, self._code_pages)
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        # Hooks the hot paths call go in raw, without the binding's wrappers:
        # the TLB is refilled after every flush, and the watched-page step
        # adds and removes its memory hook each time.
        self._tlb_fill_hook = _HOOK_TLB_FILL_CFUNC(self._fill_tlb)
        uc._Uc__do_hook_add(UC_HOOK_TLB_FILL, self._tlb_fill_hook, 1, 0)
        self._accesses: list[tuple[int, int, bool]] = []
        self._hook_error: BaseException | None = None
        self._record_access_hook = _HOOK_MEM_CFUNC(self._record_access)
        self._execute_hook = _HOOK_CODE_CFUNC(self._on_execute)  # one callback for every execute slot
        uc.hook_add(UC_HOOK_INSN, self._on_syscall, None, 1, 0, X.UC_X86_INS_SYSCALL)
        uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        self.clock = GuestClock(uc)
        self._blank = uc.context_save()
        self._stop: Exit | None = None
        self._unmapped: int | None = None
        self._unmapped_access = UC_MEM_READ
        self._hlt_at: dict[int, bool] = {}  # whether an address holds hlt; forgotten on writes
        self.running_cpu: int | None = None

    # -- register states -------------------------------------------------

    def new_context(self, **registers: int):
        """A fresh register state (64-bit mode, flat segments) with some registers set."""
        self.uc.context_restore(self._blank)
        context = self.uc.context_save()
        for name, value in registers.items():
            write_register(context, getattr(X, f"UC_X86_REG_{name.upper()}"), value)
        return context

    def copy_context(self, context):
        self.uc.context_restore(context)
        return self.uc.context_save()

    # -- memory ------------------------------------------------------------

    def read(self, address: int, size: int) -> bytes:
        physical = self.address_space.contiguous(address, size)
        if physical is not None and size:
            return bytes(self.uc.mem_read(physical, size))
        return b"".join(
            bytes(self.uc.mem_read(physical, length))
            for _, physical, length in self.address_space.pieces(address, size)
        )

    def read_int(self, address: int, size: int) -> int:
        """A little-endian unsigned number in memory, read from the host's copy without the engine.

        Cheap enough for a breakpoint condition evaluated at every hit;
        MemoryFault as read() for an unmapped byte.
        """
        for start, end, view in self._host_views:
            if start <= address and address + size <= end:
                offset = address - start
                return int.from_bytes(view[offset : offset + size], "little")
        return int.from_bytes(self.read(address, size), "little")  # across mappings, or a fault

    def write(self, address: int, data: bytes) -> None:
        if not data:
            return
        end = address + len(data)
        physical = self.address_space.contiguous(address, len(data))
        if physical is not None:
            self.uc.mem_write(physical, bytes(data))
        else:
            pieces = list(self.address_space.pieces(address, len(data)))  # fault before writing anything
            offset = 0
            for _, physical, length in pieces:
                self.uc.mem_write(physical, bytes(data[offset : offset + length]))
                offset += length
        # Code may live there: drop translations made from the old bytes. Most
        # writes are the host's frames on stacks, where no code ever ran.
        if any(page in self._code_pages for page in range(address & PAGE_MASK, end, PAGE_SIZE)):
            self.uc.ctl_remove_cache(address, end)
            self._stepper.forget_code(address, end)
            for known in [a for a in self._hlt_at if address <= a < end]:
                del self._hlt_at[known]

    # -- execution -----------------------------------------------------------

    def run(self, cpu: int, context, *, step: bool = False, budget: int | None = None,
            deadline: float | None = None) -> Exit:
        """Run one CPU from the state in context until it leaves to the host.

        It also stops, at an instruction boundary, when it has run `budget`
        blocks of guest time (TimeUp), and when a stop is requested or the
        monotonic clock passes `deadline` (Preempted). A single step runs
        its instruction whatever is requested.
        """
        uc = self.uc
        uc.context_restore(context)
        self.clock.arm(None if step else budget, interruptible=not step, deadline=deadline)
        self._stop = None
        self.running_cpu = cpu
        self._resume_flag, self._resume_at[cpu] = self._resume_at[cpu], None
        if self._tlb_armed != self._armed or (
                self._tlb_holds != cpu and self._watched_pages[cpu] != self._watched_of(self._tlb_holds)):
            self.flush_tlb()
        self._tlb_holds = cpu
        self._hook_error = None
        try:
            if step and (exit := self._step_in_stepper(cpu)) is not None:
                return exit
            while True:
                exit = self._run_once(step)
                if self._hook_error is not None:
                    raise self._hook_error
                if not isinstance(exit, _WatchedPageTouched):
                    return exit
                exit = self._step_on_watched_page(cpu)
                if exit is not None or step:
                    return exit or Stepped()
                if self.clock.stop_requested or self.clock.past_deadline():
                    return Preempted()
        finally:
            if self._resume_flag is not None and self._rip() == self._resume_flag:
                self._resume_at[cpu] = self._resume_flag  # stopped before the instruction ran: RF stays
            self.running_cpu = None
            uc.context_update(context)

    def _run_once(self, step: bool) -> Exit:
        uc = self.uc
        start = self._rip()
        self._unmapped, self._unmapped_access = None, UC_MEM_READ
        self._watch_fault = None
        try:
            if step:
                # Translations made without an instruction count would run on
                # past the one instruction (unicorn issue 1606).
                uc.ctl_remove_cache(start, start + 1)
                uc.emu_start(start, 0, count=1)
            else:
                uc.emu_start(start, 0)
            return self._stop or self._clock_stop() or self._finished(start, step)
        except UcError as error:
            if self._stop:
                return self._stop
            if self._watch_fault is not None:
                return _WatchedPageTouched()
            return self._fault(error)

    def _step_on_watched_page(self, cpu: int) -> Exit | None:
        """Run the instruction that touched a watched page, seeing its accesses.

        The stepper runs it; when it cannot, this engine does, as the
        stepper would but slowly. Returns the data breakpoint that fired,
        another exit the step ended with, or None.
        """
        accesses = self._stepper.step(self.uc)
        if accesses is None:
            exit, accesses = self._step_here(cpu)
            if not isinstance(exit, Stepped):
                return exit
        return self._data_exit(cpu, accesses)

    def _step_in_stepper(self, cpu: int) -> Exit | None:
        """A single step run by the stepper; None when this engine must run it.

        The stepper always counts instructions, so one instruction is all it
        runs; this engine's count would not hold once a jump or a return
        reaches code it translated without counting (unicorn issue 1606).
        This engine runs the instructions its hooks must see: one with an
        execute slot armed on it or a probe, a hlt (a hypercall), and any that does not
        simply complete (a system call, an exception, a fault).
        """
        uc = self.uc
        start = uc.reg_read(X.UC_X86_REG_RIP)
        if start in self._probes or (
                self._armed and start in self._execute_slots[cpu] and self._resume_flag != start):
            return None
        if self._is_hlt(start):
            return None
        accesses = self._stepper.step(uc)
        if accesses is None:
            return None
        return self._data_exit(cpu, accesses, single_step=True) or Stepped()

    def _data_exit(self, cpu: int, accesses, single_step: bool = False) -> DebugException | None:
        """The data breakpoint the accesses of one instruction fire, if any and if it stops the CPU."""
        if not self._armed:
            return None
        hits = []
        for physical, size, write in accesses:
            address = self.address_space.virtual(physical)
            for slot in self._data_slots[cpu]:
                if slot.matches_data(address, size, write):
                    hits.append(DataAccess(slot.index, address, size, write))
        if not hits:
            return None
        slots = tuple(sorted({hit.slot for hit in hits}))
        self.debug_registers[cpu].report(list(slots), single_step=single_step)
        exception = DebugException(slots, tuple(hits))
        if self.debug_handler and not self.debug_handler(cpu, exception):
            return None
        return exception

    def _step_here(self, cpu: int) -> tuple[Exit, list[tuple[int, int, bool]]]:
        """One instruction in this engine, with the page unwatched and its accesses recorded."""
        uc = self.uc
        self._accesses = []
        self._tlb_holds = None  # nothing watched for this step
        self.flush_tlb()
        # The instruction got past its code hook before it touched the page
        # (no execute slot there, or RF let it through, and its probe said
        # run): running it again must not report an execute breakpoint or
        # ask its probe a second time.
        self._hooks_done_at = uc.reg_read(X.UC_X86_REG_RIP)
        hook = uc._Uc__do_hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._record_access_hook, 1, 0)
        try:
            exit = self._run_once(step=True)
        finally:
            uc.hook_del(hook)
            self._hooks_done_at = None
            self._tlb_holds = cpu
            self.flush_tlb()
        return exit, self._accesses

    def _record_access(self, _engine, kind, physical, size, _value, _):
        self._accesses.append((physical, size, kind == UC_MEM_WRITE))

    def _watched_of(self, cpu: int | None) -> dict[int, bool] | None:
        return None if cpu is None else self._watched_pages[cpu]

    def flush_tlb(self) -> None:
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        self._tlb_armed = self._armed

    def _rip(self) -> int:
        value = ctypes.c_uint64()
        _engine_reg_read(self.uc._uch, X.UC_X86_REG_RIP, ctypes.byref(value))
        return value.value

    def _clock_stop(self) -> Exit | None:
        stopped_by = self.clock.stopped_by
        if stopped_by == STOPPED_BY_LIMIT:
            return TimeUp()
        if stopped_by:
            return Preempted()
        return None

    def _finished(self, start: int, step: bool) -> Exit:
        rip = self._rip()
        if step:
            return Hypercall() if rip == start + 1 and self._is_hlt(start) else Stepped()
        if self._is_hlt(rip - 1):
            return Hypercall()
        # emu_start's `until` address 0: the code jumped to address 0.
        return CpuException(PAGE_FAULT, rip, PF_INSTR)

    def _fault(self, error: UcError) -> Exit:
        if error.errno in (UC_ERR_FETCH_UNMAPPED, UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_ERR_EXCEPTION):
            # The TLB fill that found no page says what the access was.
            return CpuException(PAGE_FAULT, self._unmapped, _PF_ERROR_OF_ACCESS.get(self._unmapped_access, 0))
        if error.errno == UC_ERR_INSN_INVALID:
            return CpuException(INVALID_OPCODE)
        return CpuException(GENERAL_PROTECTION)

    def _is_hlt(self, address: int) -> bool:
        known = self._hlt_at.get(address)
        if known is None:
            self._code_pages.add(address & PAGE_MASK)  # a write there must forget the answer
            try:
                known = self.read(address, 1)[0] == HLT
            except MemoryFault:
                known = False
            self._hlt_at[address] = known
        return known

    # -- hooks -------------------------------------------------------------

    def _fill_tlb(self, _engine, address, access, entry_pointer, _):
        try:
            return self._fill_tlb_entry(address, access, entry_pointer.contents)
        except BaseException as error:  # noqa: BLE001 - re-raised by run()
            self._hook_error = error
            self.uc.emu_stop()
            return False

    def _fill_tlb_entry(self, address, access, entry) -> bool:
        if not self._armed:
            # Filled for a debugger's write or while kgdb is in control: an
            # entry that lets a watched page through, to flush before a run.
            self._tlb_armed = False
        physical = self.address_space.translate(address)
        if physical is None:
            self._unmapped, self._unmapped_access = address, access
            return False
        if access == UC_MEM_FETCH:
            self._code_pages.add(address & PAGE_MASK)
        entry.paddr = physical & PAGE_MASK
        entry.perms = UC_PROT_ALL
        if self._tlb_holds is not None and self._armed:
            reads_too = self._watched_pages[self._tlb_holds].get(address & PAGE_MASK)
            if reads_too is not None:
                entry.perms = UC_PROT_EXEC if reads_too else UC_PROT_READ | UC_PROT_EXEC
                if access == UC_MEM_WRITE or (reads_too and access == UC_MEM_READ):
                    self._watch_fault = address
        return True

    def _add_execute_hook(self, address: int) -> int:
        """A code hook on one address, without the binding's per-call wrapper.

        An execute breakpoint may fire a million times (ptrace-loop); the
        binding's generic wrapper would double the cost of each. Errors are
        kept and re-raised by run, as the binding does.
        """
        return self.uc._Uc__do_hook_add(UC_HOOK_CODE, self._execute_hook, address, address)

    def _on_execute(self, _engine, address, _size, _user_data):
        # Runs for every execution of a hooked address: keep it lean.
        try:
            if self._hooks_done_at == address:
                self._hooks_done_at = None
                return
            cpu = self.running_cpu
            if self._resume_flag == address:
                # RF: the instruction a breakpoint fault was reported for runs once.
                self._resume_flag = None
            elif self._armed:
                exception = self._execute_slots[cpu].get(address)
                if exception:
                    self.debug_registers[cpu].dr6 = exception.dr6
                    if not self.debug_handler or self.debug_handler(cpu, exception):
                        self._resume_at[cpu] = address
                        self._stop = exception
                        self.uc.emu_stop()
                        return
            probe = self._probes.get(address)
            if probe is not None:
                verdict = probe(cpu)
                if verdict is ProbeVerdict.STOP:
                    self._stop = Probed(address)
                    self.uc.emu_stop()
                elif verdict is ProbeVerdict.PAUSE:
                    self._resume_at[cpu] = address  # an execute slot here has been dealt with
                    self._stop = Preempted()
                    self.uc.emu_stop()
        except BaseException as error:  # noqa: BLE001 - re-raised by run()
            self._hook_error = error
            self.uc.emu_stop()

    def set_resume_flag(self, cpu: int, address: int | None) -> None:
        """RF for the next instruction a CPU runs, if it is at address."""
        self._resume_at[cpu] = address

    def execute_slot_at(self, cpu: int, address: int) -> bool:
        """Whether an armed execute slot of the CPU matches the instruction at address."""
        return self._armed and address in self._execute_slots[cpu]

    def take_resume_flag(self, cpu: int) -> int | None:
        """The RF a CPU would resume with, cleared: an interrupt saves it in its frame."""
        address, self._resume_at[cpu] = self._resume_at[cpu], None
        return address

    # -- what the debug registers ask of the emulator ------------------------

    def arm_debug_registers(self, armed: bool) -> None:
        """Whether DR7 takes effect; kgdb disarms every CPU's while it is in control.

        The hooks and watched pages stay as the registers say (rebuilding
        them at every stop would cost more than the stop); the hooks ignore
        slots while disarmed and the TLB forgets the watched pages.
        """
        self._armed = armed  # the TLB follows when a CPU next runs

    def debug_registers_changed(self, cpu: int | None = None) -> None:
        """Derive hooks and watched pages from a CPU's debug registers (every CPU's by default)."""
        for changed in range(len(self.debug_registers)) if cpu is None else (cpu,):
            self._derive(changed)
        self._sync_execute_hooks()

    def set_probe(self, address: int, probe: Callable[[int], ProbeVerdict] | None) -> None:
        """Have probe(cpu) asked whenever a CPU is about to run the instruction at address.

        A debugger's conditional breakpoint: unlike an int3 it changes no
        memory, and unlike a debug register it is not armed by DR7 and does
        not count as one. None removes the probe.
        """
        if probe is None:
            self._probes.pop(address, None)
        else:
            self._probes[address] = probe
        self._sync_execute_hooks()

    def _sync_execute_hooks(self) -> None:
        """One code hook on every address with an execute slot on some CPU or a probe."""
        wanted = {address for slots in self._execute_slots for address in slots} | set(self._probes)
        for address in set(self._execute_hooks) - wanted:
            self.uc.hook_del(self._execute_hooks.pop(address))
        for address in wanted - set(self._execute_hooks):
            self._execute_hooks[address] = self._add_execute_hook(address)
            # Code translated before the hook existed would not call it. (The
            # address space's last byte has no end unicorn can name; no
            # instruction there can have been translated and run on.)
            if address + 1 < 1 << 64:
                self.uc.ctl_remove_cache(address, address + 1)

    def _derive(self, cpu: int) -> None:
        registers = self.debug_registers[cpu]
        state = (tuple(registers.dr), registers.dr7)
        if state == self._derived_from[cpu]:
            return
        self._derived_from[cpu] = state
        pages: dict[int, bool] = {}
        execute: dict[int, list[int]] = {}
        enabled = registers.enabled_slots()
        self._data_slots[cpu] = [s for s in enabled if s.access is not Access.EXECUTE]
        for slot in enabled:
            if slot.access is Access.EXECUTE:
                execute.setdefault(slot.address, []).append(slot.index)
                continue
            reads_too = slot.access is Access.READ_WRITE
            first, last = slot.start & PAGE_MASK, (slot.start + slot.length - 1) & PAGE_MASK
            for page in range(first, last + PAGE_SIZE, PAGE_SIZE):
                pages[page] = pages.get(page, False) or reads_too
        # The exceptions hits raise, made once: execute hooks are the hot path.
        self._execute_slots[cpu] = {a: DebugException(tuple(s)) for a, s in execute.items()}
        if pages != self._watched_pages[cpu]:
            self._watched_pages[cpu] = pages
            if self._tlb_holds == cpu:
                self.flush_tlb()

    def _on_syscall(self, uc, _):
        self._stop = SystemCall()
        uc.emu_stop()

    def _on_interrupt(self, uc, vector, _):
        self._stop = CpuException(vector)
        uc.emu_stop()
