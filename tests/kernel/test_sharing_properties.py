"""Random interleavings of perf, ptrace and kgdb on the running machine.

Perf registrations (wide, CPU-bound, per-task for init or the looper) on
jiffies, looper_iterations and looper_tick, unregistrations and
enable/disable, ptrace breakpoints in the looper, kgdb hardware breakpoints
inserted and removed through the Debugger under a random policy, debugger
attach/detach, policy switches, and runs of a few rounds through
Debugger.resume (so kgdb enters and leaves, and tasks switch CPUs).

After every step, and between every two CPU turns of every run:
- the accounting never promises more than four slots on a CPU;
- every DR with an owner is enabled and holds exactly that owner's
  breakpoint, no DR is enabled without an owner, no owner is in two DRs of a
  CPU, and kgdb holds no more DRs on a CPU than it reserved;
- every enabled perf/ptrace event whose task runs on a CPU (or that is bound
  to the CPU) is installed there, and no other is installed anywhere;
- every event counts every hit: compared with ground truth from the image
  wherever the image gives one (below), bounded by it elsewhere.

Ground truth: jiffies is written once per round, by the tick on CPU 0;
looper_iterations once per iteration by the looper, which calls looper_tick
once per iteration just before. A looper stopped by its tracer at
looper_tick has had that call counted but not yet its increment.

A data breakpoint hit is slow to emulate (a step over the watched page), so
events that would watch the looper's increments are only registered when
the looper is traced: its tracer then lets it run a bounded number of
iterations per run step (gdb's `continue N`).
"""
import errno
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from unicorn import x86_const

from kernel_harness import ACCESS_OF, INIT, LOOPER, RW, W, X, Machine
from kgdbstub.core.breakinfo import Kind, Piece
from kgdbstub.core.debugger import DebuggerError
from kgdbstub.kernel.hw_breakpoint import Breakpoint, register_length
from kgdbstub.kernel.ptrace import dr7_for

# A guard against a hang, not a synchronisation: runs are bounded in rounds.
pytestmark = pytest.mark.timeout(120)

RIP = x86_const.UC_X86_REG_RIP
POLICIES = ("leftover", "session", "boot")
# (symbol, types) perf may watch; looper_iterations is the expensive one.
TARGETS = {"jiffies": (W,), "looper_iterations": (W, RW), "looper_tick": (X,)}
# kgdb's hardware breakpoints: (kind, symbol, length). Some stop the machine
# every round or every fork; the runs just go on after each stop.
KGDB_REQUESTS = [
    (Kind.EXECUTE, "do_fork", 1),
    (Kind.EXECUTE, "kgdb_breakpoint", 1),  # never runs again after boot
    (Kind.WRITE, "total_forks", 8),
    (Kind.WRITE, "jiffies", 8),
    (Kind.READ, "jiffies", 8),
    (Kind.ACCESS, "jiffies", 8),
    (Kind.WRITE, "linux_banner", 8),  # never written
]
bindings = st.one_of(
    st.just(("wide",)),
    st.tuples(st.just("cpu"), st.integers(0, 1)),
    st.tuples(st.just("task"), st.sampled_from([INIT, LOOPER]), st.sampled_from([None, None, 0, 1])),
)


@dataclass
class Expectation:
    """One event, or a wide event's per-CPU events, and what they should have counted."""

    events: list[Breakpoint]
    counter: object  # () -> int: the ground truth's running total
    exact: bool  # False: the truth is only an upper bound (a CPU's or a task's share)
    counted: int = 0  # over the intervals already closed
    since: int | None = None  # the counter when the current enabled interval opened
    label: str = ""
    watching: tuple = ()  # what the events watched when the counter was chosen
    base: int = 0  # hits before it was followed

    @staticmethod
    def watched(events) -> tuple:
        return tuple((e.address, e.type, e.length) for e in events)

    @property
    def enabled(self) -> bool:
        return all(e.enabled for e in self.events)

    def expected(self) -> int:
        return self.counted + (0 if self.since is None else self.counter() - self.since)

    def check(self) -> None:
        hits, expected = sum(e.hits for e in self.events) - self.base, self.expected()
        if self.exact:
            assert hits == expected, f"{self}: {hits} hits, {expected} expected"
        else:
            assert 0 <= hits <= expected, f"{self}: {hits} hits, at most {expected} expected"

    def __str__(self) -> str:
        ids = ",".join(str(e.id) for e in self.events)
        return f"{self.label} (event {ids}, counted {self.counted} before, since {self.since})"


