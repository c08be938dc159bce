"""Breaking into a running kernel wherever it is, and guest errors that enter the debugger.

A task that never makes a system call is preempted by the timer tick, so
the others run; Ctrl-C (SysRq-G on a line in the kgdb dialect, as
kgdb_roundup_cpus stops every CPU from sysrq_handle_dbg) stops the machine
inside the loop, at an instruction boundary, with interrupts enabled or
not. Kernel errors print what Linux prints (arch/x86/mm/fault.c
show_fault_oops, arch/x86/kernel/dumpstack.c __die, kernel/panic.c
panic) and enter kgdb through the die notifier (kgdb_notify in
arch/x86/kernel/kgdb.c) or kgdb_panic (kernel/debug/debug_core.c); the
server goes on serving.
"""
from __future__ import annotations

import contextlib
import os
import time

import pytest

from gdbtools import GDB, run_gdb, start_line_server, start_server
from kgdbstub.client import SyncTarget
from kgdbstub.kernel.image import Image

pytestmark = pytest.mark.timeout(180)

SIGILL, SIGTRAP, SIGSEGV = 4, 5, 11
JMP_SELF = b"\xeb\xfe"  # jmp .
CLI_JMP_SELF = b"\xfa\xeb\xfe"  # cli; jmp .
INIT, LOOPER = 1, 2
CPU1 = -3  # kgdb's shadow thread of CPU 1
SYSRQ_G = b"\xff\xf3g"  # BREAK on a pty (Telnet's IAC BRK), then g


@contextlib.contextmanager
def serving(transport: str, dialect: str):
    """A server and a connected client, stopped at kgdbwait; and how to break in."""
    if transport == "tcp":
        with start_server("--dialect", dialect) as server, SyncTarget(server.address, elf=server.elf) as target:
            # kgdb ignores a 0x03: gdb's `set remote interrupt-sequence BREAK-g` sends SysRq-G.
            yield server, target, (lambda: target.interrupt(sequence="BREAK-g")) if dialect == "kgdb" \
                else target.interrupt
    else:
        with start_line_server("--pty", "--dialect", dialect) as server, SyncTarget(server.address, elf=server.elf) as target:
            def sysrq_g():
                line = os.open(server.path, os.O_WRONLY | os.O_NOCTTY)
                try:
                    os.write(line, SYSRQ_G)
                finally:
                    os.close(line)
                return target.wait_stop()
            yield server, target, sysrq_g if dialect == "kgdb" else target.interrupt


def loop_site(target: SyncTarget) -> int:
    """The instruction after looper_main's call of looper_tick: inside the loop the looper spends its time in."""
    main, tick = target.symbol("looper_main"), target.symbol("looper_tick")
    code = target.read_memory(main, 0x80)
    for offset in range(len(code) - 5):
        if code[offset] == 0xE8 and main + offset + 5 + int.from_bytes(code[offset + 1:offset + 5], "little",
                                                                        signed=True) == tick:
            return main + offset + 5
    raise AssertionError("looper_main does not call looper_tick")


def looper_pc(target: SyncTarget) -> int:
    return target.read_register("rip", thread=LOOPER)


# Not in the kgdb dialect: Linux's kgdb writes no user memory
# (copy_to_kernel_nofault), so the jmp cannot be planted in the looper.
@pytest.mark.parametrize("transport,dialect", [("tcp", "modern"), ("pty", "modern")])
def test_a_spinning_looper_stops_inside_its_loop_every_time(transport, dialect):
    with serving(transport, dialect) as (server, target, break_in):
        site = loop_site(target)
        target.write_memory(site, JMP_SELF)
        for attempt in range(20):
            target.resume_nowait()
            stop = break_in()
            assert stop.signal in (SIGTRAP, 2), stop
            # Every CPU stopped where it was: the looper's at its jmp, whichever CPU reports.
            assert looper_pc(target) == site, f"attempt {attempt}: the looper is not at its jmp: {stop}"
        assert "E" not in target.monitor("ps")[:1]


# Counters the guest keeps, for the precise-stop test: looper_main's call of
# looper_tick goes to COUNTER_CODE instead, two blocks that count the calls
# in r8 (which looper_main and the kernel's entry leave alone) and in memory.
COUNTER_CODE, COUNTER = 0x500000, 0x600000
SECOND_BLOCK = COUNTER_CODE + 5


def counting_call(target: SyncTarget) -> None:
    code = (bytes.fromhex("49ffc0")  # inc %r8
            + bytes.fromhex("eb00")  # jmp to the next instruction: a block ends
            + bytes.fromhex("48ff05") + (COUNTER - (SECOND_BLOCK + 7)).to_bytes(4, "little")  # incq COUNTER(%rip)
            + bytes.fromhex("c3"))  # ret
    target.write_memory(COUNTER_CODE, code)
    call = loop_site(target) - 5
    target.write_memory(call + 1, (COUNTER_CODE - (call + 5)).to_bytes(4, "little", signed=True))


