"""Guest time and the stops it makes (kgdbstub/x86/hothooks.c), and how a run leaves to the host.

The program counts in a register and in memory, one block per iteration:
a run stopped anywhere must show both counts equal (no instruction skipped
or run twice), and a run cut into pieces must end where one run does.
"""
from __future__ import annotations

import threading
import time

import pytest
from unicorn import x86_const as X

from kgdbstub.x86.cpu import PF_INSTR, PF_WRITE, PAGE_FAULT, CpuException, Hypercall, Preempted, Processor, TimeUp
from kgdbstub.x86.memory import AddressSpace, Mapping

CODE = 0xFFFFFFFF81000000
DATA = 0xFFFF888000100000
STACK_TOP = 0xFFFFC90000004800
UNMAPPED = 0xFFFF888000900000

# inc rax; inc qword [rbx]; jmp back to the inc rax: one block an iteration.
COUNTING_LOOP = bytes.fromhex("48ffc0" "48ff03" "ebf8")
JMP_SELF = bytes.fromhex("ebfe")


def processor_with(program: bytes) -> tuple[Processor, object]:
    processor = Processor(AddressSpace([
        Mapping("text", CODE, 0x100000, 0x1000),
        Mapping("data", DATA, 0x200000, 0x1000),
        Mapping("stack", STACK_TOP - 0x800, 0x300000, 0x1000),
    ]))
    processor.write(CODE, program)
    return processor, processor.new_context(rip=CODE, rsp=STACK_TOP, rbx=DATA)


def counts(processor: Processor, context) -> tuple[int, int]:
    return context.reg_read(X.UC_X86_REG_RAX), int.from_bytes(processor.read(DATA, 8), "little")


def test_a_run_stops_when_its_blocks_are_spent_and_goes_on_exactly_there():
    processor, context = processor_with(COUNTING_LOOP)
    for piece in range(1, 6):
        before = processor.clock.blocks
        assert processor.run(0, context, budget=1000) == TimeUp()
        assert processor.clock.blocks - before == 1000
        assert counts(processor, context) == (1000 * piece, 1000 * piece)
        assert context.reg_read(X.UC_X86_REG_RIP) == CODE  # the start of the next block


def test_the_same_run_counts_the_same_blocks():
    first, first_context = processor_with(COUNTING_LOOP)
    second, second_context = processor_with(COUNTING_LOOP)
    first.run(0, first_context, budget=5000)
    for _ in range(5):
        second.run(0, second_context, budget=1000)
    assert counts(first, first_context) == counts(second, second_context)
    assert first.clock.blocks == second.clock.blocks


def test_a_stop_requested_before_the_run_runs_nothing():
    processor, context = processor_with(COUNTING_LOOP)
    processor.clock.request_stop()
    assert processor.run(0, context, budget=1000) == Preempted()
    assert counts(processor, context) == (0, 0)
    processor.clock.withdraw_stop()
    assert processor.run(0, context, budget=10) == TimeUp()
    assert counts(processor, context) == (10, 10)


@pytest.mark.timeout(30)
def test_another_thread_stops_a_spinning_cpu_at_an_instruction_boundary():
    processor, context = processor_with(COUNTING_LOOP)
    result = []
    worker = threading.Thread(target=lambda: result.append(processor.run(0, context)))
    worker.start()
    while not processor.clock.blocks:  # it runs
        time.sleep(0.001)
    processor.clock.request_stop()
    worker.join(10)
    assert not worker.is_alive(), "the stop request did not stop the engine"
    assert result == [Preempted()]
    rax, memory = counts(processor, context)
    assert rax == memory == processor.clock.blocks > 0
    assert context.reg_read(X.UC_X86_REG_RIP) == CODE


def test_a_deadline_stops_a_run_that_would_never_leave():
    processor, context = processor_with(JMP_SELF)
    started = time.monotonic()
    assert processor.run(0, context, deadline=started + 0.05) == Preempted()
    assert context.reg_read(X.UC_X86_REG_RIP) == CODE
    assert time.monotonic() - started < 5


