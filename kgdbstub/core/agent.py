"""gdb's agent expressions: bytecode checked once, then run as Python.

gdb compiles a breakpoint condition, or a `dprintf` in the agent style, into
the bytecode of the GDB manual's "Agent Expressions" appendix (opcode values
from gdb's gdbsupport/ax.def) and sends it with the Z packet. `compile`
checks a program completely when it arrives -- every opcode known and
supported, operands complete, jumps forward and onto instructions, the stack
as high at a jump's target as at its source and never below what an
instruction takes, printf formats parsed -- and translates it into a Python
function. Running it then meets no malformed program, only what the
machine's state can cause: memory that is not there, a division by zero.

No I/O: memory, registers and printf's output go through the callables the
caller passes to `Expression.evaluate`.

Values are 64-bit, as the stack elements of gdbserver's interpreter
(gdbserver/ax.cc) on x86-64: arithmetic wraps and signed operations read
the two's complement. A shift by 64 bits or more, undefined in C, shifts
every bit out, as gdb's own evaluator does (its verdict at a stop is the one
the user sees, so the stub must not disagree with it).
"""
from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass

MASK = (1 << 64) - 1
SIGN = 1 << 63
# gdbserver refuses to go deeper (STACK_MAX in gdbserver/ax.cc).
STACK_LIMIT = 100
# The most a %s argument prints: gdbserver reads to the NUL however far it is.
STRING_LIMIT = 4096


class Refused(Exception):
    """The bytecode is not a program this stub runs: the Z packet carrying it is refused."""


class Malformed(Refused):
    """Not a valid agent expression (truncated, a bad jump, a stack that runs dry...)."""


class Unsupported(Refused):
    """A valid expression using what the stub does not do (tracing, floating point, a register)."""


class EvaluationError(Exception):
    """The expression could not be evaluated in this state of the machine."""


class MemoryFault(EvaluationError):
    def __init__(self, address: int):
        super().__init__(f"cannot read memory at {address:#x}")
        self.address = address


class DivisionByZero(EvaluationError):
    def __init__(self):
        super().__init__("division by zero")


@dataclass(frozen=True)
class Opcode:
    name: str
    operand: int  # bytes of operand after the opcode (printf's are variable: 0 here)
    consumed: int
    produced: int
    supported: bool = True


def _opcodes() -> dict[int, Opcode]:
    table = {
        0x01: ("float", 0, 0, 0, False), 0x02: ("add", 0, 2, 1), 0x03: ("sub", 0, 2, 1),
        0x04: ("mul", 0, 2, 1), 0x05: ("div_signed", 0, 2, 1), 0x06: ("div_unsigned", 0, 2, 1),
        0x07: ("rem_signed", 0, 2, 1), 0x08: ("rem_unsigned", 0, 2, 1), 0x09: ("lsh", 0, 2, 1),
        0x0A: ("rsh_signed", 0, 2, 1), 0x0B: ("rsh_unsigned", 0, 2, 1), 0x0C: ("trace", 0, 2, 0, False),
        0x0D: ("trace_quick", 1, 1, 1, False), 0x0E: ("log_not", 0, 1, 1), 0x0F: ("bit_and", 0, 2, 1),
        0x10: ("bit_or", 0, 2, 1), 0x11: ("bit_xor", 0, 2, 1), 0x12: ("bit_not", 0, 1, 1),
        0x13: ("equal", 0, 2, 1), 0x14: ("less_signed", 0, 2, 1), 0x15: ("less_unsigned", 0, 2, 1),
        0x16: ("ext", 1, 1, 1), 0x17: ("ref8", 0, 1, 1), 0x18: ("ref16", 0, 1, 1),
        0x19: ("ref32", 0, 1, 1), 0x1A: ("ref64", 0, 1, 1), 0x1B: ("ref_float", 0, 1, 1, False),
        0x1C: ("ref_double", 0, 1, 1, False), 0x1D: ("ref_long_double", 0, 1, 1, False),
        0x1E: ("l_to_d", 0, 1, 1, False), 0x1F: ("d_to_l", 0, 1, 1, False), 0x20: ("if_goto", 2, 1, 0),
        0x21: ("goto", 2, 0, 0), 0x22: ("const8", 1, 0, 1), 0x23: ("const16", 2, 0, 1),
        0x24: ("const32", 4, 0, 1), 0x25: ("const64", 8, 0, 1), 0x26: ("reg", 2, 0, 1),
        0x27: ("end", 0, 0, 0), 0x28: ("dup", 0, 1, 2), 0x29: ("pop", 0, 1, 0),
        0x2A: ("zero_ext", 1, 1, 1), 0x2B: ("swap", 0, 2, 2),
        # Trace state variables and collection exist only for tracepoints.
        0x2C: ("getv", 2, 0, 1, False), 0x2D: ("setv", 2, 1, 1, False), 0x2E: ("tracev", 2, 0, 1, False),
        0x2F: ("tracenz", 0, 2, 0, False), 0x30: ("trace16", 2, 1, 1, False),
        0x32: ("pick", 1, 0, 1), 0x33: ("rot", 0, 3, 3), 0x34: ("printf", 0, 0, 0),
    }
    return {code: Opcode(*entry) for code, entry in table.items()}


