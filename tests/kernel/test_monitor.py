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


def test_perf_add_checks_a_slot_first_then_the_attributes_as_perf_event_open_does(machine):
    # register_perf_hw_breakpoint reserves the slot, then hw_breakpoint_parse
    # (arch_build_bp_info) checks the attributes.
    monitor = Monitor(machine.kernel, machine.debugger)
    jiffies = machine.address("jiffies")
    assert monitor(f"perf add cpu=1 {jiffies:#x} w 3").startswith("error: EINVAL")  # not a power of two
    assert monitor(f"perf add cpu=1 {jiffies:#x} w 16").startswith("error: EOPNOTSUPP")  # no AMD BPEXT
    assert monitor(f"perf add cpu=1 {jiffies:#x} r 8").startswith("error: EINVAL")  # no read-only type
    assert monitor("perf add cpu=1 do_fork x 1").startswith("error: EINVAL")  # bp_len != sizeof(long)
    execute = monitor("perf add cpu=1 do_fork x 8")
    assert execute.startswith("id=")
    assert f"addr={machine.address('do_fork'):#x} type=x len=8 " in monitor("perf")
    assert f"owner=perf:{execute[3:].strip()} addr={machine.address('do_fork'):#x} type=x len=1\n" in monitor("slots")
    for _ in range(3):
        assert monitor(f"perf add cpu=1 {jiffies:#x} w 8").startswith("id=")
    for malformed in ("w 3", "w 16", "r 8", "x 1"):  # CPU 1 is full: that comes first
        assert monitor(f"perf add cpu=1 {jiffies:#x} {malformed}").startswith("error: ENOSPC")
    # A wide request is CPU 0's answer first: room there, so the attributes.
    assert monitor(f"perf add wide {jiffies:#x} w 3").startswith("error: EINVAL")
    assert monitor(f"perf add wide {jiffies:#x} w 8").startswith("error: ENOSPC")  # well formed: CPU 1 full
