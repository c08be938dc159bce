"""Z0/Z1 condition and command lists in the session (GDB manual, "Packets": Z0, Z1).

    Z0,addr,kind[;cond_list...][;cmds:persist,cmd_list...]

with each list agent expressions `X<len>,<bytecode>` written one after
another (gdb's remote.c: remote_add_target_side_condition and
remote_add_target_side_commands). `modern` offers them, `kgdb` does not:
Linux's gdb_cmd_break reads the address and length and nothing after.
"""
import errno

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_programs import assemble
from kgdbstub import targets
from kgdbstub.core.conditions import HARDWARE, SOFTWARE
from kgdbstub.core.debugger import SIGTRAP, Debugger
from kgdbstub.gdbstub.actions import Reply
from kgdbstub.gdbstub.conditions import BadOptions, parse_options
from kgdbstub.gdbstub.dialects import KGDB, MODERN
from kgdbstub.gdbstub.session import Session
from kgdbstub.kernel.image import Image
from kgdbstub.kernel.kernel import Kernel
from unicorn.x86_const import UC_X86_REG_RIP


@pytest.fixture(scope="module")
def image():
    return Image(targets.resolve("minikernel"))


@pytest.fixture
def machine(image):
    kernel = Kernel(image, cpus=2)
    debugger = Debugger(kernel)
    debugger.resume()  # boot to kgdbwait
    return kernel, debugger


def x(bytecode: bytes) -> bytes:
    return b"X%x,%s" % (len(bytecode), bytecode.hex().encode())


def forks_equal(image, n: int) -> bytes:
    return assemble(("const64", image.address_of("total_forks")), ("ref64",), ("const8", n), ("equal",), ("end",))


def reply(session, payload: bytes) -> bytes:
    action = session.handle(payload)
    assert isinstance(action, Reply)
    return action.payload


def test_modern_offers_both_features_and_kgdb_neither(machine):
    _, debugger = machine
    offered = reply(Session(debugger, MODERN), b"qSupported:swbreak+").split(b";")
    assert b"ConditionalBreakpoints+" in offered and b"BreakpointCommands+" in offered
    assert reply(KGDB.session(debugger, KGDB), b"qSupported:swbreak+") == b""


def test_a_software_breakpoint_stops_when_any_of_its_conditions_holds(machine, image):
    kernel, debugger = machine
    session = Session(debugger, MODERN)
    do_fork = image.address_of("do_fork")
    # Two conditions written one after the other: the stop comes at the first that holds.
    options = b";" + x(forks_equal(image, 4)) + x(forks_equal(image, 3))
    assert reply(session, b"Z0,%x,1%s" % (do_fork, options)) == b"OK"
    assert debugger.conditions.of(SOFTWARE, do_fork).conditions
    stop = debugger.resume()
    assert (stop.signal, stop.software_breakpoint) == (SIGTRAP, True)
    assert kernel.read_u64(image.address_of("total_forks")) == 3
    assert kernel.read(do_fork, 1) != b"\xcc", "a conditional breakpoint plants no int3"


def test_inserting_again_replaces_the_lists_and_without_any_makes_it_plain(machine, image):
    kernel, debugger = machine
    session = Session(debugger, MODERN)
    do_fork = image.address_of("do_fork")
    assert reply(session, b"Z0,%x,1;%s" % (do_fork, x(forks_equal(image, 1000)))) == b"OK"
    assert reply(session, b"Z0,%x,1;%s" % (do_fork, x(forks_equal(image, 2)))) == b"OK"
    debugger.resume()
    assert kernel.read_u64(image.address_of("total_forks")) == 2
    assert reply(session, b"Z0,%x,1" % do_fork) == b"OK"  # no lists: unconditional again
    assert not debugger.conditions.probed(do_fork)
    debugger.resume()
    assert kernel.read_u64(image.address_of("total_forks")) == 2, "the next hit is the same fork"
    assert reply(session, b"z0,%x,1" % do_fork) == b"OK"
    assert reply(session, b"z0,%x,1" % do_fork) == b"E02"


def test_a_hardware_breakpoint_inserted_again_keeps_one_slot(machine, image):
    kernel, debugger = machine
    session = Session(debugger, MODERN)
    do_fork = image.address_of("do_fork")
    for n in (1000, 2):
        assert reply(session, b"Z1,%x,1;%s" % (do_fork, x(forks_equal(image, n)))) == b"OK"
    assert len(debugger.hardware.active()) == 1
    stop = debugger.resume()
    assert stop.hardware is not None and kernel.read_u64(image.address_of("total_forks")) == 2
    assert reply(session, b"z1,%x,1" % do_fork) == b"OK"
    assert not debugger.hardware.active() and not debugger.conditions.of(HARDWARE, do_fork)


def test_commands_run_at_every_hit_and_never_stop(machine, image):
    kernel, debugger = machine
    session = Session(debugger, MODERN)
    printf = assemble(("const64", image.address_of("total_forks")), ("ref64",), ("const8", 0), ("const8", 0),
                      ("printf", 1, b"fork %lu\\n"), ("end",))
    do_fork, tick = image.address_of("do_fork"), image.address_of("looper_tick")
    assert reply(session, b"Z0,%x,1;cmds:1,%s" % (do_fork, x(printf))) == b"OK"
    assert debugger.conditions.of(SOFTWARE, do_fork).persist
    first = kernel.read_u64(image.address_of("total_forks"))
    assert reply(session, b"Z0,%x,1;%s" % (tick, x(forks_equal(image, first + 3)))) == b"OK"
    debugger.resume()
    assert debugger.conditions.take_output() == b"".join(b"fork %d\n" % n for n in range(first, first + 3))


