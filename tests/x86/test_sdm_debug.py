"""The debug model of the emulated x86 against the Intel SDM, case by case.

Each test names the section that defines what it checks: Vol. 3 §18.2
(debug registers), §18.3 (debug exceptions: §18.3.1.1 instruction
breakpoints and RF, §18.3.1.2 data breakpoints, §18.3.1.3 general detect,
§18.3.1.4 single step), §6.8.3 (MOV SS and POP SS), §6.9 (priorities),
and Vol. 2's instruction pages (MOV to/from debug registers, REP, POP).
It drives kgdbstub.x86 directly, as a CPU with no operating system: an
exit is the exception the CPU raises, the context after it what the
handler's frame holds. Two conventions of the machine stand in for the
handler: an execute breakpoint's stop sets RF (as Linux's
hw_breakpoint_handler does before any debugger looks), and a run resumes
from the context as IRET would.

The machine code is hand-encoded; each byte string carries its assembly
and was checked with `objdump -D -b binary -m i386:x86-64 -M intel`.
"""
from __future__ import annotations

import pytest
from test_watch_instructions import CODE, DATA, EXEC, HLT, RW, W, b_bits, code, dr6, reg, start, unwatched
from unicorn import x86_const as X

from kgdbstub.x86.cpu import (
    GENERAL_PROTECTION,
    INVALID_OPCODE,
    BREAKPOINT,
    DIVIDE_ERROR,
    CpuException,
    DebugException,
    Hypercall,
    Preempted,
    Probed,
    ProbeVerdict,
    Stepped,
    TimeUp,
)
from kgdbstub.x86.cpu import Processor
from kgdbstub.x86.memory import AddressSpace, Mapping
from kgdbstub.x86.debugregs import DR6_BD, DR6_BS, DR6_RESERVED_ONES, DR7_ALWAYS_ONE, DR7_GD, Access

RF = 1 << 16
TF = 1 << 8
CR4_DE = 1 << 3


def rflags(context) -> int:
    return reg(context, "rflags")


def set_reg(context, name: str, value: int) -> None:
    context.reg_write(getattr(X, f"UC_X86_REG_{name.upper()}"), value)


def dr7_enable(index: int, access: Access, length: int) -> int:
    """DR7 bits enabling one slot globally, as MOV DR7 would write them."""
    field = access | ({1: 0b00, 2: 0b01, 4: 0b11, 8: 0b10}[length] << 2)
    return DR7_ALWAYS_ONE | (0b10 << 2 * index) | (field << (16 + 4 * index))


# -- §18.3.1.1: RF belongs to the next instruction, whichever it is --------------

# B: call A; hlt ... A: inc eax; ret
CALL = code(
    "e8 03 00 00 00",  # call CODE+8
    HLT,  # hlt               <- CODE+5
    HLT, HLT,  # (padding)
    "ff c0",  # A: inc eax        <- CODE+8
    "c3",  # ret               <- CODE+10
)
CALLEE = CODE + 8


def test_rf_applies_to_the_instruction_the_cpu_resumes_at_not_to_the_breakpoint_address():
    """§18.3.1.1: with RF set the processor ignores instruction breakpoints for the next
    instruction, whichever it is, and clears RF once it begins. Resumed at the call after a
    stop in the callee, the call runs and the callee's breakpoint stops it again, before the
    callee has run (the re-executed `call do_fork` stops at do_fork)."""
    processor, context = start(CALL, [(CALLEE, EXEC, 1)])
    assert processor.run(0, context) == DebugException((0,))
    assert (reg(context, "rip"), reg(context, "rax")) == (CALLEE, 0)
    assert rflags(context) & RF
    set_reg(context, "rip", CODE)  # back to the call, as a debugger's `set $pc`
    assert processor.run(0, context) == DebugException((0,))
    assert (reg(context, "rip"), reg(context, "rax")) == (CALLEE, 0)  # the callee has not run


def test_rf_lets_the_one_instruction_at_another_breakpoint_run():
    """§18.3.1.1: moved onto another instruction breakpoint with RF still set, that
    instruction runs once; its breakpoint is ignored, not reported at once."""
    processor, context = start(CALL, [(CALLEE, EXEC, 1), (CODE, EXEC, 1)])
    assert processor.run(0, context) == DebugException((1,))  # the call
    assert processor.run(0, context) == DebugException((0,))  # the callee
    set_reg(context, "rip", CODE)  # onto the call's breakpoint, RF set
    assert processor.run(0, context) == DebugException((0,))  # the call ran; the callee stops
    assert reg(context, "rip") == CALLEE
    assert dr6(processor) == b_bits(0)


def test_rf_waits_for_the_instruction_when_nothing_began():
    """§18.3.1.1: RF is cleared when the instruction begins: a run stopped before any
    instruction began (an interrupt between instructions) leaves it set."""
    processor, context = start(CALL, [(CALLEE, EXEC, 1)])
    assert processor.run(0, context) == DebugException((0,))
    processor.clock.request_stop()
    assert processor.run(0, context) == Preempted()
    processor.clock.withdraw_stop()
    assert reg(context, "rip") == CALLEE and rflags(context) & RF
    assert processor.run(0, context) == Hypercall()  # the callee ran; its breakpoint did not fire again
    assert reg(context, "rax") == 1


