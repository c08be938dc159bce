"""How kgdb gets debug-register slots next to perf and ptrace: leftover, session, boot.

DESIGN.md, "Slot policies", and FACTS.md §3 and §5. In every policy a slot is
never promised twice and whatever a debugger took is given back when it
goes, whether it detaches or its connection drops: the accounting then
equals what it was before the session.
"""
import errno

import pytest
import trio
import trio.testing

from kernel_harness import LOOPER, W, X, Machine
from kgdbstub.core.breakinfo import Piece
from kgdbstub.core.debugger import DebuggerError
from kgdbstub.rsp import Packet, RemoteProtocol
from kgdbstub.server import serve_stream

# A guard against a hang, not a synchronisation: runs are bounded in rounds.
pytestmark = pytest.mark.timeout(120)

KIND_EXECUTE, KIND_WRITE = 1, 2


def three_wide(machine):
    """Three wide perf write watches, on variables written rarely: one slot left on every CPU."""
    return [machine.kernel.perf.register_wide(address=machine.address(symbol), length=8, type=W)
            for symbol in ("jiffies", "total_forks", "looper_forks")]


def perf_attempts(machine):
    """A registration of every kind perf and ptrace make, each needing one more slot somewhere."""
    kernel = machine.kernel
    tick = machine.address("looper_tick")
    return {
        "cpu-bound": lambda: kernel.perf.register(address=tick, length=8, type=X, cpu=0, task=None),
        "per-task on one CPU": lambda: kernel.perf.register(address=tick, length=8, type=X, cpu=1, task=LOOPER),
        "per-task on all CPUs": lambda: kernel.perf.register(address=tick, length=8, type=X, cpu=None, task=LOOPER),
        "wide": lambda: kernel.perf.register_wide(address=tick, length=8, type=X),
        "ptrace": lambda: kernel.ptrace.poke_dr(kernel.ptrace.attach(LOOPER).pid, 0, tick),
    }


def assert_refused_with_enospc(machine):
    before = machine.kernel.accounting.snapshot()
    for name, attempt in perf_attempts(machine).items():
        with pytest.raises(OSError) as refused:
            attempt()
        assert refused.value.errno == errno.ENOSPC, name
        assert machine.kernel.accounting.snapshot() == before, f"a refused {name} registration left a trace"


def kgdb_pieces(machine):
    return [(cpu, dr) for cpu, owners in enumerate(machine.kernel.debug_slots.owners)
            for dr, owner in enumerate(owners) if isinstance(owner, Piece)]


def stop_at_do_fork(machine):
    event = machine.resume()
    assert event.hardware is not None and event.hardware.address == machine.address("do_fork"), event
    return event


# -- leftover ---------------------------------------------------------------------------


def test_leftover_gives_gdb_the_one_slot_perf_left_and_refuses_a_second():
    machine = Machine(policy="leftover")
    debugger, accounting = machine.debugger, machine.kernel.accounting
    three_wide(machine)
    before = accounting.snapshot()
    debugger.attach()
    assert accounting.snapshot() == before, "leftover reserves nothing at attach"
    debugger.insert_hardware(KIND_EXECUTE, machine.address("do_fork"), 1)
    assert [accounting.slots_needed(cpu) for cpu in range(2)] == [4, 4]
    holding = accounting.snapshot()
    with pytest.raises(DebuggerError) as refused:
        debugger.insert_hardware(KIND_WRITE, machine.address("total_forks"), 8)
    assert refused.value.errno == errno.ENOSPC
    assert accounting.snapshot() == holding
    assert len(debugger.hardware.requests) == 1
    stop_at_do_fork(machine)
    assert kgdb_pieces(machine) != []
    debugger.detach()
    assert accounting.snapshot() == before