OPCODES = _opcodes()
PRINTF = 0x34


@dataclass(frozen=True)
class Instruction:
    offset: int
    code: int
    operand: int  # the operand as a big-endian unsigned number (printf: its argument count)
    length: int
    text: bytes = b""  # printf's format, without its NUL

    @property
    def name(self) -> str:
        return OPCODES[self.code].name


def decode(bytecode: bytes) -> list[Instruction]:
    """The instructions of a whole bytecode string, in order."""
    instructions = []
    offset = 0
    while offset < len(bytecode):
        code = bytecode[offset]
        opcode = OPCODES.get(code)
        if opcode is None:
            raise Unsupported(f"unknown opcode {code:#04x} at {offset}")
        if code == PRINTF:
            if offset + 4 > len(bytecode):
                raise Malformed(f"printf at {offset} is cut short")
            count = bytecode[offset + 1]
            size = int.from_bytes(bytecode[offset + 2 : offset + 4], "big")
            end = offset + 4 + size
            if size == 0 or end > len(bytecode) or bytecode[end - 1] != 0:
                raise Malformed(f"printf at {offset}: its format is not a NUL-terminated string")
            text = bytecode[offset + 4 : end - 1].split(b"\0", 1)[0]
            instructions.append(Instruction(offset, code, count, end - offset, text))
            offset = end
            continue
        end = offset + 1 + opcode.operand
        if end > len(bytecode):
            raise Malformed(f"{opcode.name} at {offset} is cut short")
        operand = int.from_bytes(bytecode[offset + 1 : end], "big")
        instructions.append(Instruction(offset, code, operand, end - offset))
        offset = end
    return instructions


# -- printf ---------------------------------------------------------------------------

_ESCAPES = {ord("\\"): b"\\", ord("a"): b"\a", ord("b"): b"\b", ord("e"): b"\x1b", ord("f"): b"\f",
            ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("v"): b"\v", ord('"'): b'"'}


@dataclass(frozen=True)
class Conversion:
    """One %-directive of a printf format, classified as gdb's format_pieces does."""

    flags: str
    width: int | None
    precision: int | None
    length: str  # "" (int), "h" (short), "l", "ll", "z" (64 bits)
    conversion: str  # d i u o x X c s p

    def format(self, value: int, read_string: Callable[[int, int], bytes]) -> bytes:
        if self.conversion == "s":
            if value == 0:
                text = b"(null)"
            else:
                limit = STRING_LIMIT if self.precision is None else min(self.precision, STRING_LIMIT)
                text = read_string(value, limit)
            if self.precision is not None:
                text = text[: self.precision]
            return self._pad(b"", b"", text)
        if self.conversion == "c":
            return self._pad(b"", b"", bytes([value & 0xFF]))
        if self.conversion == "p":
            return self._pad(b"", b"", b"(nil)" if value == 0 else b"0x%x" % value)
        bits = {"l": 64, "ll": 64, "z": 64, "h": 16}.get(self.length, 32)
        value &= (1 << bits) - 1
        negative = False
        if self.conversion in "di":
            if value >> (bits - 1):
                value, negative = (1 << bits) - value, True
            digits = b"%d" % value
        elif self.conversion == "u":
            digits = b"%d" % value
        elif self.conversion == "o":
            digits = b"%o" % value
        else:
            digits = b"%x" % value if self.conversion == "x" else b"%X" % value
        if self.precision is not None:
            digits = b"" if self.precision == 0 and value == 0 else digits.rjust(self.precision, b"0")
        prefix = b""
        if "#" in self.flags:
            if self.conversion == "o" and not digits.startswith(b"0"):
                digits = b"0" + digits
            elif self.conversion in "xX" and value:
                prefix = b"0x" if self.conversion == "x" else b"0X"
        if negative:
            sign = b"-"
        elif self.conversion in "di" and "+" in self.flags:
            sign = b"+"
        elif self.conversion in "di" and " " in self.flags:
            sign = b" "
        else:
            sign = b""
        zero_fill = "0" in self.flags and "-" not in self.flags and self.precision is None
        return self._pad(sign, prefix, digits, zero_fill=zero_fill)

    def _pad(self, sign: bytes, prefix: bytes, body: bytes, zero_fill: bool = False) -> bytes:
        width = self.width or 0
        if zero_fill:
            return sign + prefix + body.rjust(width - len(sign) - len(prefix), b"0")
        text = sign + prefix + body
        return text.ljust(width) if "-" in self.flags else text.rjust(width)


