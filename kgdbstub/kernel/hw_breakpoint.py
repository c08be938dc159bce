"""Linux's hw_breakpoint slot accounting: may one more breakpoint have a debug register?

This is the one place that decides it, after kernel/events/hw_breakpoint.c of
Linux 6.x on x86.  There instruction and data breakpoints draw on one pool of
four debug registers per CPU: x86 selects HAVE_MIXED_BREAKPOINTS_REGS, which
makes TYPE_INST and TYPE_DATA the same pool.

A breakpoint is bound to one CPU or to all of them, and to one task or to none.
Registering it does not pick a DR: that happens each time its task is switched
in.  What registration promises is that whichever task runs on whichever CPU,
everything that must then be installed on that CPU fits.  On CPU c the worst
moment is

    cpu_pinned(c) + max over tasks T of cnt_T(c)

where cpu_pinned(c) counts the breakpoints bound to c and to no task, and
cnt_T(c) counts task T's breakpoints bound to c or to all CPUs.  Only one task
runs on a CPU at a time, so the tasks' breakpoints take turns in the same
slots: hence the max, not a sum.  Every breakpoint weighs one slot from
registration to unregistration, enabled or not.

Linux keeps histograms so as not to walk every breakpoint under a lock; here
there are a handful, so each question is answered by counting them afresh.

Pure Python: no emulator, no image, no server.  Counting hits and programming
debug registers belong to the layers above.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from enum import Enum

HBP_NUM = 4  # debug registers per x86 CPU

# The first address above user space on x86-64 with 4-level paging:
# (1 << 47) minus a guard page (arch/x86/include/asm/page_64_types.h).
TASK_SIZE_MAX = (1 << 47) - 4096

LENGTHS = (1, 2, 4, 8)
ADDRESS_LIMIT = 1 << 64
# perf's bp_len for an execute breakpoint: sizeof(long) (arch_build_bp_info).
# The debug register it becomes watches one instruction, DR7 LEN 00.
EXECUTE_LENGTH = 8

DEBUGGER = "kgdb"
PTRACE = "ptrace"


class BreakpointType(Enum):
    """What a breakpoint fires on, valued as perf's HW_BREAKPOINT_R/W/RW/X bits."""

    READ = 1  # expressible in perf, but x86 has no read-only watch: always refused
    WRITE = 2
    READ_WRITE = 3
    EXECUTE = 4


def register_length(type: BreakpointType, length: int) -> int:
    """The bytes a debug register watches for a perf length: an execute one, one instruction."""
    return 1 if type is BreakpointType.EXECUTE else length


@dataclass(eq=False, slots=True)
class Breakpoint:
    """One registered breakpoint event.

    Compared by identity: two events on the same address are still two slots.
    SlotAccounting owns every field but `hits`, which the event's user counts;
    change the others through SlotAccounting.modify.
    """

    id: int
    address: int
    length: int  # perf's bp_len: EXECUTE_LENGTH for an execute breakpoint
    type: BreakpointType
    cpu: int | None  # None: wherever its task runs
    task: int | None  # None: bound to its CPU, whatever runs there
    owner: str  # "perf", "ptrace", "kgdb", ...
    enabled: bool
    exclude_kernel: bool  # perf's attr.exclude_kernel: user space only
    hits: int = 0

    def settings(self) -> tuple:
        """Everything about this breakpoint except its hit count."""
        return (self.id, self.owner, self.cpu, self.task, self.address, self.length,
                self.type, self.enabled, self.exclude_kernel)


