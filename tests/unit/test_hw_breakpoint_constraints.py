"""The slot constraint rule.

First Linux's KUnit suite for it (kernel/events/hw_breakpoint_test.c), case by
case, on 2 and on 4 CPUs; then the rest of the contract of SlotAccounting:
binding and attribute checks in the order register_perf_hw_breakpoint makes
them (the slot first), wide registration, modify, the debugger's reservations.
"""
import errno

import pytest

from kgdbstub.kernel.hw_breakpoint import TASK_SIZE_MAX, BreakpointType, SlotAccounting

X, W, R, RW = BreakpointType.EXECUTE, BreakpointType.WRITE, BreakpointType.READ, BreakpointType.READ_WRITE
ALL_CPUS = None  # Linux's cpu -1
NO_TASK = None  # Linux's NULL task
CURRENT = 100  # the KUnit test's own task
OTHER = 200  # the dummy kthread it creates
BREAK_VARS = 0xFFFFFFFF82000000  # a kernel char array, one byte per test breakpoint
USER_DATA = 0x601000


def refused(errno_code, call, *args, **kwargs):
    with pytest.raises(OSError) as caught:
        call(*args, **kwargs)
    assert caught.value.errno == errno_code, caught.value
    return caught.value


# ---- the KUnit suite ----------------------------------------------------------


class Suite:
    """The KUnit suite's helpers.  Its breakpoints are numbered like test_bps[]:
    one byte of break_vars each, read/write, length 1, owned by in-kernel perf."""

    def __init__(self, cpus: int):
        self.acct = SlotAccounting(cpus=cpus, slots=4)
        self.initial = self.acct.snapshot()
        self.test_bps = {}
        self.idx = 0

    def register_test_bp(self, cpu, task):
        return self.acct.register(address=BREAK_VARS + self.idx, length=1, type=RW,
                                  cpu=cpu, task=task, owner="perf")

    def fill_one_bp_slot(self, cpu, task):
        self.test_bps[self.idx] = self.register_test_bp(cpu, task)
        self.idx += 1

    def fill_bp_slots(self, cpu, task, skip=0):
        """Fill `cpu`/`task` up, leaving `skip` slots free."""
        for _ in range(self.acct.slots - skip):
            self.fill_one_bp_slot(cpu, task)

    def expect_nospc(self, cpu, task):
        before = self.acct.snapshot()
        refused(errno.ENOSPC, self.register_test_bp, cpu, task)
        assert not self.acct.fits(cpu=cpu, task=task)
        assert self.acct.snapshot() == before, "a refusal changed the accounting"

    def unregister_test_bp(self, idx):
        self.acct.unregister(self.test_bps.pop(idx))

    def exit(self):
        """test_exit: unregister what is left; that must undo everything."""
        for idx in list(self.test_bps):
            self.unregister_test_bp(idx)
        assert self.acct.snapshot() == self.initial
        assert all(self.acct.slots_needed(cpu) == 0 for cpu in range(self.acct.cpus))


@pytest.fixture(params=[2, 4], ids=lambda cpus: f"{cpus}cpus")
def suite(request):
    # test_init: the suite needs at least two CPUs; CPUs are numbered from 0,
    # so get_test_cpu(n) is simply n.
    suite = Suite(request.param)
    yield suite
    suite.exit()


def test_one_cpu(suite):
    suite.fill_bp_slots(0, NO_TASK)
    suite.expect_nospc(ALL_CPUS, CURRENT)
    suite.expect_nospc(0, NO_TASK)


def test_many_cpus(suite):
    # CPUs are independent: each one fills up on its own, whatever the count.
    for cpu in range(suite.acct.cpus):
        suite.fill_bp_slots(cpu, NO_TASK)
        suite.expect_nospc(cpu, NO_TASK)


def test_one_task_on_all_cpus(suite):
    suite.fill_bp_slots(ALL_CPUS, CURRENT)
    suite.expect_nospc(ALL_CPUS, CURRENT)
    suite.expect_nospc(0, CURRENT)
    suite.expect_nospc(0, NO_TASK)
    # Remove one, and a CPU-bound one fits again.
    suite.unregister_test_bp(0)
    suite.fill_one_bp_slot(0, NO_TASK)