def parse_format(text: bytes) -> tuple[bytes | Conversion, ...]:
    """A printf format as gdbserver reads it: escapes, then literal pieces and conversions.

    gdb puts the format into the bytecode as the user typed it, backslash
    escapes included (breakpoint.c's parse_cmd_to_aexpr); the agent
    processes them as gdb's format_pieces does. Conversions gdbserver
    cannot print (floating point, wide characters) are refused here.
    """
    unescaped = bytearray()
    index = 0
    while index < len(text):
        byte = text[index]
        index += 1
        if byte == ord('"'):
            break  # format_pieces stops at an unescaped quote
        if byte != ord("\\"):
            unescaped.append(byte)
            continue
        if index >= len(text) or text[index] not in _ESCAPES:
            raise Unsupported(f"unrecognized escape in format {text!r}")
        unescaped += _ESCAPES[text[index]]
        index += 1
    return tuple(_pieces(bytes(unescaped)))


def _pieces(text: bytes):
    literal = bytearray()
    index = 0
    while index < len(text):
        byte = text[index]
        index += 1
        if byte != ord("%"):
            literal.append(byte)
            continue
        if text[index : index + 1] == b"%":
            literal.append(byte)
            index += 1
            continue
        if literal:
            yield bytes(literal)
            literal.clear()
        conversion, index = _conversion(text, index)
        yield conversion
    if literal:
        yield bytes(literal)


def _conversion(text: bytes, index: int) -> tuple[Conversion, int]:
    def take(characters: str) -> str:
        nonlocal index
        start = index
        while index < len(text) and chr(text[index]) in characters:
            index += 1
        return text[start:index].decode()

    flags = take("0-+ #")
    width = take("0123456789")
    precision = None
    if text[index : index + 1] == b".":
        index += 1
        precision = int(take("0123456789") or "0")
    length = ""
    for candidate in ("ll", "l", "h", "z"):
        if text[index : index + len(candidate)] == candidate.encode():
            length, index = candidate, index + len(candidate)
            break
    if index >= len(text):
        raise Unsupported("incomplete format directive at the end of the format")
    kind = chr(text[index])
    index += 1
    directive = f"%{flags}{width}{'' if precision is None else f'.{precision}'}{length}{kind}"
    # The flags gdb's format_pieces finds inappropriate for each conversion.
    bad = {
        "d": "", "i": "", "u": "# +", "o": " +", "x": " +", "X": " +",
        "c": "0 +", "s": "0 +", "p": "#0 +",
    }.get(kind)
    if bad is None:
        raise Unsupported(f"format directive {directive} is not supported in agent printf")
    if kind in "cs" and length == "l":
        raise Unsupported(f"wide characters ({directive}) are not supported in agent printf")
    if (any(flag in bad for flag in flags) or (kind in "csp" and length)
            or (kind in "cp" and precision is not None)):
        raise Unsupported(f"inappropriate modifiers in format directive {directive}")
    return Conversion(flags, int(width) if width else None, precision, length, kind), index


def format_printf(pieces, arguments, read_string: Callable[[int, int], bytes]) -> bytes:
    out = []
    values = iter(arguments)
    for piece in pieces:
        out.append(piece if isinstance(piece, bytes) else piece.format(next(values), read_string))
    return b"".join(out)


# -- checking and translating ------------------------------------------------------------


class Expression:
    """A checked agent expression, and the Python function it was translated into.

    `evaluate(read_int, read_string, register, emit=None)` runs it and
    returns its value (None when its stack ended empty). read_int(address,
    size) reads a little-endian unsigned number and read_string(address,
    limit) the bytes up to a NUL (at most limit); both raise MemoryFault.
    register(number) gives a register by its number in the target
    description; printf's output goes to emit. Raises EvaluationError when
    the state does not allow a value. (The function itself, not a method
    around it: a condition is evaluated at every hit.)
    """

    __slots__ = ("bytecode", "evaluate")

    def __init__(self, bytecode: bytes, evaluate: Callable[..., int | None]):
        self.bytecode = bytecode
        self.evaluate = evaluate

    def __repr__(self) -> str:
        return f"Expression({self.bytecode.hex()})"