def test_clearing_rf_makes_the_breakpoint_fault_again():
    """§18.3.1.1: RF is what prevents the loop on an instruction breakpoint: a handler that
    returns without it gets the same breakpoint again."""
    processor, context = start(CALL, [(CALLEE, EXEC, 1)])
    assert processor.run(0, context) == DebugException((0,))
    set_reg(context, "rflags", rflags(context) & ~RF)
    assert processor.run(0, context) == DebugException((0,))
    assert reg(context, "rax") == 0


DIVIDE = code(
    "48 f7 f1",  # div rcx
    HLT,  # hlt               <- CODE+3
)


def test_a_fault_frame_holds_rf_one_so_the_retried_instruction_skips_its_breakpoint():
    """§18.3.1.1: for any fault-class exception but an instruction breakpoint's #DB, the
    RF pushed is 1: once the handler fixes the cause, the instruction runs again without
    reporting its instruction breakpoint a second time."""
    processor, context = start(DIVIDE, [(CODE, EXEC, 1)], rax=100, rcx=0)
    assert processor.run(0, context) == DebugException((0,))
    assert processor.run(0, context) == CpuException(DIVIDE_ERROR)
    assert reg(context, "rip") == CODE and rflags(context) & RF
    set_reg(context, "rcx", 7)  # the handler fixes the divisor
    assert processor.run(0, context) == Hypercall()
    assert reg(context, "rax") == 14


def test_int3_is_a_trap_with_rf_clear():
    """§18.3.1.1: a software interrupt pushes RF = 0 (RF was cleared as it began)."""
    program = code("cc", "ff c0", HLT)  # int3; inc eax; hlt
    processor, context = start(program, [(CODE, EXEC, 1), (CODE + 1, EXEC, 1)])
    assert processor.run(0, context) == DebugException((0,))
    assert processor.run(0, context) == CpuException(BREAKPOINT)
    assert reg(context, "rip") == CODE + 1 and not rflags(context) & RF
    assert processor.run(0, context) == DebugException((1,))  # the next instruction's breakpoint


# -- §18.3.1.1, §18.3.1.2, Vol. 2 REP: a repeated string instruction is one instruction ----

REP_STOSQ = code("f3 48 ab", HLT)  # rep stos qword ptr [rdi], rax; hlt
REP_MOVSB = code("f3 a4", HLT)  # rep movs byte ptr [rdi], byte ptr [rsi]; hlt
STOSQ = dict(rcx=4, rdi=DATA + 0x200, rax=0x1111)


def test_a_data_trap_between_iterations_pushes_rf_one_and_the_instruction_breakpoint_is_not_taken_again():
    """§18.3.1.1: a trap-class exception in any iteration but the last pushes RF = 1, so
    that the rep resumes without its instruction breakpoint firing again; §18.3.1.2: the
    data trap comes after the iteration that accessed the location, RCX and RDI as that
    iteration left them (Vol. 2 REP: RIP at the instruction)."""
    processor, context = start(REP_STOSQ, [(CODE, EXEC, 1), (DATA + 0x208, W, 8)], **STOSQ)
    assert processor.run(0, context) == DebugException((0,))
    exit = processor.run(0, context)
    assert isinstance(exit, DebugException) and exit.trap and exit.slots == (1,)
    assert (reg(context, "rip"), reg(context, "rcx"), reg(context, "rdi")) == (CODE, 2, DATA + 0x210)
    assert rflags(context) & RF
    assert processor.run(0, context) == Hypercall()  # no second stop at the rep
    assert reg(context, "rcx") == 0
    assert processor.read(DATA + 0x200, 32) == (0x1111).to_bytes(8, "little") * 4


def test_a_data_trap_in_the_last_iteration_leaves_rip_past_the_instruction_with_rf_clear():
    """§18.3.1.1: a trap after the last iteration pushes the RF the instruction left (0)."""
    processor, context = start(REP_STOSQ, [(DATA + 0x218, W, 8)], **STOSQ)
    exit = processor.run(0, context)
    assert isinstance(exit, DebugException) and exit.slots == (0,)
    assert (reg(context, "rip"), reg(context, "rcx")) == (CODE + 3, 0)
    assert not rflags(context) & RF


def test_single_steps_of_a_rep_string_instruction_take_one_iteration_each():
    """§18.3.1.4 with §18.3.1.1: the single-step trap follows each iteration, RIP at the
    instruction and RF = 1 in all but the last; after the last RIP is past it. RCX = 3 takes
    three steps, not one more for a pass that finds the count spent."""
    processor, context = start(REP_STOSQ, [], **dict(STOSQ, rcx=3))
    seen = []
    for _ in range(3):
        assert processor.run(0, context, step=True) == Stepped()
        assert dr6(processor) & DR6_BS
        seen.append((reg(context, "rip"), reg(context, "rcx"), bool(rflags(context) & RF)))
    assert seen == [(CODE, 2, True), (CODE, 1, True), (CODE + 3, 0, False)]


