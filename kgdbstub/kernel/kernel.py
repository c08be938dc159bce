"""The simulated kernel: what the image asks of the host, and the CPUs' turns.

The kernel runs the CPUs one at a time in a fixed order; one pass over all
CPUs is a round and every round starts with a timer tick on CPU 0. A CPU's
turn lasts until its task makes a hypercall or a system call, so the whole
machine is deterministic. Whatever the kernel cannot handle itself -- an
exception, a hook's stop -- ends `run` with a `Stop` for the debugger.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from unicorn import x86_const as X

from ..x86 import cpu as x86
from ..x86.memory import MemoryFault
from . import layout
from .debugslots import DebugSlots
from .hostif import CLONE_USER, EAGAIN, EFAULT, EINVAL, Hypercall
from .hw_breakpoint import Breakpoint, SlotAccounting
from .image import Image
from .perf import PerfEvents
from .ptrace import Ptrace
from .tasks import State, Task

RAX, RDI, RSI, RDX, RCX, RSP, RIP = (
    X.UC_X86_REG_RAX,
    X.UC_X86_REG_RDI,
    X.UC_X86_REG_RSI,
    X.UC_X86_REG_RDX,
    X.UC_X86_REG_RCX,
    X.UC_X86_REG_RSP,
    X.UC_X86_REG_RIP,
)
RED_ZONE = 128
# A CPU's turn goes on through hypercalls that keep the CPU and ends with one
# that gives it up (schedule, sleep, exit).
_KEEP_CPU, _TURN_OVER = "keep", "over"
COMM_LEN = 16


@dataclass(frozen=True)
class Stop:
    """The machine stopped for the debugger: which CPU, and why."""

    cpu: int
    exit: x86.Exit | None  # None: stopped from outside (an interrupt request)


class KernelPanic(Exception):
    pass


class Kernel:
    def __init__(self, image: Image, *, cpus: int = 2, kgdbwait: bool = True):
        if not 1 <= cpus <= 8:
            raise ValueError("the machine has 1 to 8 CPUs")
        self.image = image
        self.processor = x86.Processor(layout.address_space(), cpus)
        self.ncpus = cpus
        self.ticks = 0
        self.console_listeners: list[Callable[[bytes], None]] = []
        self.console_log = bytearray()
        self._entry = {name: image.address_of(name) for name in (
            "start_kernel", "kthread_trampoline", "do_syscall", "syscall_return",
            "timer_interrupt", "irq_return")}
        self._load(image)
        if "kgdbwait" in image.symbols:
            self.write_u64(image.address_of("kgdbwait"), int(kgdbwait))

        self.tasks: dict[int, Task] = {}
        self._next_pid = 1
        self._free_slots = list(range(cpus, layout.MAX_TASKS))
        self.idle = [self._new_idle(cpu) for cpu in range(cpus)]
        self.current = list(self.idle)
        self.online = [cpu == 0 for cpu in range(cpus)]
        self._start(self.idle[0], self._entry["start_kernel"], layout.kernel_stack_top(0))
        self.runqueue: deque[Task] = deque()
        self._turn = 0  # the CPU whose turn it is
        self._ticked = False  # whether this round's tick was delivered

        self.accounting = SlotAccounting(cpus=cpus, slots=4)
        self.debug_slots = DebugSlots(self.processor)
        self.perf = PerfEvents(self.accounting, self.debug_slots, self._pid_on)
        self.ptrace = Ptrace(self.perf)
        self.processor.debug_handler = self._on_debug_exception
        self._tracees_to_stop: set[int] = set()
        self.debugger_slot_fired = False
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
        data = bytearray()
        while len(data) < limit:
            byte = self.read(address + len(data), 1)
            if byte == b"\0":
                break
            data += byte
        return data.decode("latin-1")

    # -- tasks -------------------------------------------------------------------

    def _new_idle(self, cpu: int) -> Task:
        task = Task(pid=0, comm=f"swapper/{cpu}", slot=cpu, regs=self.processor.new_context(), user=False)
        task.cpu = cpu
        return task

    def _start(self, task: Task, rip: int, stack_top: int, **registers: int) -> None:
        rsp = stack_top - 8  # as if called: a zero return address ends backtraces
        self.write_u64(rsp, 0)
        task.regs = self.processor.new_context(rip=rip, rsp=rsp, **registers)

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
        """Give the CPU to the next runnable task, or to its idle task."""
        previous = self.current[cpu]
        previous.cpu = None
        if not previous.idle:
            self.perf.task_switched_out(cpu, previous.pid)
            if previous.state is State.RUNNING and previous.pid in self.tasks:
                self.runqueue.append(previous)
        following = self.runqueue.popleft() if self.runqueue else self.idle[cpu]
        following.cpu = cpu
        self.current[cpu] = following
        if not following.idle:
            self.perf.task_switched_in(cpu, following.pid)
        self.processor.set_resume_flag(cpu, following.resume_at)
        following.resume_at = None

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

    def _exit_current(self, cpu: int) -> None:
        task = self.current[cpu]
        if task.idle:
            raise KernelPanic(f"the idle task of CPU {cpu} tried to exit")
        del self.tasks[task.pid]
        self.ptrace.detach(task.pid)
        self.perf.task_exited(task.pid)
        self._free_slots.append(task.slot)
        self._free_slots.sort()
        self._switch(cpu)

    # -- running -------------------------------------------------------------

    def run(self, interrupted: Callable[[], bool] = lambda: False,
            pending: Callable[[], bool] = lambda: False,
            pause: Callable[[], bool] | None = None) -> Stop | None:
        """Run the machine until something needs the debugger or interrupted() says so.

        pending() tells, without consuming it, whether an interrupt waits: a
        CPU slowed down by watched pages checks it between instructions.
        pause(), asked at the same points, returns None instead of a Stop,
        with nothing lost: calling run again goes on where this run left off.
        """
        if pause is None:
            self.processor.preempt_requested = pending
        else:
            self.processor.preempt_requested = lambda: pending() or pause()
        while True:
            if interrupted():
                return Stop(self._turn, None)
            if pause is not None and pause():
                return None
            cpu = self._turn
            if self.current[cpu].state is State.STOPPED:
                self._switch(cpu)
            if cpu == 0 and not self._ticked:
                self._ticked = True
                self._tick()
            if self.online[cpu]:
                exit = self.processor.run(cpu, self.current[cpu].regs)
                outcome = self._handle(cpu, exit)
                if outcome is None:
                    return Stop(cpu, exit)
                if outcome is _KEEP_CPU:
                    continue
            self._turn = (cpu + 1) % self.ncpus
            if self._turn == 0:
                self._ticked = False

    def step(self, cpu: int) -> Stop:
        """Run exactly one instruction on a CPU."""
        exit = self.processor.run(cpu, self.current[cpu].regs, step=True)
        if isinstance(exit, x86.Stepped) or self._handle(cpu, exit) is not None:
            return Stop(cpu, x86.Stepped())
        return Stop(cpu, exit)

    def _handle(self, cpu: int, exit: x86.Exit):
        """Handle what the kernel can: _KEEP_CPU or _TURN_OVER; None if the debugger must see it."""
        if isinstance(exit, x86.Hypercall):
            return self._hypercall(cpu)
        if isinstance(exit, x86.SystemCall):
            self._enter_syscall(self.current[cpu])
            return _KEEP_CPU
        if isinstance(exit, x86.Preempted):
            return _KEEP_CPU
        if isinstance(exit, x86.DebugException):
            debugger = self.debugger_slot_fired
            self.debugger_slot_fired = False
            self._stop_tracees(cpu, exit, now=not debugger)
            return None if debugger else _TURN_OVER
        return None

    # -- hardware breakpoints (hw_breakpoint_handler) --------------------------

    def _on_debug_exception(self, cpu: int, exception: x86.DebugException) -> bool:
        """Give each fired slot to its owner; True if the CPU must stop."""
        stop = False
        owners = self.debug_slots.owners[cpu]
        self._debug_exceptions += 1
        for index in exception.slots:
            owner = owners[index]
            if type(owner) is Breakpoint:
                owner.hits += 1
                if owner.owner == "ptrace" and self.ptrace.hit(owner, self._debug_exceptions):
                    self._tracees_to_stop.add(owner.task)
                    stop = True
            elif owner is not None and (self.debugger_slot_condition is None
                                        or self.debugger_slot_condition(cpu, owner)):
                self.debugger_slot_fired = True
                stop = True
        return stop

    def _stop_tracees(self, cpu: int, exception: x86.DebugException, *, now: bool) -> None:
        rip = self.current[cpu].regs.reg_read(RIP)
        for pid in self._tracees_to_stop:
            task = self.tasks.get(pid)
            if task is None:
                continue
            if not exception.trap and task is self.current[cpu]:
                task.resume_at = rip  # the breakpoint fault is not taken again on resume
            if self.ptrace.lets_go(pid):
                self.ptrace.detach(pid)  # its tracer is done with it: the tracee runs on
                continue
            if now:
                self.stop_task(pid)
            else:
                task.state = State.STOPPED  # taken off its CPU when the machine runs again
        self._tracees_to_stop.clear()

    def _tick(self) -> None:
        """A timer interrupt on CPU 0, between two of its instructions."""
        self.ticks += 1
        for task in self.tasks.values():
            if task.state is State.SLEEPING and task.wake_at <= self.ticks:
                task.state = State.RUNNING
                self.runqueue.append(task)
        if self.online[0]:
            self._call_from_host(self.current[0], self._entry["timer_interrupt"], self._entry["irq_return"])

    def interrupt_into(self, cpu: int, function: str) -> None:
        """An interrupt on a CPU whose handler calls an image function (SysRq-G: kgdb_breakpoint)."""
        self._call_from_host(self.current[cpu], self.image.address_of(function), self._entry["irq_return"])

    def _call_from_host(self, task: Task, function: int, return_to: int, **arguments: int) -> None:
        """Make the task call an image function, its current state saved as a frame.

        The frame keeps the RF the task was to resume with (pending after an
        execute breakpoint's stop), as RFLAGS in an interrupt frame does, so
        that the interrupted instruction does not report its breakpoint again.
        """
        regs = task.regs
        resume_at = self.processor.take_resume_flag(task.cpu) if task.cpu is not None else None
        task.frames.append((self.processor.copy_context(regs), resume_at))
        rip, rsp = _read(regs, RIP, RSP)
        if layout.is_user(rip):
            rsp = layout.kernel_stack_top(task.slot)
        else:
            rsp = (rsp - RED_ZONE) & ~0xF
        rsp -= 8
        self.write_u64(rsp, return_to)
        regs.reg_write(RSP, rsp)
        regs.reg_write(RIP, function)
        for name, value in arguments.items():
            regs.reg_write(getattr(X, f"UC_X86_REG_{name.upper()}"), value)

    def _enter_syscall(self, task: Task) -> None:
        regs = task.regs
        nr, a1, a2, a3 = _read(regs, RAX, RDI, RSI, RDX)
        self._call_from_host(task, self._entry["do_syscall"], self._entry["syscall_return"],
                             rdi=nr, rsi=a1, rdx=a2, rcx=a3)

    def _return_from_host_call(self, task: Task, rax: int | None = None) -> None:
        if not task.frames:
            raise KernelPanic(f"task {task.pid} returned to the host with nothing to return to")
        task.regs, resume_at = task.frames.pop()
        if task.cpu is not None:
            self.processor.set_resume_flag(task.cpu, resume_at)
        if rax is not None:
            task.regs.reg_write(RAX, rax)

    def _hypercall(self, cpu: int):
        task = self.current[cpu]
        regs = task.regs
        nr, a0, a1, a2, a3 = _read(regs, RAX, RDI, RSI, RDX, RCX)
        try:
            call = Hypercall(nr)
        except ValueError:
            regs.reg_write(RAX, -EINVAL & (2**64 - 1))
            return _KEEP_CPU
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
            try:
                comm = self.read_string(a2, COMM_LEN)
            except MemoryFault:
                comm = None  # a debugger's jump or write can hand the host any pointer
            result = -EFAULT if comm is None else self.clone(a0, a1, comm, a3)
        elif call is Hypercall.EXIT:
            self._exit_current(cpu)
            return _TURN_OVER
        elif call is Hypercall.CPU_UP:
            result = self._cpu_up(a0, a1)
        elif call is Hypercall.SYSRET:
            self._return_from_host_call(task, a0)
            return _KEEP_CPU
        elif call is Hypercall.IRET:
            self._return_from_host_call(task)
            return _KEEP_CPU
        elif call is Hypercall.NR_CPUS:
            result = self.ncpus
        regs.reg_write(RAX, result & (2**64 - 1))
        return outcome

    def _cpu_up(self, cpu: int, entry: int) -> int:
        if not 0 <= cpu < self.ncpus or self.online[cpu]:
            return -EINVAL
        self._start(self.idle[cpu], entry, layout.kernel_stack_top(cpu), rdi=cpu)
        self.online[cpu] = True
        return 0

    def _console_write(self, buffer: int, length: int) -> int:
        length = min(length, 4096)
        try:
            data = self.read(buffer, length)
        except MemoryFault:
            return -EFAULT
        self.console_write(data)
        return length

    def console_write(self, data: bytes) -> None:
        """Output on the console device, from the image or from the kernel's host side."""
        self.console_log += data
        del self.console_log[: -65536]
        for listener in self.console_listeners:
            listener(data)


def _read(regs, *names: int) -> list[int]:
    """Registers of a saved state; one at a time is twice as fast as the binding's batch read."""
    return [regs.reg_read(name) for name in names]
