"""Helpers for the agent-expression tests: an assembler and a reference interpreter.

The assembler writes bytecode from gdb's disassembly (`maint agent-eval`
prints "OFFSET  NAME [OPERAND]", and printf as `printf "FORMAT", N args`).
The reference interpreter is the GDB manual's "Bytecode Descriptions"
read one instruction at a time, as gdbserver's gdb_eval_agent_expr
(gdbserver/ax.cc) runs it: a list for a stack, no translation. The tests
hold the stub's translated programs to it.
"""
from __future__ import annotations

import re

from kgdbstub.core import agent

CODES = {opcode.name: code for code, opcode in agent.OPCODES.items()}
M = (1 << 64) - 1


def assemble(*instructions) -> bytes:
    """("const8", 5), ("add",), ("printf", nargs, b"format") ... as bytecode."""
    out = bytearray()
    for name, *operands in instructions:
        code = CODES[name]
        out.append(code)
        if name == "printf":
            count, text = operands
            out.append(count)
            out += (len(text) + 1).to_bytes(2, "big") + text + b"\0"
        elif agent.OPCODES[code].operand:
            out += (operands[0] & ((1 << (8 * agent.OPCODES[code].operand)) - 1)).to_bytes(
                agent.OPCODES[code].operand, "big")
    return bytes(out)


_LINE = re.compile(r"^\s*(\d+)\s+(\w+)(?:\s+(.*))?$")


def assemble_listing(listing: str) -> bytes:
    """Bytecode from gdb's `maint agent-eval` / `maint agent-printf` output.

    Each line's offset is checked against the bytes assembled so far, so
    a listing misread fails here rather than in the comparison.
    """
    out = bytearray()
    for line in listing.splitlines():
        match = _LINE.match(line)
        if not match or match.group(2) not in CODES:
            continue
        offset, name, rest = int(match.group(1)), match.group(2), match.group(3)
        assert offset == len(out), f"listing offset {offset}, assembled {len(out)}: {line!r}"
        if name == "printf":
            text, count = re.fullmatch(r'"(.*)", (\d+) args', rest).groups()
            out += assemble(("printf", int(count), text.encode()))
        elif agent.OPCODES[CODES[name]].operand:
            out += assemble((name, int(rest)))
        else:
            out += assemble((name,))
    return bytes(out)


def signed(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


def reference(bytecode: bytes, read_int, register, read_string=None) -> tuple[int | None, list[bytes]]:
    """Run bytecode one instruction at a time; its value and what printf printed."""
    stack: list[int] = []
    printed: list[bytes] = []
    pc = 0
    while True:
        code = bytecode[pc]
        name = agent.OPCODES[code].name
        size = agent.OPCODES[code].operand
        operand = int.from_bytes(bytecode[pc + 1 : pc + 1 + size], "big")
        pc += 1 + size
        if name in ("add", "sub", "mul", "div_signed", "div_unsigned", "rem_signed", "rem_unsigned",
                    "lsh", "rsh_signed", "rsh_unsigned", "bit_and", "bit_or", "bit_xor", "equal",
                    "less_signed", "less_unsigned"):
            b, a = stack.pop(), stack.pop()
            stack.append(_binary(name, a, b) & M)
        elif name == "log_not":
            stack.append(int(stack.pop() == 0))
        elif name == "bit_not":
            stack.append(~stack.pop() & M)
        elif name == "ext":
            value = stack.pop()
            if operand < 64:
                value &= (1 << operand) - 1
                if value >> (operand - 1):
                    value -= 1 << operand
            stack.append(value & M)
        elif name == "zero_ext":
            value = stack.pop()
            stack.append(value & ((1 << operand) - 1) if operand < 64 else value)
        elif name.startswith("ref"):
            stack.append(read_int(stack.pop(), {"ref8": 1, "ref16": 2, "ref32": 4, "ref64": 8}[name]))
        elif name.startswith("const"):
            stack.append(operand)
        elif name == "reg":
            stack.append(register(operand))
        elif name == "if_goto":
            if stack.pop():
                pc = operand
        elif name == "goto":
            pc = operand
        elif name == "end":
            return (stack[-1] if stack else None), printed
        elif name == "dup":
            stack.append(stack[-1])
        elif name == "pop":
            stack.pop()
        elif name == "swap":
            stack[-1], stack[-2] = stack[-2], stack[-1]
        elif name == "pick":
            stack.append(stack[-1 - operand])
        elif name == "rot":  # a b c => c a b
            c, b, a = stack.pop(), stack.pop(), stack.pop()
            stack += [c, a, b]
        elif name == "printf":
            count = bytecode[pc]
            length = int.from_bytes(bytecode[pc + 1 : pc + 3], "big")
            text = bytecode[pc + 3 : pc + 3 + length - 1]
            pc += 3 + length
            stack.pop(), stack.pop()  # function, channel
            arguments = [stack.pop() for _ in range(count)]
            printed.append(agent.format_printf(agent.parse_format(text), arguments, read_string))
        else:
            raise AssertionError(f"the reference does not run {name}")


def _binary(name: str, a: int, b: int) -> int:
    if name in ("div_signed", "div_unsigned", "rem_signed", "rem_unsigned") and b == 0:
        raise agent.DivisionByZero()
    if name == "div_signed":
        quotient = abs(signed(a)) // abs(signed(b))
        return quotient if (signed(a) < 0) == (signed(b) < 0) else -quotient
    if name == "rem_signed":
        remainder = abs(signed(a)) % abs(signed(b))
        return remainder if signed(a) >= 0 else -remainder
    return {
        "add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b,
        "div_unsigned": lambda: a // b, "rem_unsigned": lambda: a % b,
        "lsh": lambda: a << b if b < 64 else 0, "rsh_signed": lambda: signed(a) >> b,
        "rsh_unsigned": lambda: a >> b, "bit_and": lambda: a & b, "bit_or": lambda: a | b,
        "bit_xor": lambda: a ^ b, "equal": lambda: int(a == b),
        "less_signed": lambda: int(signed(a) < signed(b)), "less_unsigned": lambda: int(a < b),
    }[name]()
