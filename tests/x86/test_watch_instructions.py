"""Instruction-level tests of the x86 debug-register rules on the Processor.

Issue 3, items 1 and 5: execute breakpoints are faults, data breakpoints are
traps, a data slot matches any overlapping access, and every memory-accessing
instruction form counts. After a data stop the registers and memory must be
exactly those of an unwatched run stopped at the same point; the unwatched run
is a fresh Processor without slots, single-stepped instruction by instruction
(a rep string instruction steps one iteration at a time, as x86's TF does).

The machine code is hand-encoded; each byte string carries its assembly and
was checked with `objdump -D -b binary -m i386:x86-64 -M intel`.
"""
from __future__ import annotations

import pytest
from unicorn import x86_const as X

from kgdbstub.x86.cpu import DebugException, Hypercall, Processor, Stepped
from kgdbstub.x86.debugregs import DR6_BS, DR6_RESERVED_ONES, Access
from kgdbstub.x86.memory import AddressSpace, Mapping

CODE = 0xFFFFFFFF81000000  # one page of kernel text
DATA = 0xFFFF888000100000  # two pages
STACK = 0xFFFFC90000004000  # one page
STACK_TOP = STACK + 0x800

W = Access.WRITE
RW = Access.READ_WRITE
EXEC = Access.EXECUTE

GENERAL = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags",
)
VECTOR = ("xmm0", "xmm1")

# Initial data: no two neighbouring qwords alike, so a copy, a swap or an
# arithmetic result done twice shows.
PATTERN = bytes((i * 37 + 11) & 0xFF for i in range(0x2000))
STACK_PATTERN = bytes((i * 13 + 5) & 0xFF for i in range(0x1000))


def qword(address: int) -> int:
    """The initial little-endian qword at a DATA address."""
    offset = address - DATA
    return int.from_bytes(PATTERN[offset : offset + 8], "little")


def code(*instructions: str) -> bytes:
    return b"".join(bytes.fromhex(i) for i in instructions)


HLT = "f4"  # hlt


# -- the machine ------------------------------------------------------------


def machine(program: bytes, memory: dict[int, bytes] | None = None) -> Processor:
    processor = Processor(
        AddressSpace(
            [
                Mapping("text", CODE, 0x100000, 0x1000),
                Mapping("data", DATA, 0x200000, 0x2000),
                Mapping("stack", STACK, 0x300000, 0x1000),
            ]
        )
    )
    processor.write(CODE, program)
    processor.write(DATA, PATTERN)
    processor.write(STACK, STACK_PATTERN)
    for address, data in (memory or {}).items():
        processor.write(address, data)
    return processor


def arm(processor: Processor, slots) -> None:
    """Program CPU 0's slots in order; None leaves a slot unused."""
    for index, slot in enumerate(slots):
        if slot is not None:
            address, access, length = slot
            processor.debug_registers[0].install(index, address, access, length)
    processor.debug_registers_changed()


def start(program: bytes, slots=(), memory=None, **registers):
    processor = machine(program, memory)
    arm(processor, slots)
    registers.setdefault("rbx", DATA)
    registers.setdefault("rsp", STACK_TOP)
    return processor, processor.new_context(rip=CODE, **registers)


def reg(context, name: str) -> int:
    return context.reg_read(getattr(X, f"UC_X86_REG_{name.upper()}"))


def state(processor: Processor, context) -> dict:
    """Everything an unwatched run must agree on."""
    seen = {name: reg(context, name) for name in GENERAL + VECTOR}
    seen["data"] = processor.read(DATA, 0x2000)
    seen["stack"] = processor.read(STACK, 0x1000)
    return seen


def unwatched(program: bytes, steps: int | None, memory=None, **registers) -> dict:
    """The state of a run without slots after `steps` single steps (None: to the hlt)."""
    processor, context = start(program, (), memory, **registers)
    taken = 0
    while steps is None or taken < steps:
        exit = processor.run(0, context, step=True)
        taken += 1
        if isinstance(exit, Hypercall):
            assert steps is None, f"the program ended after {taken} steps"
            break
        assert isinstance(exit, Stepped), exit
    return state(processor, context)