def test_leftover_gives_a_removed_breakpoint_slot_back_at_once():
    machine = Machine(policy="leftover")
    debugger = machine.debugger
    three_wide(machine)
    debugger.attach()
    debugger.insert_hardware(KIND_EXECUTE, machine.address("do_fork"), 1)
    stop_at_do_fork(machine)
    debugger.remove_hardware(KIND_EXECUTE, machine.address("do_fork"), 1)
    # The slot is free again while gdb is still attached and the machine still stopped...
    event = machine.kernel.perf.register(address=machine.address("looper_tick"), length=8, type=X,
                                         cpu=0, task=None)
    # ...and perf's event really sits in a DR: kgdb's removed breakpoint does not.
    assert machine.drs_of(0, event) != []
    assert kgdb_pieces(machine) == []
    debugger.detach()


# -- session ------------------------------------------------------------------------------


def test_session_takes_every_free_slot_at_attach_and_gives_them_back_at_detach():
    machine = Machine(policy="session")
    debugger, accounting = machine.debugger, machine.kernel.accounting
    three_wide(machine)
    before = accounting.snapshot()
    debugger.attach()
    assert [accounting.slots_needed(cpu) for cpu in range(2)] == [4, 4]
    assert_refused_with_enospc(machine)
    debugger.insert_hardware(KIND_EXECUTE, machine.address("do_fork"), 1)
    with pytest.raises(DebuggerError) as refused:
        debugger.insert_hardware(KIND_WRITE, machine.address("total_forks"), 8)
    assert refused.value.errno == errno.ENOSPC
    stop_at_do_fork(machine)
    debugger.detach()
    assert accounting.snapshot() == before
    perf_attempts(machine)["wide"]()  # the slot is perf's again


@pytest.mark.parametrize("kind", ["cpu-bound", "per-task on one CPU", "per-task on all CPUs", "wide", "ptrace"])
def test_a_registration_refused_during_a_session_succeeds_after_detach(kind):
    machine = Machine(policy="session")
    three_wide(machine)
    machine.debugger.attach()
    with pytest.raises(OSError) as refused:
        perf_attempts(machine)[kind]()
    assert refused.value.errno == errno.ENOSPC
    machine.debugger.detach()
    perf_attempts(machine)[kind]()


def test_session_with_nothing_registered_gives_gdb_all_four_slots():
    machine = Machine(policy="session")
    debugger = machine.debugger
    debugger.attach()
    symbols = ["do_fork", "start_secondary", "smp_init", "rest_init"]  # only do_fork runs after boot
    for symbol in symbols:
        debugger.insert_hardware(KIND_EXECUTE, machine.address(symbol), 1)
    with pytest.raises(DebuggerError) as refused:
        debugger.insert_hardware(KIND_EXECUTE, machine.address("sys_write"), 1)
    assert refused.value.errno == errno.ENOSPC
    debugger.detach()


# -- boot ----------------------------------------------------------------------------------


def test_boot_leaves_perf_and_ptrace_nothing():
    machine = Machine(policy="boot")
    debugger, accounting = machine.debugger, machine.kernel.accounting
    assert [accounting.slots_needed(cpu) for cpu in range(2)] == [4, 4]
    assert_refused_with_enospc(machine)
    before = accounting.snapshot()
    debugger.attach()
    for symbol in ("do_fork", "start_secondary", "smp_init", "rest_init"):
        debugger.insert_hardware(KIND_EXECUTE, machine.address(symbol), 1)
    with pytest.raises(DebuggerError):
        debugger.insert_hardware(KIND_EXECUTE, machine.address("sys_write"), 1)
    stop_at_do_fork(machine)
    debugger.detach()
    assert accounting.snapshot() == before, "boot keeps its four slots across sessions"
    assert_refused_with_enospc(machine)


# -- kgdb's late init --------------------------------------------------------------------------