def test_a_single_step_of_a_rep_with_a_zero_count_moves_past_it():
    """Vol. 2 REP: with the count 0 no iteration runs and the instruction completes."""
    processor, context = start(REP_STOSQ, [], **dict(STOSQ, rcx=0))
    assert processor.run(0, context, step=True) == Stepped()
    assert (reg(context, "rip"), reg(context, "rcx")) == (CODE + 3, 0)
    assert processor.read(DATA + 0x200, 8) == unwatched(REP_STOSQ, 0, **STOSQ)["data"][0x200:0x208]


REPE_CMPSB = code("f3 a6", HLT)  # repz cmps byte ptr [rsi], byte ptr [rdi]; hlt


def test_repe_cmps_ends_on_the_first_difference():
    """Vol. 2 REP: REPE ends when ZF is clear after an iteration, the count not spent:
    the step of that iteration leaves RIP past the instruction and RF clear."""
    memory = {DATA + 0x100: b"ab?d", DATA + 0x200: b"ab!d"}
    processor, context = start(REPE_CMPSB, [], memory, rcx=4, rsi=DATA + 0x100, rdi=DATA + 0x200)
    steps = []
    while reg(context, "rip") == CODE:
        assert processor.run(0, context, step=True) == Stepped()
        steps.append((reg(context, "rip"), reg(context, "rcx"), bool(rflags(context) & RF)))
    assert steps == [(CODE, 3, True), (CODE, 2, True), (CODE + 2, 1, False)]


def test_an_address_size_prefix_counts_in_ecx():
    """Vol. 2 REP: with a 67 prefix the count register is ECX: RCX = 2**32 + 2 is two
    iterations, the step of the second past the instruction."""
    low = 0x200000
    processor = Processor(AddressSpace([Mapping("text", CODE, 0x100000, 0x1000), Mapping("low", low, 0x200000, 0x1000)]))
    processor.write(CODE, code("67 f3 aa", HLT))  # rep stos byte ptr [edi], al; hlt
    context = processor.new_context(rip=CODE, rcx=2**32 + 2, rdi=low, rax=0x5A)
    assert processor.run(0, context, step=True) == Stepped()
    assert (reg(context, "rip"), reg(context, "rcx")) == (CODE, 1)
    assert processor.run(0, context, step=True) == Stepped()
    assert (reg(context, "rip"), reg(context, "rcx")) == (CODE + 3, 0)
    assert processor.read(low, 3) == b"\x5a\x5a\x00"


def test_a_break_in_between_iterations_leaves_rf_set_and_the_count_as_it_is():
    """§18.3.1.1: an interrupt after an iteration but the last pushes RF = 1; Vol. 2 REP:
    the registers say where to resume. Resumed, the rep's instruction breakpoint is not taken."""
    program = code("b9 04 00 00 00", "f3 48 ab", HLT)  # mov ecx, 4; rep stos qword ptr [rdi], rax; hlt
    processor, context = start(program, [(CODE + 5, EXEC, 1)], rdi=DATA + 0x200, rax=7)
    assert processor.run(0, context) == DebugException((0,))
    # Guest time counts blocks: the rep's first pass, then one block an iteration.
    assert processor.run(0, context, budget=2) == TimeUp()
    assert (reg(context, "rip"), reg(context, "rcx")) == (CODE + 5, 2)
    assert rflags(context) & RF
    assert processor.run(0, context) == Hypercall()
    assert processor.read(DATA + 0x200, 32) == (7).to_bytes(8, "little") * 4


def test_a_stop_after_the_last_iteration_finds_the_cpu_past_the_instruction():
    """§18.3.1.1: an interrupt after the last iteration finds the instruction complete, RF
    clear, RIP past it (unicorn's extra pass at the rep to find the count spent is not a
    state hardware shows)."""
    program = code("b9 04 00 00 00", "f3 48 ab", HLT)
    processor, context = start(program, [], rdi=DATA + 0x200, rax=7)
    assert processor.run(0, context, budget=4) == TimeUp()
    assert (reg(context, "rip"), reg(context, "rcx")) == (CODE + 8, 0)
    assert not rflags(context) & RF


def test_a_probe_on_a_rep_string_instruction_is_asked_once_an_execution():
    """A conditional breakpoint (a probe) counts executions of the instruction, as the
    instruction breakpoint does (§18.3.1.1), not iterations."""
    processor, context = start(REP_MOVSB, [], rcx=16, rsi=DATA + 0x100, rdi=DATA + 0x200)
    asked = []
    processor.set_probe(CODE, lambda cpu: asked.append(cpu) or ProbeVerdict.RUN)
    assert processor.run(0, context) == Hypercall()
    assert asked == [0] and reg(context, "rcx") == 0


def test_instruction_breakpoints_see_every_execution_of_a_rep_in_a_loop():
    """§18.3.1.1: each execution of the rep is a new instruction to its breakpoint."""
    program = code(
        "b9 03 00 00 00",  # L: mov ecx, 3
        "f3 a4",  # rep movs byte ptr [rdi], byte ptr [rsi]   <- CODE+5
        "48 ff ca",  # dec rdx
        "75 f4",  # jnz L
        HLT,
    )
    processor, context = start(program, [(CODE + 5, EXEC, 1)], rdx=3, rsi=DATA + 0x100, rdi=DATA + 0x200)
    stops = 0
    while (exit := processor.run(0, context)) == DebugException((0,)):
        assert reg(context, "rcx") == 3
        stops += 1
    assert exit == Hypercall() and stops == 3