RF = 1 << 16  # RFLAGS.RF


def with_resume_flag(expected: dict) -> dict:
    """An unwatched state as an execute breakpoint's stop leaves it: RF set, so that the instruction runs once."""
    return dict(expected, rflags=expected["rflags"] | RF)


def b_bits(*slots: int) -> int:
    return DR6_RESERVED_ONES | sum(1 << slot for slot in slots)


def dr6(processor: Processor) -> int:
    return processor.debug_registers[0].dr6


# -- execute breakpoints are faults -------------------------------------------

COUNT = code(
    "b8 01 00 00 00",  # mov eax, 1
    "ff c0",  # inc eax           <- CODE+5
    "ff c0",  # inc eax           <- CODE+7
    HLT,  # hlt               <- CODE+9
)


def test_execute_breakpoint_is_a_fault_reported_before_the_instruction():
    processor, context = start(COUNT, [(CODE + 5, EXEC, 1)])
    exit = processor.run(0, context)
    assert exit == DebugException((0,))
    assert not exit.trap
    assert reg(context, "rip") == CODE + 5
    assert reg(context, "rax") == 1  # the inc has not run
    assert dr6(processor) == b_bits(0)
    assert state(processor, context) == with_resume_flag(unwatched(COUNT, 1))


def test_resuming_from_an_execute_breakpoint_runs_the_instruction_once_without_stopping_there():
    processor, context = start(COUNT, [(CODE + 5, EXEC, 1)])
    assert processor.run(0, context) == DebugException((0,))
    assert processor.run(0, context) == Hypercall()
    assert reg(context, "rax") == 3
    assert state(processor, context) == unwatched(COUNT, None)


def test_single_step_from_an_execute_breakpoint_runs_just_that_instruction():
    processor, context = start(COUNT, [(CODE + 5, EXEC, 1)])
    assert processor.run(0, context) == DebugException((0,))
    assert processor.run(0, context, step=True) == Stepped()
    assert reg(context, "rip") == CODE + 7
    assert state(processor, context) == unwatched(COUNT, 2)


def test_a_single_step_that_fires_a_data_slot_reports_both_in_dr6():
    store = code(
        "48 89 03",  # mov [rbx], rax
        HLT,
    )
    processor, context = start(store, [(DATA, W, 8)], rax=0x1234)
    exit = processor.run(0, context, step=True)
    assert isinstance(exit, DebugException) and exit.slots == (0,)
    assert dr6(processor) == b_bits(0) | DR6_BS  # B0 and BS: the trap and the step
    assert reg(context, "rip") == CODE + 3
    assert state(processor, context) == unwatched(store, 1, rax=0x1234)


LOOP = code(
    "b9 02 00 00 00",  # mov ecx, 2
    "ff c0",  # L: inc eax        <- CODE+5
    "ff c9",  # dec ecx
    "75 fa",  # jnz L
    HLT,  # hlt
)


def test_single_steps_back_through_a_loop_run_one_instruction_each():
    # The loop's code was translated first by a run that did not count instructions.
    processor, context = start(LOOP, [(CODE + 7, EXEC, 1)])
    assert processor.run(0, context) == DebugException((0,))
    processor.debug_registers[0].clear(0)
    processor.debug_registers_changed()
    for expected in (CODE + 9, CODE + 5, CODE + 7, CODE + 9, CODE + 11):
        assert processor.run(0, context, step=True) == Stepped()
        assert reg(context, "rip") == expected