EARLY = {
    "four wide events": lambda kernel: [kernel.perf.register_wide(address=kernel.image.address_of("jiffies"),
                                                                  length=8, type=W) for _ in range(4)],
    "CPU 1 full": lambda kernel: [kernel.perf.register(address=kernel.image.address_of("jiffies"), length=8,
                                                       type=W, cpu=1, task=None) for _ in range(4)],
    # Linux's kgdb_arch_late registers four wide breakpoints: one perf event is enough to fail it.
    "one wide event": lambda kernel: kernel.perf.register_wide(address=kernel.image.address_of("jiffies"),
                                                               length=8, type=W),
}


@pytest.mark.parametrize("policy", ["leftover", "session", "boot"])
@pytest.mark.parametrize("early", EARLY.values(), ids=EARLY.keys())
def test_late_init_with_a_cpu_short_of_slots_disables_hardware_breakpoints(early, policy):
    machine = Machine(policy=policy, early=early, late_init=False)
    debugger, accounting = machine.debugger, machine.kernel.accounting
    before = accounting.snapshot()
    debugger.late_init()
    assert b"Could not allocate hw breakpoints" in machine.kernel.console_log
    assert accounting.snapshot() == before, "a failed late init holds nothing"
    debugger.attach()
    with pytest.raises(DebuggerError):
        debugger.insert_hardware(KIND_EXECUTE, machine.address("do_fork"), 1)
    assert debugger.hardware.requests == []
    debugger.detach()
    assert accounting.snapshot() == before


def test_late_init_with_every_slot_free_succeeds_quietly():
    machine = Machine(late_init=False)
    machine.debugger.late_init()
    assert b"Could not allocate" not in machine.kernel.console_log
    assert machine.kernel.accounting.breakpoints == [], "kgdb holds no slot at rest"
    machine.debugger.insert_hardware(KIND_EXECUTE, machine.address("do_fork"), 1)


# -- every detach gives everything back ---------------------------------------------------------------


@pytest.mark.parametrize(("policy", "perf_events"), [
    ("leftover", 0), ("leftover", 1), ("leftover", 3),
    ("session", 0), ("session", 1), ("session", 3),
    ("boot", 0),  # under boot perf gets nothing
])
def test_after_detach_the_accounting_is_what_it_was_before_attach(policy, perf_events):
    machine = Machine(policy=policy)
    debugger, accounting = machine.debugger, machine.kernel.accounting
    for symbol in ("jiffies", "total_forks", "looper_forks")[:perf_events]:
        machine.kernel.perf.register_wide(address=machine.address(symbol), length=8, type=W)
    for round in range(2):
        before = accounting.snapshot()
        debugger.attach()
        debugger.insert_hardware(KIND_EXECUTE, machine.address("do_fork"), 1)
        debugger.insert_breakpoint(machine.address("start_secondary"))  # not run after boot
        stop_at_do_fork(machine)
        debugger.detach()
        assert accounting.snapshot() == before, f"session {round}"
        assert not debugger.breakpoints and debugger.hardware.requests == []
        assert kgdb_pieces(machine) == [], "kgdb's breakpoints are out of the DRs after detach"


# -- switching policy at run time --------------------------------------------------------------------


def test_switching_policy_at_run_time_moves_the_reservations():
    machine = Machine(policy="leftover")
    debugger, accounting = machine.debugger, machine.kernel.accounting
    machine.kernel.perf.register_wide(address=machine.address("jiffies"), length=8, type=W)  # perf-watch
    debugger.attach()
    debugger.set_policy("session")
    assert debugger.policy.name == "session"
    assert [accounting.slots_needed(cpu) for cpu in range(2)] == [4, 4]
    assert_refused_with_enospc(machine)
    debugger.set_policy("leftover")
    assert [accounting.slots_needed(cpu) for cpu in range(2)] == [1, 1]
    debugger.detach()
    perf_attempts(machine)["wide"]()