def compile(bytecode: bytes, registers: Container[int], *, value: bool = True) -> Expression:  # noqa: A001
    """Check an agent expression and translate it; Refused if it cannot be run here.

    registers holds the register numbers the expression may read (those the
    target has and that fit in a stack element). With value, the expression
    must leave a value at every `end` (a condition does); without, it may
    end with an empty stack (a command, such as dprintf's printf).
    """
    instructions = decode(bytes(bytecode))
    if not instructions:
        raise Malformed("an empty expression")
    for instruction in instructions:
        opcode = OPCODES[instruction.code]
        if not opcode.supported:
            raise Unsupported(f"{opcode.name} at {instruction.offset} is not supported")
        if instruction.name == "reg" and instruction.operand not in registers:
            raise Unsupported(f"register {instruction.operand} cannot be read by an expression")
        if instruction.name == "ext" and instruction.operand == 0:
            raise Malformed(f"ext 0 at {instruction.offset}")
    heights = _stack_heights(instructions, len(bytecode), value)
    return Expression(bytes(bytecode), _translate(instructions, heights))


def _stack_heights(instructions: list[Instruction], size: int, value: bool) -> dict[int, int]:
    """The stack height before each reachable instruction, checking every path.

    Jumps go forward only (gdb never emits another kind), so one pass in
    order sees every way into an instruction before the instruction itself,
    and every expression ends.
    """
    at = {instruction.offset: instruction for instruction in instructions}
    heights: dict[int, int] = {0: 0}

    def reach(offset: int, height: int, source: int) -> None:
        if offset not in at:
            where = "past the end" if offset >= size else "into an instruction"
            raise Malformed(f"the instruction at {source} leads {where} ({offset})")
        if heights.setdefault(offset, height) != height:
            raise Malformed(f"the stack is {heights[offset]} or {height} high at {offset}")

    for instruction in instructions:
        height = heights.get(instruction.offset)
        if height is None:
            continue  # unreachable
        name, offset = instruction.name, instruction.offset
        if name == "printf":
            consumed, produced = instruction.operand + 2, 0
            arguments = sum(not isinstance(p, bytes) for p in parse_format(instruction.text))
            if arguments != instruction.operand:
                raise Malformed(f"printf at {offset} has {instruction.operand} arguments "
                                f"for a format that takes {arguments}")
        elif name == "pick":
            consumed, produced = instruction.operand + 1, instruction.operand + 2
        else:
            consumed, produced = OPCODES[instruction.code].consumed, OPCODES[instruction.code].produced
        if height < consumed:
            raise Malformed(f"{name} at {offset} needs {consumed} values on a stack of {height}")
        after = height - consumed + produced
        if after > STACK_LIMIT:
            raise Unsupported(f"the stack grows beyond {STACK_LIMIT} values at {offset}")
        if name == "end":
            if value and height == 0:
                raise Malformed(f"the expression ends at {offset} without a value")
            continue
        if name in ("goto", "if_goto"):
            if instruction.operand <= offset:
                raise Unsupported(f"a backward jump at {offset}")
            reach(instruction.operand, after, offset)
            if name == "goto":
                continue
        reach(offset + instruction.length, after, offset)
    return heights


def _signed_div(a: int, b: int) -> int:
    if not b:
        raise DivisionByZero()
    a, b = a - ((a & SIGN) << 1), b - ((b & SIGN) << 1)
    quotient = abs(a) // abs(b)
    return (-quotient if (a < 0) != (b < 0) else quotient) & MASK


def _signed_rem(a: int, b: int) -> int:
    if not b:
        raise DivisionByZero()
    a, b = a - ((a & SIGN) << 1), b - ((b & SIGN) << 1)
    remainder = abs(a) % abs(b)
    return (-remainder if a < 0 else remainder) & MASK


def _unsigned_div(a: int, b: int) -> int:
    if not b:
        raise DivisionByZero()
    return a // b


def _unsigned_rem(a: int, b: int) -> int:
    if not b:
        raise DivisionByZero()
    return a % b


