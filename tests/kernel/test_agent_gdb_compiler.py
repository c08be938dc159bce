"""The agent-expression interpreter against gdb's own compiler and gdb's own evaluator.

gdb, attached to a stub and stopped at the first do_fork, compiles C
expressions the way it compiles breakpoint conditions (`maint agent-eval`,
gdb's gen_eval_for_expr in ax-gdb.c) and dprintf calls (`maint
agent-printf`, gen_printf), and evaluates the same expressions itself
(`print`, `printf`). The test assembles gdb's listings into bytecode, runs
it in the interpreter on a machine of its own stopped at the same place --
the machine is deterministic, and the registers and variables gdb printed
are checked to be the ones the test's machine has -- and compares.
"""
import re

import pytest

from agent_programs import assemble_listing
from gdbtools import GDB, run_gdb, start_server
from kernel_harness import Machine
from kgdbstub.core import agent
from kgdbstub.core.conditions import READABLE_REGISTERS, compile_command, compile_condition
from kgdbstub.x86 import registers
from kgdbstub.x86.memory import MemoryFault

pytestmark = pytest.mark.skipif(GDB is None, reason="gdb is not installed")

# gdb's compiler gives a shift the usual arithmetic conversions of both
# operands (ax-gdb.c, gen_binop), where C and gdb's evaluator take the left
# operand's type: `-8L >> clone_flags` compiles to an unsigned shift that gdb
# itself evaluates as a signed one. The shifts below have operands of one type.
#
# At do_fork's first line: clone_flags (rdi), entry, arg and comm (a string) are
# arguments in registers; total_forks, jiffies and last_fork are globals.
CONDITIONS = [
    "total_forks == 0", "total_forks != 0", "jiffies > 3", "jiffies <= 3", "jiffies >= 0", "jiffies < 1000",
    "clone_flags", "clone_flags == 1", "!clone_flags", "~clone_flags", "-clone_flags",
    "comm[0]", "comm[0] == 108", "comm[1] - 97", "*(unsigned char *)comm", "((unsigned short *)comm)[1]",
    "((int *)comm)[1]", "*(long *)comm", "comm != 0", "comm + 3 == &comm[3]", "(long)(comm + 5) - (long)comm",
    "(char)200", "(unsigned char)200", "(short)-5", "(unsigned short)-5", "(int)0x80000000", "(unsigned)-1",
    "(long)-7 / 2", "(long)-7 % 3", "7 / (long)-2", "(unsigned long)-7 / 2", "-7 % (long)-3", "100 / (jiffies + 1)",
    "clone_flags << 63 >> 60", "(long)(clone_flags << 63) >> 60", "-8L >> (long)clone_flags",
    "1L << (62 + clone_flags)", "jiffies & 0x3c", "jiffies | 0x3c", "jiffies ^ 0x3c", "jiffies << 70",
    "(long)total_forks - 5 < -3", "(unsigned long)total_forks - 5 < 3", "(int)jiffies * -3",
    "clone_flags == 1 && comm[0] == 108", "clone_flags == 2 || jiffies > 1", "clone_flags ? jiffies : 99",
    "!(jiffies > 2 && comm[0])", "jiffies % 2 == 0 ? -1 : 1",
    "$rdi", "$rdi == clone_flags", "(long)$rsp % 16", "$rsp", "$rip", "$cs & 3", "$ss",
    "(long)$rbp - (long)$rsp", "*(unsigned long *)$rsp", "((long *)$rsp)[1] != 0", "$r15 + $r14 * 2 + $r13 / 3",
    "last_fork.pid", "last_fork.nr + 1", "&last_fork", "&last_fork.nr", "sizeof(last_fork) == 16",
    "(last_fork.pid, total_forks + 40)", "-1 < 0u", "-1L < 0", "(signed char)-1 == 255",
]

PRINTFS = [
    r'"forks=%lu jiffies=%ld\n", total_forks, jiffies',
    r'"comm=%s flags=%#lx\n", comm, clone_flags',
    r'"[%5d|%-5d|%05d|%+d]\n", (int)jiffies, -3, 42, 7',
    r'"%c%c%c %3.2s %x %o %%\n", comm[0], comm[1], 33, comm, 255, 8',
    r'"%p %hd %hu %lld %zu\n", comm, (short)-2, 65535, -1LL, sizeof(last_fork)',
]

SIZES = {"char": 1, "short": 2, "int": 4, "long": 8}


