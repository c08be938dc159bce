"""`monitor ptrace add/del` as a tracer would use them (bugs tools/soak.py found):
whatever a tracer cannot ask for is refused with nothing left registered,
detaching restarts a tracee the tracer left stopped, as PTRACE_DETACH does,
and a tracer that has used up its continues detaches by itself."""
import pytest
from kernel_harness import LOOPER, Machine

from kgdbstub.monitor import Monitor

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def machine():
    return Machine()


@pytest.mark.parametrize("request_, refusal", [
    ("999 looper_tick x 1 5", "error: no task 999"),
    ("0 looper_tick x 1 5", "error: no task 0"),
    ("2 looper_tick x 3", "error: EINVAL"),
    ("2 looper_iterations rw 16 5", "error: EINVAL"),
    ("2 looper_iterations r 8 5", "error: type 'r'"),
    ("2 looper_tick x 1 -5", "error: cannot continue"),
])
def test_a_ptrace_request_no_tracer_could_make_is_refused_and_leaves_nothing(machine, request_, refusal):
    monitor = Monitor(machine.kernel, machine.debugger)
    before = machine.kernel.accounting.snapshot()
    assert monitor(f"ptrace add {request_}").startswith(refusal)
    assert monitor("ptrace") == ""
    assert machine.kernel.accounting.snapshot() == before
    machine.run_rounds(3)  # and the machine runs on


def test_ptrace_del_restarts_the_tracee_its_tracer_left_stopped(machine):
    monitor = Monitor(machine.kernel, machine.debugger)
    assert monitor("ptrace add 2 looper_tick x 1") == "dr=0\n"  # no continues: it keeps the tracee stopped
    machine.run(lambda: machine.stopped())
    assert "state=stopped" in monitor("ptrace")
    assert monitor("ptrace del 2") == ""
    stopped_at = machine.iterations
    machine.run_rounds(5)
    assert not machine.stopped(LOOPER) and machine.iterations > stopped_at


def test_a_tracer_that_used_up_its_continues_detaches_and_the_tracee_runs_on(machine):
    monitor = Monitor(machine.kernel, machine.debugger)
    assert monitor("ptrace add 2 looper_tick x 1 5") == "dr=0\n"
    tracee = machine.kernel.ptrace.tracees[LOOPER]
    machine.run(lambda: LOOPER not in machine.kernel.ptrace.tracees)
    assert tracee.hits[0] == 5, "every continue was a hit, the last one too"
    assert monitor("ptrace") == "", "it is no longer traced"
    assert "ptrace:" not in monitor("slots")
    assert not any(event.owner == "ptrace" for event in machine.kernel.perf.events())
    assert not machine.stopped(LOOPER)
    iterations = machine.iterations
    machine.run(lambda: machine.iterations > iterations + 5)
    assert not machine.stopped(LOOPER)