def test_two_tasks_on_all_cpus(suite):
    # Tasks are independent: each may use every slot, because they take turns.
    suite.fill_bp_slots(ALL_CPUS, CURRENT)
    suite.fill_bp_slots(ALL_CPUS, OTHER)

    suite.expect_nospc(ALL_CPUS, CURRENT)
    suite.expect_nospc(ALL_CPUS, OTHER)
    suite.expect_nospc(0, CURRENT)
    suite.expect_nospc(0, OTHER)
    suite.expect_nospc(0, NO_TASK)
    # Removing one of the first task's is not enough: the other task is still full.
    suite.unregister_test_bp(0)
    suite.expect_nospc(0, NO_TASK)


def test_one_task_on_one_cpu(suite):
    suite.fill_bp_slots(0, CURRENT)
    suite.expect_nospc(ALL_CPUS, CURRENT)
    suite.expect_nospc(0, CURRENT)
    suite.expect_nospc(0, NO_TASK)
    # Remove one, and a CPU-bound one fits again; unlike above, the task's
    # count here depends on the CPU.
    suite.unregister_test_bp(0)
    suite.fill_one_bp_slot(0, NO_TASK)


def test_one_task_mixed(suite):
    # The KUnit case needs 3 slots; x86 has 4.
    suite.fill_one_bp_slot(0, CURRENT)
    suite.fill_bp_slots(ALL_CPUS, CURRENT, skip=1)
    suite.expect_nospc(ALL_CPUS, CURRENT)
    suite.expect_nospc(0, CURRENT)
    suite.expect_nospc(0, NO_TASK)

    # From a CPU-dependent count back to a CPU-independent one.
    suite.unregister_test_bp(0)
    suite.unregister_test_bp(1)
    suite.fill_one_bp_slot(0, NO_TASK)
    suite.fill_one_bp_slot(0, NO_TASK)
    suite.expect_nospc(0, NO_TASK)


def test_two_tasks_on_one_cpu(suite):
    suite.fill_bp_slots(0, CURRENT)
    suite.fill_bp_slots(0, OTHER)

    suite.expect_nospc(ALL_CPUS, CURRENT)
    suite.expect_nospc(ALL_CPUS, OTHER)
    suite.expect_nospc(0, CURRENT)
    suite.expect_nospc(0, OTHER)
    suite.expect_nospc(0, NO_TASK)
    # Other CPUs are untouched (KUnit fills CPU 1; with more CPUs, fill each).
    for cpu in range(1, suite.acct.cpus):
        suite.fill_bp_slots(cpu, NO_TASK)


def test_two_tasks_on_one_all_cpus(suite):
    suite.fill_bp_slots(0, CURRENT)
    suite.fill_bp_slots(ALL_CPUS, OTHER)

    suite.expect_nospc(ALL_CPUS, CURRENT)
    suite.expect_nospc(ALL_CPUS, OTHER)
    suite.expect_nospc(0, CURRENT)
    suite.expect_nospc(0, OTHER)
    suite.expect_nospc(0, NO_TASK)
    # The task on all CPUs fills the others too (KUnit tries CPU 1; try each).
    for cpu in range(1, suite.acct.cpus):
        suite.expect_nospc(cpu, NO_TASK)


def test_task_on_all_and_one_cpu(suite):
    # The KUnit case needs 3 slots; x86 has 4.
    suite.fill_bp_slots(ALL_CPUS, CURRENT, skip=2)
    # From only all-CPU breakpoints to mixed.
    tsk_on_cpu_idx = suite.idx
    suite.fill_one_bp_slot(0, CURRENT)
    suite.fill_one_bp_slot(ALL_CPUS, CURRENT)

    suite.expect_nospc(ALL_CPUS, CURRENT)
    suite.expect_nospc(0, CURRENT)
    suite.expect_nospc(0, NO_TASK)

    # Another CPU still has one slot to give.
    cpu_idx = suite.idx
    suite.fill_one_bp_slot(1, NO_TASK)
    suite.expect_nospc(1, NO_TASK)

    # Back to only all-CPU breakpoints for the task.
    suite.unregister_test_bp(tsk_on_cpu_idx)
    # CPU 1 still holds a CPU-bound one, so the task cannot grow on all CPUs.
    suite.expect_nospc(ALL_CPUS, CURRENT)
    # Remove it and try again.
    suite.unregister_test_bp(cpu_idx)
    suite.fill_one_bp_slot(ALL_CPUS, CURRENT)

    suite.expect_nospc(ALL_CPUS, CURRENT)
    suite.expect_nospc(0, CURRENT)
    suite.expect_nospc(0, NO_TASK)
    suite.expect_nospc(1, NO_TASK)


