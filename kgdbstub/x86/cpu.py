"""The CPUs: one unicorn engine that runs whichever CPU's registers are loaded.

CPUs take turns on a single engine, so all of them share one memory and one
translation cache and the machine stays deterministic. A CPU's register
state lives in a unicorn context between turns; `run` loads it, executes
until the CPU leaves to the host (a hypercall, a system call, an exception)
and stores it back.

Debug exceptions follow the Intel SDM (Vol. 3 §18, §6.8.3, §6.9), which
unicorn does not: the debug registers here are the machine's own (a guest
MOV DRn is intercepted and emulated on them), instruction breakpoints are
code hooks and data breakpoints are watched pages whose accesses a second
engine sees instruction by instruction. RF is RFLAGS bit 16 of the CPU's
state, tied to the next instruction the CPU begins; a repeated string
instruction is one instruction to breakpoints, RF and single steps count
its iterations as hardware does; a MOV SS holds debug exceptions off for
one instruction. A hit whose owner only counts it is counted in C, without
stopping the engine (counting.py), as the same debug exceptions.
"""
from __future__ import annotations

import ctypes
import mmap
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from unicorn import (
    UC_ARCH_X86,
    UC_CTL_IO_WRITE,
    UC_CTL_TLB_FLUSH,
    UC_ERR_EXCEPTION,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_INSN_INVALID,
    UC_ERR_OK,
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
    UC_PROT_WRITE,
    UC_TLB_VIRTUAL,
    Uc,
    UcError,
)
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import HOOK_CODE_CFUNC as _HOOK_CODE_CFUNC
from unicorn.unicorn_py3.unicorn import HOOK_MEM_ACCESS_CFUNC as _HOOK_MEM_CFUNC
from unicorn.unicorn_py3.unicorn import HOOK_TLB_FILL_CFUNC as _HOOK_TLB_FILL_CFUNC

from . import ucdirect
from .codepages import CodePages
from .counting import UNLIMITED, WIDEST_ACCESS, CountedHits, HitCounter, PageHeat
from .debugregs import DR7_GD, SLOTS, Access, DebugRegisterFault, DebugRegisters
from .hothooks import STOPPED_BY_LIMIT, GuestClock
from .instructions import (
    MAX_LENGTH,
    MovDebugRegister,
    mov_debug_register,
    mov_ss_length,
)
from .memory import PAGE_MASK, PAGE_SIZE, AddressSpace, MemoryFault
from .stepper import Stepper

HLT = 0xF4
INT3 = 0xCC
INT_N = 0xCD

RFLAGS_TF = 1 << 8
RFLAGS_RF = 1 << 16
CR4_DE = 1 << 3  # debug extensions: DR4 and DR5 are #UD instead of DR6 and DR7
DR6_BS = 1 << 14
# The general registers as ModR/M and REX number them.
GENERAL_REGISTERS = tuple(getattr(X, f"UC_X86_REG_{name}") for name in (
    "RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI",
    "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15"))

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
    """A debug exception (#DB); DR6 of the CPU says what made it.

    An execute breakpoint is a fault: rip is at the instruction, which has
    not run; RF is set in RFLAGS, as the handler sets it before it returns
    (Linux's hw_breakpoint_handler does, before any debugger looks), so
    that resuming runs the instruction once. General detect (a MOV DRn
    while DR7.GD is set, SDM §18.3.1.3) is a fault too: rip at the MOV,
    and GD clear. A data breakpoint and a single step are traps: the
    instruction ran once and rip is past it -- or at it, with RF set, after
    an iteration of a repeated string instruction but the last.
    """

    slots: tuple[int, ...]
    accesses: tuple[DataAccess, ...] = ()
    single_step: bool = False  # DR6.BS: a single step (the host's, or the guest's TF)
    general_detect: bool = False  # DR6.BD
    # DR6.B0-B3 for this exception: a bit for every slot (a plain attribute:
    # an execute breakpoint's hook reads it at every hit).
    b_bits: int = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        b_bits = 0
        for slot in self.slots:
            b_bits |= 1 << slot
        object.__setattr__(self, "b_bits", b_bits)

    @property
    def trap(self) -> bool:
        return bool(self.accesses) or self.single_step


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
    """Internal: an access hit a page some data slot watches, or wrote to a code page."""


@dataclass(frozen=True)
class _Intercepted:
    """Internal: a MOV DRn is about to run; the emulator runs it instead."""

    address: int
    instruction: MovDebugRegister


@dataclass(frozen=True)
class _Traced:
    """Internal: the guest's TF made a single-step trap after an instruction."""


WATCHED_PAGE_TOUCHED, TRACED = _WatchedPageTouched(), _Traced()

Exit = Hypercall | SystemCall | Stepped | CpuException | DebugException | Preempted | TimeUp | Probed


def read_registers(context, *registers: int) -> list[int]:
    """64-bit registers (general, rip, rflags) of a saved register state."""
    handle, value = context._context, ctypes.c_uint64()
    reference = ctypes.byref(value)
    values = []
    for register in registers:
        ucdirect.context_reg_read(handle, register, reference)
        values.append(value.value)
    return values


def read_register(context, register: int) -> int:
    value = ctypes.c_uint64()
    ucdirect.context_reg_read(context._context, register, ctypes.byref(value))
    return value.value


def write_register(context, register: int, value: int) -> None:
    """Set a 64-bit register (general, rip, rflags) of a saved register state."""
    ucdirect.context_reg_write(context._context, register, ctypes.byref(ctypes.c_uint64(value & 0xFFFF_FFFF_FFFF_FFFF)))