def test_execute_breakpoint_stops_again_when_the_code_comes_back():
    processor, context = start(LOOP, [(CODE + 5, EXEC, 1)])
    assert processor.run(0, context) == DebugException((0,))
    assert (reg(context, "rip"), reg(context, "rax")) == (CODE + 5, 0)
    assert processor.run(0, context) == DebugException((0,))  # the next pass, not the same one
    assert (reg(context, "rip"), reg(context, "rax")) == (CODE + 5, 1)
    assert state(processor, context) == with_resume_flag(unwatched(LOOP, 4))
    assert processor.run(0, context) == Hypercall()
    assert reg(context, "rax") == 2


REP_STOSQ = code(
    "f3 48 ab",  # rep stos qword ptr [rdi], rax
    HLT,  # hlt               <- CODE+3
)


def test_execute_breakpoint_on_a_rep_string_instruction_stops_once_for_the_whole_instruction():
    registers = dict(rcx=4, rdi=DATA + 0x200, rax=0x1111)
    processor, context = start(REP_STOSQ, [(CODE, EXEC, 1)], **registers)
    assert processor.run(0, context) == DebugException((0,))
    assert reg(context, "rcx") == 4
    assert processor.run(0, context) == Hypercall()
    assert state(processor, context) == unwatched(REP_STOSQ, None, **registers)


ADD_TO_MEMORY = code(
    "48 01 43 10",  # add qword ptr [rbx+0x10], rax
    HLT,  # hlt               <- CODE+4
)


def test_an_execute_breakpoint_then_a_data_breakpoint_on_one_instruction_fire_once_each():
    processor, context = start(ADD_TO_MEMORY, [(CODE, EXEC, 1), (DATA + 0x10, W, 8)], rax=5)
    assert processor.run(0, context) == DebugException((0,))
    assert reg(context, "rip") == CODE
    assert processor.read(DATA + 0x10, 8) == PATTERN[0x10:0x18]  # a fault: nothing written yet
    exit = processor.run(0, context)
    assert isinstance(exit, DebugException) and exit.trap and exit.slots == (1,)
    assert dr6(processor) == b_bits(1)
    assert state(processor, context) == unwatched(ADD_TO_MEMORY, 1, rax=5)
    assert processor.run(0, context) == Hypercall()
    assert state(processor, context) == unwatched(ADD_TO_MEMORY, None, rax=5)


def test_resuming_from_an_execute_breakpoint_on_an_instruction_touching_a_watched_page_runs_it_once():
    processor, context = start(ADD_TO_MEMORY, [(CODE, EXEC, 1), (DATA + 0x40, W, 8)], rax=5)
    assert processor.run(0, context) == DebugException((0,))
    assert processor.run(0, context) == Hypercall()
    assert state(processor, context) == unwatched(ADD_TO_MEMORY, None, rax=5)


# -- data breakpoints are traps, for every memory-accessing instruction ------

CALL_RET = code(
    "e8 01 00 00 00",  # call CODE+6
    HLT,  # hlt               <- CODE+5
    "c3",  # ret               <- CODE+6
)
RET = code("c3", HLT)  # ret; hlt
RETURN_TO_HLT = {STACK_TOP: (CODE + 1).to_bytes(8, "little")}