def test_precise_stops_neither_skip_nor_repeat_an_instruction():
    """Counters the guest keeps agree at every break-in, wherever it lands.

    A register and a memory word count the same calls in two blocks: at an
    instruction boundary they differ by one exactly between the two. A
    system call whose entry a break-in withdrew is made again, once:
    do_fork's count (total_forks, which also counted init and looper) and
    looper's own count of its clones agree whenever looper is in user mode,
    but just after a clone returned.
    """
    import random
    chance = random.Random(12)
    with serving("tcp", "modern") as (server, target, break_in):
        counting_call(target)
        forks, looper_forks = target.symbol("total_forks"), target.symbol("looper_forks")
        user_stops, previous = 0, 0
        for _ in range(40):
            target.resume_nowait()
            time.sleep(chance.uniform(0, 0.01))
            break_in()
            registers = target.read_registers(thread=LOOPER)
            pc, calls, counted = registers["rip"], registers["r8"], target.read_int(COUNTER)
            if pc < 0x800000000000:  # in user mode: the registers are looper's own
                user_stops += 1
                assert calls - counted == (pc == SECOND_BLOCK), (hex(pc), calls, counted)
                # One more only between clone's return and looper's own count of it.
                assert target.read_int(forks) - target.read_int(looper_forks) - 2 in (0, 1)
            assert counted >= previous
            previous = counted
        assert user_stops >= 30 and previous > 0


def test_cli_jmp_self_in_the_kernel_still_stops_and_the_other_cpu_runs():
    with serving("tcp", "modern") as (server, target, break_in):
        sys_write = target.symbol("sys_write")
        target.write_memory(sys_write, CLI_JMP_SELF)
        target.resume_nowait()  # looper's first write() spins in the kernel with interrupts off
        for _ in range(5):
            stop = break_in()
            pcs = {target.read_register("rip", thread=thread) for thread in (LOOPER, INIT)}
            assert sys_write + 1 in pcs, stop
            target.resume_nowait()
        stop = break_in()
        # The spinning CPU does not hold up the other: init still wakes and sleeps.
        sleep = target.insert_breakpoint(target.symbol("schedule_timeout"), kind="hardware")
        stop = target.resume()
        assert stop.thread == INIT and stop.signal == SIGTRAP
        target.remove_breakpoint(sleep)


def test_while_the_looper_spins_jiffies_advances_and_init_runs():
    with serving("tcp", "modern") as (server, target, break_in):
        jiffies = target.symbol("jiffies")
        target.write_memory(loop_site(target), JMP_SELF)
        start = target.read_int(jiffies)
        sleep = target.insert_breakpoint(target.symbol("schedule_timeout"), kind="hardware")
        for _ in range(2):  # init sleeps 100 jiffies at a time
            stop = target.resume()
            assert stop.thread == INIT, stop
        target.remove_breakpoint(sleep)
        assert target.read_int(jiffies) >= start + 100
        assert looper_pc(target) == loop_site(target)


def test_after_detach_with_a_spinning_task_the_next_debugger_is_served_at_once():
    with start_server() as server:
        with SyncTarget(server.address) as target:
            target.write_memory(loop_site(target), JMP_SELF)
        # Leaving the block detached: the machine spins on.
        with SyncTarget(server.address, timeout=5) as target:
            assert target.stop.signal in (2, SIGTRAP)
            assert "looper" in target.monitor("ps")


# -- guest errors ---------------------------------------------------------------------------------


def fault_and_expect(setup, signal: int, message: str | None, *, later=()):
    """Make a guest error with setup(target), continue into it and check the stop and the console.

    On a pty in the modern dialect, where the console reaches gdb as O packets.
    """
    with start_line_server("--pty", "--dialect", "modern") as server:
        with SyncTarget(server.address, elf=server.elf) as target:
            setup(target)
            stop = target.resume()
            assert stop.signal == signal, stop
            if message is not None:
                assert message in stop.output, stop.output
            for later_signal, later_message in later:
                stop = target.resume()
                assert stop.signal == later_signal, stop
                assert later_message in stop.output, stop.output
            assert "comm=init" in target.monitor("ps")
        # The server goes on: the next debugger attaches and is answered.
        with SyncTarget(server.address, elf=server.elf, timeout=10) as target:
            assert "comm=init" in target.monitor("ps")
        return stop