# -- §6.8.3: MOV SS holds debug exceptions off for one instruction ---------------------

MOV_SS = code(
    "8c d0",  # mov eax, ss
    "8e d0",  # mov ss, eax       <- CODE+2
    "ff c1",  # inc ecx           <- CODE+4: in the shadow
    "ff c2",  # inc edx           <- CODE+6
    HLT,  # hlt               <- CODE+8
)


def test_an_instruction_breakpoint_right_after_mov_ss_is_not_taken():
    """§6.8.3: debug exceptions are inhibited until the boundary after the instruction
    that follows MOV SS; the instruction breakpoint on that instruction is not reported."""
    processor, context = start(MOV_SS, [(CODE + 4, EXEC, 1), (CODE + 6, EXEC, 1)])
    assert processor.run(0, context) == DebugException((1,))
    assert (reg(context, "rip"), reg(context, "rcx")) == (CODE + 6, 1)


def test_the_same_instruction_not_after_mov_ss_stops_at_its_breakpoint():
    """§6.8.3 inhibits only the instruction after the MOV SS."""
    processor, context = start(MOV_SS, [(CODE + 4, EXEC, 1)])
    set_reg(context, "rip", CODE + 4)
    assert processor.run(0, context) == DebugException((0,))


def test_a_single_step_of_mov_ss_stops_after_the_next_instruction():
    """§6.8.3: the single-step trap after MOV SS waits for the next instruction."""
    processor, context = start(MOV_SS, [])
    assert processor.run(0, context, step=True) == Stepped()  # mov eax, ss
    assert processor.run(0, context, step=True) == Stepped()  # mov ss, eax and inc ecx
    assert (reg(context, "rip"), reg(context, "rcx")) == (CODE + 6, 1)
    assert dr6(processor) & DR6_BS


MOV_SS_FROM_MEMORY = code(
    "8e 13",  # mov ss, word ptr [rbx]
    "48 89 43 08",  # mov qword ptr [rbx+8], rax   <- CODE+2: in the shadow
    "ff c2",  # inc edx           <- CODE+6
    HLT,
)


def test_a_data_breakpoint_hit_by_mov_ss_is_reported_after_the_next_instruction():
    """§6.8.3: the data breakpoint MOV SS hits is held off until the boundary after the
    next instruction: RIP is past both."""
    memory = {DATA: bytes(8)}  # a null selector, which 64-bit mode loads into SS at CPL 0
    processor, context = start(MOV_SS_FROM_MEMORY, [(DATA, RW, 2)], memory, rax=5)
    exit = processor.run(0, context)
    assert isinstance(exit, DebugException) and exit.trap and exit.slots == (0,)
    assert reg(context, "rip") == CODE + 6
    assert processor.read(DATA + 8, 8) == (5).to_bytes(8, "little")


def test_data_breakpoints_of_mov_ss_and_the_next_instruction_are_one_trap():
    """§6.8.3 and §18.2.3: one #DB after the shadowed instruction, a B bit for each."""
    memory = {DATA: bytes(8)}
    processor, context = start(MOV_SS_FROM_MEMORY, [(DATA, RW, 2), (DATA + 8, W, 8)], memory, rax=5)
    exit = processor.run(0, context)
    assert isinstance(exit, DebugException) and exit.slots == (0, 1)
    assert reg(context, "rip") == CODE + 6
    assert dr6(processor) == b_bits(0, 1)


def test_no_stop_comes_between_mov_ss_and_the_next_instruction():
    """§6.8.3: interrupts (and an NMI, as a break-in is) are inhibited until after the
    next instruction: a run whose time ends right after the MOV SS ends one instruction later."""
    program = code("8e d0", "ff c1", "eb fe")  # mov ss, eax; inc ecx; jmp $
    processor, context = start(program, [])
    set_reg(context, "rax", reg(context, "ss"))
    assert processor.run(0, context, budget=1) == TimeUp()  # the MOV SS ends its block
    assert (reg(context, "rip"), reg(context, "rcx")) == (CODE + 4, 1)


def test_consecutive_mov_ss_shadow_only_the_first_successor():
    """§6.8.3 leaves undefined whether a MOV SS in the shadow of another inhibits: here,
    as in unicorn, only the first does, and the instruction after the second stops at
    its breakpoint."""
    program = code("8e d0", "8e d0", "ff c1", HLT)  # mov ss, eax; mov ss, eax; inc ecx; hlt
    processor, context = start(program, [(CODE + 4, EXEC, 1)])
    set_reg(context, "rax", reg(context, "ss"))
    assert processor.run(0, context) == DebugException((0,))
    assert reg(context, "rip") == CODE + 4


def test_pop_ss_is_invalid_in_64_bit_mode():
    """Vol. 2 POP: POP SS is #UD in 64-bit mode, so it makes no shadow."""
    processor, context = start(code("17", HLT), [])
    assert processor.run(0, context) == CpuException(INVALID_OPCODE)


# -- §18.3.1.4: a guest that sets TF itself ------------------------------------------

