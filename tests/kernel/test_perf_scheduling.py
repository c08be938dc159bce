"""perf events on the running machine: where they sit in the debug registers, and what they count.

A per-task event is installed into the first free DR of the CPU its task is
switched in on and removed when it is switched out (FACTS.md §1), so its
physical DR depends on what else that CPU holds; CPU-bound events and kgdb's
breakpoints stay put. Whichever DR and CPU it sits in, an enabled event counts
every hit; a disabled one keeps its slot and counts nothing.

Ground truth comes from the image: jiffies is written once per round by the
tick on CPU 0, looper_iterations once per iteration by the looper (pid 2),
which calls looper_tick once per iteration. The machine is stopped between
two CPU turns, where the looper is never in the middle of an iteration.
"""
import errno

import pytest

from kernel_harness import INIT, LOOPER, RW, W, X, Machine

# A guard against a hang, not a synchronisation: runs are bounded in rounds.
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def machine():
    return Machine()


def test_a_task_event_takes_the_first_free_dr_of_whichever_cpu_its_task_is_switched_in_on(machine):
    kernel, perf = machine.kernel, machine.kernel.perf
    pinned = perf.register(address=machine.address("jiffies"), length=8, type=W, cpu=0, task=None)
    assert machine.drs_of(0, pinned) == [0] and machine.drs_of(1, pinned) == []
    mine = perf.register(address=machine.address("looper_tick"), length=8, type=X, cpu=None, task=LOOPER)
    placements = set()

    def observe():
        assert machine.drs_of(0, pinned) == [0], "a CPU-bound event never moves"
        assert machine.drs_of(1, pinned) == []
        for cpu in range(2):
            drs = machine.drs_of(cpu, mine)
            if kernel.current[cpu].pid == LOOPER:
                # CPU 0's DR0 is taken, so the task's event lands in DR1 there, DR0 on CPU 1.
                assert drs == [1 if cpu == 0 else 0], (cpu, drs)
                machine.check_register_matches(cpu, drs[0], mine)
                owners = {(c, dr): owner for c, dr, owner, _ in machine.debugger.slot_table()}
                assert owners[(cpu, drs[0])] is mine
                placements.add((cpu, drs[0]))
            else:
                assert drs == [], f"installed on CPU {cpu} while its task is not running there"

    machine.run_rounds(40, observe=observe)
    assert placements == {(0, 1), (1, 0)}, "the looper ran on both CPUs, in a different DR on each"


def test_the_monitor_slot_table_shows_the_task_event_where_it_is(machine):
    """slot_table (what `monitor slots` prints) agrees with the owners, DR by DR."""
    perf = machine.kernel.perf
    pinned = perf.register(address=machine.address("jiffies"), length=8, type=W, cpu=1, task=None)
    mine = perf.register(address=machine.address("looper_iterations"), length=8, type=RW, cpu=None, task=INIT)

    def observe():
        for cpu, dr, owner, slot in machine.debugger.slot_table():
            assert owner is machine.kernel.debug_slots.owners[cpu][dr]
            assert slot.enabled == (owner is not None)
            if owner is not None:
                machine.check_register_matches(cpu, dr, owner)
            if owner is mine:
                assert machine.kernel.current[cpu].pid == INIT

    machine.run_rounds(20, observe=observe)
    assert mine.hits == 0, "init never touches the looper's variable"
    assert pinned.hits == 0, "the tick is on CPU 0"


def test_cpu_bound_and_kgdb_breakpoints_stay_where_they_are_while_a_task_event_moves(machine):
    perf, debugger = machine.kernel.perf, machine.debugger
    pinned = perf.register(address=machine.address("jiffies"), length=8, type=W, cpu=1, task=None)
    mine = perf.register(address=machine.address("looper_tick"), length=8, type=X, cpu=None, task=LOOPER)
    # kgdb: an execute breakpoint where nothing runs after boot, so it never stops the machine.
    debugger.insert_hardware(1, machine.address("kgdb_breakpoint"), 1)
    kgdb_at: dict[int, list[int]] = {}
    task_at = set()

    def observe():
        assert machine.drs_of(1, pinned) == [0]
        for cpu in range(2):
            drs = machine.kgdb_drs(cpu)
            assert len(drs) == 1, f"kgdb's breakpoint is on every CPU once: CPU {cpu} has {drs}"
            assert kgdb_at.setdefault(cpu, drs) == drs, "kgdb's breakpoint moved while the machine ran"
            task_at.update((cpu, dr) for dr in machine.drs_of(cpu, mine))

    stops = machine.run_rounds(40, observe=observe)
    assert stops == []
    assert {cpu for cpu, _ in task_at} == {0, 1}
    assert len(task_at) >= 2
    assert mine.hits > 0


