"""What breakpoint requests can make the debugger hold is bounded.

Software breakpoints: at most KGDB_MAX_BREAKPOINTS (1000, include/linux/kgdb.h);
dbg_set_sw_break (kernel/debug/debug_core.c) answers -E2BIG, `E07`, when all
are in use. The same hardware request made again is counted, not stored
again, so that the table and the work of each hit and removal stay small.
"""
import pytest
from kernel_harness import Machine

from kgdbstub.gdbstub.dialects import DIALECTS

pytestmark = pytest.mark.timeout(120)

MAX_BREAKPOINTS = 1000  # KGDB_MAX_BREAKPOINTS


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_the_thousand_and_first_software_breakpoint_is_refused_with_e07(dialect):
    machine = Machine(dialect=dialect)
    session = machine.session()
    text = machine.address("start_kernel")
    kernel_text = machine.kernel.read(text, MAX_BREAKPOINTS + 1)
    for address in range(text, text + MAX_BREAKPOINTS):
        assert session.handle(b"Z0,%x,1" % address).payload == b"OK"
    assert session.handle(b"Z0,%x,1" % (text + MAX_BREAKPOINTS)).payload == b"E07"
    assert len(machine.debugger.breakpoints) == MAX_BREAKPOINTS
    assert session.handle(b"z0,%x,1" % text).payload == b"OK"
    if dialect == "kgdb":
        # dbg_remove_sw_break leaves the entry BP_REMOVED, and dbg_set_sw_break
        # reuses one only for its own address: no room for another until `?`.
        assert session.handle(b"Z0,%x,1" % (text + MAX_BREAKPOINTS)).payload == b"E07"
        assert session.handle(b"Z0,%x,1" % text).payload == b"OK"
    else:  # one removed makes room for one more
        assert session.handle(b"Z0,%x,1" % (text + MAX_BREAKPOINTS)).payload == b"OK"
    # A step puts all of them in and takes them out again: the code is as it was.
    machine.debugger.resume(step=True)
    assert machine.kernel.read(text, MAX_BREAKPOINTS + 1) == kernel_text
    machine.debugger.detach()
    assert not machine.debugger.breakpoints


def test_the_same_watchpoint_made_again_is_counted_not_stored_again():
    machine = Machine()
    session = machine.session()
    forks = machine.address("total_forks")
    times = 2000
    for _ in range(times):
        assert session.handle(b"Z2,%x,8" % forks).payload == b"OK"
    table = machine.debugger.hardware
    assert len(table.requests) == 1, "one request, counted"
    assert [entry.users for entry in table.entries if entry] == [times]
    for _ in range(times):
        assert session.handle(b"z2,%x,8" % forks).payload == b"OK"
    assert session.handle(b"z2,%x,8" % forks).payload == b"E02"
    assert table.requests == [] and table.active() == []


def test_a_hardware_breakpoint_is_removed_whatever_length_gdb_gave_it():
    machine = Machine()
    session = machine.session()
    do_fork = machine.address("do_fork")
    assert session.handle(b"Z1,%x,4" % do_fork).payload == b"OK"
    assert session.handle(b"z1,%x,4" % do_fork).payload == b"OK"
    assert machine.debugger.hardware.active() == []