# ---- what the counts say --------------------------------------------------------


def test_the_counts_behind_the_rule():
    acct = SlotAccounting(cpus=2, slots=4)
    acct.register(address=BREAK_VARS, length=8, type=W, cpu=0, task=NO_TASK, owner="perf")
    for task, cpu in ((1, 0), (1, ALL_CPUS), (2, ALL_CPUS), (2, ALL_CPUS), (3, 1)):
        acct.register(address=USER_DATA, length=1, type=RW, cpu=cpu, task=task, owner="ptrace")

    assert [acct.cpu_pinned(cpu) for cpu in (0, 1)] == [1, 0]
    assert [acct.task_count(1, cpu) for cpu in (0, 1)] == [2, 1]  # its all-CPU one counts on both
    assert [acct.task_count(2, cpu) for cpu in (0, 1)] == [2, 2]
    assert [acct.task_count(3, cpu) for cpu in (0, 1)] == [0, 1]
    assert acct.task_count(4, 0) == 0
    assert [acct.max_task_count(cpu) for cpu in (0, 1)] == [2, 2]  # a max, not a sum
    assert [acct.slots_needed(cpu) for cpu in (0, 1)] == [3, 2]

    assert acct.fits(cpu=0, task=NO_TASK)  # 3 + 1 <= 4
    acct.register(address=BREAK_VARS + 8, length=8, type=W, cpu=0, task=NO_TASK, owner="perf")
    assert not acct.fits(cpu=0, task=NO_TASK)
    assert not acct.fits(cpu=0, task=1) and not acct.fits(cpu=ALL_CPUS, task=2)
    assert acct.fits(cpu=1, task=2)  # cpu 1 has no CPU-bound ones
    assert acct.fits(cpu=ALL_CPUS, task=3)  # 2 + 0 on cpu 0, 0 + 1 on cpu 1
    assert acct.fits(cpu=ALL_CPUS, task=4)  # a task with nothing yet


def test_a_disabled_breakpoint_still_holds_its_slot():
    acct = SlotAccounting(cpus=2, slots=4)
    for offset in range(4):
        acct.register(address=BREAK_VARS + offset, length=1, type=W, cpu=1, task=NO_TASK,
                      owner="perf", enabled=False)
    refused(errno.ENOSPC, acct.register, address=BREAK_VARS, length=1, type=W, cpu=1,
            task=NO_TASK, owner="perf")
    refused(errno.ENOSPC, acct.register, address=USER_DATA, length=1, type=W, cpu=ALL_CPUS,
            task=7, owner="ptrace", enabled=False)


def test_ids_are_unique_and_increasing_and_the_list_keeps_registration_order():
    acct = SlotAccounting(cpus=2)
    first = acct.register(address=BREAK_VARS, length=8, type=X, cpu=0, task=NO_TASK, owner="perf")
    second = acct.register(address=USER_DATA, length=4, type=W, cpu=ALL_CPUS, task=5, owner="ptrace")
    acct.unregister(first)
    third = acct.register(address=BREAK_VARS, length=8, type=X, cpu=1, task=NO_TASK, owner="perf")
    assert (first.id, second.id, third.id) == (1, 2, 3)
    assert acct.breakpoints == [second, third]
    assert (third.owner, third.hits, third.enabled) == ("perf", 0, True)


def test_unregistering_what_is_not_registered_is_a_bug():
    acct = SlotAccounting(cpus=2)
    bp = acct.register(address=BREAK_VARS, length=8, type=X, cpu=0, task=NO_TASK, owner="perf")
    twin = acct.register(address=BREAK_VARS, length=8, type=X, cpu=0, task=NO_TASK, owner="perf")
    acct.unregister(bp)
    with pytest.raises(ValueError):
        acct.unregister(bp)
    with pytest.raises(ValueError):
        acct.modify(bp, enabled=False)
    assert acct.breakpoints == [twin]  # the look-alike was not taken for it