class SlotAccounting:
    """The slot constraints of `cpus` CPUs with `slots` debug registers each."""

    def __init__(self, cpus: int, slots: int = HBP_NUM):
        if cpus < 1 or slots < 1:
            raise ValueError("need at least one CPU and one slot")
        self.cpus = cpus
        self.slots = slots
        self._breakpoints: list[Breakpoint] = []
        self._next_id = 1

    # ---- what is registered -------------------------------------------------

    @property
    def breakpoints(self) -> list[Breakpoint]:
        """The registered breakpoints, oldest first."""
        return list(self._breakpoints)

    def snapshot(self) -> tuple:
        """A hashable value equal to another snapshot exactly when nothing was
        registered, modified or unregistered in between.  Hit counts are not
        part of it: counting is not accounting."""
        return (self.cpus, self.slots, tuple(bp.settings() for bp in self._breakpoints))

    # ---- the rule -----------------------------------------------------------

    def cpu_pinned(self, cpu: int) -> int:
        """Breakpoints bound to `cpu` and to no task."""
        return sum(1 for bp in self._breakpoints if bp.task is None and bp.cpu == cpu)

    def task_count(self, task: int, cpu: int) -> int:
        """cnt_T(c): `task`'s breakpoints that are installed when it runs on `cpu`."""
        if task is None:
            raise ValueError("task_count needs a task; see cpu_pinned")
        return sum(1 for bp in self._breakpoints if bp.task == task and bp.cpu in (cpu, None))

    def max_task_count(self, cpu: int) -> int:
        """The most breakpoints any one task brings onto `cpu`."""
        tasks = {bp.task for bp in self._breakpoints if bp.task is not None}
        return max((self.task_count(task, cpu) for task in tasks), default=0)

    def slots_needed(self, cpu: int) -> int:
        """The worst case on `cpu`: its own breakpoints plus the busiest task's."""
        return self.cpu_pinned(cpu) + self.max_task_count(cpu)

    def fits(self, *, cpu: int | None, task: int | None) -> bool:
        """Would one more breakpoint bound to this CPU (None: all) and task
        (None: none) be accepted?"""
        self._check_binding(cpu, task)
        return self._cpu_without_room(cpu, task) is None

    def _cpu_without_room(self, cpu: int | None, task: int | None) -> int | None:
        """The first CPU where one more breakpoint so bound would not fit, if any."""
        for c in range(self.cpus) if cpu is None else (cpu,):
            if task is None:
                # Installed whatever runs on c: it must fit beside the busiest task.
                in_use = self.slots_needed(c)
            else:
                # Installed only while its own task runs on c, so only that
                # task's breakpoints compete with it; the others take turns.
                in_use = self.cpu_pinned(c) + self.task_count(task, c)
            if in_use + 1 > self.slots:
                return c
        return None

    # ---- registering --------------------------------------------------------

    def register(self, *, address: int, length: int, type: BreakpointType,
                 cpu: int | None, task: int | None, owner: str, enabled: bool = True,
                 exclude_kernel: bool | None = None) -> Breakpoint:
        """Register one breakpoint with perf's attributes, or raise OSError
        as register_perf_hw_breakpoint does: it reserves the slot before it
        parses the attributes, so ENOSPC comes first when some CPU the
        breakpoint may be installed on could run out of slots, and only then
        EINVAL (or EOPNOTSUPP) for what x86 cannot watch; see check_attributes.
        Only a binding that does not exist and a type that is no breakpoint
        type are EINVAL before that.

        `exclude_kernel` defaults to what Linux does for the owner: ptrace
        breakpoints watch user space only (ptrace_breakpoint_init sets
        attr.exclude_kernel); in-kernel users such as perf counters created with
        perf_event_create_kernel_counter or kgdb do not exclude the kernel.
        """
        if exclude_kernel is None:
            exclude_kernel = owner == PTRACE
        self._check_binding(cpu, task)
        if not isinstance(type, BreakpointType):
            # __reserve_bp_slot's basic check: HW_BREAKPOINT_EMPTY or _INVALID.
            raise OSError(errno.EINVAL, f"{type!r} is no breakpoint type")
        full = self._cpu_without_room(cpu, task)
        if full is not None:
            raise OSError(errno.ENOSPC, f"no debug-register slot left on cpu {full} "
                          f"for a breakpoint of {_binding(cpu, task)}")
        # hw_breakpoint_parse; on failure Linux releases the slot it reserved.
        check_attributes(address, length, type, exclude_kernel)
        bp = Breakpoint(self._next_id, address, length, type, cpu, task, owner, enabled, exclude_kernel)
        self._next_id += 1
        self._breakpoints.append(bp)
        return bp

    def register_wide(self, *, address: int, length: int, type: BreakpointType, owner: str,
                      enabled: bool = True, exclude_kernel: bool | None = None) -> list[Breakpoint]:
        """One breakpoint bound to each CPU in turn (register_wide_hw_breakpoint),
        all or nothing: if one CPU refuses, the ones made already are removed.
        The first CPU that refuses gives the errno: a malformed request is
        ENOSPC when CPU 0 is full, EINVAL when it has room."""
        made: list[Breakpoint] = []
        try:
            for cpu in range(self.cpus):
                made.append(self.register(address=address, length=length, type=type, cpu=cpu,
                                          task=None, owner=owner, enabled=enabled,
                                          exclude_kernel=exclude_kernel))
        except OSError:
            for bp in reversed(made):
                self.unregister(bp)
            # The ids go back too: a refused request leaves no trace at all.
            self._next_id -= len(made)
            raise
        return made

    def modify(self, bp: Breakpoint, *, address: int | None = None, length: int | None = None,
               type: BreakpointType | None = None, enabled: bool | None = None) -> None:
        """Change what `bp` watches or whether it is enabled, keeping its slot
        (modify_user_hw_breakpoint).  Its CPU, task and owner cannot change.
        Raises EINVAL, leaving `bp` as it was, if the result would be malformed.

        Every breakpoint weighs one slot and x86 has a single pool, so turning
        an instruction breakpoint into a data one, or back, moves nothing:
        Linux's modify_bp_slot cannot fail on x86.
        """
        self._check_registered(bp)
        # modify_user_hw_breakpoint_check parses first; modify_bp_slot then
        # moves the slot between types, which on x86's one pool cannot fail.
        address = bp.address if address is None else address
        length = bp.length if length is None else length
        type = bp.type if type is None else type
        check_attributes(address, length, type, bp.exclude_kernel)
        bp.address, bp.length, bp.type = address, length, type
        if enabled is not None:
            bp.enabled = enabled

    def unregister(self, bp: Breakpoint) -> None:
        """Give `bp`'s slot back."""
        self._check_registered(bp)
        self._breakpoints.remove(bp)

    # ---- the debugger's way in ----------------------------------------------

    def reserve_debugger(self, cpu: int) -> Breakpoint:
        """dbg_reserve_bp_slot: hold one slot on `cpu` for kgdb, by the rule a
        breakpoint bound to that CPU obeys; ENOSPC when there is none.

        The reservation is a disabled placeholder that watches nothing; kgdb
        programs the DR itself when it leaves the debugger.  (Linux's version
        fails with -1 if the constraints lock is held; nothing here runs
        concurrently with the debugger, so that cannot happen.)  To take every
        slot still free, call it on each CPU until ENOSPC.
        """
        return self.register(address=0, length=1, type=BreakpointType.WRITE, cpu=cpu,
                             task=None, owner=DEBUGGER, enabled=False)

    def release(self, bp: Breakpoint) -> None:
        """dbg_release_bp_slot: give a reserve_debugger slot back."""
        self.unregister(bp)

    # ---- checks -------------------------------------------------------------

    def _check_binding(self, cpu: int | None, task: int | None) -> None:
        if cpu is None and task is None:
            # perf_event_alloc: "all CPUs" (cpu -1) only makes sense for a task.
            raise OSError(errno.EINVAL, "a breakpoint bound to no task needs a CPU")
        if cpu is not None and not 0 <= cpu < self.cpus:
            raise OSError(errno.EINVAL, f"no cpu {cpu} (there are {self.cpus})")

    def _check_registered(self, bp: Breakpoint) -> None:
        if not any(registered is bp for registered in self._breakpoints):
            raise ValueError(f"breakpoint {bp.id} is not registered")