class SharingMachine(RuleBasedStateMachine):
    # -- setting up ---------------------------------------------------------------

    @initialize(policy=st.sampled_from(POLICIES), traced=st.sampled_from([True, True, True, False]))
    def boot(self, policy, traced):
        self.m = Machine(policy=policy)
        self.kernel, self.debugger = self.m.kernel, self.m.debugger
        self.accounting = self.kernel.accounting
        self.symbols = {self.m.address(name): name for name in TARGETS}
        self.tick_address = self.m.address("looper_tick")
        self.expectations: list[Expectation] = []
        self.limiter: Breakpoint | None = None
        if traced and policy != "boot":
            tracee = self.m.trace(0, "looper_tick")
            self.kernel.ptrace.cont(LOOPER, 0)
            self.limiter = tracee.events[0]
        self.sync()

    # -- ground truth ------------------------------------------------------------------

    def ticks_called(self) -> int:
        """looper_tick calls that hit: the increments, plus one if the looper is between a call and its increment.

        It is there when its tracer stopped it on the call, or when its turn
        ended after the call, and then also while an interrupt runs in its
        context: the user state it returns to is the oldest frame.
        """
        return self.m.iterations + self.m.looper_mid_iteration()

    def truth_of(self, event: Breakpoint, wide: bool):
        name = self.symbols.get(event.address)
        if (event.type is X) != (name == "looper_tick"):
            return (lambda: 0), True  # code is never written, data never executed
        if name == "jiffies":
            if wide:
                return (lambda: self.m.jiffies), True
            if event.task is None:  # the tick is on CPU 0
                return ((lambda: self.m.jiffies) if event.cpu == 0 else (lambda: 0)), True
            return (lambda: self.m.jiffies), False  # ticks that came while the task was current on CPU 0
        counter = (lambda: self.m.iterations) if name == "looper_iterations" else self.ticks_called
        if event.task == INIT:
            return (lambda: 0), True  # init never runs the user program
        return counter, wide or (event.task == LOOPER and event.cpu is None)

    def sync(self) -> None:
        """Follow registrations, removals and enable/disable made since the last step.

        The machine is stopped whenever this runs, so each change happened at
        the counters' present values.
        """
        registered = {id(e) for e in self.accounting.breakpoints}
        for expectation in list(self.expectations):
            if not all(id(e) in registered for e in expectation.events):
                expectation.check()  # its final count
                self.expectations.remove(expectation)
        known = {id(e) for x in self.expectations for e in x.events}
        groups = {id(e): group for group in self.kernel.perf.wide_groups.values() for e in group}
        for event in self.accounting.breakpoints:
            if event.owner == "kgdb" or id(event) in known:
                continue
            group = groups.get(id(event), [event])
            self.expectations.append(Expectation(list(group), None, True, base=sum(e.hits for e in group)))
            known.update(id(e) for e in group)
        for expectation in self.expectations:
            if expectation.watching != Expectation.watched(expectation.events):
                # New, or moved (a tracer poked another address into its DR): a new truth from now on.
                if expectation.since is not None:
                    expectation.counted = expectation.expected()
                    expectation.since = None
                event = expectation.events[0]
                expectation.counter, expectation.exact = self.truth_of(event, wide=len(expectation.events) > 1)
                expectation.watching = Expectation.watched(expectation.events)
                expectation.label = (f"{event.owner} {event.type.name} {self.symbols.get(event.address)} "
                                     f"cpu={event.cpu} task={event.task}")
            if expectation.enabled and expectation.since is None:
                expectation.since = expectation.counter()
            elif not expectation.enabled and expectation.since is not None:
                expectation.counted = expectation.expected()
                expectation.since = None

    # -- checks ----------------------------------------------------------------------------

    def check_slots(self, running: bool) -> None:
        kernel = self.kernel
        for cpu in range(kernel.ncpus):
            assert self.accounting.slots_needed(cpu) <= 4, f"CPU {cpu} over-committed"
            owners = kernel.debug_slots.owners[cpu]
            registers = kernel.processor.debug_registers[cpu]
            for dr, owner in enumerate(owners):
                slot = registers.slot(dr)
                assert slot.enabled == (owner is not None), f"CPU {cpu} DR{dr}: enabled={slot.enabled}, owner={owner}"
                if isinstance(owner, Breakpoint):
                    length = register_length(owner.type, owner.length)  # an execute one: DR7 LEN 00
                    assert (slot.address, slot.access, slot.length) == (owner.address, ACCESS_OF[owner.type], length)
                elif isinstance(owner, Piece):
                    assert (slot.address, slot.access, slot.length) == (owner.address, owner.access, owner.length)
            held = [o for o in owners if o is not None]
            assert len({id(o) for o in held}) == len(held), f"an owner in two DRs of CPU {cpu}"

            # Every enabled event that should be on this CPU now is, and no other.
            for event in self.accounting.breakpoints:
                if event.owner == "kgdb":
                    continue
                due = event.enabled and (
                    (event.task is None and event.cpu == cpu)
                    or (event.task is not None and event.cpu in (None, cpu) and kernel.current[cpu].pid == event.task))
                assert bool(kernel.debug_slots.held_by(cpu, event)) == due, \
                    f"{event} on CPU {cpu} (running {kernel.current[cpu].pid}): installed={not due}"

            # kgdb: only breakpoints gdb still has, never more DRs than it reserved.
            pieces = [o for o in held if isinstance(o, Piece)]
            active = self.debugger.hardware.active()
            assert all(any(p is a for a in active) for p in pieces), "a removed kgdb breakpoint is still in a DR"
            reserved = sum(1 for b in self.accounting.breakpoints if b.owner == "kgdb" and b.cpu == cpu)
            assert len(pieces) <= reserved
            if running:
                assert len(pieces) == len(active), "kgdb's breakpoints are on every CPU while the machine runs"

    def check_counts(self) -> None:
        for expectation in self.expectations:
            expectation.check()

    def observe(self) -> None:
        self.check_slots(running=True)
        self.check_counts()

    @invariant()
    def everything_holds(self) -> None:
        self.sync()
        self.check_slots(running=False)
        self.check_counts()

    # -- perf ----------------------------------------------------------------------------------

    def limited(self) -> bool:
        return self.limiter is not None

    def may_watch(self, name: str, binding) -> bool:
        """looper_iterations only while the tracer bounds how long the looper runs."""
        return name != "looper_iterations" or self.limited() or binding[:2] == ("task", INIT)

    @rule(watched=st.sampled_from(sorted(TARGETS)), binding=bindings, data=st.data())
    def perf_register(self, watched, binding, data):
        if not self.may_watch(watched, binding):
            return
        kind = data.draw(st.sampled_from(TARGETS[watched]))
        options = dict(address=self.m.address(watched), length=8, type=kind)
        before = self.accounting.snapshot()
        try:
            if binding[0] == "wide":
                self.kernel.perf.register_wide(**options)
            elif binding[0] == "cpu":
                self.kernel.perf.register(cpu=binding[1], task=None, **options)
            else:
                self.kernel.perf.register(cpu=binding[2], task=binding[1], **options)
        except OSError as refused:
            assert refused.errno == errno.ENOSPC
            assert self.accounting.snapshot() == before, "a refused registration left a trace"

    def perf_groups(self):
        groups, seen = [], set()
        wide = {id(e): g for g in self.kernel.perf.wide_groups.values() for e in g}
        for event in self.kernel.perf.events():
            if event.owner == "perf" and id(event) not in seen:
                group = list(wide.get(id(event), [event]))  # a copy: unregistering changes perf's list
                seen.update(id(e) for e in group)
                groups.append(group)
        return groups

    @rule(data=st.data())
    def perf_unregister(self, data):
        groups = self.perf_groups()
        if groups:
            for event in data.draw(st.sampled_from(groups)):
                self.kernel.perf.unregister(event)

    @rule(data=st.data())
    def perf_toggle(self, data):
        groups = self.perf_groups()
        if groups:
            group = data.draw(st.sampled_from(groups))
            before = [self.accounting.slots_needed(cpu) for cpu in range(self.kernel.ncpus)]
            for event in group:
                self.kernel.perf.modify(event, enabled=not event.enabled)
            assert [self.accounting.slots_needed(cpu) for cpu in range(self.kernel.ncpus)] == before, \
                "enabling or disabling an event keeps its slot"

    # -- ptrace --------------------------------------------------------------------------------------

    @precondition(lambda self: self.limited())
    @rule(index=st.integers(1, 3), where=st.sampled_from([("looper_tick", X, 1), ("looper_iterations", W, 8)]),
          enable=st.booleans())
    def ptrace_poke(self, index, where, enable):
        ptrace = self.kernel.ptrace
        tracee = ptrace.tracees[LOOPER]
        symbol, kind, length = where
        snapshot = self.accounting.snapshot()
        try:
            ptrace.poke_dr(LOOPER, index, self.m.address(symbol))
        except OSError as refused:
            # ENOSPC registering; EINVAL moving an event set up for another length to this address.
            assert refused.errno == (errno.EINVAL if tracee.events[index] else errno.ENOSPC)
            assert self.accounting.snapshot() == snapshot
            return
        field = dr7_for(index, kind, length, enabled=enable)
        mask = (0xF << (16 + 4 * index)) | (0b11 << (2 * index))
        ptrace.poke_dr7(LOOPER, (tracee.dr7 & ~mask) | field)

    @precondition(lambda self: self.limited())
    @rule(index=st.integers(1, 3))
    def ptrace_disable(self, index):
        ptrace = self.kernel.ptrace
        tracee = ptrace.tracees[LOOPER]
        ptrace.poke_dr7(LOOPER, tracee.dr7 & ~(0b11 << (2 * index)))

    # -- kgdb ---------------------------------------------------------------------------------------------

    @precondition(lambda self: not self.debugger.attached)
    @rule()
    def attach(self):
        self.kgdb_before = self.kgdb_reservations()
        self.policy_at_attach = self.debugger.policy.name
        self.debugger.attach()

    def kgdb_reservations(self):
        """kgdb's slots per CPU (a policy switch may take them again, under new ids)."""
        return [sum(1 for b in self.accounting.breakpoints if b.owner == "kgdb" and b.cpu == cpu)
                for cpu in range(self.kernel.ncpus)]

    @precondition(lambda self: self.debugger.attached)
    @rule()
    def detach(self):
        self.debugger.detach()
        assert self.debugger.hardware.requests == [] and not self.debugger.breakpoints
        # Whatever kgdb took during the session is given back (perf may have come and gone meanwhile).
        if self.debugger.policy.name == self.policy_at_attach:
            assert self.kgdb_reservations() == self.kgdb_before
        expected = 4 if self.debugger.policy.name == "boot" else 0
        assert [len([b for b in self.accounting.breakpoints if b.owner == "kgdb" and b.cpu == cpu])
                for cpu in range(self.kernel.ncpus)] == [expected] * self.kernel.ncpus

    @precondition(lambda self: self.debugger.attached)
    @rule(request=st.sampled_from(KGDB_REQUESTS))
    def kgdb_insert(self, request):
        kind, symbol, length = request
        snapshot = self.accounting.snapshot()
        try:
            self.debugger.insert_hardware(kind, self.m.address(symbol), length)
        except DebuggerError as refused:
            assert refused.errno == errno.ENOSPC
            assert self.accounting.snapshot() == snapshot, "a refused insert left a trace"

    @precondition(lambda self: self.debugger.hardware.requests)
    @rule(data=st.data())
    def kgdb_remove(self, data):
        request = data.draw(st.sampled_from(self.debugger.hardware.requests))
        self.debugger.remove_hardware(request.kind, request.address, request.length)

    @rule(name=st.sampled_from(POLICIES))
    def switch_policy(self, name):
        needed = [self.accounting.slots_needed(cpu) for cpu in range(self.kernel.ncpus)]
        old, snapshot = self.debugger.policy.name, self.accounting.snapshot()
        try:
            self.debugger.set_policy(name)
        except OSError as refused:
            assert refused.errno in (errno.EBUSY, errno.ENOSPC)
            assert self.debugger.policy.name == old
            assert [self.accounting.slots_needed(cpu) for cpu in range(self.kernel.ncpus)] == needed
            if refused.errno == errno.EBUSY:
                assert self.accounting.snapshot() == snapshot
            return
        assert self.debugger.policy.name == name
        if name == "boot":
            assert all(self.accounting.slots_needed(cpu) == 4 for cpu in range(self.kernel.ncpus))

    # -- running ------------------------------------------------------------------------------------------------

    @rule(rounds=st.integers(1, 3), burst=st.integers(1, 150))
    def run(self, rounds, burst):
        self.sync()
        if not self.limited():
            self.m.run_rounds(rounds, observe=self.observe)
            return
        # The tracer's `continue N`: N stops, one per debug exception of the
        # looper (two of its DRs matching one instruction make one stop).
        tracee = self.kernel.ptrace.tracees[LOOPER]
        on_calls = any(e is not None and e.enabled and e.type is X and e.address == self.tick_address
                       for e in tracee.events)
        on_increments = any(e is not None and e.enabled and e.type is not X
                            and self.symbols.get(e.address) == "looper_iterations" for e in tracee.events)
        calls, increments = self.ticks_called(), self.m.iterations
        self.kernel.ptrace.cont(LOOPER, burst)
        self.kernel.resume_task(LOOPER)
        self.m.run_rounds(rounds, observe=self.observe)
        stops = (self.ticks_called() - calls) * on_calls + (self.m.iterations - increments) * on_increments
        if self.m.stopped():
            assert stops == burst, f"continue {burst} stopped the looper after {stops} stops"
        else:
            assert stops < burst

    @rule(burst=st.integers(1, 20))
    def run_a_round(self, burst):
        """The same, shorter: running is what most steps should do, so it has two rules."""
        self.run(1, burst)


SharingMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=100, deadline=None, derandomize=True, database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSharing = SharingMachine.TestCase
