"""Random sequences of registrations, changes and removals against a plain model.

The model knows nothing of the rule's formula.  It keeps the list of live
breakpoints and asks the question the rule exists to answer: for every CPU and
every task that may run there, do the breakpoints that would then be installed
(the CPU's own, and that task's for this CPU or for all) fit in the slots?
SlotAccounting must accept a registration exactly when the answer stays yes,
refuse it otherwise without changing anything, and come back to where it
started when everything is unregistered.
"""
import errno

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kgdbstub.kernel.hw_breakpoint import TASK_SIZE_MAX, BreakpointType, SlotAccounting

TASKS = (1, 2, 3)
USER_DATA = 0x601000
KERNEL_DATA = 0xFFFFFFFF82000000

# Mostly well-formed attributes, with enough misalignment, odd lengths,
# read-only watches and kernel addresses to exercise every EINVAL.
attributes = st.fixed_dictionaries({
    "address": st.tuples(st.sampled_from([USER_DATA, KERNEL_DATA, TASK_SIZE_MAX - 8]),
                         st.sampled_from([0, 0, 0, 8, 1, 2, 4])).map(sum),
    "length": st.sampled_from([1, 2, 4, 8, 8, 3, 16]),
    "type": st.sampled_from(list(BreakpointType)),
})
owners = st.sampled_from(["perf", "ptrace"])
# A CPU number is drawn before the machine's CPU count is known; reduce it.
cpu_numbers = st.integers(0, 3)


def parse_error(address, length, type, exclude_kernel):
    """hw_breakpoint_parse's errno for these attributes (None: x86 can watch them)."""
    if type is BreakpointType.READ:
        return errno.EINVAL
    if type is BreakpointType.EXECUTE:
        if length != 8:  # sizeof(long)
            return errno.EINVAL
        length = 1  # the instruction, for the kernel-space check
    elif address % length:
        return errno.EINVAL
    elif length not in (1, 2, 4, 8):
        return errno.EINVAL if length & (length - 1) else errno.EOPNOTSUPP  # no AMD range breakpoints
    return errno.EINVAL if exclude_kernel and address + length > TASK_SIZE_MAX else None


class Model:
    """Live breakpoints as (cpu, task) bindings, and what they physically need."""

    def __init__(self, cpus, slots):
        self.cpus, self.slots = cpus, slots
        self.bindings = []

    def installed(self, bindings, cpu, running):
        """How many DRs `cpu` needs while task `running` (or no task) runs on it."""
        return sum(1 for bound_cpu, task in bindings
                   if (task is None and bound_cpu == cpu)
                   or (task is not None and task == running and bound_cpu in (cpu, None)))

    def safe(self, bindings):
        return all(self.installed(bindings, cpu, running) <= self.slots
                   for cpu in range(self.cpus) for running in (None, *TASKS))

    def accepts(self, *new_bindings):
        return self.safe(self.bindings + list(new_bindings))