def test_a_kernel_null_pointer_dereference_is_an_oops_that_enters_kgdb_with_sigsegv():
    def setup(target):
        # do_fork's first instruction becomes `mov 0x8, %rax`: the next fork faults.
        target.write_memory(target.symbol("do_fork"), bytes.fromhex("488b042500000000"))

    fault_and_expect(setup, SIGSEGV, "BUG: kernel NULL pointer dereference, address: 0000000000000000\n"
                                     "#PF: supervisor read access in kernel mode\n"
                                     "#PF: error_code(0x0000) - not-present page\n"
                                     "Oops: 0000 [#1] SMP\n")


def test_a_hypercall_with_a_bad_kernel_pointer_is_a_page_fault_oops():
    def setup(target):
        write = target.insert_breakpoint(target.symbol("console_write"), kind="hardware")
        stop = target.resume()  # looper's "looper: running"
        assert stop.thread == LOOPER
        target.remove_breakpoint(write)
        target.write_register("rdi", 0xFFFF888000000000)  # an unmapped kernel buffer

    fault_and_expect(setup, SIGSEGV, "BUG: unable to handle page fault for address: ffff888000000000\n")


def test_returning_to_nothing_is_a_kernel_bug():
    def setup(target):
        target.write_register("rip", target.symbol("irq_return"), thread=INIT)  # no interrupt to return from

    fault_and_expect(setup, SIGILL, "------------[ cut here ]------------\nkernel BUG at arch/x86/entry.S:")


def test_an_unknown_hypercall_is_an_invalid_opcode_trap():
    def setup(target):
        # sys_write becomes `mov $99, %eax; hlt`: the host knows no hypercall 99.
        target.write_memory(target.symbol("sys_write"), bytes.fromhex("b863000000f4"))

    fault_and_expect(setup, SIGILL, None)  # DIE_TRAP comes before anything is printed


def test_the_idle_task_exiting_panics_and_panic_enters_kgdb():
    def setup(target):
        target.write_register("rip", target.symbol("do_exit"), thread=CPU1)

    fault_and_expect(setup, SIGTRAP, "Kernel panic - not syncing: Attempted to kill the idle task!\n")


def test_going_on_from_a_panic_stops_the_other_cpus_for_good():
    """panic() stops the other CPUs once kgdb has had its chance (smp_send_stop in kernel/panic.c)."""
    with start_line_server("--pty", "--dialect", "modern") as server:
        with SyncTarget(server.address, elf=server.elf) as target:
            target.write_register("rip", target.symbol("do_exit"), thread=CPU1)  # swapper/1 panics
            assert target.resume().signal == SIGTRAP
            online = target.symbol("nr_cpus_online")
            assert target.read_int(online) == 2
            leaving = target.watch(online, 8, kind="write")
            stop = target.resume()  # CPU 0 takes the NMI: stop_this_cpu() takes it offline
            assert stop.cpu == 0 and target.read_int(online) == 1
            stopped_task = stop.thread  # the task CPU 0 ran: it stays there, in the NMI
            function = Image(server.elf).symbols["stop_this_cpu"]
            target.remove_breakpoint(leaving)
            output, pcs, counts = stop.output, set(), set()
            for _ in range(3):
                target.resume_nowait()
                stop = target.interrupt()
                output += stop.output
                pcs.add(target.read_register("rip", thread=stopped_task))
                counts.add(target.read_int(target.symbol("looper_iterations")))
            assert len(pcs) == 1 and function.address < pcs.pop() < function.address + function.size
            assert len(counts) == 1, "nothing runs on the stopped CPU"
            assert "---[ end Kernel panic - not syncing: Attempted to kill the idle task! ]---" in output


def test_a_fault_on_a_bad_stack_is_a_double_fault_then_a_panic():
    def setup(target):
        target.write_register("rsp", 0x1000, thread=INIT)  # no memory there
        target.write_register("rip", 0xFFFFFFFF80000000, thread=INIT)  # and a kernel fault to deliver on it

    fault_and_expect(setup, SIGSEGV, None,  # DIE_TRAP first, then the oops: exc_double_fault
                     later=[(SIGSEGV, "PANIC: double fault, error_code: 0x0\n"),
                            (SIGTRAP, "Kernel panic - not syncing: Machine halted.\n")])


@pytest.mark.skipif(GDB is None, reason="gdb is not installed")
def test_gdb_sees_the_oops_where_the_kernel_faulted():
    with start_server("--once") as server:
        output = run_gdb(server, ["set {unsigned long}do_fork = 0x00250c8b48", "continue", "bt", "detach"])
    assert "received signal SIGSEGV" in output, output
    assert "#0  " in output and "do_fork" in output.split("#0", 1)[1].splitlines()[0], output
    assert "sys_clone" in output, output