def check_attributes(address: int, length: int, type: BreakpointType, exclude_kernel: bool) -> None:
    """Raise OSError unless x86 can watch this, checked in the order of
    hw_breakpoint_parse (kernel/events/hw_breakpoint.c), which calls
    hw_breakpoint_arch_parse and arch_build_bp_info (arch/x86/kernel/hw_breakpoint.c).

    EINVAL, but EOPNOTSUPP for an aligned power-of-two length above 8: that
    is an AMD range breakpoint, and the emulated CPU lacks X86_FEATURE_BPEXT.
    Not modelled: Linux also refuses addresses in the CPU entry area,
    execute breakpoints in the kprobe blacklist, and (EPERM) kernel
    addresses for unprivileged perf users.
    """
    if not isinstance(type, BreakpointType):
        raise OSError(errno.EINVAL, f"{type!r} is no breakpoint type")
    # arch_build_bp_info: the last byte must not wrap around the address space.
    if not 0 <= address < ADDRESS_LIMIT or address + length - 1 >= ADDRESS_LIMIT or address + length - 1 < address:
        raise OSError(errno.EINVAL, f"{length} bytes at {address:#x} do not fit in the address space")
    if type is BreakpointType.READ:
        raise OSError(errno.EINVAL, "x86 watches writes, or reads and writes, never reads alone")
    if type is BreakpointType.EXECUTE:
        if length != EXECUTE_LENGTH:
            raise OSError(errno.EINVAL, f"an execute breakpoint's length is sizeof(long), {EXECUTE_LENGTH}")
    elif length not in LENGTHS:
        if length <= 0 or length & (length - 1):
            raise OSError(errno.EINVAL, f"length {length}: a debug register covers 1, 2, 4 or 8 bytes")
        if address & (length - 1):
            raise OSError(errno.EINVAL, f"address {address:#x} is not aligned to its length {length}")
        raise OSError(errno.EOPNOTSUPP, f"length {length} needs AMD's range breakpoints, which this CPU lacks")
    elif address % length:
        # hw_breakpoint_arch_parse: the low bits the length implies must be clear.
        raise OSError(errno.EINVAL, f"address {address:#x} is not aligned to its length {length}")
    if exclude_kernel and in_kernel_space(address, register_length(type, length)):
        # hw_breakpoint_parse refuses a kernel address only to an event that
        # excludes the kernel.  Being per-task is not the criterion: Linux's own
        # KUnit suite puts per-task breakpoints on kernel variables.  What keeps
        # ptrace (and so gdb on a user program) out of the kernel is that its
        # events always exclude the kernel.
        raise OSError(errno.EINVAL, f"address {address:#x} is in kernel space")


def in_kernel_space(address: int, length: int) -> bool:
    """arch_check_bp_in_kernelspace: does any byte watched lie at or above
    TASK_SIZE_MAX?  (The non-canonical hole counts as kernel space.)"""
    return address + length - 1 >= TASK_SIZE_MAX


def _binding(cpu: int | None, task: int | None) -> str:
    where = "all cpus" if cpu is None else f"cpu {cpu}"
    return f"{where}, no task" if task is None else f"task {task} on {where}"