TRACED = code(
    "ff c0",  # inc eax
    "48 89 43 10",  # mov qword ptr [rbx+0x10], rax   <- CODE+2
    "ff c0",  # inc eax           <- CODE+6
    HLT,  # hlt               <- CODE+8
)


def test_the_guests_tf_makes_a_single_step_trap_with_bs_after_each_instruction():
    """§18.3.1.4: with TF set the processor traps after each instruction; DR6.BS says so."""
    processor, context = start(TRACED, [])
    set_reg(context, "rflags", 0x2 | TF)
    exit = processor.run(0, context)
    assert exit == DebugException((), single_step=True)
    assert exit.trap and reg(context, "rip") == CODE + 2
    assert dr6(processor) == DR6_RESERVED_ONES | DR6_BS


def test_a_data_breakpoint_hit_by_a_traced_instruction_is_in_the_same_trap():
    """§18.3.1.4 and §18.3.1.2: both are traps after the same instruction, one #DB whose DR6
    has the B bit and BS; the handler is told of the slot."""
    processor, context = start(TRACED, [(DATA + 0x10, W, 8)])
    told = []
    processor.debug_handler = lambda cpu, exception: told.append(exception) or True
    set_reg(context, "rip", CODE + 2)
    set_reg(context, "rflags", 0x2 | TF)
    exit = processor.run(0, context)
    assert isinstance(exit, DebugException) and exit.single_step and exit.slots == (0,)
    assert told == [exit]
    assert reg(context, "rip") == CODE + 6
    assert dr6(processor) == b_bits(0) | DR6_BS


def test_popf_that_sets_tf_traps_only_after_the_next_instruction():
    """§18.3.1.4: no single-step trap follows the instruction that sets TF."""
    program = code(
        "9c",  # pushf
        "48 81 0c 24 00 01 00 00",  # or qword ptr [rsp], 0x100
        "9d",  # popf              <- CODE+9
        "90",  # nop               <- CODE+10
        "90", HLT,
    )
    processor, context = start(program, [])
    assert processor.run(0, context) == DebugException((), single_step=True)
    assert reg(context, "rip") == CODE + 11


def test_a_plain_single_step_sets_bs():
    """§18.2.3: BS reports a single-step trap, the host's step as much as the guest's TF."""
    processor, context = start(TRACED, [])
    assert processor.run(0, context, step=True) == Stepped()
    assert dr6(processor) == DR6_RESERVED_ONES | DR6_BS


# -- §18.2.3: DR6 bits other than B0-B3 are never cleared by the processor -------------


def test_bs_stays_set_through_a_later_data_breakpoint():
    """§18.2.3: the processor may clear B0-B3 at a debug exception (this one sets exactly
    the slots that matched), never BS, BD or BT."""
    processor, context = start(TRACED, [(DATA + 0x10, W, 8)])
    assert processor.run(0, context, step=True) == Stepped()
    exit = processor.run(0, context)
    assert isinstance(exit, DebugException) and exit.slots == (0,) and not exit.single_step
    assert dr6(processor) == b_bits(0) | DR6_BS


def test_b_bits_are_replaced_at_each_debug_exception():
    """§18.2.3: B0-B3 say which breakpoints matched for this exception."""
    processor, context = start(TRACED, [(CODE, EXEC, 1), (DATA + 0x10, W, 8)])
    assert processor.run(0, context) == DebugException((0,))
    assert dr6(processor) == b_bits(0)
    assert isinstance(processor.run(0, context), DebugException)
    assert dr6(processor) == b_bits(1)


# -- Vol. 2 MOV DRn, §18.2, §18.3.1.3: the guest's own debug registers -------------------

# mov dr0, rax; mov rax, dr1 ... each followed by hlt, one program per form.
MOV_TO_DR0 = code("0f 23 c0", HLT)  # mov dr0, rax
MOV_TO_DR7 = code("0f 23 f8", HLT)  # mov dr7, rax
MOV_FROM_DR7 = code("0f 21 f8", HLT)  # mov rax, dr7
MOV_FROM_DR6 = code("0f 21 f0", HLT)  # mov rax, dr6
MOV_TO_DR6 = code("0f 23 f0", HLT)  # mov dr6, rax
MOV_FROM_DR4 = code("0f 21 e0", HLT)  # mov rax, dr4
MOV_TO_DR5 = code("0f 23 e8", HLT)  # mov dr5, rax


def test_a_guest_mov_to_dr0_and_dr7_arms_the_machines_breakpoint():
    """Vol. 2 MOV DRn; §18.2.4: what the guest writes is the machine's own DR0 and DR7, so
    its breakpoint is reported as the machine's #DB with the B bit in DR6."""
    program = code(
        "48 b8 00 00 10 00 80 88 ff ff",  # movabs rax, DATA
        "0f 23 c0",  # mov dr0, rax       <- CODE+10
        "b8 02 04 0d 00",  # mov eax, 0xd0402 (G0, R/W0 = 01 write, LEN0 = 11: 4 bytes)   <- CODE+13
        "0f 23 f8",  # mov dr7, rax       <- CODE+18
        "c7 03 01 00 00 00",  # mov dword ptr [rbx], 1   <- CODE+21
        HLT,  # <- CODE+27
    )
    processor, context = start(program, [])
    exit = processor.run(0, context)
    assert isinstance(exit, DebugException) and exit.trap and exit.slots == (0,)
    assert reg(context, "rip") == CODE + 27
    registers = processor.debug_registers[0]
    assert registers.dr[0] == DATA and registers.dr7 == 0xD0402 | DR7_ALWAYS_ONE
    assert dr6(processor) == b_bits(0)
    # unicorn's own debug registers never see it
    assert processor.uc.reg_read(X.UC_X86_REG_DR0) == 0 and processor.uc.reg_read(X.UC_X86_REG_DR7) & 0xFF == 0