def test_a_single_step_ignores_a_stop_request():
    processor, context = processor_with(COUNTING_LOOP)
    processor.clock.request_stop()
    processor.run(0, context, step=True)
    assert context.reg_read(X.UC_X86_REG_RAX) == 1


@pytest.mark.parametrize("program,address,error_code", [
    ("488b042500009000", 0x900000, 0),  # mov rax, [0x900000]: a read
    ("48890425" "00009000", 0x900000, PF_WRITE),  # mov [0x900000], rax: a write
    ("48b8" + (CODE + 0x100000).to_bytes(8, "little").hex() + "ffe0", CODE + 0x100000, PF_INSTR),  # jmp there
])
def test_a_page_fault_says_what_the_access_was(program, address, error_code):
    """The error code's W and I/D bits (Intel SDM vol. 3, 4.7), which Linux's show_fault_oops prints."""
    processor, context = processor_with(bytes.fromhex(program))
    exit = processor.run(0, context, budget=10)
    assert exit == CpuException(PAGE_FAULT, address, error_code)


def test_a_write_over_code_that_ran_takes_effect():
    processor, context = processor_with(bytes.fromhex("48c7c001000000" "f4"))  # mov rax, 1; hlt
    assert processor.run(0, context) == Hypercall()
    assert context.reg_read(X.UC_X86_REG_RAX) == 1
    processor.write(CODE + 3, (2).to_bytes(4, "little"))  # now mov rax, 2
    context.reg_write(X.UC_X86_REG_RIP, CODE)
    assert processor.run(0, context) == Hypercall()
    assert context.reg_read(X.UC_X86_REG_RAX) == 2


# The counting loop with a hypercall in it: inc rax; inc qword [rbx]; hlt; jmp back.
COUNTING_LOOP_WITH_HYPERCALL = bytes.fromhex("48ffc0" "48ff03" "f4" "ebf7")


def request_from_another_thread(processor: Processor) -> None:
    requester = threading.Thread(target=processor.clock.request_stop)
    requester.start()
    requester.join(10)
    assert not requester.is_alive()


@pytest.mark.timeout(60)
def test_a_stop_another_thread_requests_while_the_host_works_is_placed_in_guest_time():
    """A Ctrl-C that comes between two runs of the engine (the host handling a
    hypercall) must not land where the host's work ends, every time: the guest
    runs on for as long as the host had been working, then stops at an
    instruction boundary, so that the host's time draws no stops of its own."""
    processor, context = processor_with(COUNTING_LOOP_WITH_HYPERCALL)
    assert processor.run(0, context) == Hypercall()  # one iteration; the host has the CPU
    request_from_another_thread(processor)
    blocks = processor.clock.blocks
    runs = 0
    while (exit := processor.run(0, context)) == Hypercall():
        runs += 1
        assert runs < 1_000_000, "the deferred stop never came"
    assert exit == Preempted()
    assert processor.clock.blocks > blocks, "it stopped where the host's work ended"
    assert processor.clock.stop_requested  # taken as any stop request
    processor.clock.withdraw_stop()
    rax, memory = counts(processor, context)
    assert rax == memory  # at an instruction boundary: nothing skipped or run twice
    assert processor.run(0, context) == Hypercall()  # and on from there


def test_a_stop_the_running_thread_requests_between_runs_is_taken_there():
    """The machine's own thread asks at a point of its work (the kernel between
    two turns): nothing more runs."""
    processor, context = processor_with(COUNTING_LOOP_WITH_HYPERCALL)
    assert processor.run(0, context) == Hypercall()
    processor.clock.request_stop()
    assert processor.run(0, context) == Preempted()
    assert counts(processor, context) == (1, 1)


@pytest.mark.timeout(60)
def test_a_deferred_stop_is_taken_anyway_when_the_engine_hardly_runs():
    """Every CPU idle: the host does not wait for guest time that does not come."""
    processor, context = processor_with(COUNTING_LOOP_WITH_HYPERCALL)
    assert processor.run(0, context) == Hypercall()
    request_from_another_thread(processor)
    while not processor.clock.stop_requested:  # the host polls, as the kernel's run loop does
        time.sleep(0.001)
    assert processor.run(0, context) == Preempted()
    assert counts(processor, context) == (1, 1)
