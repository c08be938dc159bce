"""ptrace hardware breakpoints: PTRACE_POKEUSER of DR0-3 and DR7, and gdb's `continue N`.

FACTS.md §4: writing DRn registers a disabled per-task, all-CPU perf event (so
it can fail with ENOSPC); writing DR7 enables or changes every DR, and undoes
everything if one change fails. The tracer counts the stops, continues the
tracee N times, then leaves it stopped while the rest of the machine runs.
"""
import errno

import pytest

from kernel_harness import LOOPER, RW, W, X, Machine
from kgdbstub.kernel.hw_breakpoint import TASK_SIZE_MAX
from kgdbstub.kernel.ptrace import dr7_for
from kgdbstub.kernel.tasks import State
from unicorn import x86_const

# A guard against a hang, not a synchronisation: runs are bounded in rounds.
pytestmark = pytest.mark.timeout(120)

RIP = x86_const.UC_X86_REG_RIP


@pytest.fixture
def machine():
    return Machine()


def settings(events):
    return [None if e is None else e.settings() for e in events]


# -- PTRACE_POKEUSER of DR0-3 ----------------------------------------------------


def test_poking_a_dr_registers_a_disabled_per_task_event_on_all_cpus(machine):
    kernel, accounting = machine.kernel, machine.kernel.accounting
    tracee = kernel.ptrace.attach(LOOPER)
    kernel.ptrace.poke_dr(LOOPER, 2, machine.address("looper_tick"))
    event = tracee.events[2]
    assert [e is None for e in tracee.events] == [True, True, False, True]
    assert (event.task, event.cpu, event.owner, event.enabled) == (LOOPER, None, "ptrace", False)
    assert event.address == machine.address("looper_tick")
    assert event in accounting.breakpoints
    assert [accounting.task_count(LOOPER, cpu) for cpu in range(2)] == [1, 1]

    def observe():
        for cpu in range(2):
            assert machine.drs_of(cpu, event) == [], "a disabled event is never installed"

    machine.run_rounds(20, observe=observe)
    assert event.hits == 0 and tracee.hits == [0, 0, 0, 0]
    assert not machine.stopped()

    # Poking the same DR again moves the same event: no second registration.
    kernel.ptrace.poke_dr(LOOPER, 2, machine.address("looper_iterations"))
    assert tracee.events[2] is event and event.address == machine.address("looper_iterations")
    assert [accounting.task_count(LOOPER, cpu) for cpu in range(2)] == [1, 1]


def test_poking_a_dr_fails_with_enospc_when_the_slots_are_taken(machine):
    kernel = machine.kernel
    for symbol in ("jiffies", "total_forks", "looper_forks"):
        kernel.perf.register_wide(address=machine.address(symbol), length=8, type=W)
    tracee = kernel.ptrace.attach(LOOPER)
    kernel.ptrace.poke_dr(LOOPER, 0, machine.address("looper_tick"))  # the fourth slot
    before = kernel.accounting.snapshot()
    with pytest.raises(OSError) as refused:
        kernel.ptrace.poke_dr(LOOPER, 1, machine.address("looper_iterations"))
    assert refused.value.errno == errno.ENOSPC
    assert tracee.events[1] is None
    assert kernel.accounting.snapshot() == before


def test_poking_a_kernel_address_is_refused_for_a_user_tracee(machine):
    """ptrace's events exclude the kernel, so hw_breakpoint refuses kernel addresses (EINVAL)."""
    kernel = machine.kernel
    tracee = kernel.ptrace.attach(LOOPER)
    before = kernel.accounting.snapshot()
    for address in (machine.address("jiffies"), TASK_SIZE_MAX):
        with pytest.raises(OSError) as refused:
            kernel.ptrace.poke_dr(LOOPER, 0, address)
        assert refused.value.errno == errno.EINVAL
    assert tracee.events == [None] * 4
    assert kernel.accounting.snapshot() == before


# -- PTRACE_POKEUSER of DR7 ----------------------------------------------------------

# A DR7 value whose DR1 part is invalid for DR1's address (looper_iterations + 1):
BAD_DR1 = {
    "unaligned length 8": dr7_for(1, W, 8),
    "execute of length 8": dr7_for(1, W, 8) & ~(0b11 << 20),  # R/W 00 with LEN 10
    "I/O breakpoint": (0b10 << 20) | (1 << 2),  # R/W 10 (I/O), which Linux refuses
}