def test_a_task_event_counts_every_hit_whichever_dr_and_cpu_it_is_in(machine):
    """Per-task write watch on looper_iterations: hits == the increments while registered.

    A data hit is slow to emulate, so a tracer chops the looper's run into
    bursts of a few hundred iterations (ptrace, on looper_tick); each burst
    starts on whichever CPU picks the looper up first, and so alternates.
    """
    kernel, perf = machine.kernel, machine.kernel.perf
    perf.register(address=machine.address("jiffies"), length=8, type=W, cpu=0, task=None)  # CPU 0's DR0
    tracee = machine.trace(0, "looper_tick")
    kernel.ptrace.cont(LOOPER, 0)  # stop at the next hit
    watch = perf.register(address=machine.address("looper_iterations"), length=8, type=W, cpu=None, task=LOOPER)
    start = machine.iterations
    where = set()

    def hit(cpu):
        if kernel.current[cpu].pid == LOOPER:
            where.add((cpu, tuple(machine.drs_of(cpu, watch))))

    machine.on_debug_exception(hit)

    def observe():
        assert watch.hits == machine.iterations - start

    for _ in range(6):
        kernel.ptrace.cont(LOOPER, 150)
        kernel.resume_task(LOOPER)
        machine.run(lambda: machine.stopped(), observe=observe)
    assert machine.iterations - start >= 6 * 149
    assert watch.hits == machine.iterations - start
    assert tracee.hits[0] >= 6 * 150
    # On CPU 0 DR0 is the jiffies event's and DR1 the tracer's: the watch is in DR2 there, DR1 on CPU 1.
    assert where == {(0, (2,)), (1, (1,))}


def test_a_task_event_counts_its_execute_hits_exactly(machine):
    perf = machine.kernel.perf
    start = machine.looper_calls()
    tick = perf.register(address=machine.address("looper_tick"), length=8, type=X, cpu=None, task=LOOPER)
    machine.run_rounds(30, observe=lambda: None)
    assert tick.hits == machine.looper_calls() - start > 0
    perf.unregister(tick)
    machine.run_rounds(5)
    assert tick.hits < machine.iterations - start, "an unregistered event counts nothing more"


def test_a_wide_event_counts_each_tick_once_on_cpu_0_and_nothing_on_cpu_1(machine):
    perf = machine.kernel.perf
    machine.run_rounds(3)
    start = machine.jiffies
    on_cpu0, on_cpu1 = perf.register_wide(address=machine.address("jiffies"), length=8, type=W)
    assert (on_cpu0.cpu, on_cpu1.cpu) == (0, 1)
    assert machine.drs_of(0, on_cpu0) == [0] and machine.drs_of(1, on_cpu1) == [0]
    machine.run_rounds(50)
    ticked = machine.jiffies - start
    assert ticked == 50
    assert on_cpu0.hits + on_cpu1.hits == ticked
    assert on_cpu1.hits == 0, "the tick is on CPU 0"
    for event in (on_cpu0, on_cpu1):
        perf.unregister(event)
    machine.run_rounds(5)
    assert on_cpu0.hits == ticked


def test_a_read_write_watch_counts_the_load_and_the_store_of_each_tick(machine):
    """do_timer reads jiffies, then writes it: two accesses, two instructions, two hits."""
    perf = machine.kernel.perf
    start = machine.jiffies
    event = perf.register(address=machine.address("jiffies"), length=8, type=RW, cpu=0, task=None)
    machine.run_rounds(20)
    assert event.hits == 2 * (machine.jiffies - start) == 40


def test_a_disabled_event_keeps_its_slot_and_counts_nothing(machine):
    kernel, perf, accounting = machine.kernel, machine.kernel.perf, machine.kernel.accounting
    tick = perf.register(address=machine.address("looper_tick"), length=8, type=X, cpu=None, task=LOOPER)
    wide = perf.register_wide(address=machine.address("jiffies"), length=8, type=W)
    needed = [accounting.slots_needed(cpu) for cpu in range(2)]
    perf.modify(tick, enabled=False)
    for event in wide:
        perf.modify(event, enabled=False)
    assert [accounting.slots_needed(cpu) for cpu in range(2)] == needed == [2, 2]

    def observe():
        for cpu in range(2):
            assert machine.drs_of(cpu, tick) == [] and machine.drs_of(cpu, wide[cpu]) == []
            assert not any(s.enabled for s in kernel.processor.debug_registers[cpu].slots())

    machine.run_rounds(20, observe=observe)
    assert tick.hits == 0 and [e.hits for e in wide] == [0, 0]

    # The slots are still theirs: CPU 1 has room for exactly two more.
    more = [perf.register(address=machine.address("total_forks"), length=8, type=W, cpu=1, task=None)
            for _ in range(2)]
    with pytest.raises(OSError) as refused:
        perf.register(address=machine.address("total_forks"), length=8, type=W, cpu=1, task=None)
    assert refused.value.errno == errno.ENOSPC
    for event in more:
        perf.unregister(event)

    # Enabled again, it counts from then on, exactly.
    start_calls, start_jiffies = machine.looper_calls(), machine.jiffies
    perf.modify(tick, enabled=True)
    perf.modify(wide[0], enabled=True)
    machine.run_rounds(20)
    assert tick.hits == machine.looper_calls() - start_calls > 0
    assert wide[0].hits == machine.jiffies - start_jiffies == 20
    assert wide[1].hits == 0
