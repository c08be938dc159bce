"""The agent-expression interpreter (kgdbstub.core.agent) on hand-written programs.

Expectations come from the GDB manual's "Agent Expressions" appendix
(Bytecode Descriptions), gdb's opcode table (gdbsupport/ax.def) and
gdbserver's interpreter (gdbserver/ax.cc, gdb_eval_agent_expr); printf's
formatting is held to the C library's own snprintf.
"""
import ctypes
import ctypes.util

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_programs import CODES, M, assemble, reference
from kgdbstub.core import agent

REGISTERS = range(24)
MEMORY = {0x1000 + i: (0x11 * (i + 1)) & 0xFF for i in range(16)}
MEMORY.update({0x2000 + i: b for i, b in enumerate(b"looper\0")})


def read_int(address: int, size: int) -> int:
    try:
        return int.from_bytes(bytes(MEMORY[address + i] for i in range(size)), "little")
    except KeyError:
        raise agent.MemoryFault(address) from None


def read_string(address: int, limit: int) -> bytes:
    out = bytearray()
    while len(out) < limit:
        if address + len(out) not in MEMORY:
            raise agent.MemoryFault(address + len(out))
        byte = MEMORY[address + len(out)]
        if byte == 0:
            break
        out.append(byte)
    return bytes(out)


def register(number: int) -> int:
    return 0x100 + number


def run(*instructions, value=True):
    printed = []
    result = agent.compile(assemble(*instructions), REGISTERS, value=value).evaluate(
        read_int, read_string, register, printed.append)
    return result if value else printed


def binary(name, a, b):
    return run(("const64", a), ("const64", b), (name,), ("end",))


# -- each bytecode as the manual describes it ------------------------------------------