# id: (program, slots, registers, memory, slots that fire, rip after the trap)
TRAPS = {
    "mov-store": (
        code("48 89 43 10", HLT),  # mov qword ptr [rbx+0x10], rax
        [(DATA + 0x10, W, 8)], dict(rax=0x0123456789ABCDEF), None, (0,), CODE + 4,
    ),
    "mov-load-read-write-slot": (
        code("48 8b 43 10", HLT),  # mov rax, qword ptr [rbx+0x10]
        [(DATA + 0x10, RW, 8)], {}, None, (0,), CODE + 4,
    ),
    "mov-store-read-write-slot": (
        code("48 89 43 10", HLT),  # mov qword ptr [rbx+0x10], rax
        [(DATA + 0x10, RW, 8)], dict(rax=7), None, (0,), CODE + 4,
    ),
    "add-register-to-memory": (
        ADD_TO_MEMORY, [(DATA + 0x10, W, 8)], dict(rax=5), None, (0,), CODE + 4,
    ),
    "add-register-to-memory-read-write-slot": (
        ADD_TO_MEMORY, [(DATA + 0x10, RW, 8)], dict(rax=5), None, (0,), CODE + 4,
    ),
    "add-immediate-to-memory": (
        code("48 83 43 10 01", HLT),  # add qword ptr [rbx+0x10], 1
        [(DATA + 0x10, W, 8)], {}, None, (0,), CODE + 5,
    ),
    "or-byte-inside-the-slot": (
        code("80 4b 13 80", HLT),  # or byte ptr [rbx+0x13], 0x80
        [(DATA + 0x10, W, 4)], {}, None, (0,), CODE + 4,
    ),
    "inc-qword": (
        code("48 ff 43 10", HLT),  # inc qword ptr [rbx+0x10]
        [(DATA + 0x10, W, 8)], {}, None, (0,), CODE + 4,
    ),
    "dec-word": (
        code("66 ff 4b 12", HLT),  # dec word ptr [rbx+0x12]
        [(DATA + 0x10, W, 4)], {}, None, (0,), CODE + 4,
    ),
    "xchg": (
        code("48 87 43 10", HLT),  # xchg qword ptr [rbx+0x10], rax
        [(DATA + 0x10, W, 8)], dict(rax=0xAAAA), None, (0,), CODE + 4,
    ),
    "xchg-read-write-slot": (
        code("48 87 43 10", HLT),  # xchg qword ptr [rbx+0x10], rax
        [(DATA + 0x10, RW, 8)], dict(rax=0xAAAA), None, (0,), CODE + 4,
    ),
    "cmpxchg-succeeds": (
        code("48 0f b1 4b 10", HLT),  # cmpxchg qword ptr [rbx+0x10], rcx
        [(DATA + 0x10, W, 8)], dict(rax=qword(DATA + 0x10), rcx=0xBBBB), None, (0,), CODE + 5,
    ),
    # x86 writes the old value back when the compare fails: a write slot fires.
    "cmpxchg-fails": (
        code("48 0f b1 4b 10", HLT),  # cmpxchg qword ptr [rbx+0x10], rcx
        [(DATA + 0x10, W, 8)], dict(rax=1, rcx=0xBBBB), None, (0,), CODE + 5,
    ),
    "lock-cmpxchg-succeeds": (
        code("f0 48 0f b1 4b 10", HLT),  # lock cmpxchg qword ptr [rbx+0x10], rcx
        [(DATA + 0x10, W, 8)], dict(rax=qword(DATA + 0x10), rcx=0xBBBB), None, (0,), CODE + 6,
    ),
    "lock-cmpxchg-fails": (
        code("f0 48 0f b1 4b 10", HLT),  # lock cmpxchg qword ptr [rbx+0x10], rcx
        [(DATA + 0x10, W, 8)], dict(rax=1, rcx=0xBBBB), None, (0,), CODE + 6,
    ),
    "push": (
        code("50", HLT),  # push rax
        [(STACK_TOP - 8, W, 8)], dict(rax=0x5555), None, (0,), CODE + 1,
    ),
    "pop-read-write-slot": (
        code("58", HLT),  # pop rax
        [(STACK_TOP, RW, 8)], {}, None, (0,), CODE + 1,
    ),
    "call-pushes-the-return-address": (
        CALL_RET, [(STACK_TOP - 8, W, 8)], {}, None, (0,), CODE + 6,
    ),
    "ret-pops-the-return-address": (
        RET, [(STACK_TOP, RW, 8)], {}, RETURN_TO_HLT, (0,), CODE + 1,
    ),
    "unaligned-store-starting-below-the-slot": (
        code("48 89 43 13", HLT),  # mov qword ptr [rbx+0x13], rax   (0x13..0x1a)
        [(DATA + 0x18, W, 4)], dict(rax=-1 & (2**64 - 1)), None, (0,), CODE + 4,
    ),
    "unaligned-store-starting-inside-the-slot": (
        code("48 89 43 13", HLT),  # mov qword ptr [rbx+0x13], rax   (0x13..0x1a)
        [(DATA + 0x10, W, 4)], dict(rax=-1 & (2**64 - 1)), None, (0,), CODE + 4,
    ),
    "unaligned-store-across-a-page-into-the-slot": (
        code("48 89 83 fd 0f 00 00", HLT),  # mov qword ptr [rbx+0xffd], rax   (0xffd..0x1004)
        [(DATA + 0x1000, W, 4)], dict(rax=-1 & (2**64 - 1)), None, (0,), CODE + 7,
    ),
    "movdqu-store-over-a-16-byte-watch": (
        code("f3 0f 7f 43 20", HLT),  # movdqu xmmword ptr [rbx+0x20], xmm0
        [(DATA + 0x20, W, 8), (DATA + 0x28, W, 8)],
        dict(xmm0=0x00112233445566778899AABBCCDDEEFF), None, (0, 1), CODE + 5,
    ),
    "movups-load-over-a-16-byte-watch": (
        code("0f 10 4b 20", HLT),  # movups xmm1, xmmword ptr [rbx+0x20]
        [(DATA + 0x20, RW, 8), (DATA + 0x28, RW, 8)], {}, None, (0, 1), CODE + 4,
    ),
    "16-byte-watch-written-in-its-upper-half": (
        code("89 43 28", HLT),  # mov dword ptr [rbx+0x28], eax
        [(DATA + 0x20, W, 8), (DATA + 0x28, W, 8)], dict(rax=9), None, (1,), CODE + 3,
    ),
    "movdqu-store-over-the-upper-slot-only": (
        code("f3 0f 7f 43 20", HLT),  # movdqu xmmword ptr [rbx+0x20], xmm0
        [None, (DATA + 0x28, W, 8)], dict(xmm0=1 << 127), None, (1,), CODE + 5,
    ),
}