@pytest.mark.parametrize("bad", BAD_DR1.values(), ids=BAD_DR1.keys())
def test_a_dr7_write_with_one_bad_dr_changes_nothing(machine, bad):
    kernel, ptrace = machine.kernel, machine.kernel.ptrace
    tracee = ptrace.attach(LOOPER)
    ptrace.poke_dr(LOOPER, 0, machine.address("looper_tick"))
    ptrace.poke_dr(LOOPER, 1, machine.address("looper_iterations") + 1)
    ptrace.poke_dr(LOOPER, 2, machine.address("looper_forks"))
    ptrace.poke_dr7(LOOPER, dr7_for(0, X, 1) | dr7_for(2, RW, 8))
    ptrace.cont(LOOPER, 10**9)  # the tracer lets it run on through every hit
    machine.run_rounds(5)
    snapshot, before, dr7 = kernel.accounting.snapshot(), settings(tracee.events), tracee.dr7

    # DR0 would become a write watch, DR2 disabled, DR1 enabled badly: all or nothing.
    with pytest.raises(OSError) as refused:
        ptrace.poke_dr7(LOOPER, dr7_for(0, W, 1) | bad)
    assert refused.value.errno == errno.EINVAL
    assert kernel.accounting.snapshot() == snapshot
    assert settings(tracee.events) == before
    assert tracee.dr7 == dr7

    # And the machine runs with the old settings: DR0 still counts looper_tick, DR1 nothing.
    start = machine.looper_calls()
    hits = [e.hits for e in tracee.events[:3]]

    def observe():
        for cpu in range(2):
            for index, event in enumerate(tracee.events[:3]):
                drs = machine.drs_of(cpu, event)
                installed = index != 1 and kernel.current[cpu].pid == LOOPER
                assert len(drs) == int(installed), (cpu, index, drs)
                for dr in drs:
                    machine.check_register_matches(cpu, dr, event)

    machine.run_rounds(10, observe=observe)
    assert tracee.events[0].hits - hits[0] == machine.looper_calls() - start > 0
    assert tracee.events[1].hits == hits[1] == 0


def test_an_execute_dr_is_a_perf_event_of_sizeof_long_in_a_dr_of_len_00(machine):
    # arch_bp_generic_fields: DR7 R/W 00 with LEN 00 is bp_type X, bp_len sizeof(long);
    # the DR it is installed in watches the one instruction again.
    kernel, ptrace = machine.kernel, machine.kernel.ptrace
    tracee = ptrace.attach(LOOPER)
    ptrace.poke_dr(LOOPER, 0, machine.address("looper_tick"))
    ptrace.poke_dr7(LOOPER, dr7_for(0, X, 1))
    event = tracee.events[0]
    assert (event.type, event.length, event.enabled) == (X, 8, True)
    ptrace.cont(LOOPER, 10**9)
    installed = []

    def observe():
        for cpu in range(2):
            for dr in machine.drs_of(cpu, event):
                installed.append(kernel.processor.debug_registers[cpu].slot(dr).length)

    machine.run_rounds(5, observe=observe)
    assert installed and set(installed) == {1}
    assert event.hits > 0


# -- continue N ---------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 5000, 25000])
def test_continue_n_stops_the_tracee_at_the_nth_hit_and_the_machine_runs_on(machine, count):
    """The Nth hit of looper_tick stops the looper before looper_tick runs: N hits, N - 1 iterations.

    25000 goes past the looper's yields (every 10000 iterations, where it may
    change CPU) and its first fork (at 20000).
    """
    kernel = machine.kernel
    assert machine.iterations == 0, "the looper has not run yet at kgdbwait"
    tracee = machine.trace(3, "looper_tick")  # virtual DR3; physically the first free DR
    event = tracee.events[3]
    kernel.ptrace.cont(LOOPER, count)
    cpus = set()

    def observe():
        if not machine.stopped():
            assert tracee.hits[3] == event.hits == machine.iterations + machine.looper_mid_iteration(), \
                "every hit counted, none lost"
            if machine.looper.cpu is not None:
                cpus.add(machine.looper.cpu)
                assert machine.drs_of(machine.looper.cpu, event) == [0]

    stops = machine.run(lambda: machine.stopped(), observe=observe)
    assert stops == []
    assert tracee.hits[3] == event.hits == count
    assert machine.looper.state is State.STOPPED and tracee.stopped
    assert tracee.continues_left == 0
    assert machine.iterations == count - 1
    assert machine.looper.regs.reg_read(RIP) == machine.address("looper_tick")
    assert tracee.dr6 == 1 << 3, "DR6 as the tracer reads it is numbered by its own DR index"
    if count > 10000:
        assert cpus == {0, 1}

    # The rest of the machine runs; the looper stays where it is.
    jiffies = machine.jiffies

    def looper_stays_off():
        assert machine.looper.cpu is None and machine.looper not in kernel.runqueue
        for cpu in range(2):
            assert machine.drs_of(cpu, event) == []

    machine.run_rounds(30, observe=looper_stays_off)
    assert machine.jiffies == jiffies + 30
    assert machine.iterations == count - 1
    assert event.hits == tracee.hits[3] == count
    assert machine.looper.state is State.STOPPED