def test_a_guest_mov_from_debug_registers_reads_the_machines():
    """Vol. 2 MOV DRn: MOV r64, DRn reads all 64 bits of the register."""
    processor, context = start(MOV_FROM_DR7, [(DATA + 8, W, 8)])
    assert processor.run(0, context) == Hypercall()
    assert reg(context, "rax") == processor.debug_registers[0].dr7
    processor, context = start(code("0f 21 c1", HLT), [], rcx=1)  # mov rcx, dr0
    processor.debug_registers[0].dr[0] = 0xFFFF_8880_0010_0008
    assert processor.run(0, context) == Hypercall()
    assert reg(context, "rcx") == 0xFFFF_8880_0010_0008


def test_dr0_takes_any_64_bit_value():
    """§18.2.6: MOV DRn does not check addresses written to DR0-DR3."""
    processor, context = start(MOV_TO_DR0, [], rax=0x8000_0000_0000_0001)
    assert processor.run(0, context) == Hypercall()
    assert processor.debug_registers[0].dr[0] == 0x8000_0000_0000_0001


@pytest.mark.parametrize("value", [0, 0xFFFF_FFFF], ids=["zeros", "ones"])
def test_dr6_and_dr7_read_their_fixed_bits(value):
    """§18.2.3, §18.2.4: reserved DR6 bits read as 1 (bit 12 as 0), DR7 bit 10 reads 1; the
    bits this machine does not model (DR7 11, 12, 14, 15) read 0."""
    processor, context = start(MOV_TO_DR6, [], rax=value)
    assert processor.run(0, context) == Hypercall()
    assert processor.debug_registers[0].dr6 == (0xFFFF_EFFF if value else DR6_RESERVED_ONES)
    processor, context = start(MOV_TO_DR7, [], rax=value)
    assert processor.run(0, context) == Hypercall()
    assert processor.debug_registers[0].dr7 == (0xFFFF_27FF if value else DR7_ALWAYS_ONE)


def test_a_write_to_dr6_clears_bs_and_bd():
    """§18.2.3: only software clears DR6; the guest's MOV DR6 does."""
    processor, context = start(MOV_TO_DR6, [], rax=0)
    processor.debug_registers[0].report(0b1, single_step=True, general_detect=True)
    assert processor.run(0, context) == Hypercall()
    assert processor.debug_registers[0].dr6 == DR6_RESERVED_ONES


@pytest.mark.parametrize("program", [MOV_TO_DR6, MOV_TO_DR7], ids=["dr6", "dr7"])
def test_a_one_in_bits_63_32_of_dr6_or_dr7_is_a_general_protection_fault(program):
    """§18.2.6, Vol. 2 MOV DRn 64-bit mode exceptions: #GP(0), and nothing changes."""
    processor, context = start(program, [], rax=1 << 32)
    before = processor.debug_registers[0].dr6, processor.debug_registers[0].dr7
    assert processor.run(0, context) == CpuException(GENERAL_PROTECTION)
    assert reg(context, "rip") == CODE and rflags(context) & RF  # a fault: RF = 1 pushed
    assert (processor.debug_registers[0].dr6, processor.debug_registers[0].dr7) == before


def test_dr4_and_dr5_are_dr6_and_dr7_without_debug_extensions():
    """§18.2.2, Vol. 2 MOV DRn: with CR4.DE clear, DR4 and DR5 are DR6 and DR7."""
    processor, context = start(MOV_FROM_DR4, [])
    processor.debug_registers[0].report(0b10)
    assert processor.run(0, context) == Hypercall()
    assert reg(context, "rax") == processor.debug_registers[0].dr6
    processor, context = start(MOV_TO_DR5, [], rax=DR7_GD)
    assert processor.run(0, context) == Hypercall()
    assert processor.debug_registers[0].dr7 == DR7_GD | DR7_ALWAYS_ONE


@pytest.mark.parametrize("program", [MOV_FROM_DR4, MOV_TO_DR5], ids=["dr4", "dr5"])
def test_dr4_and_dr5_are_invalid_with_debug_extensions(program):
    """§18.2.2, Vol. 2 MOV DRn: with CR4.DE set, DR4 and DR5 are #UD."""
    processor, context = start(program, [], rax=0)
    set_reg(context, "cr4", reg(context, "cr4") | CR4_DE)
    assert processor.run(0, context) == CpuException(INVALID_OPCODE)
    assert reg(context, "rip") == CODE


@pytest.mark.parametrize("instruction", ["44 0f 21 c0", "f0 0f 21 c0"], ids=["dr8", "lock"])
def test_dr8_and_a_lock_prefix_are_invalid(instruction):
    """Vol. 2 MOV DRn 64-bit mode exceptions: #UD for REX.R (DR8-DR15) and for LOCK."""
    processor, context = start(code(instruction, HLT), [])
    assert processor.run(0, context) == CpuException(INVALID_OPCODE)


