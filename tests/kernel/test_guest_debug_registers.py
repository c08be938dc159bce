"""The image's own MOV DRn on a machine whose debug registers kgdb, perf and ptrace share.

The image (the kernel) gets a view of DR0-DR7 of its own (kgdbstub/kernel/guestdr.py):
what it reads is what it wrote; each breakpoint it enables is accounted as a
breakpoint bound to its CPU (kernel/events/hw_breakpoint.c) and goes into the
first free DR, as arch_install_hw_breakpoint (arch/x86/kernel/hw_breakpoint.c)
puts one; a hit is a #DB no perf event claims, which the die notifier gives
to kgdb (exc_debug_kernel, notify_debug). The code runs as init, from where
kgdbwait stopped it, out of a page of the kernel mapping the image does not use.
"""
from __future__ import annotations

import errno

import pytest
from kernel_harness import INIT, Machine

from kgdbstub.core.breakinfo import Kind
from kgdbstub.core.debugger import SIGTRAP
from kgdbstub.kernel.hw_breakpoint import BreakpointType
from kgdbstub.monitor import Monitor
from kgdbstub.x86.debugregs import DR6_BD, DR6_BS, DR7_ALWAYS_ONE, DR7_GD, Access
from unicorn import x86_const as X

CODE = 0xFFFFFFFF82000000  # mapped kernel memory past the image
TARGET = 0xFFFFFFFF82001000
# G1, R/W1 = 01 (writes), LEN1 = 10 (8 bytes)
DR7_WATCH_DR1 = DR7_ALWAYS_ONE | 0b1000 | (0b1001 << 20)

WATCH_TARGET_WITH_DR1 = bytes.fromhex(
    "48 b8" + TARGET.to_bytes(8, "little").hex()  # movabs rax, TARGET
    + "0f 23 c8"  # mov dr1, rax
    + "b8" + DR7_WATCH_DR1.to_bytes(4, "little").hex()  # mov eax, DR7_WATCH_DR1
    + "0f 23 f8"  # mov dr7, rax
    + "48 c7 04 25 00 10 00 82 07 00 00 00"  # mov qword ptr [TARGET], 7   <- CODE+21
    + "0f 21 f9"  # mov rcx, dr7          <- CODE+33
    + "0f 21 f2"  # mov rdx, dr6          <- CODE+36
    + "cc"  # int3                  <- CODE+39
    + "eb fe"  # jmp $
)
AFTER_STORE, AT_END = CODE + 33, CODE + 40


def run_as_init(machine: Machine, program: bytes):
    stop = machine.debugger.stop
    assert stop.thread == INIT
    machine.kernel.write(CODE, program)
    machine.kernel.tasks[INIT].regs.reg_write(X.UC_X86_REG_RIP, CODE)
    return stop.cpu


def registers(machine: Machine, cpu: int):
    return machine.kernel.current[cpu].regs


def test_a_breakpoint_the_image_sets_takes_the_first_free_dr_and_stops_for_the_debugger():
    machine = Machine()
    kernel = machine.kernel
    perf = kernel.perf.register(address=machine.address("jiffies"), length=8, type=BreakpointType.WRITE,
                                cpu=0, task=None)
    cpu = run_as_init(machine, WATCH_TARGET_WITH_DR1)
    stop = machine.resume()
    assert (stop.signal, stop.thread, stop.cpu) == (SIGTRAP, INIT, cpu)
    assert registers(machine, cpu).reg_read(X.UC_X86_REG_RIP) == AFTER_STORE  # a trap, after the store
    assert kernel.read_u64(TARGET) == 7
    # The image's DR1 went where arch_install_hw_breakpoint puts it: the first DR no one holds.
    owners = kernel.debug_slots.owners[cpu]
    first_free = 1 if cpu == 0 else 0  # perf's event holds CPU 0's DR0
    guest = owners[first_free]
    assert guest.owner == "guest" and (guest.cpu, guest.task, guest.address, guest.length) == (cpu, None, TARGET, 8)
    assert guest.hits == 1 and perf.hits == 0
    assert guest in kernel.accounting.breakpoints  # the slot accounting counts it
    assert f"cpu={cpu} dr={first_free} owner=guest addr={TARGET:#x} type=w len=8" in Monitor(kernel, machine.debugger)("slots")
    # The image sees its own registers: its DR1, its DR7, B1 in its DR6.
    view = kernel.guest_debug_registers.views[cpu]
    assert (view.dr[1], view.dr7, view.dr6 & 0xF) == (TARGET, DR7_WATCH_DR1, 0b10)
    stop = machine.resume()  # on to the int3
    assert registers(machine, cpu).reg_read(X.UC_X86_REG_RIP) == AT_END
    assert registers(machine, cpu).reg_read(X.UC_X86_REG_RCX) == DR7_WATCH_DR1
    assert registers(machine, cpu).reg_read(X.UC_X86_REG_RDX) & 0xF == 0b10


def test_the_images_breakpoint_holds_a_slot_perf_is_then_refused():
    machine = Machine()
    kernel = machine.kernel
    cpu = run_as_init(machine, WATCH_TARGET_WITH_DR1)
    machine.resume()
    for _ in range(3):
        kernel.perf.register(address=machine.address("jiffies"), length=8, type=BreakpointType.WRITE,
                             cpu=cpu, task=None)
    with pytest.raises(OSError) as refused:
        kernel.perf.register(address=machine.address("jiffies"), length=8, type=BreakpointType.WRITE,
                             cpu=cpu, task=None)
    assert refused.value.errno == errno.ENOSPC
    assert all(owner is not None for owner in kernel.debug_slots.owners[cpu])