@pytest.fixture(scope="module")
def gdb_says():
    commands = ["break do_fork", "continue"]
    for register in ("rip", "rsp", "rdi", "rbp"):
        commands.append(f"print/x ${register}")
    commands += ["print/x total_forks", "print/x jiffies"]
    for index, expression in enumerate(CONDITIONS):
        commands += [f"echo <<<c{index}\\n", f"maint agent-eval {expression}",
                     f"print/x (unsigned long)(long)({expression})", "echo >>>\\n"]
    for index, arguments in enumerate(PRINTFS):
        commands += [f"echo <<<p{index}\\n", f"maint agent-printf {arguments}", "echo ===\\n",
                     f"printf {arguments}", "echo >>>\\n"]
    commands.append("detach")
    with start_server("--once") as server:
        return run_gdb(server, commands, timeout=120)


@pytest.fixture(scope="module")
def machine(gdb_says):
    where = int(re.search(r"Breakpoint 1 at (0x[0-9a-f]+)", gdb_says).group(1), 16)
    machine = Machine()
    machine.debugger.insert_breakpoint(where)
    stop = machine.resume()
    machine.debugger.remove_breakpoint(where)
    regs = machine.debugger.registers_of(stop.thread)
    # The same place in the same run: what gdb printed is what this machine holds.
    shown = [int(v, 16) for v in re.findall(r"^\$\d+ = (0x[0-9a-f]+)", gdb_says, re.M)[:6]]
    mine = [read(regs, name) for name in ("rip", "rsp", "rdi", "rbp")]
    mine += [machine.u64("total_forks"), machine.jiffies]
    assert shown == mine, f"gdb stopped at {shown}, this machine at {mine}"
    return machine, regs


def read(regs, name):
    return registers.read_value(regs, registers.MODERN[registers.index_of(registers.MODERN, name)])


def state(machine, regs):
    kernel = machine.kernel

    def read_int(address, size):
        try:
            return int.from_bytes(kernel.read(address, size), "little")
        except MemoryFault:
            raise agent.MemoryFault(address) from None

    def read_string(address, limit):
        return kernel.read_string(address, limit).encode("latin-1")

    def register(number):
        assert number in READABLE_REGISTERS
        return registers.read_value(regs, registers.MODERN[number])

    return read_int, read_string, register


def sections(output: str, kind: str) -> dict[int, str]:
    return {int(i): body for i, body in re.findall(rf"<<<{kind}(\d+)\n(.*?)>>>", output, re.S)}


def test_conditions_compiled_by_gdb_evaluate_to_what_gdb_computes(gdb_says, machine):
    read_int, read_string, register = state(*machine)
    found = sections(gdb_says, "c")
    assert len(found) == len(CONDITIONS)
    compared = []
    for index, expression in enumerate(CONDITIONS):
        listing = found[index]
        value = re.search(r"^\$\d+ = (0x[0-9a-f]+)", listing, re.M)
        assert value, f"gdb could not evaluate {expression}:\n{listing}"
        bytecode = assemble_listing(listing)
        if not bytecode:
            compared.append((expression, "gdb cannot translate", listing))
            continue
        try:
            ours = hex(compile_condition(bytecode).evaluate(read_int, read_string, register))
        except Exception as error:
            ours = repr(error)
        compared.append((expression, ours, value.group(1)))
    mismatches = [c for c in compared if c[1] != c[2]]
    assert not mismatches, "\n".join(map(repr, mismatches))


def test_printf_compiled_by_gdb_prints_what_gdb_prints(gdb_says, machine):
    read_int, read_string, register = state(*machine)
    found = sections(gdb_says, "p")
    assert len(found) == len(PRINTFS)
    for index, arguments in enumerate(PRINTFS):
        listing, printed = found[index].split("===\n")
        printed_lines = []
        ours = compile_command(assemble_listing(listing)).evaluate(read_int, read_string, register,
                                                                  printed_lines.append)
        assert ours is None
        assert b"".join(printed_lines).decode("latin-1") == printed, arguments


def test_every_opcode_gdb_used_here_is_one_the_stub_runs(gdb_says):
    used = set(re.findall(r"^\s*\d+\s+(\w+)", gdb_says, re.M)) & {o.name for o in agent.OPCODES.values()}
    # What gdb's compiler emitted for these conditions: a check that the list
    # above exercises the interpreter broadly, not only a few opcodes.
    assert {"const8", "const16", "const32", "reg", "ref8", "ref16", "ref32", "ref64", "ext", "zero_ext",
            "add", "sub", "mul", "div_signed", "div_unsigned", "rem_signed", "lsh", "rsh_signed",
            "rsh_unsigned", "bit_and", "bit_or", "bit_xor", "equal", "less_signed", "less_unsigned",
            "log_not", "bit_not", "if_goto", "goto", "swap", "pop", "printf", "end"} <= used, used