def test_mov_drn_at_cpl_3_is_a_general_protection_fault():
    """§18.2, Vol. 2 MOV DRn: debug registers are privileged; CPL 3 gets #GP(0)."""
    processor, context = start(MOV_TO_DR7, [], rax=0x401)
    processor.user_mode = lambda address: True
    assert processor.run(0, context) == CpuException(GENERAL_PROTECTION)
    assert processor.debug_registers[0].dr7 == DR7_ALWAYS_ONE


def test_general_detect_faults_before_the_mov_with_bd_and_clears_gd():
    """§18.3.1.3: with DR7.GD set, any MOV DRn is a #DB fault before it runs; DR6.BD says
    so and the processor clears GD so that the handler may use the registers; §18.3.1.1:
    the fault's frame holds RF = 1."""
    processor, context = start(MOV_FROM_DR6, [], rax=0x1234)
    processor.debug_registers[0].dr7 |= DR7_GD
    exit = processor.run(0, context)
    assert exit == DebugException((), general_detect=True) and not exit.trap
    assert (reg(context, "rip"), reg(context, "rax")) == (CODE, 0x1234)
    assert dr6(processor) == DR6_RESERVED_ONES | DR6_BD
    assert not processor.debug_registers[0].dr7 & DR7_GD
    assert rflags(context) & RF
    assert processor.run(0, context) == Hypercall()  # the MOV runs now
    assert reg(context, "rax") == DR6_RESERVED_ONES | DR6_BD


def test_a_single_step_of_a_mov_drn_goes_through_the_machines_registers():
    """Vol. 2 MOV DRn: every way the instruction runs reaches the machine's registers."""
    processor, context = start(MOV_TO_DR7, [], rax=0x401)
    assert processor.run(0, context, step=True) == Stepped()
    assert processor.debug_registers[0].dr7 == 0x401 | DR7_ALWAYS_ONE
    assert reg(context, "rip") == CODE + 3


def test_a_mov_drn_the_guest_wrote_into_its_code_is_intercepted():
    """Vol. 2 MOV DRn: code the guest writes and then runs is intercepted as well."""
    program = code(
        "c7 05 02 00 00 00 0f 23 c0 f4",  # mov dword ptr [rip+2], 0xf4c0230f: "mov dr0, rax; hlt" at CODE+12
        "eb 00",  # jmp +0: a new block  <- CODE+10
        "90", "90", "90", "90",  # <- CODE+12: overwritten
    )
    processor, context = start(program, [], rax=0x4242)
    assert processor.run(0, context) == Hypercall()
    assert reg(context, "rip") == CODE + 16
    assert processor.debug_registers[0].dr[0] == 0x4242


# -- §6.9: priorities ---------------------------------------------------------------------


def test_an_instruction_breakpoint_comes_before_general_detect():
    """§6.9: a code breakpoint fault (priority 7) is taken before the faults of executing
    the instruction; general detect follows once the handler resumes with RF."""
    processor, context = start(MOV_FROM_DR7, [(CODE, EXEC, 1)])
    processor.debug_registers[0].dr7 |= DR7_GD
    assert processor.run(0, context) == DebugException((0,))
    assert processor.run(0, context) == DebugException((), general_detect=True)


def test_a_trap_of_one_instruction_comes_before_the_next_instructions_breakpoint():
    """§6.9: traps on the previous instruction (priority 4) before the code breakpoint
    fault of the next (priority 7); resumed, that fault comes."""
    processor, context = start(TRACED, [(DATA + 0x10, W, 8), (CODE + 6, EXEC, 1)])
    set_reg(context, "rip", CODE + 2)
    exit = processor.run(0, context)
    assert isinstance(exit, DebugException) and exit.trap and exit.slots == (0,)
    assert reg(context, "rip") == CODE + 6
    assert processor.run(0, context) == DebugException((1,))


def test_a_probe_stop_keeps_rf_for_the_instruction_that_has_not_begun():
    """§18.3.1.1: RF is cleared only when the instruction begins; a stop before it (a
    conditional breakpoint) leaves it as it was."""
    processor, context = start(CALL, [(CALLEE, EXEC, 1)])
    assert processor.run(0, context) == DebugException((0,))
    processor.set_probe(CALLEE, lambda cpu: ProbeVerdict.STOP)
    assert processor.run(0, context) == Probed(CALLEE)
    assert rflags(context) & RF
    processor.set_probe(CALLEE, None)
    assert processor.run(0, context) == Hypercall()


def test_an_io_breakpoint_never_fires_on_memory():
    """§18.2.4: R/W 10 breaks on I/O port accesses (with CR4.DE); the machine does none,
    and a store to the address in DRn is no I/O access."""
    program = code(
        "48 b8 00 00 10 00 80 88 ff ff",  # movabs rax, DATA
        "0f 23 c0",  # mov dr0, rax
        "b8 02 04 02 00",  # mov eax, 0x20402 (G0, R/W0 = 10, LEN0 = 00)
        "0f 23 f8",  # mov dr7, rax
        "c6 03 01",  # mov byte ptr [rbx], 1
        HLT,
    )
    processor, context = start(program, [])
    set_reg(context, "cr4", reg(context, "cr4") | CR4_DE)
    assert processor.run(0, context) == Hypercall()
    assert processor.debug_registers[0].slot(0).access is Access.IO