def test_switching_to_boot_needs_every_slot_and_changes_nothing_when_refused():
    machine = Machine(policy="leftover")
    debugger, accounting = machine.debugger, machine.kernel.accounting
    event = machine.kernel.perf.register(address=machine.address("jiffies"), length=8, type=W, cpu=1, task=None)
    before = accounting.snapshot()
    with pytest.raises(OSError) as refused:
        debugger.set_policy("boot")
    assert refused.value.errno == errno.ENOSPC
    assert debugger.policy.name == "leftover"
    assert accounting.snapshot() == before
    machine.kernel.perf.unregister(event)
    debugger.set_policy("boot")
    assert [accounting.slots_needed(cpu) for cpu in range(2)] == [4, 4]
    assert_refused_with_enospc(machine)
    debugger.set_policy("leftover")
    assert accounting.breakpoints == []


def test_switching_policy_is_refused_while_gdb_holds_hardware_breakpoints():
    machine = Machine(policy="leftover")
    debugger, accounting = machine.debugger, machine.kernel.accounting
    debugger.attach()
    debugger.insert_hardware(KIND_EXECUTE, machine.address("do_fork"), 1)
    before = accounting.snapshot()
    for name in ("session", "boot", "leftover"):
        with pytest.raises(OSError) as refused:
            debugger.set_policy(name)
        assert refused.value.errno == errno.EBUSY
        assert debugger.policy.name == "leftover"
        assert accounting.snapshot() == before
    debugger.remove_hardware(KIND_EXECUTE, machine.address("do_fork"), 1)
    debugger.set_policy("session")
    debugger.insert_hardware(KIND_EXECUTE, machine.address("do_fork"), 1)
    stop_at_do_fork(machine)
    debugger.detach()
    assert accounting.breakpoints == []


def test_switching_policy_keeps_the_stop_gdb_is_looking_at():
    """`monitor policy` while stopped must not change what `?` and `g` report."""
    machine = Machine(policy="leftover")
    debugger = machine.debugger
    debugger.attach()
    debugger.insert_hardware(KIND_EXECUTE, machine.address("do_fork"), 1)
    stop = stop_at_do_fork(machine)
    debugger.remove_hardware(KIND_EXECUTE, machine.address("do_fork"), 1)
    debugger.set_policy("session")
    assert debugger.stop == stop


# -- a connection that drops ---------------------------------------------------------------------------


class Client:
    """gdb's end of an in-memory connection, in ack mode, without run-length encoding."""

    def __init__(self, stream):
        self.stream = stream
        self.codec = RemoteProtocol(run_length_encode=False)
        self.pending = []

    async def send(self, payload: bytes) -> None:
        self.codec.send_packet(payload)
        await self.stream.send_all(self.codec.data_to_send())

    async def receive(self) -> bytes:
        while not self.pending:
            data = await self.stream.receive_some(65536)
            assert data, "the stub closed the connection"
            self.codec.receive_data(data)
            self.pending += [e.payload for e in self.codec.events() if isinstance(e, Packet)]
            out = self.codec.data_to_send()
            if out:
                await self.stream.send_all(out)
        return self.pending.pop(0)

    async def request(self, payload: bytes) -> bytes:
        await self.send(payload)
        reply = await self.receive()
        while reply.startswith(b"O") and reply != b"OK":
            reply = await self.receive()
        return reply