class SlotAccountingMachine(RuleBasedStateMachine):
    @initialize(cpus=st.sampled_from([2, 4]), slots=st.integers(1, 4))
    def start(self, cpus, slots):
        self.acct = SlotAccounting(cpus=cpus, slots=slots)
        self.model = Model(cpus, slots)
        self.initial = self.acct.snapshot()
        self.live = []  # the breakpoints we hold, in registration order
        self.last_id = 0

    # ---- registering: accepted exactly when it stays safe ---------------------

    def attempt(self, new_bindings, exclude_kernel, attrs, call):
        before = self.acct.snapshot()
        # register_perf_hw_breakpoint reserves the slot, then parses; a wide
        # request is one such registration per CPU, the first refusal its errno.
        for cpu in range(len(new_bindings)):
            if not self.model.accepts(*new_bindings[: cpu + 1]):
                expected = errno.ENOSPC
                break
            expected = parse_error(**attrs, exclude_kernel=exclude_kernel)
            if expected is not None:
                break
        try:
            made = call()
        except OSError as refusal:
            assert refusal.errno == expected, (refusal, expected)
            assert self.acct.snapshot() == before, "a refusal changed the accounting"
            return
        assert expected is None, f"accepted, but the model expected errno {expected}"
        made = made if isinstance(made, list) else [made]
        for bp, (cpu, task) in zip(made, new_bindings, strict=True):
            assert (bp.cpu, bp.task, bp.address, bp.length, bp.type) == (cpu, task, attrs["address"],
                                                                          attrs["length"], attrs["type"])
            assert bp.id > self.last_id
            self.last_id = bp.id
        self.live += made
        self.model.bindings += new_bindings

    @rule(cpu=cpu_numbers, attrs=attributes, owner=owners, enabled=st.booleans())
    def register_cpu_bound(self, cpu, attrs, owner, enabled):
        cpu %= self.acct.cpus
        self.attempt([(cpu, None)], owner == "ptrace", attrs, lambda: self.acct.register(
            **attrs, cpu=cpu, task=None, owner=owner, enabled=enabled))

    @rule(task=st.sampled_from(TASKS), cpu=cpu_numbers, attrs=attributes, owner=owners,
          enabled=st.booleans())
    def register_task_on_one_cpu(self, task, cpu, attrs, owner, enabled):
        cpu %= self.acct.cpus
        self.attempt([(cpu, task)], owner == "ptrace", attrs, lambda: self.acct.register(
            **attrs, cpu=cpu, task=task, owner=owner, enabled=enabled))

    @rule(task=st.sampled_from(TASKS), attrs=attributes, owner=owners, enabled=st.booleans())
    def register_task_on_all_cpus(self, task, attrs, owner, enabled):
        self.attempt([(None, task)], owner == "ptrace", attrs, lambda: self.acct.register(
            **attrs, cpu=None, task=task, owner=owner, enabled=enabled))

    @rule(attrs=attributes)
    def register_wide(self, attrs):
        bindings = [(cpu, None) for cpu in range(self.acct.cpus)]
        self.attempt(bindings, False, attrs, lambda: self.acct.register_wide(**attrs, owner="perf"))

    @rule(cpu=cpu_numbers)
    def reserve_debugger(self, cpu):
        cpu %= self.acct.cpus
        attrs = dict(address=0, length=1, type=BreakpointType.WRITE)
        self.attempt([(cpu, None)], False, attrs, lambda: self.acct.reserve_debugger(cpu))

    # ---- changing and removing ------------------------------------------------

    @precondition(lambda self: self.live)
    @rule(which=st.integers(0, 1000), attrs=attributes, enabled=st.booleans())
    def modify(self, which, attrs, enabled):
        bp = self.live[which % len(self.live)]
        before = self.acct.snapshot()
        try:
            self.acct.modify(bp, **attrs, enabled=enabled)
        except OSError as refusal:
            assert refusal.errno == parse_error(**attrs, exclude_kernel=bp.exclude_kernel) is not None
            assert self.acct.snapshot() == before
            return
        assert parse_error(**attrs, exclude_kernel=bp.exclude_kernel) is None
        assert (bp.address, bp.length, bp.type, bp.enabled) == (
            attrs["address"], attrs["length"], attrs["type"], enabled)

    @precondition(lambda self: self.live)
    @rule(which=st.integers(0, 1000))
    def unregister(self, which):
        index = which % len(self.live)
        bp = self.live.pop(index)
        del self.model.bindings[index]
        (self.acct.release if bp.owner == "kgdb" else self.acct.unregister)(bp)

    @rule()
    def unregister_everything(self):
        for bp in self.live:
            self.acct.unregister(bp)
        self.live, self.model.bindings = [], []
        assert self.acct.snapshot() == self.initial
        assert self.acct.breakpoints == []

    # ---- always ---------------------------------------------------------------

    @invariant()
    def the_accounting_holds_what_we_hold(self):
        assert self.acct.breakpoints == self.live  # identity, in registration order
        assert [(bp.cpu, bp.task) for bp in self.live] == self.model.bindings

    @invariant()
    def no_cpu_is_ever_overcommitted(self):
        for cpu in range(self.acct.cpus):
            assert self.acct.slots_needed(cpu) <= self.acct.slots
            for running in (None, *TASKS):
                assert self.model.installed(self.model.bindings, cpu, running) <= self.acct.slots

    @invariant()
    def the_counts_are_the_model_counts(self):
        for cpu in range(self.acct.cpus):
            pinned = self.model.installed(self.model.bindings, cpu, None)
            assert self.acct.cpu_pinned(cpu) == pinned
            busiest = max(self.model.installed(self.model.bindings, cpu, task) for task in TASKS) - pinned
            assert self.acct.max_task_count(cpu) == busiest
            assert self.acct.slots_needed(cpu) == pinned + busiest
            for task in TASKS:
                assert self.acct.task_count(task, cpu) == self.model.installed(
                    self.model.bindings, cpu, task) - pinned

    @invariant()
    def fits_answers_what_register_would_do(self):
        for cpu in (None, *range(self.acct.cpus)):
            for task in (None, *TASKS):
                if cpu is None and task is None:
                    continue
                assert self.acct.fits(cpu=cpu, task=task) == self.model.accepts((cpu, task))

    def teardown(self):
        if hasattr(self, "acct"):
            self.unregister_everything()


SlotAccountingMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestSlotAccounting = SlotAccountingMachine.TestCase