def test_hit_counts_are_not_accounting():
    acct = SlotAccounting(cpus=2)
    bp = acct.register(address=BREAK_VARS, length=8, type=X, cpu=0, task=NO_TASK, owner="perf")
    before = acct.snapshot()
    bp.hits += 3
    assert acct.snapshot() == before
    acct.modify(bp, enabled=False)
    assert acct.snapshot() != before  # but what is registered, and how, is
    acct.modify(bp, enabled=True)
    assert acct.snapshot() == before
    hash(before)


# ---- bindings and attributes ----------------------------------------------------


@pytest.mark.parametrize("cpu", [-1, 2, 7])
def test_a_cpu_that_does_not_exist_is_refused(cpu):
    acct = SlotAccounting(cpus=2)
    for task in (NO_TASK, 3):
        refused(errno.EINVAL, acct.register, address=BREAK_VARS, length=1, type=W, cpu=cpu,
                task=task, owner="perf")
        refused(errno.EINVAL, acct.fits, cpu=cpu, task=task)
    refused(errno.EINVAL, acct.reserve_debugger, cpu)
    assert acct.snapshot() == SlotAccounting(cpus=2).snapshot()


def test_a_breakpoint_with_neither_cpu_nor_task_is_refused():
    # perf_event_alloc accepts "all CPUs" only for a task.
    acct = SlotAccounting(cpus=2)
    refused(errno.EINVAL, acct.register, address=BREAK_VARS, length=1, type=W, cpu=ALL_CPUS,
            task=NO_TASK, owner="perf")
    refused(errno.EINVAL, acct.fits, cpu=ALL_CPUS, task=NO_TASK)
    assert acct.breakpoints == []


# Each with the errno Linux gives it once a slot is reserved, and where.
MALFORMED = [
    pytest.param(USER_DATA, 1, R, errno.EINVAL, id="read-only"),  # arch_build_bp_info: no x86 type
    pytest.param(USER_DATA, 3, W, errno.EINVAL, id="length-3"),  # arch_build_bp_info: !is_power_of_2
    pytest.param(USER_DATA, 0, W, errno.EINVAL, id="length-0"),  # arch_build_bp_info: !is_power_of_2
    pytest.param(USER_DATA + 8, 16, RW, errno.EINVAL, id="length-16-misaligned"),  # arch_build_bp_info
    # arch_build_bp_info: a range breakpoint without X86_FEATURE_BPEXT.
    pytest.param(USER_DATA, 16, RW, errno.EOPNOTSUPP, id="length-16"),
    pytest.param(USER_DATA, 64, W, errno.EOPNOTSUPP, id="length-64"),
    pytest.param(USER_DATA + 2, 4, W, errno.EINVAL, id="misaligned-4"),  # hw_breakpoint_arch_parse
    pytest.param(USER_DATA + 4, 8, RW, errno.EINVAL, id="misaligned-8"),  # hw_breakpoint_arch_parse
    pytest.param(USER_DATA + 1, 2, W, errno.EINVAL, id="misaligned-2"),  # hw_breakpoint_arch_parse
    # arch_build_bp_info: an execute breakpoint's bp_len is sizeof(long);
    # DR7's LEN 00 for it is the register level's (arch_bp_generic_fields).
    pytest.param(0x401000, 1, X, errno.EINVAL, id="execute-length-1"),
    pytest.param(0x401000, 4, X, errno.EINVAL, id="execute-length-4"),
    # arch_build_bp_info: bp_addr + bp_len - 1 wraps around.
    pytest.param((1 << 64) - 4, 8, X, errno.EINVAL, id="execute-end-overflows"),
    pytest.param(-8, 8, W, errno.EINVAL, id="negative-address"),
    pytest.param(1 << 64, 1, W, errno.EINVAL, id="beyond-64-bits"),
]


def full_machine():
    """Two CPUs where neither CPU 0 nor task 9 has a slot left: a wide event
    holds one slot of each CPU, task 9 the other three."""
    acct = SlotAccounting(cpus=2)
    acct.register_wide(address=BREAK_VARS, length=8, type=W, owner="perf")
    for _ in range(3):
        acct.register(address=USER_DATA, length=8, type=W, cpu=ALL_CPUS, task=9, owner="ptrace")
    return acct


