"""Single steps run one instruction, and a debugger's write leaves data watches working."""
from kernel_harness import Machine

from kgdbstub.core.breakinfo import Kind
from kgdbstub.core.debugger import SIGTRAP
from kgdbstub.scenario import add_perf_event
from unicorn import x86_const as X


def rip(machine: Machine, cpu: int) -> int:
    return machine.kernel.current[cpu].regs.reg_read(X.UC_X86_REG_RIP)


def test_single_steps_through_returns_into_translated_code_run_one_instruction_each():
    # The timer interrupt has run before, so the code it returns into was
    # translated by runs that did not count instructions.
    machine = Machine()
    timer = machine.address("timer_interrupt")
    machine.debugger.insert_hardware(Kind.EXECUTE, timer, 1)
    stop = machine.resume()
    assert rip(machine, stop.cpu) == timer
    machine.debugger.remove_hardware(Kind.EXECUTE, timer, 1)
    seen = [timer]
    for _ in range(30):
        stop = machine.debugger.resume(step=True, cpu=stop.cpu)
        assert stop.signal == SIGTRAP, f"a step after {[hex(a) for a in seen]} ended with signal {stop.signal}"
        seen.append(rip(machine, stop.cpu))
    # It went back through irq_return into the interrupted code, one instruction at a time.
    assert machine.address("irq_return") in seen


def test_a_debugger_write_to_a_watched_page_leaves_the_watch_counting():
    machine = Machine()
    events = add_perf_event(machine.kernel, "wide", None, None, "total_forks", "w", 8)
    do_fork = machine.address("do_fork")
    neighbour = machine.address("total_forks") + 0x10  # same page, not watched
    machine.debugger.insert_hardware(Kind.EXECUTE, do_fork, 1)
    base = machine.u64("total_forks")
    for _ in range(3):
        machine.resume()
        machine.debugger.write_memory(neighbour, bytes(8))
    machine.resume()
    assert machine.u64("total_forks") > base
    assert sum(e.hits for e in events) == machine.u64("total_forks") - base


def test_a_clone_whose_name_cannot_be_read_fails_with_efault_and_the_machine_runs_on():
    # What a debugger's `jump do_fork` with stale registers does: HC_CLONE gets a bad comm.
    machine = Machine()
    do_fork = machine.address("do_fork")
    machine.debugger.insert_hardware(Kind.EXECUTE, do_fork, 1)
    stop = machine.resume()
    tasks, forks = len(machine.kernel.tasks), machine.u64("total_forks")
    machine.kernel.current[stop.cpu].regs.reg_write(X.UC_X86_REG_RCX, 1)  # comm = 0x1
    machine.debugger.remove_hardware(Kind.EXECUTE, do_fork, 1)
    machine.debugger.insert_hardware(Kind.EXECUTE, machine.address("sys_clone"), 1)  # the next fork
    machine.resume()
    assert len(machine.kernel.tasks) == tasks and machine.u64("total_forks") == forks  # do_fork: pid < 0
