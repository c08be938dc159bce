"""What gdb changed while the machine was stopped is what the next resume runs with.

A resume puts kgdb's hardware breakpoints and watchpoints into the debug
registers of every CPU as the table holds them then, and the machine
derives its hooks and watched pages from those registers. Between two
resumes gdb may remove one and insert another (the same number in the
table as before), add one, or move the pc; each resume must run with
exactly that, whatever the resume before it left in place.
"""
from kgdbstub.core.breakinfo import Piece
from kgdbstub.core.debugger import SIGTRAP
from kgdbstub.x86.debugregs import Access
from kernel_harness import RESUME_FLAG, Machine
from unicorn.x86_const import UC_X86_REG_EFLAGS as EFLAGS
from unicorn.x86_const import UC_X86_REG_RIP as RIP


def resume(machine: Machine, session) -> bytes:
    """Continue, as the session's vCont;c makes the server do; the stop reply.

    A machine that does not stop within a few timer ticks fails the test.
    """
    return session.stop_reply(machine.resume(limit=20))


def fields(reply: bytes) -> dict[bytes, bytes]:
    return dict(field.split(b":", 1) for field in reply[3:].split(b";") if field)


def watched_at_stop(machine: Machine, session) -> int:
    """Resume; the address the stop's watchpoint names."""
    return int(fields(resume(machine, session))[b"watch"], 16)


def kgdb_pieces(machine: Machine) -> list[set[tuple[int, Access]]]:
    """Per CPU: (address, access) of each of kgdb's pieces in its debug registers."""
    registers = machine.kernel.processor.debug_registers
    return [{(registers[cpu].slot(index).address, registers[cpu].slot(index).access)
             for index, owner in enumerate(owners) if isinstance(owner, Piece)}
            for cpu, owners in enumerate(machine.kernel.debug_slots.owners)]


def stopped_machine():
    machine = Machine()
    machine.debugger.attach()
    session = machine.session(monitor=lambda command: "done\n")
    session.handle(b"qSupported:swbreak+;hwbreak+")
    return machine, session


def test_a_watch_replaced_by_another_between_two_resumes_is_the_one_that_fires():
    machine, session = stopped_machine()
    iterations, jiffies = machine.address("looper_iterations"), machine.address("jiffies")
    assert session.handle(b"Z2,%x,8" % iterations).payload == b"OK"
    for _ in range(3):
        assert watched_at_stop(machine, session) == iterations
    assert kgdb_pieces(machine) == [{(iterations, Access.WRITE)}] * 2

    # As many pieces as before, none of them the same.
    assert session.handle(b"z2,%x,8" % iterations).payload == b"OK"
    assert session.handle(b"Z2,%x,8" % jiffies).payload == b"OK"
    for _ in range(2):
        assert watched_at_stop(machine, session) == jiffies
        assert kgdb_pieces(machine) == [{(jiffies, Access.WRITE)}] * 2


def test_a_breakpoint_added_between_two_resumes_joins_the_one_in_place():
    machine, session = stopped_machine()
    tick, iterations = machine.address("looper_tick"), machine.address("looper_iterations")
    assert session.handle(b"Z1,%x,1" % tick).payload == b"OK"
    reply = resume(machine, session)
    assert b"hwbreak:;" in reply and machine.looper.regs.reg_read(RIP) == tick

    # looper_tick returns, then looper_main counts the iteration.
    assert session.handle(b"Z2,%x,8" % iterations).payload == b"OK"
    assert watched_at_stop(machine, session) == iterations
    assert kgdb_pieces(machine) == [{(tick, Access.EXECUTE), (iterations, Access.WRITE)}] * 2
    reply = resume(machine, session)
    assert b"hwbreak:;" in reply and machine.looper.regs.reg_read(RIP) == tick

    assert session.handle(b"z1,%x,1" % tick).payload == b"OK"
    for _ in range(2):
        assert watched_at_stop(machine, session) == iterations
        assert kgdb_pieces(machine) == [{(iterations, Access.WRITE)}] * 2


def test_a_pc_moved_between_two_resumes_runs_from_there():
    """The registers a CPU runs with are the ones gdb wrote, not the machine's from the last run."""
    machine, session = stopped_machine()
    tick = machine.address("looper_tick")
    assert session.handle(b"Z1,%x,1" % tick).payload == b"OK"
    first = resume(machine, session)
    assert first.startswith(b"T%02x" % SIGTRAP) and b"hwbreak:;" in first
    before = machine.iterations
    # Back to looper_tick's first instruction, with RF clear: its breakpoint fires
    # again at once, before the iteration is counted.
    regs = machine.looper.regs
    regs.reg_write(RIP, tick)
    regs.reg_write(EFLAGS, regs.reg_read(EFLAGS) & ~RESUME_FLAG)
    reply = resume(machine, session)
    assert b"hwbreak:;" in reply and regs.reg_read(RIP) == tick
    assert machine.iterations == before