@pytest.mark.parametrize("address, length, type, code", MALFORMED)
@pytest.mark.parametrize("cpu, task", [(0, NO_TASK), (1, 9), (ALL_CPUS, 9)])
def test_a_malformed_request_without_a_free_slot_is_enospc(address, length, type, code, cpu, task):
    # register_perf_hw_breakpoint: reserve_bp_slot comes before hw_breakpoint_parse.
    acct = full_machine()
    assert not acct.fits(cpu=cpu, task=task)
    before = acct.snapshot()
    refused(errno.ENOSPC, acct.register, address=address, length=length, type=type, cpu=cpu,
            task=task, owner="perf")
    assert acct.snapshot() == before


@pytest.mark.parametrize("address, length, type, code", MALFORMED)
@pytest.mark.parametrize("cpu, task", [(0, NO_TASK), (1, 9), (ALL_CPUS, 9)])
def test_a_malformed_request_with_a_free_slot_gets_the_parsers_errno(address, length, type, code, cpu, task):
    # register_perf_hw_breakpoint: hw_breakpoint_parse fails, release_bp_slot gives the slot back.
    acct = SlotAccounting(cpus=2)
    before = acct.snapshot()
    refused(code, acct.register, address=address, length=length, type=type, cpu=cpu, task=task, owner="perf")
    assert acct.snapshot() == before


@pytest.mark.parametrize("cpu, task", [(0, NO_TASK), (ALL_CPUS, 9)])
def test_what_is_no_breakpoint_type_is_einval_before_any_slot_is_counted(cpu, task):
    # __reserve_bp_slot: HW_BREAKPOINT_EMPTY and _INVALID are refused first.
    acct = full_machine()
    refused(errno.EINVAL, acct.register, address=USER_DATA, length=1, type="w", cpu=cpu, task=task, owner="perf")


@pytest.mark.parametrize("cpus", [2, 4])
def test_a_malformed_wide_request_gets_the_first_cpus_errno(cpus):
    # register_wide_hw_breakpoint stops at the first CPU that refuses and
    # returns its error: ENOSPC when CPU 0 is full, else CPU 0's parse error.
    for full, code in ((0, errno.ENOSPC), (cpus - 1, errno.EINVAL)):
        acct = SlotAccounting(cpus=cpus)
        for offset in range(4):
            acct.register(address=BREAK_VARS + offset, length=1, type=W, cpu=full, task=NO_TASK, owner="perf")
        before = acct.snapshot()
        refused(code, acct.register_wide, address=USER_DATA, length=3, type=W, owner="perf")
        refused(errno.ENOSPC if full == 0 else errno.EOPNOTSUPP, acct.register_wide, address=USER_DATA,
                length=16, type=W, owner="perf")
        assert acct.snapshot() == before


@pytest.mark.parametrize("address, length, type", [
    (USER_DATA, 1, W), (USER_DATA + 2, 2, RW), (USER_DATA + 4, 4, W), (USER_DATA + 8, 8, RW),
    (0x401003, 8, X), ((1 << 64) - 8, 8, W), ((1 << 64) - 8, 8, X),
])
def test_what_x86_can_watch_is_accepted(address, length, type):
    acct = SlotAccounting(cpus=2)
    bp = acct.register(address=address, length=length, type=type, cpu=1, task=NO_TASK, owner="perf")
    assert (bp.address, bp.length, bp.type, bp.cpu, bp.task) == (address, length, type, 1, None)


# ---- kernel addresses ---------------------------------------------------------


def test_ptrace_breakpoints_stay_out_of_kernel_space():
    # ptrace's events exclude the kernel, and hw_breakpoint_parse refuses a
    # kernel address to such an event; the last user page is still fine.
    acct = SlotAccounting(cpus=2)
    for cpu in (ALL_CPUS, 0):
        for address in (0xFFFFFFFF81002000, TASK_SIZE_MAX, 0x0000800000000000):
            refused(errno.EINVAL, acct.register, address=address, length=8, type=X, cpu=cpu,
                    task=4, owner="ptrace")
        bp = acct.register(address=TASK_SIZE_MAX - 8, length=8, type=W, cpu=cpu, task=4, owner="ptrace")
        assert bp.exclude_kernel
        refused(errno.EINVAL, acct.modify, bp, address=TASK_SIZE_MAX)
        assert bp.address == TASK_SIZE_MAX - 8