@pytest.mark.parametrize("case", TRAPS.values(), ids=list(TRAPS))
def test_data_breakpoint_is_a_trap_after_the_instruction_ran_once(case):
    program, slots, registers, memory, fired, rip = case
    processor, context = start(program, slots, memory, **registers)
    exit = processor.run(0, context)
    assert isinstance(exit, DebugException) and exit.trap
    assert exit.slots == fired
    assert dr6(processor) == b_bits(*fired)
    assert reg(context, "rip") == rip  # past the instruction, not at it
    assert state(processor, context) == unwatched(program, 1, memory, **registers)


@pytest.mark.parametrize("case", TRAPS.values(), ids=list(TRAPS))
def test_resuming_after_a_data_trap_ends_like_an_unwatched_run(case):
    program, slots, registers, memory, fired, rip = case
    processor, context = start(program, slots, memory, **registers)
    assert isinstance(processor.run(0, context), DebugException)
    assert processor.run(0, context) == Hypercall()
    assert state(processor, context) == unwatched(program, None, memory, **registers)


MOVSQ = code("48 a5", HLT)  # movs qword ptr [rdi], qword ptr [rsi]; hlt

# id: (source, destination)
TWO_SLOTS_ONE_MOVS = {
    "same-page": (DATA + 0x100, DATA + 0x200),
    "two-pages": (DATA + 0x100, DATA + 0x1200),
}


@pytest.mark.parametrize("source, destination", TWO_SLOTS_ONE_MOVS.values(), ids=list(TWO_SLOTS_ONE_MOVS))
def test_one_instruction_matching_two_slots_sets_both_b_bits(source, destination):
    slots = [(destination, W, 8), None, (source, RW, 8), (DATA + 0x300, RW, 8)]
    registers = dict(rsi=source, rdi=destination)
    processor, context = start(MOVSQ, slots, **registers)
    exit = processor.run(0, context)
    assert isinstance(exit, DebugException) and exit.slots == (0, 2)
    assert {(a.slot, a.address, a.write) for a in exit.accesses} == {(0, destination, True), (2, source, False)}
    assert dr6(processor) == b_bits(0, 2)
    assert reg(context, "rip") == CODE + 2
    assert state(processor, context) == unwatched(MOVSQ, 1, **registers)