@pytest.mark.parametrize("policy", ["leftover", "session"])
@pytest.mark.parametrize("drop", ["stopped", "running"])
async def test_a_dropped_connection_gives_everything_back(policy, drop):
    machine = Machine(policy=policy)
    debugger, accounting = machine.debugger, machine.kernel.accounting
    three_wide(machine)
    before = accounting.snapshot()
    stub_end, gdb_end = trio.testing.memory_stream_pair()
    client = Client(gdb_end)
    result = []
    async with trio.open_nursery() as nursery:
        async def serve():
            result.append(await serve_stream(stub_end, debugger, dialect="modern"))
        nursery.start_soon(serve)
        assert (await client.request(b"qSupported:hwbreak+;swbreak+")).startswith(b"PacketSize=")
        assert await client.request(b"Z0,%x,1" % machine.address("start_secondary")) == b"OK"
        assert await client.request(b"Z1,%x,1" % machine.address("do_fork")) == b"OK"
        # In leftover the one slot perf left is now taken; in session it was taken at attach.
        assert await client.request(b"Z2,%x,8" % machine.address("total_forks")) == b"E28"
        assert await client.request(b"Z2,%x,8" % machine.address("linux_banner")) == b"E28"
        reply = await client.request(b"c")
        assert reply.startswith(b"T05") and b"hwbreak:" in reply, reply
        assert kgdb_pieces(machine) != [], "kgdb's breakpoint was in the DRs while the machine ran"
        if drop == "running":
            await client.send(b"c")
        await gdb_end.aclose()  # no D, no k: gdb just went away
    assert result == [False], "the session ends without a detach"
    assert accounting.snapshot() == before
    assert kgdb_pieces(machine) == [], "nothing of kgdb's is left in the debug registers"
    assert not debugger.breakpoints and debugger.hardware.requests == []
    assert not debugger.attached
    # The slot kgdb had is perf's to take again, really: the DR is free.
    event = machine.kernel.perf.register(address=machine.address("looper_tick"), length=8, type=X,
                                         cpu=1, task=None)
    assert machine.drs_of(1, event) != []


def test_a_refused_switch_to_boot_leaves_a_session_holding_what_it_held():
    """Found by tools/soak.py: the session, released and taken back, also took
    the slot perf had given back since the debugger attached."""
    machine = Machine(policy="session")
    debugger, perf, accounting = machine.debugger, machine.kernel.perf, machine.kernel.accounting
    wide = perf.register_wide(address=machine.address("jiffies"), length=8, type=W)
    debugger.attach()  # the session holds the three slots left on each CPU
    perf.unregister(wide[1])
    before = accounting.snapshot()
    with pytest.raises(OSError) as refused:
        debugger.set_policy("boot")  # perf still holds a slot on CPU 0
    assert refused.value.errno == errno.ENOSPC
    assert debugger.policy.name == "session"
    assert accounting.snapshot() == before
    perf.register(address=machine.address("jiffies"), length=8, type=W, cpu=1, task=None)


# -- what a debugger could hold now (qWatchpointSupportInfo) ---------------------------------


@pytest.mark.parametrize("policy, expected", [("leftover", [4, 3, 2, 1, 0]), ("session", [4, 3, 2, 1, 0]),
                                              ("boot", [4, 4, 4, 4, 4])])
def test_capacity_is_what_the_accounting_leaves_the_debugger_those_it_holds_included(policy, expected):
    machine = Machine(policy=policy)
    debugger, kernel = machine.debugger, machine.kernel
    tick = machine.address("looper_tick")
    takers = [
        lambda: kernel.perf.register_wide(address=machine.address("jiffies"), length=8, type=W),
        lambda: kernel.perf.register(address=tick, length=8, type=X, cpu=1, task=None),  # one CPU decides
        lambda: kernel.perf.register(address=tick, length=8, type=X, cpu=None, task=LOOPER),
        lambda: machine.trace(1),  # ptrace, on the looper on every CPU
    ]
    counts = []
    for take in [lambda: None, *takers]:
        try:
            take()
        except OSError as refused:
            assert policy == "boot" and refused.errno == errno.ENOSPC
        debugger.attach()  # as a debugger asks: attached
        counts.append(debugger.hardware_capacity())
        debugger.detach()
    assert counts == expected
    debugger.attach()
    if expected[-1]:
        debugger.insert_hardware(KIND_EXECUTE, machine.address("do_fork"), 1)
        assert debugger.hardware_capacity() == expected[-1], "what it holds counts"
    debugger.detach()


def test_capacity_without_hardware_breakpoints_is_none():
    machine = Machine(policy="leftover")
    machine.debugger.hardware_enabled = False
    assert machine.debugger.hardware_capacity() == 0