def test_in_kernel_users_may_watch_kernel_addresses_per_task_or_per_cpu():
    # As the KUnit suite itself does: perf_event_create_kernel_counter does
    # not exclude the kernel, whether the event has a task or not.
    acct = SlotAccounting(cpus=2)
    for cpu, task in ((0, NO_TASK), (ALL_CPUS, 4), (1, 4)):
        bp = acct.register(address=BREAK_VARS, length=8, type=W, cpu=cpu, task=task, owner="perf")
        assert not bp.exclude_kernel
    acct.register_wide(address=0xFFFFFFFF81002000, length=8, type=X, owner="perf")


def test_exclude_kernel_is_what_decides_not_the_owner_name():
    acct = SlotAccounting(cpus=2)
    refused(errno.EINVAL, acct.register, address=BREAK_VARS, length=1, type=W, cpu=0,
            task=NO_TASK, owner="perf", exclude_kernel=True)
    refused(errno.EINVAL, acct.register_wide, address=BREAK_VARS, length=1, type=W,
            owner="perf", exclude_kernel=True)
    bp = acct.register(address=BREAK_VARS, length=1, type=W, cpu=ALL_CPUS, task=4,
                       owner="ptrace", exclude_kernel=False)
    assert not bp.exclude_kernel


# ---- wide breakpoints -----------------------------------------------------------


@pytest.mark.parametrize("cpus", [2, 4])
def test_a_wide_breakpoint_is_one_cpu_bound_breakpoint_per_cpu(cpus):
    acct = SlotAccounting(cpus=cpus)
    wide = acct.register_wide(address=BREAK_VARS, length=8, type=W, owner="perf", enabled=False)
    assert [bp.cpu for bp in wide] == list(range(cpus))
    assert all(bp.task is None and not bp.enabled and bp.owner == "perf" for bp in wide)
    assert [bp.id for bp in wide] == list(range(1, cpus + 1))
    assert [acct.cpu_pinned(cpu) for cpu in range(cpus)] == [1] * cpus


@pytest.mark.parametrize("cpus", [2, 4])
@pytest.mark.parametrize("full_cpu", ["first", "last"])
def test_a_wide_breakpoint_refused_on_one_cpu_is_made_on_none(cpus, full_cpu):
    acct = SlotAccounting(cpus=cpus)
    cpu = 0 if full_cpu == "first" else cpus - 1
    for offset in range(4):
        acct.register(address=BREAK_VARS + offset, length=1, type=W, cpu=cpu, task=NO_TASK, owner="perf")
    before = acct.snapshot()
    refused(errno.ENOSPC, acct.register_wide, address=BREAK_VARS, length=8, type=W, owner="perf")
    assert acct.snapshot() == before
    assert [acct.cpu_pinned(c) for c in range(cpus) if c != cpu] == [0] * (cpus - 1)
    # Not even an id was spent on it.
    other_cpu = (cpu + 1) % cpus
    later = acct.register(address=BREAK_VARS, length=1, type=W, cpu=other_cpu, task=NO_TASK, owner="perf")
    assert later.id == 5


def test_a_task_filling_every_cpu_blocks_wide_breakpoints_and_only_them():
    acct = SlotAccounting(cpus=2)
    for _ in range(4):
        acct.register(address=USER_DATA, length=8, type=W, cpu=1, task=3, owner="ptrace")
    refused(errno.ENOSPC, acct.register_wide, address=BREAK_VARS, length=8, type=W, owner="perf")
    acct.register(address=BREAK_VARS, length=8, type=W, cpu=0, task=NO_TASK, owner="perf")
    acct.register(address=USER_DATA, length=8, type=W, cpu=1, task=4, owner="ptrace")


# ---- modify -------------------------------------------------------------------