# -- every form made exact ---------------------------------------------------------------

# id: (instruction, registers) -- each repeats three times over equal or unmatched data.
REP_FORMS = {
    "rep-movsb": ("f3 a4", {}),
    "rep-movsw": ("66 f3 a5", {}),
    "rep-movsd": ("f3 a5", {}),
    "rep-movsq": ("f3 48 a5", {}),
    "rep-stosb": ("f3 aa", {}),
    "rep-stosw": ("66 f3 ab", {}),
    "rep-stosd": ("f3 ab", {}),
    "rep-stosq": ("f3 48 ab", {}),
    "rep-lodsb": ("f3 ac", {}),
    "repe-cmpsb": ("f3 a6", {}),  # equal bytes: runs out the count
    "repne-cmpsb": ("f2 a6", {"rsi": DATA + 0x400}),  # bytes that differ
    "repe-scasb": ("f3 ae", {"rax": 0}),  # zeros, scanned for 0
    "repne-scasb": ("f2 ae", {"rax": 0xFF}),  # zeros, scanned for 0xff
}
ZEROS = {DATA + 0x100: bytes(64), DATA + 0x200: bytes(64), DATA + 0x400: b"\x01" * 64}


@pytest.mark.parametrize("instruction, registers", REP_FORMS.values(), ids=list(REP_FORMS))
def test_every_rep_form_steps_an_iteration_at_a_time_and_breaks_once(instruction, registers):
    """§18.3.1.1, §18.3.1.4 and Vol. 2 REP, for each string instruction REP repeats (INS and
    OUTS aside: the machine has no I/O ports)."""
    program = code(instruction, HLT)
    length = len(bytes.fromhex(instruction))
    regs = dict(dict(rcx=3, rsi=DATA + 0x100, rdi=DATA + 0x200), **registers)
    processor, context = start(program, [], ZEROS, **regs)
    seen = []
    while reg(context, "rip") == CODE:
        assert processor.run(0, context, step=True) == Stepped()
        seen.append((reg(context, "rcx"), bool(rflags(context) & RF)))
    assert seen == [(2, True), (1, True), (0, False)]
    assert reg(context, "rip") == CODE + length
    processor, context = start(program, [(CODE, EXEC, 1)], ZEROS, **regs)
    assert processor.run(0, context) == DebugException((0,))
    assert processor.run(0, context) == Hypercall() and reg(context, "rcx") == 0


# id: the MOV SS, with the instruction after it at CODE + its length
MOV_SS_FORMS = {
    "register": "8e d0",  # mov ss, eax
    "operand-size-prefix": "66 8e d0",  # mov ss, ax
    "rex-w": "48 8e d0",  # mov ss, rax
    "memory": "8e 13",  # mov ss, word ptr [rbx]
    "memory-displacement": "8e 53 00",  # mov ss, word ptr [rbx+0]
}


@pytest.mark.parametrize("instruction", MOV_SS_FORMS.values(), ids=list(MOV_SS_FORMS))
def test_every_mov_ss_form_shadows_the_next_instruction(instruction):
    """§6.8.3 for each encoding of MOV SS: the next instruction's breakpoint is not taken."""
    length = len(bytes.fromhex(instruction))
    program = code(instruction, "ff c1", "ff c2", HLT)  # ...; inc ecx; inc edx; hlt
    processor, context = start(program, [(CODE + length, EXEC, 1), (CODE + length + 2, EXEC, 1)],
                               {DATA: bytes(8)}, rax=0)
    assert processor.run(0, context) == DebugException((1,))
    assert reg(context, "rcx") == 1


# id: (instruction, register read or written, debug register, whether it writes)
MOV_DR_FORMS = {
    "from-dr7-to-r9": ("41 0f 21 f9", "r9", 7, False),
    "to-dr3-from-r15": ("41 0f 23 df", "r15", 3, True),
    "operand-size-prefix-ignored": ("66 0f 21 f8", "rax", 7, False),
    "mod-bits-ignored": ("0f 21 38", "rax", 7, False),
}


@pytest.mark.parametrize("instruction, register, index, writes", MOV_DR_FORMS.values(), ids=list(MOV_DR_FORMS))
def test_every_mov_drn_form_reaches_the_machines_registers(instruction, register, index, writes):
    """Vol. 2 MOV DRn: REX.B names r8-r15, an operand-size prefix is ignored in 64-bit mode
    (§18.2.6), and the ModR/M mod bits are ignored (always a register)."""
    processor, context = start(code(instruction, HLT), [])
    registers = processor.debug_registers[0]
    if writes:
        set_reg(context, register, 0x1234_5678_9ABC)
    else:
        registers.dr7 |= 0b10  # G0
    assert processor.run(0, context) == Hypercall()
    assert reg(context, "rip") == CODE + len(bytes.fromhex(instruction)) + 1
    if writes:
        assert registers.read(index) == 0x1234_5678_9ABC
    else:
        assert reg(context, register) == registers.read(index)
