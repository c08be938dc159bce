"""The simulated kernel: what the image asks of the host, and the CPUs' turns.

The CPUs take turns on one engine in a fixed order; one pass over all of
them is a round. A turn lasts at most QUANTUM blocks of guest time (see
docs/host-interface.md, "Time") whatever the CPU does -- interrupts
disabled or not -- and ends early when the task gives the CPU up, so that
every CPU advances as if they ran side by side. Every TICK_ROUNDS rounds the timer
interrupts each busy CPU (and CPU 0, which keeps jiffies) at its next turn
with interrupts enabled; the image's timer_interrupt may then preempt the
task. Everything is counted in guest time, so the machine is deterministic.

Faults the image can handle are delivered to its handlers; whatever needs
the debugger -- a breakpoint, a hook's stop, the image's die notifier, a
triple fault -- ends `run` with a `Stop`. Nothing the guest does raises
out of here.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from unicorn import x86_const as X

from ..x86 import cpu as x86
from ..x86.cpu import read_register, read_registers, write_register
from ..x86.memory import PAGE_SIZE, MemoryFault
from . import layout
from .debugslots import DebugSlots
from .guestdr import GUEST, GuestDebugRegisters
from .hostif import CLONE_USER, EAGAIN, EFAULT, EINVAL, Hypercall
from .hw_breakpoint import Breakpoint, SlotAccounting
from .image import Image
from .perf import PerfEvents
from .ptrace import Ptrace
from .tasks import State, Task

RAX, RDI, RSI, RDX, RCX, RSP, RIP, EFLAGS = (
    X.UC_X86_REG_RAX,
    X.UC_X86_REG_RDI,
    X.UC_X86_REG_RSI,
    X.UC_X86_REG_RDX,
    X.UC_X86_REG_RCX,
    X.UC_X86_REG_RSP,
    X.UC_X86_REG_RIP,
    X.UC_X86_REG_EFLAGS,
)
RED_ZONE = 128
SYSCALL_SIZE = 2  # 0f 05
SIGTRAP, SIGSEGV = 5, 11
TF, IF, RF = 1 << 8, 1 << 9, 1 << 16  # RFLAGS: single step, interrupts, resume
# A CPU's turn goes on through hypercalls that keep the CPU and ends with one
# that gives it up (schedule, sleep, exit).
_KEEP_CPU, _TURN_OVER = "keep", "over"
COMM_LEN = 16

# Guest time, in translation blocks (docs/host-interface.md, "Time").
QUANTUM = 25_000  # a CPU's turn
TICK_ROUNDS = 4  # rounds from one timer tick to the next: a tick every 100,000 blocks

# struct pt_regs of the image (arch/x86/include/asm/ptrace.h), in order.
PT_REGS = tuple(getattr(X, f"UC_X86_REG_{name}") for name in (
    "R15", "R14", "R13", "R12", "RBP", "RBX", "R11", "R10", "R9", "R8",
    "RAX", "RCX", "RDX", "RSI", "RDI")) + (None,) + (RIP, None, EFLAGS, RSP, None)
KERNEL_CS, KERNEL_SS, USER_CS, USER_SS = 0x10, 0x18, 0x33, 0x2B  # Linux's selectors
DOUBLE_FAULT = 8
DOUBLE_FAULT_STACK = 4096  # per CPU, in the image's double_fault_stack
# The image's handler for each exception the host delivers.
EXCEPTION_HANDLERS = {
    x86.DIVIDE_ERROR: "exc_divide_error",
    x86.INVALID_OPCODE: "exc_invalid_op",
    x86.GENERAL_PROTECTION: "exc_general_protection",
    x86.PAGE_FAULT: "exc_page_fault",
    DOUBLE_FAULT: "exc_double_fault",
}


@dataclass(frozen=True)
class Stop:
    """The machine stopped for the debugger: which CPU, and why."""

    cpu: int
    exit: x86.Exit | GuestError | None  # None: stopped from outside (a break-in)


@dataclass(frozen=True)
class GuestError:
    """A stop the guest's own error made; signal is what the debugger reports."""

    signal: int


@dataclass(frozen=True)
class KgdbTrap(GuestError):
    """The image's die notifier called kgdb (HC_KGDB_TRAP) for an exception in the kernel.

    While the debugger has the machine, the CPU shows the registers of the
    context that faulted, as kgdb shows an exception's pt_regs.
    """

    vector: int


@dataclass(frozen=True)
class DebugTrap(GuestError):
    """A debug exception no owner claimed in the kernel -- a single step of the
    guest's own TF, a general-detect fault -- which the die notifier gives
    to kgdb (notify_die(DIE_DEBUG), as exc_debug_kernel sends it)."""


@dataclass(frozen=True)
class TripleFault(GuestError):
    """A fault while the double fault was delivered: the CPU shuts down for good."""


class _HypercallFault(Exception):
    """A hypercall's pointer argument has no memory: a page fault at the hlt."""

    def __init__(self, address: int, write: bool):
        self.address, self.write = address, write