def test_modify_changes_what_is_watched_and_keeps_the_slot():
    acct = SlotAccounting(cpus=2)
    bp = acct.register(address=USER_DATA, length=8, type=W, cpu=ALL_CPUS, task=6,
                       owner="ptrace", enabled=False)
    for _ in range(3):
        acct.register(address=BREAK_VARS, length=1, type=W, cpu=0, task=NO_TASK, owner="perf")
    counts = [acct.slots_needed(cpu) for cpu in (0, 1)]
    assert counts == [4, 1]

    # A full CPU does not stop an existing breakpoint from changing.
    acct.modify(bp, address=0x401000, length=8, type=X, enabled=True)
    assert (bp.address, bp.length, bp.type, bp.enabled) == (0x401000, 8, X, True)
    acct.modify(bp, enabled=False)
    assert (bp.address, bp.length, bp.type, bp.enabled) == (0x401000, 8, X, False)
    acct.modify(bp, address=USER_DATA + 4, length=4, type=RW)
    assert (bp.address, bp.length, bp.type, bp.enabled) == (USER_DATA + 4, 4, RW, False)
    assert [acct.slots_needed(cpu) for cpu in (0, 1)] == counts
    assert (bp.id, bp.cpu, bp.task, bp.owner) == (1, None, 6, "ptrace")


@pytest.mark.parametrize("change", [
    dict(type=R), dict(length=3), dict(address=USER_DATA + 1), dict(type=X),
    dict(length=16, address=USER_DATA + 8, enabled=True), dict(address=USER_DATA + 2, enabled=True),
])
def test_a_malformed_modify_changes_nothing(change):
    # modify_user_hw_breakpoint_check parses before it touches anything.
    acct = SlotAccounting(cpus=2)
    bp = acct.register(address=USER_DATA, length=4, type=W, cpu=1, task=6, owner="ptrace", enabled=False)
    before = acct.snapshot()
    refused(errno.EINVAL, acct.modify, bp, **change)
    assert acct.snapshot() == before


# ---- the debugger's reservations ----------------------------------------------


@pytest.mark.parametrize("cpus", [2, 4])
def test_the_debugger_can_take_every_free_slot_and_give_all_back(cpus):
    acct = SlotAccounting(cpus=cpus)
    acct.register_wide(address=BREAK_VARS, length=8, type=W, owner="perf")
    acct.register(address=BREAK_VARS + 8, length=8, type=W, cpu=0, task=NO_TASK, owner="perf")
    acct.register(address=USER_DATA, length=8, type=X, cpu=ALL_CPUS, task=5, owner="ptrace")
    before = acct.snapshot()
    free = [4 - acct.slots_needed(cpu) for cpu in range(cpus)]
    assert free == [1] + [2] * (cpus - 1)

    held = []
    for cpu in range(cpus):
        while True:
            try:
                held.append(acct.reserve_debugger(cpu))
            except OSError as refusal:
                assert refusal.errno == errno.ENOSPC
                break
    assert [sum(bp.cpu == cpu for bp in held) for cpu in range(cpus)] == free
    assert all((bp.owner, bp.task, bp.address, bp.enabled) == ("kgdb", None, 0, False) for bp in held)
    assert all(acct.slots_needed(cpu) == 4 for cpu in range(cpus))
    # No new CPU-bound breakpoint fits anywhere, nor one more for task 5 ...
    for cpu in range(cpus):
        refused(errno.ENOSPC, acct.register, address=BREAK_VARS, length=1, type=W, cpu=cpu,
                task=NO_TASK, owner="perf")
    refused(errno.ENOSPC, acct.register, address=USER_DATA, length=8, type=X, cpu=cpus - 1,
            task=5, owner="ptrace")
    # ... but another task may have as many as task 5 has: they take turns in
    # the slot task 5's breakpoint is counted in.  Filling every slot still
    # free cannot take that one away.
    held.append(acct.register(address=USER_DATA, length=8, type=X, cpu=ALL_CPUS, task=6, owner="ptrace"))
    refused(errno.ENOSPC, acct.register, address=USER_DATA, length=8, type=X, cpu=ALL_CPUS,
            task=6, owner="ptrace")

    for bp in held:
        (acct.release if bp.owner == "kgdb" else acct.unregister)(bp)
    assert acct.snapshot() == before