@pytest.mark.parametrize("name, a, b, result", [
    ("add", 5, 7, 12), ("add", M, 2, 1),  # wraps at 64 bits
    ("sub", 5, 7, M - 1),  # "subtract the top value from the next-to-top value"
    ("mul", 1 << 63, 2, 0), ("mul", 3, M, M - 2),
    ("div_signed", -7 & M, 2, -3 & M),  # C truncates towards zero
    ("div_signed", 7, -2 & M, -3 & M), ("div_unsigned", -7 & M, 2, (M - 6) // 2),
    ("rem_signed", -7 & M, 2, -1 & M),  # the remainder has the dividend's sign
    ("rem_signed", 7, -2 & M, 1), ("rem_unsigned", 7, 3, 1),
    ("div_signed", 1 << 63, M, 1 << 63),  # INT64_MIN / -1 wraps
    ("lsh", 1, 63, 1 << 63), ("rsh_signed", 1 << 63, 60, -8 & M), ("rsh_unsigned", 1 << 63, 60, 8),
    # Undefined in C; gdb's evaluator shifts every bit out.
    ("lsh", 1, 64, 0), ("lsh", 3, M, 0), ("rsh_unsigned", M, 64, 0), ("rsh_signed", 1 << 63, 200, M),
    ("bit_and", 0b1100, 0b1010, 0b1000), ("bit_or", 0b1100, 0b1010, 0b1110), ("bit_xor", 0b1100, 0b1010, 0b0110),
    ("equal", 3, 3, 1), ("equal", 3, 4, 0),
    ("less_signed", -1 & M, 0, 1), ("less_signed", 0, -1 & M, 0), ("less_signed", 2, 2, 0),
    ("less_unsigned", -1 & M, 0, 0), ("less_unsigned", 0, -1 & M, 1),
])
def test_binary_operations(name, a, b, result):
    assert binary(name, a, b) == result


@pytest.mark.parametrize("name", ["div_signed", "div_unsigned", "rem_signed", "rem_unsigned"])
def test_a_division_by_zero_terminates_with_an_error(name):
    with pytest.raises(agent.DivisionByZero):
        binary(name, 1, 0)


def test_unary_operations():
    assert run(("const8", 0), ("log_not",), ("end",)) == 1
    assert run(("const8", 9), ("log_not",), ("end",)) == 0
    assert run(("const8", 0), ("bit_not",), ("end",)) == M


@pytest.mark.parametrize("bits, value, result", [
    (8, 0x80, -0x80 & M), (8, 0x7F, 0x7F), (8, 0x1FF, M),  # bits above n are ignored
    (32, 0xFFFFFFFE, -2 & M), (16, 0x12345, 0x2345),
    (64, 0xFFFF, 0xFFFF), (70, 5, 5),  # n at or above the stack width: no effect
])
def test_ext_sign_extends_from_n_bits(bits, value, result):
    assert run(("const64", value), ("ext", bits), ("end",)) == result


@pytest.mark.parametrize("bits, value, result", [(8, 0x1FF, 0xFF), (32, M, 0xFFFFFFFF), (64, M, M), (0, 5, 0)])
def test_zero_ext_keeps_the_bottom_n_bits(bits, value, result):
    assert run(("const64", value), ("zero_ext", bits), ("end",)) == result


@pytest.mark.parametrize("name, size", [("ref8", 1), ("ref16", 2), ("ref32", 4), ("ref64", 8)])
def test_refs_fetch_little_endian_at_any_alignment(name, size):
    assert run(("const16", 0x1003), (name,), ("end",)) == read_int(0x1003, size)


def test_a_ref_of_memory_that_is_not_there_terminates_with_an_error():
    with pytest.raises(agent.MemoryFault) as fault:
        run(("const8", 8), ("ref32",), ("end",))
    assert fault.value.address == 8


def test_constants_are_big_endian_and_not_sign_extended():
    assert run(("const8", 0xFF), ("end",)) == 0xFF
    assert assemble(("const16", 0x1234)) == bytes([0x23, 0x12, 0x34])
    assert run(("const32", 0x80000000), ("end",)) == 0x80000000
    assert run(("const64", M), ("end",)) == M


def test_reg_pushes_a_register_by_number():
    assert run(("reg", 7), ("end",)) == 0x107


def test_stack_operations():
    assert run(("const8", 1), ("const8", 2), ("swap",), ("sub",), ("end",)) == 1
    assert run(("const8", 3), ("dup",), ("mul",), ("end",)) == 9
    assert run(("const8", 1), ("const8", 2), ("pop",), ("end",)) == 1
    # pick n copies the item n below the top; pick 0 is dup
    assert run(("const8", 10), ("const8", 20), ("const8", 30), ("pick", 2), ("end",)) == 10
    assert run(("const8", 10), ("pick", 0), ("add",), ("end",)) == 20
    # rot: a b c => c a b
    abc = [("const8", 1), ("const8", 2), ("const8", 3), ("rot",)]
    assert [run(*abc, *[("pop",)] * pops, ("end",)) for pops in (2, 1, 0)] == [3, 1, 2]


def test_jumps_go_to_offsets_from_the_start():
    # 0: const8 x; 2: if_goto 8; 5: const8 1; 7: end; 8: const8 2; 10: end
    program = lambda x: assemble(("const8", x), ("if_goto", 8), ("const8", 1), ("end",), ("const8", 2), ("end",))  # noqa: E731
    expression = lambda x: agent.compile(program(x), REGISTERS)  # noqa: E731
    assert expression(0).evaluate(read_int, read_string, register) == 1
    assert expression(5).evaluate(read_int, read_string, register) == 2
    goto = assemble(("goto", 6), ("const8", 1), ("end",), ("const8", 2), ("end",))
    assert agent.compile(goto, REGISTERS).evaluate(read_int, read_string, register) == 2


def test_printf_pops_function_channel_then_the_arguments_in_order():
    # gdb's gen_printf pushes the arguments last to first, then channel and function.
    printed = run(("const16", 0x2000), ("const8", 7), ("const8", 0), ("const8", 0),
                  ("printf", 2, b"n=%d comm=%s\\n"), ("end",), value=False)
    assert printed == [b"n=7 comm=looper\n"]


# -- what is refused, and why --------------------------------------------------------


@pytest.mark.parametrize("bytecode, refusal", [
    (b"", agent.Malformed),
    (assemble(("const8", 1)), agent.Malformed),  # runs off the end
    (assemble(("const16", 1))[:2], agent.Malformed),  # operand cut short
    (assemble(("add",), ("end",)), agent.Malformed),  # the stack runs dry
    (assemble(("end",)), agent.Malformed),  # a condition must leave a value
    (assemble(("const8", 1), ("goto", 1), ("end",)), agent.Unsupported),  # backward
    (assemble(("const8", 1), ("if_goto", 7), ("end",), ("end",)), agent.Malformed),  # into an instruction
    (assemble(("goto", 200)), agent.Malformed),  # past the end
    # the stack is one value high at 7 from the if_goto, two from the fall through
    (assemble(("const8", 1), ("const8", 1), ("if_goto", 9), ("const8", 2), ("end",)), agent.Malformed),
    (assemble(("const8", 1), ("pick", 1), ("end",)), agent.Malformed),
    (assemble(("const8", 1), ("ext", 0), ("end",)), agent.Malformed),
    (bytes([0x31, 0x27]), agent.Unsupported),  # a hole in the opcode table
    (bytes([0x99, 0x27]), agent.Unsupported),
    (assemble(("getv", 1), ("end",)), agent.Unsupported),  # trace state variables: tracepoints only
    (assemble(("const8", 1), ("trace_quick", 4), ("end",)), agent.Unsupported),
    (bytes([0x01, 0x27]), agent.Unsupported),  # float prefix
    (assemble(("reg", 40), ("end",)), agent.Unsupported),  # xmm0 does not fit a stack element
    (assemble(*[("const8", 1)] * 101, ("end",)), agent.Unsupported),  # gdbserver's STACK_MAX
    (assemble(("const8", 0), ("const8", 0), ("printf", 1, b"%d %d"), ("const8", 0), ("end",)), agent.Malformed),
    (assemble(("const8", 0), ("const8", 0), ("const8", 0), ("printf", 1, b"%f"), ("const8", 0), ("end",)),
     agent.Unsupported),
    (bytes([0x34, 0, 0, 2, ord("x"), ord("y"), 0x27]), agent.Malformed),  # format not NUL-terminated
])
def test_refused_programs(bytecode, refusal):
    with pytest.raises(refusal):
        agent.compile(bytecode, REGISTERS)


def test_a_command_may_end_with_an_empty_stack():
    assert agent.compile(assemble(("end",)), REGISTERS, value=False).evaluate(
        read_int, read_string, register) is None


# -- printf as C prints it ------------------------------------------------------------

LIBC = ctypes.CDLL(ctypes.util.find_library("c"))


def c_format(directive: bytes, value: int) -> bytes:
    buffer = ctypes.create_string_buffer(512)
    conversion = directive.rstrip(b"|")[-1:]
    if conversion == b"s":
        # gdbserver's ax_printf prints a null pointer as the string "(null)".
        argument = ctypes.c_char_p(read_string(value, 4096) if value else b"(null)")
    elif b"l" in directive or b"z" in directive or conversion == b"p":
        argument = ctypes.c_uint64(value)
    else:
        argument = ctypes.c_uint32(value & 0xFFFFFFFF)
    length = LIBC.snprintf(buffer, len(buffer), directive, argument)
    return buffer.raw[:length]


DIRECTIVES = [b"%d", b"%i", b"%u", b"%x", b"%X", b"%o", b"%c", b"%ld", b"%lu", b"%lx", b"%lld",
              b"%llu", b"%zu", b"%zd", b"%hd", b"%hu", b"%hx", b"%p", b"%s", b"%.3s", b"%10s", b"%-10s|",
              b"%5d", b"%-5d|", b"%05d", b"%+d", b"% d", b"%.0d", b"%.3d", b"%8.3d", b"%#x", b"%#o",
              b"%#X", b"%#lx", b"%08lx", b"%-#8x|", b"%.0x", b"%#.0o", b"%3c", b"%-3c|", b"%20p", b"%-18p|"]


@settings(max_examples=300, deadline=None)
@given(directive=st.sampled_from(DIRECTIVES),
       value=st.one_of(st.integers(0, M), st.sampled_from([0, 1, 7, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0x80000000,
                                                            0xFFFFFFFF, 1 << 63, M, 0x2000])))
def test_printf_directives_print_as_the_c_library_does(directive, value):
    if directive.endswith((b"s", b"s|")) and value != 0:
        value = 0x2000  # a string in MEMORY
    pieces = agent.parse_format(directive)
    assert agent.format_printf(pieces, [value], read_string) == c_format(directive, value)


def test_printf_formats_keep_gdbs_escapes_and_percent_signs():
    assert agent.format_printf(agent.parse_format(rb'100%% \"done\"\t\e\n'), [], read_string) == b'100% "done"\t\x1b\n'


@pytest.mark.parametrize("text", [b"%f", b"%lc", b"%ls", b"%n", b"%*d", b"%Lf", b"%hhd", b"%+u", b"% x",
                                  b"%#u", b"%05s", b"%.2c", b"%#p", b"%lp", b"\\q", b"%"])
def test_printf_formats_gdbserver_could_not_print_are_refused(text):
    with pytest.raises(agent.Unsupported):
        agent.parse_format(text)


def test_a_null_string_prints_as_null_and_a_missing_one_faults():
    assert agent.format_printf(agent.parse_format(b"%s"), [0], read_string) == b"(null)"
    with pytest.raises(agent.MemoryFault):
        agent.format_printf(agent.parse_format(b"%s"), [0x9000], read_string)


# -- translated programs against the reference interpreter ----------------------------

BINARY = ["add", "sub", "mul", "div_signed", "div_unsigned", "rem_signed", "rem_unsigned", "lsh",
          "rsh_signed", "rsh_unsigned", "bit_and", "bit_or", "bit_xor", "equal", "less_signed", "less_unsigned"]


@st.composite
def programs(draw):
    """Well-formed random programs: straight-line pieces joined by forward jumps."""
    instructions = []
    height = 0

    def push():
        nonlocal height
        instructions.append(draw(st.sampled_from([
            ("const8", draw(st.integers(0, 0xFF))), ("const16", draw(st.integers(0, 0xFFFF))),
            ("const64", draw(st.integers(0, M))), ("reg", draw(st.integers(0, 23))),
            ("const16", 0x1000 + draw(st.integers(0, 8))),
        ])))
        height += 1

    for _ in range(draw(st.integers(1, 25))):
        choice = draw(st.integers(0, 9))
        if height < 1 or choice <= 2:
            push()
        elif choice <= 4 and height >= 2:
            instructions.append((draw(st.sampled_from(BINARY)),))
            height -= 1
        elif choice == 5:
            instructions.append(draw(st.sampled_from([
                ("log_not",), ("bit_not",), ("ext", draw(st.integers(1, 70))),
                ("zero_ext", draw(st.integers(0, 70))), ("dup",)])))
            height += instructions[-1][0] == "dup"
        elif choice == 6 and height >= 2:
            instructions.append(draw(st.sampled_from([("swap",), ("pop",), ("pick", draw(st.integers(0, height - 1)))])))
            height += {"swap": 0, "pop": -1, "pick": 1}[instructions[-1][0]]
        elif choice == 7 and height >= 3:
            instructions.append(("rot",))
        elif choice == 8 and height >= 1:
            # `cond ? x : y`: if_goto over one push, into a join with the same height
            x, y = draw(st.integers(0, 0xFF)), draw(st.integers(0, 0xFF))
            instructions += [("if_goto", "then"), ("const8", x), ("goto", "join"), ("label", "then"),
                             ("const8", y), ("label", "join")]
        else:
            push()
    while height < 1:
        push()
    instructions.append(("end",))
    return _resolve(instructions)


def _resolve(instructions) -> bytes:
    """Labels into offsets: each ("if_goto"/"goto", label) jumps to the next ("label", label)."""
    offsets, offset = [], 0
    for item in instructions:
        offsets.append(offset)
        if item[0] != "label":
            offset += 1 + agent.OPCODES[CODES[item[0]]].operand
    resolved = []
    for index, item in enumerate(instructions):
        if item[0] in ("if_goto", "goto"):
            target = next(i for i in range(index + 1, len(instructions)) if instructions[i] == ("label", item[1]))
            resolved.append((item[0], offsets[target]))
        elif item[0] != "label":
            resolved.append(item)
    return assemble(*resolved)


def outcome(call):
    try:
        return call()
    except agent.EvaluationError as error:
        return type(error).__name__


@settings(max_examples=400, deadline=None)
@given(programs())
def test_translated_programs_compute_what_the_reference_interpreter_does(bytecode):
    expression = agent.compile(bytecode, REGISTERS)
    ours = outcome(lambda: expression.evaluate(read_int, read_string, register))
    theirs = outcome(lambda: reference(bytecode, read_int, register)[0])
    assert ours == theirs, bytecode.hex()