def test_with_no_slot_left_the_images_breakpoint_is_refused_aloud_and_its_view_kept():
    machine = Machine()
    kernel = machine.kernel
    cpu = machine.debugger.stop.cpu
    events = [kernel.perf.register(address=machine.address("jiffies"), length=8, type=BreakpointType.WRITE,
                                   cpu=cpu, task=None) for _ in range(4)]
    run_as_init(machine, WATCH_TARGET_WITH_DR1)
    stop = machine.resume()
    assert registers(machine, cpu).reg_read(X.UC_X86_REG_RIP) == AT_END  # the store did not stop
    assert stop.signal == SIGTRAP
    assert b"Can't find any breakpoint slot for the kernel's own DR1" in kernel.console_log
    assert registers(machine, cpu).reg_read(X.UC_X86_REG_RCX) == DR7_WATCH_DR1  # it reads what it wrote
    assert [owner for owner in kernel.debug_slots.owners[cpu]] == events
    assert not any(bp.owner == "guest" for bp in kernel.accounting.breakpoints)


def test_general_detect_in_the_images_dr7_enters_the_debugger_before_the_mov():
    """§18.3.1.3 on the image's view: BD in its DR6, GD cleared, the MOV not run."""
    machine = Machine()
    program = bytes.fromhex(
        "b8" + (DR7_ALWAYS_ONE | DR7_GD).to_bytes(4, "little").hex()  # mov eax, GD
        + "0f 23 f8"  # mov dr7, rax
        + "0f 21 c1"  # mov rcx, dr0      <- CODE+8
        + "cc eb fe"  # int3; jmp $
    )
    cpu = run_as_init(machine, program)
    registers(machine, cpu).reg_write(X.UC_X86_REG_RCX, 0x55)
    stop = machine.resume()
    assert stop.signal == SIGTRAP
    assert (registers(machine, cpu).reg_read(X.UC_X86_REG_RIP), registers(machine, cpu).reg_read(X.UC_X86_REG_RCX)) \
        == (CODE + 8, 0x55)
    view = machine.kernel.guest_debug_registers.views[cpu]
    assert view.dr6 & DR6_BD and not view.dr7 & DR7_GD
    assert machine.kernel.processor.debug_registers[cpu].dr6 & DR6_BD == 0  # the machine's own DR6 is untouched
    machine.resume()
    assert registers(machine, cpu).reg_read(X.UC_X86_REG_RIP) == CODE + 12  # the MOV ran, then the int3


def test_the_guests_tf_traps_into_the_debugger():
    """§18.3.1.4: a single-step trap nobody claims in the kernel goes to kgdb."""
    machine = Machine()
    program = bytes.fromhex("90 90 cc eb fe")  # nop; nop; int3; jmp $
    cpu = run_as_init(machine, program)
    regs = registers(machine, cpu)
    regs.reg_write(X.UC_X86_REG_EFLAGS, regs.reg_read(X.UC_X86_REG_EFLAGS) | 1 << 8)
    stop = machine.resume()
    assert stop.signal == SIGTRAP
    assert registers(machine, cpu).reg_read(X.UC_X86_REG_RIP) == CODE + 1
    assert machine.kernel.processor.debug_registers[cpu].dr6 & DR6_BS


def test_a_hardware_breakpoint_hit_leaves_rf_in_the_stopped_tasks_flags():
    """§18.3.1.1, Linux's hw_breakpoint_handler: RF is set in the frame of an instruction
    breakpoint's #DB before kgdb runs, so the debugger sees it in eflags."""
    machine = Machine()
    do_fork = machine.address("do_fork")
    machine.debugger.insert_hardware(Kind.EXECUTE, do_fork, 1)
    stop = machine.resume()
    regs = registers(machine, stop.cpu)
    assert regs.reg_read(X.UC_X86_REG_RIP) == do_fork
    assert regs.reg_read(X.UC_X86_REG_EFLAGS) & 1 << 16


def test_the_image_reading_its_dr7_before_writing_sees_no_slot_of_others():
    """A hypervisor's view: kgdb's and perf's DRs are not the image's."""
    machine = Machine()
    kernel = machine.kernel
    kernel.perf.register(address=machine.address("jiffies"), length=8, type=BreakpointType.WRITE, cpu=0, task=None)
    kernel.perf.register(address=machine.address("jiffies"), length=8, type=BreakpointType.WRITE, cpu=1, task=None)
    cpu = run_as_init(machine, bytes.fromhex("0f 21 f9 0f 21 c2 cc eb fe"))  # mov rcx, dr7; mov rdx, dr0; int3
    machine.resume()
    regs = registers(machine, cpu)
    assert (regs.reg_read(X.UC_X86_REG_RCX), regs.reg_read(X.UC_X86_REG_RDX)) == (DR7_ALWAYS_ONE, 0)
    assert kernel.processor.debug_registers[cpu].slot(0).access is Access.WRITE  # perf's, untouched