def test_an_access_over_two_adjacent_slots_sets_both_b_bits():
    program = code("48 89 43 10", HLT)  # mov qword ptr [rbx+0x10], rax
    slots = [(DATA + 0x40, W, 8), (DATA + 0x10, W, 4), (CODE + 4, EXEC, 1), (DATA + 0x14, W, 4)]
    processor, context = start(program, slots, rax=3)
    exit = processor.run(0, context)
    assert isinstance(exit, DebugException) and exit.trap and exit.slots == (1, 3)
    assert dr6(processor) == b_bits(1, 3)
    assert state(processor, context) == unwatched(program, 1, rax=3)


# -- rep string instructions trap after the iteration that hit ---------------

REP_MOVSQ = code("f3 48 a5", HLT)  # rep movs qword ptr [rdi], qword ptr [rsi]; hlt
REP_MOVSB = code("f3 a4", HLT)  # rep movs byte ptr [rdi], byte ptr [rsi]; hlt

# id: (program, slots, registers, iterations done at the stop)
REP_TRAPS = {
    "rep-movsq-destination": (
        REP_MOVSQ, [(DATA + 0x210, W, 8)], dict(rcx=4, rsi=DATA + 0x100, rdi=DATA + 0x200), 3,
    ),
    "rep-movsb-source": (
        REP_MOVSB, [(DATA + 0x104, RW, 1)], dict(rcx=16, rsi=DATA + 0x100, rdi=DATA + 0x200), 5,
    ),
    "rep-stosq": (
        REP_STOSQ, [(DATA + 0x208, W, 8)], dict(rcx=4, rdi=DATA + 0x200, rax=0x1111), 2,
    ),
}


@pytest.mark.parametrize("case", REP_TRAPS.values(), ids=list(REP_TRAPS))
def test_a_rep_string_trap_leaves_rip_at_the_instruction_while_iterations_remain(case):
    program, slots, registers, iterations = case
    processor, context = start(program, slots, **registers)
    exit = processor.run(0, context)
    assert isinstance(exit, DebugException) and exit.trap and exit.slots == (0,)
    assert reg(context, "rip") == CODE
    assert reg(context, "rcx") == registers["rcx"] - iterations
    assert state(processor, context) == unwatched(program, iterations, **registers)
    assert processor.run(0, context) == Hypercall()
    assert state(processor, context) == unwatched(program, None, **registers)


REP_LAST = {
    "rep-movsq": (REP_MOVSQ, [(DATA + 0x218, W, 8)], dict(rcx=4, rsi=DATA + 0x100, rdi=DATA + 0x200)),
    "rep-stosq": (REP_STOSQ, [(DATA + 0x218, W, 8)], dict(rcx=4, rdi=DATA + 0x200, rax=0x1111)),
}


@pytest.mark.parametrize("case", REP_LAST.values(), ids=list(REP_LAST))
def test_a_rep_string_trap_on_the_last_iteration_leaves_rip_past_the_instruction(case):
    program, slots, registers = case
    processor, context = start(program, slots, **registers)
    exit = processor.run(0, context)
    assert isinstance(exit, DebugException) and exit.trap and exit.slots == (0,)
    assert reg(context, "rcx") == 0
    assert reg(context, "rip") == CODE + 3
    complete = unwatched(program, None, **registers)
    assert state(processor, context) == dict(complete, rip=CODE + 3)  # everything but the hlt


# -- accesses that must not stop --------------------------------------------