def test_continuing_a_stopped_tracee_again_counts_each_hit_once(machine):
    """Each stop is at looper_tick; continuing runs that call once (RF) and stops M hits later.

    The looper is picked up by the first CPU whose turn comes after each
    stop; a timer tick may be delivered before it runs again, and the
    pending RF must survive the interrupt as it does in RFLAGS on x86.
    """
    kernel = machine.kernel
    tracee = machine.trace(0, "looper_tick")
    perf_tick = kernel.perf.register(address=machine.address("looper_tick"), length=8, type=X,
                                     cpu=None, task=LOOPER)
    kernel.ptrace.cont(LOOPER, 100)
    machine.run(lambda: machine.stopped())
    total = 100
    resumed_on = set()
    first_cpu = []
    machine.on_debug_exception(lambda cpu: first_cpu or first_cpu.append(cpu))
    for burst in (1, 7, 100, 250, 100, 100):
        kernel.ptrace.cont(LOOPER, burst)
        kernel.resume_task(LOOPER)
        first_cpu.clear()
        machine.run(lambda: machine.stopped())
        resumed_on.update(first_cpu)
        total += burst
        assert tracee.hits[0] == total, f"burst of {burst} resumed on CPU {first_cpu}"
        assert machine.iterations == total - 1
        assert perf_tick.hits == total, "the perf event on the same instruction counts each call once"
    assert resumed_on == {0, 1}


def test_hits_equal_iterations_at_every_kgdb_stop_at_do_fork(machine):
    """Seed case 2 in small: kgdb stops at every fork; at each stop the tracer's hits equal the iterations."""
    kernel, debugger = machine.kernel, machine.debugger
    tracee = machine.trace(0, "looper_tick")
    kernel.ptrace.cont(LOOPER, 70000)
    debugger.insert_hardware(1, machine.address("do_fork"), 1)
    checked = []

    def observe():
        if not machine.stopped():
            assert tracee.hits[0] == machine.iterations + machine.looper_mid_iteration()
            checked.append(machine.iterations)

    stops = machine.run(lambda: machine.stopped(), observe=observe)
    # The looper forks every 20000 iterations: three forks before its 70000th call of looper_tick.
    assert len(stops) == 3
    assert all(stop.hardware and stop.hardware.address == machine.address("do_fork") for stop in stops)
    assert {20000, 40000, 60000} <= set(checked)
    assert tracee.hits[0] == 70000 and machine.iterations == 69999


def test_two_drs_firing_on_one_instruction_are_one_stop_with_both_bits_in_dr6(machine):
    """One instruction, one #DB, one SIGTRAP: `continue N` counts stops, and DR6 shows every DR that matched."""
    kernel = machine.kernel
    tracee = machine.trace(0, "looper_tick")
    machine.trace(2, "looper_tick")
    kernel.ptrace.cont(LOOPER, 300)
    machine.run(lambda: machine.stopped())
    assert machine.iterations == 299, "300 stops, each at one call of looper_tick"
    assert tracee.hits[0] == tracee.hits[2] == 300, "each DR counts its own hits"
    assert tracee.dr6 == 0b101


def test_a_tracee_resumed_while_it_stopped_with_the_debugger_runs_on_one_cpu(machine):
    """The tracer's last hit and kgdb's execute breakpoint fire on one instruction:
    the tracee stops with the debugger, still current on its CPU. Resumed while
    the debugger holds the machine (a tracer continuing it from `monitor ptrace
    add`), it must run on there, not also be queued for the other CPU."""
    kernel, debugger = machine.kernel, machine.debugger
    machine.trace(0, "looper_tick")
    kernel.ptrace.cont(LOOPER, 3)
    debugger.insert_hardware(1, machine.address("looper_tick"), 1)
    for _ in range(3):
        stop = machine.resume()
        assert stop.hardware is not None and stop.thread == LOOPER
    assert machine.stopped() and machine.looper.cpu is not None, "stopped with the debugger, still current"
    debugger.remove_hardware(1, machine.address("looper_tick"), 1)
    kernel.ptrace.cont(LOOPER, 10**9)
    kernel.resume_task(LOOPER)

    def looper_on_one_cpu():
        on = [cpu for cpu in range(2) if kernel.current[cpu] is machine.looper]
        assert len(on) <= 1, f"the looper is current on CPUs {on}"
        assert kernel.runqueue.count(machine.looper) <= 1

    machine.run_rounds(20, observe=looper_on_one_cpu)
    assert machine.iterations > 3
