"""A break-in that comes while the host delivers something.

The host's time spent entering a system call or delivering the tick is not
guest time. A break-in the machine's own thread makes there, or one taken
before the handler has run a block, withdraws the delivery (the CPU stops
at the instruction boundary the delivery found) and the delivery happens
again, once, when the machine goes on. A Ctrl-C from another thread is
placed in the engine's time instead, so that the host's work draws no
stops of its own (docs/host-interface.md, "Break-ins").
"""
import threading

import pytest
from kernel_harness import LOOPER, Machine
from unicorn import x86_const as X

from kgdbstub.core.debugger import SIGINT
from kgdbstub.kernel.hw_breakpoint import BreakpointType
from kgdbstub.kernel.layout import is_user

pytestmark = pytest.mark.timeout(120)
SYS_CLONE = 56
X_BREAKPOINT = BreakpointType.EXECUTE


def registers(machine: Machine, *names: str) -> list[int]:
    return [machine.looper.regs.reg_read(getattr(X, f"UC_X86_REG_{n.upper()}")) for n in names]


def test_a_break_in_before_a_system_call_runs_sends_the_caller_back_to_its_syscall_instruction():
    machine = Machine()
    do_syscall = machine.address("do_syscall")

    def clone_entered():  # delivered, not yet begun: do_syscall(SYS_CLONE, ...) is the next instruction
        return machine.looper.cpu is not None and registers(machine, "rip", "rdi") == [do_syscall, SYS_CLONE]

    forks, clones = machine.u64("total_forks"), machine.u64("looper_forks")
    stops = machine.run(clone_entered)
    assert not stops
    rip, rax = registers(machine, "rip", "rax")
    assert is_user(rip) and machine.kernel.read(rip, 2) == b"\x0f\x05" and rax == SYS_CLONE
    assert not machine.looper.frames
    assert (machine.u64("total_forks"), machine.u64("looper_forks")) == (forks, clones)

    # Going on, the system call is made, once.
    machine.run(lambda: machine.u64("looper_forks") == clones + 1)
    assert machine.u64("total_forks") == forks + 1


def test_a_break_in_before_the_tick_handler_runs_leaves_the_tick_pending():
    machine = Machine()
    kernel, timer = machine.kernel, machine.address("timer_interrupt")

    deliver = kernel._deliver_timer

    def deliver_then_break_in(cpu):  # the break-in comes while the host delivers to the looper
        error = deliver(cpu)
        if kernel.current[cpu] is machine.looper and registers(machine, "rip")[0] == timer:
            machine.debugger.request_interrupt()
            kernel._deliver_timer = deliver
        return error

    kernel._deliver_timer = deliver_then_break_in
    assert machine.resume().signal == SIGINT
    cpu, rounds = machine.looper.cpu, kernel.rounds
    interrupted = registers(machine, "rip")[0]
    assert is_user(interrupted) and not machine.looper.frames
    assert kernel._timer_pending[cpu] == 1

    # Going on, the looper takes that tick first thing, once, in the same timer period.
    handler = kernel.perf.register(address=timer, length=8, type=X_BREAKPOINT, cpu=None, task=LOOPER)
    machine.run(lambda: handler.hits > 0)
    assert handler.hits == 1 and kernel.rounds == rounds and kernel._timer_pending[cpu] == 0



def test_a_ctrl_c_that_comes_while_the_host_delivers_the_tick_stops_in_guest_time():
    """A break-in from another thread (the server's event loop reading a 0x03)
    that comes while the host works is placed in the engine's time: the tick's
    handler runs, as the guest would have had the host's work taken no time,
    and the machine stops later, wherever the guest then is."""
    machine = Machine()
    kernel, timer = machine.kernel, machine.address("timer_interrupt")
    deliver = kernel._deliver_timer

    def deliver_then_ctrl_c(cpu):
        error = deliver(cpu)
        if kernel.current[cpu] is machine.looper and registers(machine, "rip")[0] == timer:
            ctrl_c = threading.Thread(target=machine.debugger.request_interrupt)
            ctrl_c.start()
            ctrl_c.join(10)
            kernel._deliver_timer = deliver
        return error

    handler = kernel.perf.register(address=timer, length=8, type=X_BREAKPOINT, cpu=None, task=LOOPER)
    kernel._deliver_timer = deliver_then_ctrl_c
    assert machine.resume().signal == SIGINT
    assert kernel._deliver_timer is deliver, "the tick was never delivered to the looper"
    assert handler.hits >= 1, "the break-in withdrew the tick: it landed where the host's work ended"


def test_a_tick_withdrawn_from_an_idle_cpu_leaves_it_halted():
    machine = Machine()
    kernel = machine.kernel
    deliver, woken = kernel._deliver_timer, []

    def deliver_then_break_in(cpu):
        was_idle = kernel.halted[cpu]
        error = deliver(cpu)
        if was_idle and not kernel.halted[cpu]:
            woken.append(cpu)
            machine.debugger.request_interrupt()
            kernel._deliver_timer = deliver
        return error

    kernel._deliver_timer = deliver_then_break_in
    assert machine.resume().signal == SIGINT
    cpu, = woken
    assert kernel.halted[cpu] and kernel.current[cpu].idle and not kernel.current[cpu].frames
    assert kernel._timer_pending[cpu] == 1


def test_an_nmi_while_the_cpu_handles_one_waits_for_its_iret():
    """SDM §6.7.1: an NMI handler blocks NMIs until it returns; one more is latched.

    A debugger that arrives over and over stops the machine with an NMI
    each time (Debugger.request_sysrq_g with announce=False), often before
    the CPU has left kgdb_breakpoint for the last one. Nested, those NMIs
    would pile frames on the stack until it overflowed into the kernel's data.
    """
    machine = Machine()
    kernel, debugger = machine.kernel, machine.debugger
    kgdb_breakpoint = machine.address("kgdb_breakpoint")
    start, depths = machine.jiffies, []
    for _ in range(200):
        debugger.request_sysrq_g(announce=False)
        stop = machine.resume()
        task = kernel.current[stop.cpu]
        assert stop.signal != SIGINT, "each arrival stops the machine in kgdb_breakpoint"
        assert kgdb_breakpoint <= task.regs.reg_read(X.UC_X86_REG_RIP) < kgdb_breakpoint + 16
        depths.append(len(task.frames))
    # Under the NMI's frame, at most what it interrupted: a tick, a system call.
    assert max(depths) <= 3, f"NMIs were taken inside the handlers of others: {depths}"
    assert machine.jiffies > start, "the machine runs between the stops"