# id: (program, slots, registers, memory)
NO_STOP = {
    # A write slot ignores reads.
    "mov-load-write-slot": (code("48 8b 43 10", HLT), [(DATA + 0x10, W, 8)], {}, None),  # mov rax, [rbx+0x10]
    "mov-load-write-slot-on-a-read-watched-page": (
        code("48 8b 43 10", HLT),  # mov rax, qword ptr [rbx+0x10]
        [(DATA + 0x10, W, 8), (DATA + 0x40, RW, 8)], {}, None,
    ),
    "pop-write-slot": (code("58", HLT), [(STACK_TOP, W, 8)], {}, None),  # pop rax
    "ret-write-slot": (RET, [(STACK_TOP, W, 8)], {}, RETURN_TO_HLT),
    "movups-load-write-slots": (
        code("0f 10 4b 20", HLT),  # movups xmm1, xmmword ptr [rbx+0x20]
        [(DATA + 0x20, W, 8), (DATA + 0x28, W, 8)], {}, None,
    ),
    "rep-movsq-from-a-write-slot": (
        REP_MOVSQ, [(DATA + 0x108, W, 8)], dict(rcx=4, rsi=DATA + 0x100, rdi=DATA + 0x200), None,
    ),
    # Accesses on a watched page that overlap no slot.
    "add-just-below-the-slot": (
        code("48 83 43 08 01", HLT),  # add qword ptr [rbx+0x8], 1
        [(DATA + 0x10, RW, 8)], {}, None,
    ),
    "add-just-above-the-slot": (
        code("48 83 43 18 01", HLT),  # add qword ptr [rbx+0x18], 1
        [(DATA + 0x10, RW, 8)], {}, None,
    ),
    "inc-beside-the-slot": (
        code("48 ff 43 18", HLT),  # inc qword ptr [rbx+0x18]
        [(DATA + 0x10, W, 8)], {}, None,
    ),
    "xchg-beside-the-slot": (
        code("48 87 43 18", HLT),  # xchg qword ptr [rbx+0x18], rax
        [(DATA + 0x10, W, 8)], dict(rax=0xAAAA), None,
    ),
    "cmpxchg-beside-the-slot": (
        code("48 0f b1 4b 10", HLT),  # cmpxchg qword ptr [rbx+0x10], rcx
        [(DATA + 0x18, RW, 8)], dict(rax=qword(DATA + 0x10), rcx=0xBBBB), None,
    ),
    "unaligned-store-ending-below-the-slot": (
        code("48 89 43 13", HLT),  # mov qword ptr [rbx+0x13], rax   (0x13..0x1a)
        [(DATA + 0x1C, RW, 4)], dict(rax=-1 & (2**64 - 1)), None,
    ),
    "push-beside-the-slot": (code("50", HLT), [(STACK_TOP - 16, RW, 8)], dict(rax=0x5555), None),  # push rax
    "call-and-ret-beside-the-slot": (CALL_RET, [(STACK_TOP, RW, 8)], {}, None),
    "rep-stosq-up-to-the-slot": (
        REP_STOSQ, [(DATA + 0x220, RW, 8)], dict(rcx=4, rdi=DATA + 0x200, rax=0x1111), None,
    ),
    "movdqu-store-beside-a-16-byte-watch": (
        code("f3 0f 7f 43 20", HLT),  # movdqu xmmword ptr [rbx+0x20], xmm0
        [(DATA + 0x10, RW, 8), (DATA + 0x18, RW, 8), (DATA + 0x30, RW, 8)],
        dict(xmm0=0x00112233445566778899AABBCCDDEEFF), None,
    ),
}


@pytest.mark.parametrize("case", NO_STOP.values(), ids=list(NO_STOP))
def test_an_access_that_no_slot_matches_does_not_stop_and_runs_once(case):
    program, slots, registers, memory = case
    processor, context = start(program, slots, memory, **registers)
    assert processor.run(0, context) == Hypercall()
    assert dr6(processor) == DR6_RESERVED_ONES
    assert state(processor, context) == unwatched(program, None, memory, **registers)