class Processor:
    def __init__(self, address_space: AddressSpace, cpus: int = 1):
        self.address_space = address_space
        self.debug_registers = [DebugRegisters() for _ in range(cpus)]
        # What a guest MOV DRn reads and writes, and who is told of a write:
        # by default the CPU's own registers, as on bare hardware; a kernel
        # that shares them gives the guest a view of its own.
        self.guest_debug_registers: list[DebugRegisters] = list(self.debug_registers)
        self.guest_wrote_debug_registers: Callable[[int], None] = self.debug_registers_changed
        # Whether code at an address runs at CPL 3 (MOV DRn there is #GP).
        self.user_mode: Callable[[int], bool] = lambda address: False
        # Derived from the debug registers alone (see debug_registers_changed).
        self._execute_hooks: dict[int, int] = {}
        self._execute_slots: list[dict[int, DebugException]] = [{} for _ in range(cpus)]
        self._watched_pages: list[dict[int, bool]] = [{} for _ in range(cpus)]  # page -> reads too
        self._data_slots: list[list] = [[] for _ in range(cpus)]
        self._derived_from: list[tuple | None] = [None] * cpus  # (DR0-3, DR7) the above came from
        self._tlb_holds: int | None = None  # whose watched pages the TLB reflects
        self._watch_fault: int | None = None
        self._probes: dict[int, Callable[[int], ProbeVerdict]] = {}
        self._hooks_done_at: int | None = None  # an instruction run again after its hooks ran
        # The running CPU at an instruction boundary (see run): its RF; whether
        # it is between two iterations of a repeated string instruction; and
        # whether the instruction it begins next is in a MOV SS shadow.
        self._rf = False
        self._mid_rep = False
        self._shadow = False
        self._rf_decided = False  # a hook stopped the engine and set _rf
        self._started_at = 0  # where the last run of the engine began
        # Passes a hook must not take for an instruction's beginning: the pass
        # at _exempt_at entered as the next block after _exempt_blocks skips
        # the instruction-breakpoint check (RF, a MOV SS shadow), the one at
        # _continuing_at every check (the next iteration of a rep string).
        self._exempt_at: int | None = None
        self._exempt_blocks = 0
        self._continuing_at: int | None = None
        self._continuing_blocks = 0
        self._exempt_shadow = False  # _exempt_at is the instruction after a MOV SS
        # Hooked addresses where a MOV DRn or MOV SS may start, or a rep string is.
        self._special: set[int] = set()
        # Called with (cpu, DebugException) when a slot fires; False means the
        # owner dealt with it (a perf count, say) and the CPU runs on.
        self.debug_handler = None
        # Hits whose owners only count them need no handler: hit_budget(cpu)
        # says, for each DR of a CPU, (pool, budget): how many more debug
        # exceptions its owner counts without stopping (UNLIMITED, or 0 when
        # every hit goes to debug_handler); DRs in one pool share a budget,
        # one unit an exception. hits_counted(cpu, CountedHits) is told of
        # the hits counted so, before debug_handler hears of any later one.
        self.hit_budget: Callable[[int], list[tuple[int, int]]] | None = None
        self.hits_counted: Callable[[int, CountedHits], None] | None = None
        self.heat = PageHeat(cpus)
        self._hot: list[frozenset[int]] = [frozenset()] * cpus  # hot pages the TLB lets through, per CPU
        self._counting_for: int | None = None  # the CPU whose slots the counter holds
        self._counting_stale = True  # the slots, hooks or heat changed since
        self._nothing_counts = [False] * cpus  # hit_budget said so, and nothing changed since
        self._pools: list[int] = []  # the pool of each DR of that CPU
        self._hot_order: tuple[int, ...] = ()  # its hot pages, as the counter numbers them
        self._hot_suspended = False  # the host runs an instruction on its own: hot pages are protected
        self._carried: list[tuple[int, int, bool]] = []  # counted accesses the next trap reports instead
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
        self._code = CodePages(self._read_available)
        self._stepper = Stepper(address_space, host_memory, self._fetching)
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        # Hooks the hot paths call go in raw, without the binding's wrappers:
        # the TLB is refilled after every flush, and the watched-page step
        # adds and removes its memory hook each time.
        self._tlb_fill_hook = _HOOK_TLB_FILL_CFUNC(self._fill_tlb)
        uc._Uc__do_hook_add(UC_HOOK_TLB_FILL, self._tlb_fill_hook, 1, 0)
        self._accesses: list[tuple[int, int, bool]] = []
        self._hook_error: BaseException | None = None
        self._record_access_hook = _HOOK_MEM_CFUNC(self._record_access)
        self._execute_hook = _HOOK_CODE_CFUNC(self._on_execute)  # one callback for every hooked address
        uc.hook_add(UC_HOOK_INSN, self._on_syscall, None, 1, 0, X.UC_X86_INS_SYSCALL)
        uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        self.clock = GuestClock(uc)
        self._counter = HitCounter(uc, self.clock.blocks_address, self._execute_hook)
        self._handle = uc._uch
        self._rip_value = ctypes.c_uint64()
        self._rip_reference = ctypes.byref(self._rip_value)
        self._eflags_value = ctypes.c_uint64()
        self._eflags_reference = ctypes.byref(self._eflags_value)
        self._blank = uc.context_save()
        self._stop: Exit | None = None
        self._unmapped: int | None = None
        self._unmapped_access = UC_MEM_READ
        self._hlt_at: dict[int, bool] = {}  # whether an address holds hlt; forgotten on writes
        self._code_unsettled = False  # code was written since the hooks were last made from it
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

    def _read_available(self, address: int, size: int) -> bytes:
        """Up to size bytes at address, as many as memory holds there without a gap."""
        data = bytearray()
        while len(data) < size:
            here = address + len(data)
            for start, end, view in self._host_views:
                if start <= here < end:
                    data += view[here - start : min(end, address + size) - start]
                    break
            else:
                break
        return bytes(data)

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
        self._code_written(address, end)

    def _code_written(self, begin: int, end: int) -> None:
        """Bytes [begin, end) changed: if code may live there, forget what was made of the old bytes.

        Most writes are the host's frames on stacks, where no code ever ran.
        """
        if not self._code.written(begin, end):
            return
        self.uc.ctl_remove_cache(begin, min(end, (1 << 64) - 1))
        self._stepper.forget_code(begin, end)
        for known in [a for a in self._hlt_at if begin - MAX_LENGTH < a < end]:
            del self._hlt_at[known]
        self._code_unsettled = True

    def _settle_code(self) -> None:
        """Before the CPUs run on: hooks for what the writes to code made or unmade."""
        if self._code_unsettled:
            self._code_unsettled = False
            self._code.settle()
            self._sync_execute_hooks()

    # -- execution -----------------------------------------------------------

    def run(self, cpu: int, context, *, step: bool = False, budget: int | None = None,
            deadline: float | None = None) -> Exit:
        """Run one CPU from the state in context until it leaves to the host.

        It also stops, at an instruction boundary, when it has run `budget`
        blocks of guest time (TimeUp), and when a stop is requested or the
        monotonic clock passes `deadline` (Preempted). A single step runs
        its instruction whatever is requested: one iteration of a repeated
        string instruction, and a MOV SS with the instruction after it.
        """
        handle = self._handle
        ucdirect.context_restore(handle, context._context)
        self.clock.arm(None if step else budget, interruptible=not step, deadline=deadline)
        self._stop = None
        self.running_cpu = cpu
        self._hook_error = None
        self._settle_code()
        self._prepare_counting(cpu)
        if self._tlb_armed != self._armed or (self._tlb_holds != cpu and (
                self._watched_pages[cpu] != self._watched_of(self._tlb_holds)
                or self._hot[cpu] != self._hot_of(self._tlb_holds))):
            self.flush_tlb()
        self._tlb_holds = cpu
        # RF lives in RFLAGS between runs; while the CPU runs, here (unicorn
        # would clear it at the end of a translation block, not an instruction).
        eflags = self._eflags()
        self._rf, self._mid_rep, self._shadow = bool(eflags & RFLAGS_RF), False, False
        if self._rf:
            self._set_eflags(eflags & ~RFLAGS_RF)
        try:
            return self._single_step(cpu) if step else self._run(cpu)
        finally:
            if self._counter.pending:  # a hook's error ended the run: nothing counted is lost
                self._collect(cpu)
            eflags = self._eflags()
            if bool(eflags & RFLAGS_RF) != self._rf:
                self._set_eflags(eflags ^ RFLAGS_RF)
            self.running_cpu = None
            ucdirect.context_save(handle, context._context)

    def _run(self, cpu: int) -> Exit:
        while True:
            exit = self._engine_run(cpu)
            if self._counter.hot_pages and type(exit) is not Preempted:
                # Not where a stop request or the wall clock ended the run: a
                # page turning cold changes guest time (a touch becomes a fault
                # again), so it happens at points the guest alone decides.
                self._cool(cpu)
            if exit is WATCHED_PAGE_TOUCHED:
                # The instruction began here and touched a protected page: it
                # runs again on its own, seen access by access.
                page = self._watch_fault & PAGE_MASK
                exit = self._instruction_and_shadow(cpu, touched=True)
                if page in self._watched_pages[cpu] and self.hit_budget is not None \
                        and self.heat.touched(cpu, page, self.clock.blocks):
                    self._counting_stale = True
                    self._prepare_counting(cpu)
            elif isinstance(exit, _Intercepted):
                exit = self._emulate_mov_debug_register(cpu, exit.address, exit.instruction)
            elif isinstance(exit, _Traced):
                exit = self._after_traced(cpu)
            else:
                return exit
            if exit is not None:
                return exit
            if self.clock.stop_requested or self.clock.past_deadline():
                return Preempted()

    def _single_step(self, cpu: int) -> Exit:
        """The host's single step: what TF does (SDM §18.3.1.4), DR6.BS set."""
        exit = self._instruction_and_shadow(cpu, touched=False, stepping=True)
        return Stepped() if exit is None else exit

    def _engine_run(self, cpu: int, count: int | None = None) -> Exit:
        """One run of the engine from rip, `count` instructions or until it stops.

        RF and the state of the instruction at rip become hook markers; the
        RF the CPU is left with is worked out from how the run ended.
        """
        clock = self.clock
        if self._counting_stale:
            # The slots changed within the run (the guest's own MOV DRn, or
            # a handler's doing): the counter follows before the CPU goes on.
            self._prepare_counting(cpu)
        start, blocks = self._rip(), clock.blocks
        was = self._rf, self._mid_rep, self._shadow
        if self._rf or self._shadow or self._mid_rep:
            self._exempt_at = start if self._rf or self._shadow else None
            self._exempt_shadow = self._shadow
            self._continuing_at = start if self._mid_rep else None
            self._exempt_blocks = self._continuing_blocks = blocks
            self._mid_rep = self._shadow = False
        else:
            self._exempt_at = self._continuing_at = None
        self._counter.defer(self._exempt_at, self._continuing_at, self._hooks_done_at)
        self._rf_decided = False
        self._started_at = start
        exit = self._run_once(start, count)
        if self._rf_decided or exit is WATCHED_PAGE_TOUCHED:
            return exit  # a hook decided RF; or the instruction is to run again on its own
        if clock.blocks == blocks and isinstance(exit, Preempted | TimeUp):
            self._rf, self._mid_rep, self._shadow = was  # nothing began
        elif isinstance(exit, Preempted | TimeUp):
            self._rf = self._mid_rep = self._between_blocks()
        elif isinstance(exit, CpuException):
            self._rf = not self._trap_class(exit)  # a fault's frame holds RF = 1 (SDM §18.3.1.1)
        elif isinstance(exit, Hypercall | SystemCall):
            self._rf = False
        return exit

    def _run_once(self, start: int, count: int | None) -> Exit:
        uc = self.uc
        self._unmapped, self._unmapped_access = None, UC_MEM_READ
        self._watch_fault = None
        self._stop = None
        status = UC_ERR_OK
        if count:
            # Translations made without an instruction count would run on
            # past the one instruction (unicorn issue 1606).
            try:
                uc.ctl_remove_cache(start, start + 1)
            except UcError as error:
                status = error.errno  # at the last byte of the address space, whose end unicorn cannot name
        if status == UC_ERR_OK:
            try:
                status = ucdirect.emu_start(uc, start, count or 0)
            finally:
                self.clock.engine_returned()
        if self._hook_error is not None:
            raise self._hook_error
        if status != UC_ERR_OK:
            if self._stop:
                exit = self._stop
            elif self._watch_fault is not None:
                exit = WATCHED_PAGE_TOUCHED
            else:
                exit = self._fault(status)
        else:
            exit = self._stop or self._clock_stop() or self._finished(start, bool(count))
        if self._counter.pending:
            self._take_back_counted(exit)
            self._collect(self.running_cpu)
        return exit

    def _take_back_counted(self, exit: Exit) -> None:
        """Hits the counter counted for an instruction the host deals with itself, after a run.

        An instruction that did not complete counts none: it runs again on
        its own (then the hits of the MOV SS it follows are its exception's
        too), or its fault is delivered. The guest's single-step trap after
        an instruction is one exception with its data hits.
        """
        counter, blocks = self._counter, self.clock.blocks
        if exit is TRACED:
            last = self.clock.last_block
            if last is not None:
                shadow, own = counter.take(blocks, last[0])
                self._carried = self._virtual_accesses(shadow + own)
        elif exit is WATCHED_PAGE_TOUCHED:
            shadow, _ = counter.take(blocks, self._rip())
            self._carried = self._virtual_accesses(shadow)
        elif type(exit) is CpuException and not self._trap_class(exit):
            counter.take(blocks, self._rip())

    def _virtual_accesses(self, accesses):
        return [(self.address_space.virtual(p), size, write) for p, size, write in accesses]

    def _between_blocks(self) -> bool:
        """The CPU stopped at the start of a block after others ran: whether it is inside a rep string.

        Between two iterations, RF is 1 as an interrupt there pushes it
        (SDM §18.3.1.1). Unicorn makes one pass more after the last
        iteration, to find the count spent; stopped before it, the CPU is
        moved past the instruction as hardware would have left it.
        """
        rip = self._rip()
        last = self.clock.last_block
        if last is None or not last[0] <= rip < last[1]:
            return False
        rep = self._code.rep_string(rip)
        if rep is None:
            return False
        if rep.done(self._read(X.UC_X86_REG_RCX)):
            self._write(X.UC_X86_REG_RIP, rip + rep.length)
            return False
        return True

    # -- one instruction on its own ----------------------------------------------

    def _instruction_and_shadow(self, cpu: int, *, touched: bool, stepping: bool = False) -> Exit | None:
        """Run the instruction at rip on its own, and the one after it if it was a MOV SS.

        A MOV SS holds debug exceptions and single-step traps off until the
        next instruction has run (SDM §6.8.3): the data breakpoints both
        fire are one trap after the second. Returns the exit to report, or
        None when the CPU goes on (no trap, or its owners dealt with it).
        `touched`: the first instruction already began in the engine, past
        its hooks, and touched a protected page. `stepping`: the host
        single-steps, which traps with DR6.BS (and is then not an exit).
        """
        carried, self._carried = self._carried, []
        hits: list[DataAccess] = self._data_hits(cpu, carried) if carried else []
        traced = False
        # Accesses one instruction makes here are seen by the host alone: hot pages are protected again.
        self._hot_suspended = bool(self._hot[cpu])
        if self._hot_suspended:
            self.flush_tlb()
        try:
            while True:
                exit, accesses = self._one_instruction(cpu, touched=touched)
                touched = False
                if accesses:
                    hits += self._data_hits(cpu, accesses)
                if exit is not None:
                    if type(exit) is not _Traced:
                        return exit  # it did not complete: a fault, the host's call, a hook's stop
                    traced = True
                if not self._shadow:
                    break
        finally:
            if self._hot_suspended:
                self._hot_suspended = False
                self.flush_tlb()
        return self._trap(cpu, hits, single_step=stepping or traced, host_step=stepping)

    def _one_instruction(self, cpu: int, *, touched: bool) -> tuple[Exit | None, list]:
        """One instruction (one iteration of a rep string) on its own, and its accesses.

        The exit is None or _Traced when it completed; anything else when
        it did not. The stepper runs it, unless a hook must see it first or
        it leaves to the host; then this engine does.
        """
        start = self._started_at if touched else self._rip()
        shadowed = self._shadow
        if touched or not self._hooked(cpu, start):
            step = self._stepper.step(self.uc)
            if step is not None:
                physical, traced = step
                accesses = [(self.address_space.virtual(p), size, write) for p, size, write in physical]
                self._after_instruction(start, accesses, shadowed)
                return (TRACED if traced else None), accesses
            if touched:
                exit, physical = self._step_here(cpu)
                accesses = [(self.address_space.virtual(p), size, write) for p, size, write in physical]
                return self._completed(exit, start, accesses, shadowed), accesses
        exit = self._engine_run(cpu, count=1)
        if isinstance(exit, _WatchedPageTouched):
            self._shadow = shadowed
            return self._one_instruction(cpu, touched=True)
        if isinstance(exit, _Intercepted):
            return self._emulate_mov_debug_register(cpu, exit.address, exit.instruction), []
        return self._completed(exit, start, [], shadowed), []

    def _completed(self, exit: Exit, start: int, accesses, shadowed: bool) -> Exit | None:
        """After the engine ran one instruction: None or _Traced if it completed, else the exit."""
        if isinstance(exit, Stepped | _Traced):
            self._after_instruction(start, accesses, shadowed)
            return None if isinstance(exit, Stepped) else TRACED
        if isinstance(exit, CpuException):
            self._rf = not self._trap_class(exit)
        elif isinstance(exit, Hypercall | SystemCall):
            self._rf = False
        return exit

    def _hooked(self, cpu: int, address: int) -> bool:
        """Whether a hook must see the instruction at address (or it is a hypercall)."""
        self._fetching(address & PAGE_MASK)
        return (address in self._probes or address in self._code.candidates or self._is_hlt(address)
                or (self._armed and address in self._execute_slots[cpu] and not (self._rf or self._shadow)))

    def _after_instruction(self, start: int, accesses, shadowed: bool) -> None:
        """An instruction at start ran on its own: the state it leaves (RF, rep, MOV SS, code written).

        `shadowed`: it ran in a MOV SS shadow, so that if it is a MOV SS too
        it makes none (of consecutive ones only the first is sure to
        inhibit, SDM §6.8.3; this one, as unicorn, counts only the first).
        """
        self._mid_rep = False
        if (rep := self._code.rep_string(start)) is not None and self._rip() == start:
            if rep.done(self._read(X.UC_X86_REG_RCX)):
                self._write(X.UC_X86_REG_RIP, start + rep.length)  # unicorn's extra pass, made here
            else:
                self._mid_rep = True
        # A trap after an iteration but the last pushes RF = 1 (SDM §18.3.1.1).
        self._rf = self._mid_rep
        self._shadow = not shadowed and start in self._code.candidates and \
            mov_ss_length(self._read_available(start, MAX_LENGTH)) is not None
        code_pages = self._code.pages
        for address, size, write in accesses:
            if write and (address & PAGE_MASK in code_pages or (address + size - 1) & PAGE_MASK in code_pages):
                self._code_written(address, address + size)
        self._settle_code()

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
        self._hooks_done_at = self._rip()
        self._counter.defer(self._hooks_done_at)
        self._counter.counting_data(False)  # its accesses are recorded here, and reported by _trap
        hook = uc._Uc__do_hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._record_access_hook, 1, 0)
        try:
            exit = self._run_once(self._hooks_done_at, 1)
        finally:
            uc.hook_del(hook)
            self._counter.counting_data(True)
            self._hooks_done_at = None
            self._counter.defer()
            self._tlb_holds = cpu
            self.flush_tlb()
        return exit, self._accesses

    def _record_access(self, _engine, kind, physical, size, _value, _):
        self._accesses.append((physical, size, kind == UC_MEM_WRITE))

    def _data_hits(self, cpu: int, accesses) -> list[DataAccess]:
        """The data slots the accesses (virtual address, size, write) of one instruction match."""
        if not self._armed:
            return []
        hits = []
        for address, size, write in accesses:
            for slot in self._data_slots[cpu]:
                if slot.matches_data(address, size, write):
                    hits.append(DataAccess(slot.index, address, size, write))
        return hits

    def _trap(self, cpu: int, hits: list[DataAccess], *, single_step: bool, host_step: bool = False) -> Exit | None:
        """The debug trap after an instruction: its data breakpoints and single step, one #DB.

        None when there is none, or when its owners dealt with it and the
        CPU goes on. The host's own single step sets DR6.BS but is not
        given to the handler unless a slot fired with it.
        """
        if not hits and not single_step:
            return None
        self._collect(cpu)
        if host_step and not hits:
            self.debug_registers[cpu].report(0, single_step=True)
            return None
        slots = (hits[0].slot,) if len(hits) == 1 else tuple(sorted({hit.slot for hit in hits}))
        exception = DebugException(slots, tuple(hits), single_step=single_step)
        self.debug_registers[cpu].report(exception.b_bits, single_step=single_step)
        if self.debug_handler and not self._must_stop(cpu, exception):
            return None
        return exception

    def _after_traced(self, cpu: int) -> Exit | None:
        """The engine took the guest's single-step trap after the instruction of its last block."""
        last = self.clock.last_block
        if last is not None:
            self._after_instruction(last[0], [], shadowed=False)  # with TF set a block is one instruction
        carried, self._carried = self._carried, []
        return self._trap(cpu, self._data_hits(cpu, carried), single_step=True)

    def _watched_of(self, cpu: int | None) -> dict[int, bool] | None:
        return None if cpu is None else self._watched_pages[cpu]

    def _hot_of(self, cpu: int | None) -> frozenset[int] | None:
        return None if cpu is None else self._hot[cpu]

    def flush_tlb(self) -> None:
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        self._tlb_armed = self._armed

    def _rip(self) -> int:
        ucdirect.reg_read(self._handle, X.UC_X86_REG_RIP, self._rip_reference)
        return self._rip_value.value

    def _eflags(self) -> int:
        ucdirect.reg_read(self._handle, X.UC_X86_REG_EFLAGS, self._eflags_reference)
        return self._eflags_value.value

    def _set_eflags(self, value: int) -> None:
        self._eflags_value.value = value
        ucdirect.reg_write(self._handle, X.UC_X86_REG_EFLAGS, self._eflags_reference)

    def _read(self, register: int) -> int:
        return self.uc.reg_read(register)

    def _write(self, register: int, value: int) -> None:
        self.uc.reg_write(register, value & 0xFFFF_FFFF_FFFF_FFFF)

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

    def _fault(self, error: int) -> Exit:
        """The exception an error of the engine (a UC_ERR_*) stands for."""
        if error in (UC_ERR_FETCH_UNMAPPED, UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_ERR_EXCEPTION):
            # The TLB fill that found no page says what the access was.
            return CpuException(PAGE_FAULT, self._unmapped, _PF_ERROR_OF_ACCESS.get(self._unmapped_access, 0))
        if error == UC_ERR_INSN_INVALID:
            return CpuException(INVALID_OPCODE)
        return CpuException(GENERAL_PROTECTION)

    def _trap_class(self, exit: CpuException) -> bool:
        """Whether an exception came after its instruction (int3, INT n) rather than instead of it."""
        if exit.vector == BREAKPOINT:
            return True
        rip = self._rip()
        try:
            return self.read(rip - 2, 2) == bytes([INT_N, exit.vector])
        except MemoryFault:
            return False

    def _is_hlt(self, address: int) -> bool:
        known = self._hlt_at.get(address)
        if known is None:
            self._fetching(address & PAGE_MASK)  # a write there must forget the answer
            try:
                known = self.read(address, 1)[0] == HLT
            except MemoryFault:
                known = False
            self._hlt_at[address] = known
        return known

    # -- MOV to and from debug registers ------------------------------------------

    def _emulate_mov_debug_register(self, cpu: int, address: int, instruction: MovDebugRegister) -> Exit | None:
        """Run a guest MOV DRn on the guest's view of the debug registers, as the CPU would.

        The exceptions in the order the emulator checks them (the SDM does
        not order them): #UD for LOCK, DR8-DR15 and DR4/DR5 with CR4.DE;
        #GP at CPL 3; #DB with BD while DR7.GD is set (the MOV does not
        run, and GD is cleared so that the handler may use the registers);
        #GP for a 1 in bits 63:32 of DR6 or DR7. Without CR4.DE, DR4 and
        DR5 are DR6 and DR7. None when the MOV ran.
        """
        index = instruction.debug_register
        self._rf = True  # for the faults: their frames hold RF = 1
        if instruction.lock or index > 7 or (index in (4, 5) and self._read(X.UC_X86_REG_CR4) & CR4_DE):
            return CpuException(INVALID_OPCODE)
        if self.user_mode(address):
            return CpuException(GENERAL_PROTECTION)
        view = self.guest_debug_registers[cpu]
        if view.dr7 & DR7_GD:
            view.dr7 &= ~DR7_GD
            view.report(0, general_detect=True)
            exception = DebugException((), general_detect=True)
            if self.debug_handler and not self._must_stop(cpu, exception):
                return None  # dealt with: the MOV runs again, GD clear
            return exception
        index = {4: 6, 5: 7}.get(index, index)
        register = GENERAL_REGISTERS[instruction.register]
        if instruction.to_debug_register:
            try:
                view.write(index, self._read(register))
            except DebugRegisterFault:
                return CpuException(GENERAL_PROTECTION)
            self.guest_wrote_debug_registers(cpu)
        else:
            self._write(register, view.read(index))
        self._write(X.UC_X86_REG_RIP, address + instruction.length)
        self._rf = False
        return None

    # -- hooks -------------------------------------------------------------

    def _fetching(self, page: int) -> None:
        """Code is about to be fetched from page: a code page from now on, its MOV DRn and MOV SS hooked."""
        if page not in self._code.pages:
            found = self._code.add(page)
            # No translation of the page exists yet: the new hooks need no flush.
            for address in found - set(self._execute_hooks):
                self._execute_hooks[address] = self._add_execute_hook(address)
            self._special |= found | {a for a in self._execute_hooks
                                      if a & PAGE_MASK == page and self._code.rep_string(a) is not None}

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
        page = address & PAGE_MASK
        if access == UC_MEM_FETCH:
            self._fetching(page)
        entry.paddr = physical & PAGE_MASK
        protected = self._tlb_holds is not None
        if page in self._code.pages:
            # Code: writes to it are seen, so that new code is scanned too.
            perms = UC_PROT_READ | UC_PROT_EXEC if protected else UC_PROT_ALL
            if access == UC_MEM_WRITE and protected:
                self._watch_fault = address
        else:
            perms = UC_PROT_READ | UC_PROT_WRITE  # fetching from it makes it a code page first
        if protected and self._armed:
            reads_too = self._watched_pages[self._tlb_holds].get(page)
            if reads_too is not None and (self._hot_suspended or page not in self._hot[self._tlb_holds]):
                perms &= ~(UC_PROT_READ | UC_PROT_WRITE) if reads_too else ~UC_PROT_WRITE
                if access == UC_MEM_WRITE or (reads_too and access == UC_MEM_READ):
                    self._watch_fault = address
        entry.perms = perms
        return True

    def _add_execute_hook(self, address: int) -> int:
        """A code hook on one address: the counter's, in C, which counts what
        the owners only count and passes the rest to _on_execute.

        An execute breakpoint may fire a million times (ptrace-loop).
        Errors are kept and re-raised by run, as the binding does.
        """
        return self._counter.add_execute_hook(address)

    def _on_execute(self, _engine, address, _size, _user_data):
        # Runs for every execution of a hooked address: keep it lean.
        try:
            if self._hooks_done_at == address:
                self._hooks_done_at = None
                return
            cpu = self.running_cpu
            if address == self._continuing_at and self.clock.blocks == self._continuing_blocks + 1:
                # The next iteration of a rep string: the same instruction.
                self._continuing_blocks += 1
                return
            checked = address == self._exempt_at and self.clock.blocks == self._exempt_blocks + 1
            if not checked and self._armed:
                exception = self._execute_slots[cpu].get(address)
                if exception:
                    self._collect(cpu)  # the hits counted before this one come first
                    registers = self.debug_registers[cpu]
                    dr6 = registers.dr6
                    if dr6 & 0xF != exception.b_bits:
                        registers.dr6 = dr6 & ~0xF | exception.b_bits
                    if not self.debug_handler or self._must_stop(cpu, exception):
                        self._stop_before(exception, resume_flag=True)
                        return
                    checked = True  # the handler returned with RF set
            probe = self._probes.get(address)
            if probe is not None:
                verdict = probe(cpu)
                if verdict is ProbeVerdict.STOP:
                    self._stop_before(Probed(address), resume_flag=checked)
                    return
                if verdict is ProbeVerdict.PAUSE:
                    self._stop_before(Preempted(), resume_flag=checked)
                    return
            if address in self._special:
                if address in self._code.candidates:
                    self._intercept(address)
                elif self._code.rep_string(address) is not None:
                    self._continuing_at, self._continuing_blocks = address, self.clock.blocks
        except BaseException as error:  # noqa: BLE001 - re-raised by run()
            self._hook_error = error
            self.uc.emu_stop()

    def _stop_before(self, exit: Exit, *, resume_flag: bool) -> None:
        """Stop the engine before the hooked instruction begins, with this RF."""
        self._stop = exit
        self._rf, self._rf_decided = resume_flag, True
        self.uc.emu_stop()

    def _intercept(self, address: int) -> None:
        code = self._read_available(address, MAX_LENGTH)
        instruction = mov_debug_register(code)
        if instruction is not None:
            self._stop_before(_Intercepted(address, instruction), resume_flag=False)
            return
        length = mov_ss_length(code)
        blocks = self.clock.blocks
        if length is not None and not (
                self._exempt_shadow and address == self._exempt_at and blocks == self._exempt_blocks + 1):
            # Nothing may come between it and the next instruction, whose
            # instruction breakpoint is not taken (SDM §6.8.3). A MOV SS in
            # the shadow of another makes none, as in unicorn.
            self._exempt_at, self._exempt_blocks, self._exempt_shadow = address + length, blocks, True
            self._counter.defer(self._exempt_at, self._continuing_at, self._hooks_done_at)
            self._counter.shadow(blocks, address, address + length)
            self.clock.hold_next_block()

    def execute_slot_at(self, cpu: int, address: int) -> bool:
        """Whether an armed execute slot of the CPU matches the instruction at address."""
        return self._armed and address in self._execute_slots[cpu]

    # -- hits that stop nobody, counted in C ----------------------------------

    def hot_pages(self, cpu: int) -> frozenset[int]:
        """The watched pages of a CPU whose hits a memory hook counts, instead of a fault each touch."""
        return self._hot[cpu]

    def _prepare_counting(self, cpu: int) -> None:
        """Before the CPU runs: the counter holds what its slots' owners only count.

        Execute hits are counted at their code hook while the owners' budgets
        last. A hot watched page (see PageHeat) is let through by the TLB and
        seen by a memory hook instead, if the owners of every data slot an
        access to it can reach count without end (perf events): an access
        the hook sees can never be made to stop. (A budget that could run out
        would have to be weighed against how long the run may be, which a
        stop request or the wall clock cut short, and guest time would then
        depend on them.)
        """
        counter = self._counter
        budgets = self.hit_budget(cpu) if self.hit_budget is not None and self._armed and (
            self._execute_slots[cpu] or self._data_slots[cpu]) and not self._nothing_counts[cpu] else None
        if not budgets or not any(budget for _, budget in budgets):
            # Asked again once the slots change or a handler has counted (a
            # budget that grows meanwhile only leaves hits to the handler).
            if budgets is not None:
                self._nothing_counts[cpu] = True
            if self._counting_for is not None:
                self._fold_touches()
                counter.clear()
                self._counting_for = None
            self._counting_stale = False  # loaded afresh when counting resumes
            self._set_hot(cpu, frozenset())
            return
        pools = [pool for pool, _ in budgets]
        pool_budgets = [0] * len(budgets)
        for pool, budget in budgets:
            pool_budgets[pool] = budget
        hot = self._eligible_hot_pages(cpu, pools, pool_budgets)
        if self._counting_for != cpu or self._counting_stale or pools != self._pools or hot != self._hot[cpu]:
            self._fold_touches()
            executes = [(address, exception.b_bits) for address, exception in self._execute_slots[cpu].items()
                        if address not in self._probes and address not in self._special]
            order = tuple(sorted(hot))
            pieces = []
            for slot in self._data_slots[cpu]:
                if slot.start & PAGE_MASK in hot or (slot.start + slot.length - 1) & PAGE_MASK in hot:
                    for _, physical, length in self.address_space.pieces(slot.start, slot.length):
                        pieces.append((physical, physical + length, slot.index, slot.access is Access.READ_WRITE))
            counter.load(pools, executes, pieces, tuple(self.address_space.physical(p) for p in order))
            self._hot_order = order
            self._pools, self._counting_for, self._counting_stale = pools, cpu, False
            self._set_hot(cpu, hot)
        counter.set_budgets(pool_budgets)

    def _eligible_hot_pages(self, cpu: int, pools: list[int], budgets: list[int]) -> frozenset[int]:
        """The hot pages of a CPU that a memory hook may count now; the others are dropped."""
        if not self.heat.hot[cpu]:
            return frozenset()
        watched = self._watched_pages[cpu]
        eligible = set()
        for page in list(self.heat.hot[cpu]):
            low, high = page - WIDEST_ACCESS, page + PAGE_SIZE + WIDEST_ACCESS
            if page in watched and page not in self._code.pages and self._linear_around(page) \
                    and all(budgets[pools[s.index]] == UNLIMITED for s in self._data_slots[cpu]
                            if s.start < high and low < s.start + s.length):
                eligible.add(page)
            else:
                self.heat.drop(cpu, page)
        return frozenset(eligible)

    def _linear_around(self, page: int) -> bool:
        """Whether the pages next to page, virtual and physical, are each other's or unmapped.

        The memory hook sees an access at the physical address it starts
        at, and an access can reach into the page from the one below or
        run on into the one above.
        """
        physical = self.address_space.translate(page)
        for step in (-PAGE_SIZE, PAGE_SIZE):
            neighbour = self.address_space.translate(page + step) if 0 <= page + step < 1 << 64 else None
            if neighbour is not None and neighbour != physical + step:
                return False
            try:
                if self.address_space.virtual(physical + step) != page + step:
                    return False
            except MemoryFault:
                pass
        return True

    def _set_hot(self, cpu: int, pages: frozenset[int]) -> None:
        if pages != self._hot[cpu]:
            self._hot[cpu] = pages
            if self._tlb_holds == cpu:
                self.flush_tlb()

    def _fold_touches(self) -> bool:
        """Give PageHeat the touches of the hot pages the counter watched; True if one turned cold."""
        cpu = self._counting_for
        if cpu is None or not self._counter.hot_pages:
            return False
        now, cooled = self.clock.blocks, False
        for page, touches in zip(self._hot_order, self._counter.take_page_touches()):
            cooled |= self.heat.seen(cpu, page, touches, now)
        return cooled

    def _cool(self, cpu: int) -> None:
        if self._fold_touches():
            self._counting_stale = True
            self._prepare_counting(cpu)

    def _collect(self, cpu: int) -> None:
        """Give the owners the hits counted so far; DR6 then says what the last of them set."""
        counted = self._counter.collect()
        if counted is not None:
            registers = self.debug_registers[cpu]
            registers.dr6 = registers.dr6 & ~0xF | counted.last_b_bits
            self.hits_counted(cpu, counted)

    def _must_stop(self, cpu: int, exception: DebugException) -> bool:
        """debug_handler's answer; what it counted is no longer in the owners' budgets."""
        stop = self.debug_handler(cpu, exception)
        self._nothing_counts = [False] * len(self._nothing_counts)
        if self._counting_for == cpu and self.hit_budget is not None:
            budgets = [0] * SLOTS
            for pool, budget in self.hit_budget(cpu):
                budgets[pool] = budget
            self._counter.set_budgets(budgets)
        return stop

    # -- what the debug registers ask of the emulator ------------------------

    def arm_debug_registers(self, armed: bool) -> None:
        """Whether DR7 takes effect; kgdb disarms every CPU's while it is in control.

        The hooks and watched pages stay as the registers say (rebuilding
        them at every stop would cost more than the stop); the hooks ignore
        slots while disarmed and the TLB forgets the watched pages.
        """
        self._armed = armed  # the TLB follows when a CPU next runs
        self._counting_stale = True
        self._nothing_counts = [False] * len(self._nothing_counts)

    def debug_registers_changed(self, cpu: int | None = None) -> None:
        """Derive hooks and watched pages from a CPU's debug registers (every CPU's by default)."""
        for changed in range(len(self.debug_registers)) if cpu is None else (cpu,):
            self._derive(changed)
        self._sync_execute_hooks()

    def set_probe(self, address: int, probe: Callable[[int], ProbeVerdict] | None) -> None:
        """Have probe(cpu) asked whenever a CPU is about to run the instruction at address.

        A debugger's conditional breakpoint: unlike an int3 it changes no
        memory, and unlike a debug register it is not armed by DR7 and does
        not count as one. None removes the probe. Like an int3 it is asked
        once an execution of a rep string, at its first iteration or where
        the CPU resumes it.
        """
        if probe is None:
            self._probes.pop(address, None)
        else:
            self._probes[address] = probe
        self._sync_execute_hooks()

    def _sync_execute_hooks(self) -> None:
        """One code hook on every address with an execute slot on some CPU, a probe or an intercept."""
        self._code.settle()
        wanted = {address for slots in self._execute_slots for address in slots}
        wanted |= set(self._probes) | self._code.candidates
        for address in set(self._execute_hooks) - wanted:
            self._counter.delete_hook(self._execute_hooks.pop(address))
        for address in wanted - set(self._execute_hooks):
            self._execute_hooks[address] = self._add_execute_hook(address)
            # Code translated before the hook existed would not call it. (The
            # address space's last byte has no end unicorn can name; no
            # instruction there can have been translated and run on.)
            if address + 1 < 1 << 64:
                self.uc.ctl_remove_cache(address, address + 1)
        self._special = self._code.candidates | {a for a in self._execute_hooks
                                                 if self._code.rep_string(a) is not None}
        self._counting_stale = True
        self._nothing_counts = [False] * len(self._nothing_counts)

    def _derive(self, cpu: int) -> None:
        registers = self.debug_registers[cpu]
        state = (tuple(registers.dr), registers.dr7)
        if state == self._derived_from[cpu]:
            return
        self._derived_from[cpu] = state
        pages: dict[int, bool] = {}
        execute: dict[int, list[int]] = {}
        # An I/O slot (R/W 10) never fires: the machine does no port I/O.
        enabled = [s for s in registers.enabled_slots() if s.access is not Access.IO]
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
        self._counting_stale = True
        self._nothing_counts[cpu] = False
        if pages != self._watched_pages[cpu]:
            self._watched_pages[cpu] = pages
            if self._tlb_holds == cpu:
                self.flush_tlb()

    def _on_syscall(self, uc, _):
        self._stop = SystemCall()
        uc.emu_stop()

    def _on_interrupt(self, uc, vector, _):
        if vector == DEBUG and uc.reg_read(X.UC_X86_REG_DR6) & DR6_BS:
            uc.reg_write(X.UC_X86_REG_DR6, 0)  # unicorn's own DR6 only ever says this
            self._stop = TRACED
        else:
            self._stop = CpuException(vector)
        uc.emu_stop()