class Kernel:
    def __init__(self, image: Image, *, cpus: int = 2, kgdbwait: bool = True):
        if not 1 <= cpus <= 8:
            raise ValueError("the machine has 1 to 8 CPUs")
        self.image = image
        self.processor = x86.Processor(layout.address_space(), cpus)
        self.ncpus = cpus
        self.ticks = 0
        self.rounds = 0
        self.console_listeners: list[Callable[[bytes], None]] = []
        self.console_log = bytearray()
        self._entry = {name: image.address_of(name) for name in (
            "start_kernel", "kthread_trampoline", "do_syscall", "syscall_return",
            "timer_interrupt", "irq_return")}
        # Images without exception handlers leave every fault to the debugger.
        self._handlers = {vector: image.symbols[name].address for vector, name in EXCEPTION_HANDLERS.items()
                          if name in image.symbols}
        self._exception_return = image.symbols["exception_return"].address if "exception_return" in image.symbols else None
        self._double_fault_stack = image.symbols.get("double_fault_stack")
        self._load(image)
        if "kgdbwait" in image.symbols:
            self.write_u64(image.address_of("kgdbwait"), int(kgdbwait))

        self.tasks: dict[int, Task] = {}
        self._next_pid = 1
        self._free_slots = list(range(cpus, layout.MAX_TASKS))
        self.idle = [self._new_idle(cpu) for cpu in range(cpus)]
        self.current = list(self.idle)
        self.online = [cpu == 0 for cpu in range(cpus)]
        self.halted = [False] * cpus  # idle with nothing to run: the turn is skipped
        self._halted_at: list[int | None] = [None] * cpus  # where; a debugger that moves it wakes it
        self.shut_down = [False] * cpus  # by a triple fault: the CPU never runs again
        self.in_hlt = [False] * cpus  # halted by the image (HC_HALT) until an interrupt
        self._start(self.idle[0], self._entry["start_kernel"], layout.kernel_stack_top(0), interrupts=False)
        self.runqueue: deque[Task] = deque()
        self._turn = 0  # the CPU whose turn it is
        self._turn_begun = False
        self._turn_left = QUANTUM  # blocks left in this turn
        self._timer_pending = [0] * cpus  # timer periods not yet delivered
        self._nmi_pending: list[int | None] = [None] * cpus  # the function an NMI is to call
        self._irq_pending: list[int | None] = [None] * cpus  # the function a device interrupt is to call
        self._host_nmi: list[int | None] = [None] * cpus  # an NMI the host raised (raise_nmi), not the guest
        # The task and frame depth of the NMI a CPU is handling: until its
        # IRET the CPU takes no other NMI (SDM §6.7.1); one more is latched.
        self._in_nmi: list[tuple[Task, int] | None] = [None] * cpus
        self._woken_for_timer = [False] * cpus  # a halted CPU runs its tick, then halts again
        # A delivery (an interrupt, a system call's entry, an exception) whose
        # handler has not yet run a block, and what else undoing it takes.
        self._undo_delivery: list[Callable[[], None] | None] = [None] * cpus

        self.accounting = SlotAccounting(cpus=cpus, slots=4)
        self.debug_slots = DebugSlots(self.processor)
        self.perf = PerfEvents(self.accounting, self.debug_slots, self._pid_on)
        self.ptrace = Ptrace(self.perf)
        self.processor.debug_handler = self._on_debug_exception
        self.processor.hit_budget = self._hit_budget
        self.processor.hits_counted = self._on_hits_counted
        # The image's own MOV DRn works on a view of its own (guestdr.py).
        self.guest_debug_registers = GuestDebugRegisters(self.perf, cpus, self.console_write)
        self.processor.guest_debug_registers = self.guest_debug_registers.views
        self.processor.guest_wrote_debug_registers = self.guest_debug_registers.written
        self.processor.user_mode = layout.is_user
        self._tracees_to_stop: set[int] = set()
        self.debugger_slot_fired = False
        self._unclaimed_debug_exception = False
        self._host_stepping = False  # a #DB with BS is the host's single step, not the guest's TF
        # Asked when a debug register the debugger owns fires, with the CPU
        # and the owner: False lets the CPU run on (a breakpoint condition
        # that does not hold). None: every such hit stops.
        self.debugger_slot_condition: Callable[[int, object], bool] | None = None
        self._debug_exceptions = 0  # numbers each #DB: a tracee takes one stop per exception

    def _pid_on(self, cpu: int) -> int | None:
        task = self.current[cpu]
        return None if task.idle else task.pid

    # -- memory ----------------------------------------------------------------

    def _load(self, image: Image) -> None:
        for segment in image.segments:
            self.processor.write(segment.address, segment.data)
            bss = segment.memory_size - len(segment.data)
            if bss > 0:
                self.processor.write(segment.address + len(segment.data), bytes(bss))

    def read(self, address: int, size: int) -> bytes:
        return self.processor.read(address, size)

    def write(self, address: int, data: bytes) -> None:
        self.processor.write(address, data)

    def read_u64(self, address: int) -> int:
        return int.from_bytes(self.read(address, 8), "little")

    def write_u64(self, address: int, value: int) -> None:
        self.write(address, value.to_bytes(8, "little"))

    def read_string(self, address: int, limit: int) -> str:
        """A NUL-terminated string of at most `limit` bytes; a fault only if a byte before the NUL has no memory."""
        data = bytearray()
        while len(data) < limit:
            here = address + len(data)
            chunk = self.read(here, min(limit - len(data), PAGE_SIZE - here % PAGE_SIZE))  # within one page
            end = chunk.find(b"\0")
            if end >= 0:
                return (data + chunk[:end]).decode("latin-1")
            data += chunk
        return data.decode("latin-1")

    # -- tasks -------------------------------------------------------------------

    def _new_idle(self, cpu: int) -> Task:
        task = Task(pid=0, comm=f"swapper/{cpu}", slot=cpu, regs=self.processor.new_context(), user=False)
        task.cpu = cpu
        return task

    def _start(self, task: Task, rip: int, stack_top: int, *, interrupts: bool = True, **registers: int) -> None:
        rsp = stack_top - 8  # as if called: a zero return address ends backtraces
        self.write_u64(rsp, 0)
        task.regs = self.processor.new_context(rip=rip, rsp=rsp, eflags=0x2 | (IF if interrupts else 0),
                                               **registers)

    def task_list(self) -> list[Task]:
        return sorted(self.tasks.values(), key=lambda t: t.pid)

    def clone(self, entry: int, arg: int, comm: str, flags: int) -> int:
        if not self._free_slots:
            return -EAGAIN
        task = Task(pid=self._next_pid, comm=comm[: COMM_LEN - 1], slot=self._free_slots.pop(0),
                    regs=None, user=bool(flags & CLONE_USER))
        self._next_pid += 1
        if task.user:
            self._start(task, entry, layout.user_stack_top(task.slot), rdi=arg)
        else:
            self._start(task, self._entry["kthread_trampoline"], layout.kernel_stack_top(task.slot),
                        rdi=entry, rsi=arg)
        self.tasks[task.pid] = task
        self.runqueue.append(task)
        return task.pid

    def _switch(self, cpu: int) -> None:
        """Give the CPU to the next runnable task, or to its idle task.

        The idle task leaves its CPU only from schedule(), so one switched in
        from outside an interrupt would call schedule() again: its CPU halts
        instead, until a task is runnable.
        """
        previous = self.current[cpu]
        previous.cpu = None
        if not previous.idle:
            self.perf.task_switched_out(cpu, previous.pid)
            if previous.state is State.RUNNING and previous.pid in self.tasks:
                self.runqueue.append(previous)
        following = self.runqueue.popleft() if self.runqueue else self.idle[cpu]
        following.cpu = cpu
        self.current[cpu] = following
        self.halted[cpu] = following.idle and not following.frames
        self._halted_at[cpu] = read_register(following.regs, RIP) if self.halted[cpu] else None
        if not following.idle:
            self.perf.task_switched_in(cpu, following.pid)

    def stop_task(self, pid: int) -> None:
        """Take a task off the CPUs until resume_task (a ptrace stop)."""
        task = self.tasks[pid]
        task.state = State.STOPPED
        if task in self.runqueue:
            self.runqueue.remove(task)
        if task.cpu is not None:
            self._switch(task.cpu)

    def resume_task(self, pid: int) -> None:
        task = self.tasks[pid]
        if task.state is State.STOPPED:
            task.state = State.RUNNING
            # A tracee stopped along with the debugger is still current on its
            # CPU (_stop_tracees): it runs on there. Queued as well, it would
            # be picked by a second CPU and run on two at once.
            if task.cpu is None:
                self.runqueue.append(task)

    def _exit_current(self, cpu: int) -> bool:
        """HC_EXIT: False for an idle task, which may not end."""
        task = self.current[cpu]
        if task.idle:
            return False
        del self.tasks[task.pid]
        self.ptrace.detach(task.pid)
        self.perf.task_exited(task.pid)
        self._free_slots.append(task.slot)
        self._free_slots.sort()
        self._switch(cpu)
        return True

    # -- running -------------------------------------------------------------

    def request_break_in(self) -> None:
        """Thread-safe: stop the machine at an instruction boundary, wherever it is.

        Within a block of guest time; from another thread while the host
        works between two runs, once the guest has run as long as that work
        had taken (GuestClock.request_stop), so that stops land where the
        guest runs.
        """
        self.processor.clock.request_stop()

    def withdraw_break_in(self) -> None:
        self.processor.clock.withdraw_stop()

    def raise_interrupt(self, cpu: int, function: str) -> None:
        """Thread-safe: a device interrupt on a CPU whose handler calls an image
        function (SysRq-G: the serial port's, calling kgdb_breakpoint). The CPU
        takes it at its next instruction boundary with interrupts enabled."""
        self._irq_pending[cpu] = self.image.address_of(function)

    def interrupt_waiting(self, cpu: int) -> bool:
        """Whether a device interrupt raised on the CPU waits for it still (it keeps interrupts disabled)."""
        return self._irq_pending[cpu] is not None

    def withdraw_interrupts(self) -> None:
        """Drop what raise_interrupt and raise_nmi asked for and no CPU took yet."""
        self._irq_pending = [None] * self.ncpus
        for cpu, function in enumerate(self._host_nmi):
            if function is not None and self._nmi_pending[cpu] == function:
                self._nmi_pending[cpu] = None
        self._host_nmi = [None] * self.ncpus

    def raise_nmi(self, function: str) -> bool:
        """Thread-safe: an NMI whose handler calls an image function, on the first
        CPU that can take one, whatever IF says; False when none can."""
        for cpu in range(self.ncpus):
            if self.online[cpu] and not self.shut_down[cpu] and not self._nmi_blocked(cpu):
                self._nmi_pending[cpu] = self._host_nmi[cpu] = self.image.address_of(function)
                return True
        return False

    def _nmi_blocked(self, cpu: int) -> bool:
        """Whether the CPU is inside an NMI handler, which blocks NMIs until it returns."""
        handling = self._in_nmi[cpu]
        if handling is None:
            return False
        task, depth = handling
        if task is not self.current[cpu] or len(task.frames) < depth:
            self._in_nmi[cpu] = None  # its frame is gone (the task died in it): nothing to return to
            return False
        return True

    def _take_break_in(self) -> bool:
        clock = self.processor.clock
        if clock.stop_requested:
            clock.withdraw_stop()
            return True
        return False

    def run(self, interrupted: Callable[[], bool] | None = None, deadline: float | None = None,
            pause: Callable[[], bool] | None = None) -> Stop | None:
        """Run the machine until something needs the debugger or a break-in is requested.

        A break-in (request_break_in, which the block hook sees at once, or
        interrupted(), asked whenever the host has the CPUs) ends the run
        with a Stop whose exit is None, at instruction boundaries on every
        CPU. With a deadline (time.monotonic()), the run returns None once
        it has passed, and so it does when pause(), asked before a CPU runs,
        says so; nothing is lost: calling run again goes on exactly where
        this one left off.
        """
        self._leave_kgdb_traps()
        self._wake_moved_idle_tasks()
        clock = self.processor.clock
        while True:
            if (interrupted is not None and interrupted()) or self._take_break_in():
                for cpu in range(self.ncpus):
                    if self._undo_delivery[cpu] is not None:
                        self._withdraw_delivery(cpu)
                return Stop(self._break_in_cpu(), None)
            if deadline is not None and time.monotonic() >= deadline:
                return None
            cpu = self._turn
            if not self._turn_begun:
                self._turn_begun = True
                self._begin_turn(cpu)
            if pause is not None and pause():
                return None
            if self._undo_delivery[cpu] is None and not self.shut_down[cpu]:
                # Taken at the first instruction boundary where the CPU can: an NMI
                # at once, the timer once IF is set.
                if self._nmi_pending[cpu] is not None and not self._nmi_blocked(cpu) \
                        and (error := self._deliver_nmi(cpu)) is not None:
                    return Stop(cpu, error)
                if self._timer_pending[cpu] and (error := self._deliver_timer(cpu)) is not None:
                    return Stop(cpu, error)
                if self._irq_pending[cpu] is not None and (error := self._deliver_irq(cpu)) is not None:
                    return Stop(cpu, error)
            if self._runs(cpu):
                before = clock.blocks
                exit = self.processor.run(cpu, self.current[cpu].regs, budget=self._turn_left, deadline=deadline)
                ran = clock.blocks - before
                self._turn_left -= ran
                preempted = type(exit) is x86.Preempted
                if ran or not preempted:
                    self._undo_delivery[cpu] = None  # its handler has begun: the delivery stands
                if preempted:
                    continue
                outcome = self._handle(cpu, exit)
                if outcome is None or isinstance(outcome, GuestError):
                    return Stop(cpu, outcome or exit)
                if outcome is _KEEP_CPU and self._turn_left > 0:
                    continue
            self._turn = (cpu + 1) % self.ncpus
            self._turn_begun, self._turn_left = False, QUANTUM
            if self._turn == 0:
                self.rounds += 1

    def _runs(self, cpu: int) -> bool:
        """Whether the CPU executes: online, and neither halted nor shut down."""
        return self.online[cpu] and not self.halted[cpu] and not self.in_hlt[cpu] and not self.shut_down[cpu]

    def _break_in_cpu(self) -> int:
        """The CPU a break-in reports: the one whose turn it is, unless it idles and another works."""
        busy = [cpu for cpu in range(self.ncpus) if self._runs(cpu)]
        return self._turn if self._turn in busy or not busy else busy[0]

    def _wake_moved_idle_tasks(self) -> None:
        """A halted CPU whose registers a debugger changed runs from where it was put."""
        for cpu in range(self.ncpus):
            if (self.halted[cpu] or self.in_hlt[cpu]) \
                    and read_register(self.current[cpu].regs, RIP) != self._halted_at[cpu]:
                self.halted[cpu] = self.in_hlt[cpu] = False

    def step(self, cpu: int) -> Stop:
        """Run exactly one instruction on a CPU."""
        self._leave_kgdb_traps()
        self._host_stepping = True
        try:
            exit = self.processor.run(cpu, self.current[cpu].regs, step=True)
        finally:
            self._host_stepping = False
        self._undo_delivery[cpu] = None  # a delivery's handler has begun
        if isinstance(exit, x86.Stepped):
            return Stop(cpu, exit)
        outcome = self._handle(cpu, exit)
        if isinstance(outcome, GuestError):
            return Stop(cpu, outcome)
        return Stop(cpu, exit if outcome is None else x86.Stepped())

    def _begin_turn(self, cpu: int) -> None:
        if cpu == 0 and self.rounds % TICK_ROUNDS == 0:
            self._tick()
        if self.current[cpu].state is State.STOPPED:
            self._switch(cpu)
        if self.halted[cpu] and self.runqueue:
            self._switch(cpu)

    def _handle(self, cpu: int, exit: x86.Exit):
        """Handle what the kernel can: _KEEP_CPU or _TURN_OVER; None if the debugger must see it."""
        if isinstance(exit, x86.Hypercall):
            return self._hypercall(cpu)
        if isinstance(exit, x86.SystemCall):
            self._enter_syscall(self.current[cpu])
            return _KEEP_CPU
        if isinstance(exit, x86.TimeUp | x86.Preempted):
            return _TURN_OVER if isinstance(exit, x86.TimeUp) else _KEEP_CPU
        if isinstance(exit, x86.DebugException):
            debugger, unclaimed = self.debugger_slot_fired, self._unclaimed_debug_exception
            self.debugger_slot_fired = self._unclaimed_debug_exception = False
            self._stop_tracees(now=not (debugger or unclaimed))
            if debugger:
                return None
            return DebugTrap(signal=SIGTRAP) if unclaimed else _TURN_OVER
        if isinstance(exit, x86.CpuException) and exit.vector in self._handlers:
            return self._exception(cpu, exit.vector, exit.error_code, exit.address)
        return None

    # -- hardware breakpoints (hw_breakpoint_handler) --------------------------

    def _on_debug_exception(self, cpu: int, exception: x86.DebugException) -> bool:
        """Give each fired slot to its owner; True if the CPU must stop."""
        stop = False
        owners = self.debug_slots.owners[cpu]
        self._debug_exceptions += 1
        guests = None
        for index in exception.slots:
            owner = owners[index]
            if type(owner) is Breakpoint:
                owner.hits += 1
                kind = owner.owner
                if kind == "ptrace":
                    if self.ptrace.hit(owner, self._debug_exceptions):
                        self._tracees_to_stop.add(owner.task)
                        stop = True
                elif kind == GUEST:
                    guests = [*(guests or ()), owner]
            elif owner is not None and (self.debugger_slot_condition is None
                                        or self.debugger_slot_condition(cpu, owner)):
                self.debugger_slot_fired = True
                stop = True
        # What no owner claims -- the image's own breakpoints, a general
        # detect, the guest's TF -- the die notifier gives to kgdb.
        if guests or exception.general_detect or exception.single_step and not self._host_stepping:
            if guests:
                self.guest_debug_registers.fired(cpu, guests)
            self._unclaimed_debug_exception = True
            stop = True
        return stop

    def _hit_budget(self, cpu: int) -> list[tuple[int, int]]:
        """For each DR of a CPU: (pool, debug exceptions its owner counts before one must stop).

        A perf event only counts; a tracee's breakpoints share its tracer's
        continues, one a stop, the last of which keeps it stopped; kgdb
        (whose conditions decide each hit) and the image's own breakpoints
        stop at every hit.
        """
        budgets: list[tuple[int, int]] = []
        pool_of_tracee: dict[int, int] = {}
        for index, owner in enumerate(self.debug_slots.owners[cpu]):
            budget = 0
            pool = index
            if type(owner) is Breakpoint and owner.owner != GUEST:
                budget = x86.UNLIMITED
                if owner.owner == "ptrace" and (found := self.ptrace.owner_of(owner)) is not None:
                    tracee = found[0]
                    pool = pool_of_tracee.setdefault(tracee.pid, index)
                    budget = max(tracee.continues_left - 1, 0)
            budgets.append((pool, budget))
        return budgets

    def _on_hits_counted(self, cpu: int, counted: x86.CountedHits) -> None:
        """Hits counted without a stop: what _on_debug_exception would have done, in bulk."""
        owners = self.debug_slots.owners[cpu]
        self._debug_exceptions += counted.exceptions
        for index, hits in enumerate(counted.slot_hits):
            if hits:
                owners[index].hits += hits
        for pool, exceptions in enumerate(counted.pool_exceptions):
            owner = owners[pool]
            if exceptions and type(owner) is Breakpoint and owner.owner == "ptrace":
                last = [owners[i] for i in range(len(owners)) if counted.pool_last[pool] >> i & 1]
                hits = {owners[i]: n for i, n in enumerate(counted.slot_hits) if n}
                self.ptrace.counted(owner.task, hits, exceptions, last, self._debug_exceptions)

    def _stop_tracees(self, now: bool) -> None:
        # A tracee stopped at an execute breakpoint resumes with RF set: the
        # breakpoint's fault is not taken again.
        for pid in self._tracees_to_stop:
            task = self.tasks.get(pid)
            if task is None:
                continue
            if self.ptrace.lets_go(pid):
                self.ptrace.detach(pid)  # its tracer is done with it: the tracee runs on
                continue
            if now:
                self.stop_task(pid)
            else:
                task.state = State.STOPPED  # taken off its CPU when the machine runs again
        self._tracees_to_stop.clear()

    # -- time --------------------------------------------------------------------

    def _tick(self) -> None:
        """A timer period has passed: sleepers wake, and the busy CPUs' timers fire.

        CPU 0's timer keeps jiffies, so it fires even when the CPU is idle;
        an idle CPU's other timers do not (Linux's NO_HZ_IDLE).
        """
        self.ticks += 1
        for task in self.tasks.values():
            if task.state is State.SLEEPING and task.wake_at <= self.ticks:
                task.state = State.RUNNING
                self.runqueue.append(task)
        for cpu in range(self.ncpus):
            if self.online[cpu] and not self.shut_down[cpu] and (cpu == 0 or not self.halted[cpu]):
                self._timer_pending[cpu] += 1

    def _deliver_timer(self, cpu: int) -> GuestError | None:
        """The timer interrupt, if the CPU takes interrupts: timer_interrupt(cpu, ticks, need_resched)."""
        task = self.current[cpu]
        if not read_register(task.regs, EFLAGS) & IF:
            return None  # it stays pending until the CPU enables interrupts
        ticks, self._timer_pending[cpu] = self._timer_pending[cpu], 0
        asleep = self._wake(cpu)
        self._woken_for_timer[cpu] = self._woken_for_timer[cpu] or asleep == "idle"

        def pending_again():
            self._timer_pending[cpu] += ticks
            self._put_back_to_sleep(cpu, asleep)
            if asleep == "idle":
                self._woken_for_timer[cpu] = False

        if not self._deliver(cpu, self._entry["timer_interrupt"], self._entry["irq_return"],
                             (cpu, ticks, int(self._need_resched(cpu))), undo=pending_again):
            return TripleFault(signal=SIGSEGV)
        return None

    def _deliver_nmi(self, cpu: int) -> GuestError | None:
        """An NMI another CPU sent (HC_NMI_ALLBUTSELF): its function(cpu), whatever IF says."""
        function, self._nmi_pending[cpu] = self._nmi_pending[cpu], None
        asleep = self._wake(cpu)

        def pending_again():
            self._nmi_pending[cpu] = function
            self._in_nmi[cpu] = None
            self._put_back_to_sleep(cpu, asleep)

        if not self._deliver(cpu, function, self._entry["irq_return"], (cpu,), undo=pending_again):
            return TripleFault(signal=SIGSEGV)
        task = self.current[cpu]
        self._in_nmi[cpu] = (task, len(task.frames))
        return None

    def _deliver_irq(self, cpu: int) -> GuestError | None:
        """A device interrupt (raise_interrupt), if the CPU takes interrupts: its function(cpu)."""
        if not read_register(self.current[cpu].regs, EFLAGS) & IF:
            return None  # it stays pending until the CPU enables interrupts
        function, self._irq_pending[cpu] = self._irq_pending[cpu], None
        asleep = self._wake(cpu)

        def pending_again():
            self._irq_pending[cpu] = function
            self._put_back_to_sleep(cpu, asleep)

        if not self._deliver(cpu, function, self._entry["irq_return"], (cpu,), undo=pending_again):
            return TripleFault(signal=SIGSEGV)
        return None

    def _wake(self, cpu: int) -> str | None:
        """An interrupt wakes a halted CPU: which sleep it was ("idle", "hlt"), if any."""
        if self.halted[cpu]:
            self.halted[cpu] = False
            return "idle"
        if self.in_hlt[cpu]:
            self.in_hlt[cpu] = False
            return "hlt"
        return None

    def _put_back_to_sleep(self, cpu: int, asleep: str | None) -> None:
        if asleep == "idle":
            self.halted[cpu] = True
        elif asleep == "hlt":
            self.in_hlt[cpu] = True

    def _need_resched(self, cpu: int) -> bool:
        """Whether a runnable task waits that no idle CPU will take: the task on cpu must then make room.

        Linux wakes a task on an idle CPU when there is one (select_idle_sibling)
        rather than preempting a busy one.
        """
        idle = sum(1 for other in range(self.ncpus)
                   if other != cpu and self.halted[other] and self.online[other] and not self.shut_down[other])
        return len(self.runqueue) > idle

    def _withdraw_delivery(self, cpu: int) -> None:
        """A break-in came before a delivery's handler ran a block: the delivery is undone.

        The CPU stops at the instruction boundary the delivery found, as an
        NMI is taken before a pending interrupt: the timer stays pending, a
        system call is made again when the CPU goes on, a fault faults again.
        So the host's time spent delivering, which no guest instruction
        accounts for, does not draw the stops of break-ins to handlers' entries.
        """
        undo, self._undo_delivery[cpu] = self._undo_delivery[cpu], None
        task = self.current[cpu]
        task.regs = task.frames.pop()
        undo()

    # -- entering the image from the host ----------------------------------------

    def _deliver(self, cpu: int, function: int, return_to: int, arguments: tuple[int, ...] = (), *,
                 pt_regs: bool = False, interrupts: bool = False, undo: Callable[[], None] = lambda: None) -> bool:
        """Make the CPU's task call an image function, its current state saved as a frame.

        As the CPU delivers an interrupt or exception: on the task's kernel
        stack if it was in user space (otherwise below the red zone of its
        stack), interrupts disabled unless `interrupts`, and with a struct
        pt_regs of the interrupted state below the return address if
        `pt_regs` (the first argument then points to it). A stack that cannot
        be written is a double fault; one during the double fault, a triple
        fault (False: the CPU shut down).

        The frame keeps the interrupted state whole, RFLAGS.RF with it (set
        after an execute breakpoint's stop, between two iterations of a rep
        string, for a fault), so that returning does not report the
        instruction's breakpoint again; the function runs with RF and TF
        clear, as the CPU clears them when it calls a handler. Until the
        function runs a block, a break-in withdraws the delivery: the frame
        is popped and then `undo` runs.
        """
        task = self.current[cpu]
        regs = task.regs
        saved = self.processor.copy_context(regs)
        rip, rsp = read_registers(regs, RIP, RSP)
        stack = layout.kernel_stack_top(task.slot) if layout.is_user(rip) else (rsp - RED_ZONE) & ~0xF
        try:
            rsp, arguments = self._push_frame(saved, stack, return_to, arguments, pt_regs)
        except MemoryFault:
            if function == self._handlers.get(DOUBLE_FAULT) or self._double_fault_stack is None \
                    or DOUBLE_FAULT not in self._handlers or self._exception_return is None:
                return self._triple_fault(cpu)
            function, return_to = self._handlers[DOUBLE_FAULT], self._exception_return
            stack = self._double_fault_stack.address + DOUBLE_FAULT_STACK * (cpu + 1)
            rsp, arguments = self._push_frame(saved, stack, return_to, (0,), True)
        task.frames.append(saved)
        write_register(regs, RSP, rsp)
        write_register(regs, RIP, function)
        write_register(regs, EFLAGS, read_register(regs, EFLAGS) & ~(RF | TF | (0 if interrupts else IF)))
        for register, value in zip((RDI, RSI, RDX, RCX), arguments):
            write_register(regs, register, value & (2**64 - 1))
        self._undo_delivery[cpu] = undo
        return True

    def _push_frame(self, saved, stack: int, return_to: int, arguments: tuple[int, ...], pt_regs: bool):
        if pt_regs:
            user = layout.is_user(read_register(saved, RIP))
            values = [0 if r is None else read_register(saved, r) for r in PT_REGS]
            values[15] = 2**64 - 1  # orig_ax: not a system call
            values[17], values[20] = (USER_CS, USER_SS) if user else (KERNEL_CS, KERNEL_SS)
            stack = (stack - 8 * len(values)) & ~0xF
            self.write(stack, b"".join(v.to_bytes(8, "little") for v in values))
            arguments = (stack, *arguments)
        stack -= 8
        self.write_u64(stack, return_to)
        return stack, arguments

    def _triple_fault(self, cpu: int) -> bool:
        self.shut_down[cpu] = True
        self.console_write(b"kgdbstub: triple fault on CPU %d: the CPU shuts down\n" % cpu)
        return False

    def _exception(self, cpu: int, vector: int, error_code: int, address: int | None):
        """A fault the image handles (arch/x86/traps.c): exc_*(regs, error_code[, address])."""
        rip = read_register(self.current[cpu].regs, RIP)
        if vector == x86.PAGE_FAULT and layout.is_user(rip):
            error_code |= x86.PF_USER
        arguments = (error_code, address or 0) if vector == x86.PAGE_FAULT else (error_code,)
        if not self._deliver(cpu, self._handlers[vector], self._exception_return, arguments, pt_regs=True):
            return TripleFault(signal=SIGSEGV)
        return _KEEP_CPU

    def _enter_syscall(self, task: Task) -> None:
        regs = task.regs
        nr, a1, a2, a3, rip = read_registers(regs, RAX, RDI, RSI, RDX, RIP)
        cpu, instruction = task.cpu, rip - SYSCALL_SIZE

        def made_again():
            # Back at the `syscall`, with the RF it had (an execute slot there had let it through).
            write_register(task.regs, RIP, instruction)
            if self.processor.execute_slot_at(cpu, instruction):
                write_register(task.regs, EFLAGS, read_register(task.regs, EFLAGS) | RF)

        # Linux's entry code enables interrupts before the system call runs.
        self._deliver(cpu, self._entry["do_syscall"], self._entry["syscall_return"], (nr, a1, a2, a3),
                      interrupts=True, undo=made_again)

    def _return_from_host_call(self, task: Task, rax: int | None = None) -> bool:
        if not task.frames:
            return False
        task.regs = task.frames.pop()
        if rax is not None:
            write_register(task.regs, RAX, rax)
        return True

    # -- kgdb's view of an exception ---------------------------------------------

    def _enter_kgdb_trap(self, task: Task) -> None:
        """Show the faulting context as the task's registers while the debugger has the machine."""
        if task.frames:
            task.kgdb_handler_regs = task.regs
            task.regs = task.frames[-1]

    def _leave_kgdb_traps(self) -> None:
        """The handlers go on; what the debugger changed is what they return to."""
        for task in self.current:
            if task.kgdb_handler_regs is not None:
                task.regs, task.kgdb_handler_regs = task.kgdb_handler_regs, None

    # -- hypercalls ----------------------------------------------------------------

    def _hypercall(self, cpu: int):
        task = self.current[cpu]
        regs = task.regs
        nr, a0, a1, a2, a3, rip = read_registers(regs, RAX, RDI, RSI, RDX, RCX, RIP)
        hlt = rip - 1
        if layout.is_user(hlt):
            # hlt is privileged: a general protection fault in user mode.
            write_register(regs, RIP, hlt)
            return self._exception(cpu, x86.GENERAL_PROTECTION, 0, None)
        try:
            call = Hypercall(nr)
        except ValueError:
            # The host knows no such operation: an invalid instruction.
            write_register(regs, RIP, hlt)
            return self._exception(cpu, x86.INVALID_OPCODE, 0, None)
        try:
            return self._do_hypercall(cpu, task, call, a0, a1, a2, a3)
        except _HypercallFault as fault:
            # As if the hlt had made the access itself: a kernel page fault.
            write_register(regs, RIP, hlt)
            return self._exception(cpu, x86.PAGE_FAULT, x86.PF_WRITE if fault.write else 0, fault.address)

    def _do_hypercall(self, cpu: int, task: Task, call: Hypercall, a0: int, a1: int, a2: int, a3: int):
        regs = task.regs
        result, outcome = 0, _KEEP_CPU
        if call is Hypercall.CONSOLE_WRITE:
            result = self._console_write(a0, a1)
        elif call is Hypercall.SCHEDULE:
            self._switch(cpu)
            outcome = _TURN_OVER
        elif call is Hypercall.SLEEP:
            task.state = State.SLEEPING
            task.wake_at = self.ticks + max(a0, 1)
            self._switch(cpu)
            outcome = _TURN_OVER
        elif call is Hypercall.CLONE:
            result = self.clone(a0, a1, self._guest_string(a2, COMM_LEN), a3)
        elif call is Hypercall.EXIT:
            if self._exit_current(cpu):
                return _TURN_OVER
            result = -EINVAL
        elif call is Hypercall.CPU_UP:
            # cpu_up() waits until the new CPU runs: it has the next turn.
            result = self._cpu_up(a0, a1)
            outcome = _TURN_OVER
        elif call in (Hypercall.SYSRET, Hypercall.IRET):
            if call is Hypercall.IRET and self._in_nmi[cpu] is not None \
                    and self._in_nmi[cpu][0] is task and self._in_nmi[cpu][1] == len(task.frames):
                self._in_nmi[cpu] = None  # the NMI handler's IRET: NMIs are taken again
            if not self._return_from_host_call(task, a0 if call is Hypercall.SYSRET else None):
                result = -EINVAL  # nothing to return to: the stub's BUG() follows
            elif task.idle and not task.frames and self._woken_for_timer[cpu]:
                self._woken_for_timer[cpu] = False  # back where it halted
                self._switch(cpu)
                return _TURN_OVER if self.halted[cpu] else _KEEP_CPU
            else:
                return _KEEP_CPU
        elif call is Hypercall.NR_CPUS:
            result = self.ncpus
        elif call is Hypercall.CURRENT:
            self._guest_write(a0, task.pid.to_bytes(8, "little") + cpu.to_bytes(8, "little")
                              + task.comm.encode("latin-1")[: COMM_LEN - 1].ljust(COMM_LEN, b"\0"))
        elif call is Hypercall.KGDB_TRAP:
            write_register(regs, RAX, 0)
            self._enter_kgdb_trap(task)
            return KgdbTrap(signal=a2, vector=a1)
        elif call is Hypercall.NMI_ALLBUTSELF:
            for other in range(self.ncpus):
                if other != cpu and self.online[other] and not self.shut_down[other]:
                    self._nmi_pending[other] = a0
        elif call is Hypercall.HALT:
            # Until an interrupt: the timer if IF is set, an NMI in any case.
            self.in_hlt[cpu], self._halted_at[cpu] = True, read_register(regs, RIP)
            outcome = _TURN_OVER
        write_register(regs, RAX, result & (2**64 - 1))
        return outcome

    def _guest_string(self, address: int, limit: int) -> str:
        try:
            return self.read_string(address, limit)
        except MemoryFault as fault:
            raise _HypercallFault(fault.address, write=False) from None

    def _guest_write(self, address: int, data: bytes) -> None:
        try:
            self.write(address, data)
        except MemoryFault as fault:
            raise _HypercallFault(fault.address, write=True) from None

    def _cpu_up(self, cpu: int, entry: int) -> int:
        if not 0 <= cpu < self.ncpus or self.online[cpu]:
            return -EINVAL
        self._start(self.idle[cpu], entry, layout.kernel_stack_top(cpu), interrupts=False, rdi=cpu)
        self.online[cpu] = True
        return 0

    def _console_write(self, buffer: int, length: int) -> int:
        length = min(length, 4096)
        try:
            data = self.read(buffer, length)
        except MemoryFault as fault:
            if layout.is_user(buffer):
                return -EFAULT  # copy_from_user's fixup: sys_write answers EFAULT
            raise _HypercallFault(fault.address, write=False) from None
        self.console_write(data)
        return length

    def console_write(self, data: bytes) -> None:
        """Output on the console device, from the image or from the kernel's host side."""
        self.console_log += data
        del self.console_log[: -65536]
        for listener in self.console_listeners:
            listener(data)