def test_a_failing_command_is_reported_in_the_output_and_does_not_stop(machine, image):
    _, debugger = machine
    session = Session(debugger, MODERN)
    do_fork, tick = image.address_of("do_fork"), image.address_of("looper_tick")
    faulting = assemble(("const8", 8), ("ref32",), ("const8", 0), ("const8", 0), ("printf", 1, b"%d"), ("end",))
    assert reply(session, b"Z0,%x,1;cmds:0,%s" % (do_fork, x(faulting))) == b"OK"
    forks = debugger.kernel.read_u64(image.address_of("total_forks"))
    assert reply(session, b"Z0,%x,1;%s" % (tick, x(forks_equal(image, forks + 1)))) == b"OK"
    stop = debugger.resume()
    rip = debugger.registers_of(stop.thread).reg_read(UC_X86_REG_RIP)
    assert stop.software_breakpoint and rip == tick, "the stop is the breakpoint after the fork, not do_fork"
    assert b"commands at %#x: cannot read memory at 0x8" % do_fork in debugger.conditions.take_output()


@pytest.mark.parametrize("options, code", [
    (b";X5,2201", errno.EINVAL),  # shorter than it says
    (b";Xzz,00", errno.EINVAL),
    (b";X0,", errno.EINVAL),
    (b";X2,2201", errno.EINVAL),  # runs off its end
    (b";cmds:2,X2,2227", errno.EINVAL),  # persist is 0 or 1
    (b";cmds:0,", errno.EINVAL),
    (b";Y1,27", errno.EINVAL),
    (b";X3,2c0001", errno.EOPNOTSUPP),  # getv: a trace state variable
    (b";X4,2c000127", errno.EOPNOTSUPP),
    (b";cmds:0,X8,220022002201252700", errno.EINVAL),
])
def test_a_refused_list_changes_nothing(machine, image, options, code):
    _, debugger = machine
    session = Session(debugger, MODERN)
    do_fork = image.address_of("do_fork")
    assert reply(session, b"Z0,%x,1;%s" % (do_fork, x(forks_equal(image, 5)))) == b"OK"
    before = debugger.conditions.of(SOFTWARE, do_fork)
    assert reply(session, b"Z0,%x,1%s" % (do_fork, options)) == b"E%02d" % code
    assert reply(session, b"Z1,%x,1%s" % (do_fork, options)) == b"E%02d" % code
    assert debugger.conditions.of(SOFTWARE, do_fork) is before
    assert not debugger.hardware.active()
    assert reply(session, b"Z2,%x,8;X2,2227" % image.address_of("total_forks")) == b"E22"  # watchpoints take none


def test_kgdb_reads_no_further_than_the_length(machine, image):
    kernel, debugger = machine
    session = KGDB.session(debugger, KGDB)
    do_fork = image.address_of("do_fork")
    assert reply(session, b"Z0,%x,1;%s" % (do_fork, x(forks_equal(image, 1000)))) == b"OK"
    assert not debugger.conditions.probed(do_fork)
    assert reply(session, b"Z0,%x,1" % do_fork) == b"E17", "and a second Z0 is kgdb's EEXIST"
    debugger.resume()
    assert kernel.read_u64(image.address_of("total_forks")) < 1000, "the condition was not taken"


OPTION_PIECES = st.sampled_from([b";", b"X", b"2", b",", b"22", b"01", b"27", b"cmds:", b"0", b"1", b"ff", b"34",
                                 b"X5,2201000127", b"X3,220127", b"X1,27"])


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(OPTION_PIECES, max_size=10))
def test_any_option_text_parses_or_is_refused_cleanly(pieces):
    text = b"".join(pieces)
    try:
        actions = parse_options(text, conditions=True, commands=True)
    except BadOptions:
        return
    assert all(c.bytecode for c in actions.conditions + actions.commands)


def test_printf_output_waits_for_the_debugger_beyond_the_limit_and_none_is_lost(machine, image):
    kernel, debugger = machine
    session = Session(debugger, MODERN)
    iterations = image.address_of("looper_iterations")
    line = assemble(("const64", iterations), ("ref64",), ("const8", 0), ("const8", 0),
                    ("printf", 1, b"%1000lu\\n"), ("end",))  # 1001 bytes a hit
    tick = image.address_of("looper_tick")
    first = kernel.read_u64(iterations)
    assert reply(session, b"Z0,%x,1;cmds:0,%s" % (tick, x(line))) == b"OK"
    done = image.address_of("looper_main") + 0x49  # user/looper.c:54, after the call
    assert reply(session, b"Z0,%x,1;%s" % (done, x(assemble(
        ("const64", iterations), ("ref64",), ("const16", first + 300), ("equal",), ("end",))))) == b"OK"
    conditions = debugger.conditions
    conditions.output_limit = 10_000
    received, most = bytearray(), 0
    with debugger.resumed() as run:
        while (stop := run(pause=lambda: len(conditions.output) >= conditions.output_limit)) is None:
            most = max(most, len(conditions.output))
            received += conditions.take_output()
    received += conditions.take_output()
    assert stop.software_breakpoint
    assert most < 10_000 + 1001, "a CPU waits once the limit is reached"
    assert [int(n) for n in received.split()] == list(range(first, first + 301))