# Python for each operation on the stack slots s0, s1, ...: {a} is the slot
# below the top, {b} the top; the result goes to {a} (binary) or {b} (unary).
_BINARY = {
    "add": "({a} + {b}) & M", "sub": "({a} - {b}) & M", "mul": "({a} * {b}) & M",
    "div_signed": "sdiv({a}, {b})", "div_unsigned": "udiv({a}, {b})",
    "rem_signed": "srem({a}, {b})", "rem_unsigned": "urem({a}, {b})",
    "lsh": "({a} << {b}) & M if {b} < 64 else 0", "rsh_unsigned": "{a} >> {b}",
    "rsh_signed": "(({a} - (({a} & S) << 1)) >> {b}) & M",
    "bit_and": "{a} & {b}", "bit_or": "{a} | {b}", "bit_xor": "{a} ^ {b}",
    "equal": "1 if {a} == {b} else 0", "less_unsigned": "1 if {a} < {b} else 0",
    # Flipping the sign bit turns two's complement order into unsigned order.
    "less_signed": "1 if ({a} ^ S) < ({b} ^ S) else 0",
}
_UNARY = {"log_not": "0 if {b} else 1", "bit_not": "{b} ^ M"}
_REF_SIZES = {"ref8": 1, "ref16": 2, "ref32": 4, "ref64": 8}


def _translate(instructions: list[Instruction], heights: dict[int, int]) -> Callable:
    reachable = [i for i in instructions if i.offset in heights]
    targets = {i.operand for i in reachable if i.name in ("goto", "if_goto")}
    constants: dict[str, object] = {
        "M": MASK, "S": SIGN, "sdiv": _signed_div, "srem": _signed_rem,
        "udiv": _unsigned_div, "urem": _unsigned_rem, "format_printf": format_printf,
    }
    lines = ["def run(read_int, read_string, register, emit=None):"]
    blocks = len(targets) > 0
    if blocks:
        lines.append("    go = 0")
    indent = "    "
    previous_ended = True
    for instruction in reachable:
        offset, name, operand = instruction.offset, instruction.name, instruction.operand
        height = heights[offset]
        if blocks and (offset in targets or previous_ended):
            if not previous_ended:
                lines.append(f"{indent}go = {offset}")
            lines.append(f"    if go == {offset}:")
            indent = "        "
        previous_ended = False
        a, b, top = f"s{height - 2}", f"s{height - 1}", f"s{height}"
        line = lines.append
        if name in _BINARY:
            line(f"{indent}{a} = {_BINARY[name].format(a=a, b=b)}")
        elif name in _UNARY:
            line(f"{indent}{b} = {_UNARY[name].format(b=b)}")
        elif name in _REF_SIZES:
            line(f"{indent}{b} = read_int({b}, {_REF_SIZES[name]})")
        elif name.startswith("const"):
            line(f"{indent}{top} = {operand}")
        elif name == "reg":
            line(f"{indent}{top} = register({operand})")
        elif name == "ext":
            if operand < 64:
                low, bit = (1 << operand) - 1, 1 << (operand - 1)
                line(f"{indent}{b} = ((({b} & {low}) ^ {bit}) - {bit}) & M")
        elif name == "zero_ext":
            if operand < 64:
                line(f"{indent}{b} &= {(1 << operand) - 1}")
        elif name == "dup":
            line(f"{indent}{top} = {b}")
        elif name == "swap":
            line(f"{indent}{a}, {b} = {b}, {a}")
        elif name == "pick":
            line(f"{indent}{top} = s{height - 1 - operand}")
        elif name == "rot":
            line(f"{indent}s{height - 3}, {a}, {b} = {b}, s{height - 3}, {a}")
        elif name == "printf":
            pieces = f"format{offset}"
            constants[pieces] = parse_format(instruction.text)
            # Stack, bottom to top: the arguments last to first, then the channel and function.
            arguments = ", ".join(f"s{height - 3 - k}" for k in range(operand))
            line(f"{indent}emit(format_printf({pieces}, ({arguments}{',' if operand == 1 else ''}), read_string))")
        elif name == "if_goto":
            line(f"{indent}go = {operand} if {b} else {offset + instruction.length}")
            previous_ended = True
        elif name == "goto":
            line(f"{indent}go = {operand}")
            previous_ended = True
        elif name == "end":
            line(f"{indent}return {b if height else 'None'}")
            previous_ended = True
        elif name != "pop":
            raise AssertionError(f"no translation for {name}")
        if not previous_ended and lines[-1].endswith(":"):
            line(f"{indent}pass")
    namespace = dict(constants)
    exec("\n".join(lines), namespace)  # noqa: S102 - the source is generated from checked bytecode
    return namespace["run"]
