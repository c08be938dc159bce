"""Linux's own kgdb test harness, drivers/misc/kgdbts.c, played against `--dialect kgdb`.

kgdbts takes gdb's part inside the kernel: it feeds kgdb fixed packet
sequences and checks each reply. Each table below is one of its tests, with
the same packets, checks and order; the handlers are Python versions of
kgdbts's (named after them). What kgdbts breaks on maps onto the image:

- `kgdbts_break_test` (a function kgdbts calls) -> `do_timer`, called every tick;
- `hw_break_val` (a variable it writes and reads) -> `jiffies`;
- `kernel_clone` -> `do_fork`.

kgdbts enters the debugger with kgdb_breakpoint() before a test and once
more after it ("On success we made it here"); here a connection's arrival
does that, as it enters through kgdb_breakpoint in this dialect. Packets go
with acknowledgements, as kgdbts's I/O driver sends them.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import trio

from kgdbstub.client import connect
from kgdbstub.core.arch_x86 import NUMREGBYTES
from kgdbstub.kernel.image import Image

pytestmark = pytest.mark.server_args("--dialect", "kgdb")

SYMBOLS = {"kgdbts_break_test": "do_timer", "hw_break_val": "jiffies", "kernel_clone": "do_fork"}
BREAK_INSTR_SIZE = 1
TIMEOUT = 60


@dataclass
class Line:
    """One row of a kgdbts test_struct: what is sent, what is expected, and the handlers."""

    get: str
    put: str
    get_handler: str | None = None
    put_handler: str | None = None


PLANT_AND_DETACH = [
    Line("?", "S0*"),
    Line("kgdbts_break_test", "OK", "sw_break"),
    Line("D", "OK"),
]
SW_BREAKPOINT = [
    Line("?", "S0*"),
    Line("kgdbts_break_test", "OK", "sw_break"),
    Line("c", "T0*"),
    Line("g", "kgdbts_break_test", None, "check_and_rewind_pc"),
    Line("write", "OK", "write_regs"),
    Line("kgdbts_break_test", "OK", "sw_rem_break"),
    Line("D", "OK"),
    Line("D", "OK", None, "got_break"),
]
BAD_READ = [Line("?", "S0*")] + [Line(f"m0,{n}", "E*") for n in range(1, 9)] + [Line("D", "OK")]
SINGLESTEP_BREAK = [
    Line("?", "S0*"),
    Line("kgdbts_break_test", "OK", "sw_break"),
    Line("c", "T0*", None, "get_thread_id_continue"),
    Line("kgdbts_break_test", "OK", "sw_rem_break"),
    Line("g", "kgdbts_break_test", None, "check_and_rewind_pc"),
    Line("write", "OK", "write_regs"),
    Line("s", "T0*", "emul_sstep_get", "emul_sstep_put"),
    Line("g", "kgdbts_break_test", None, "check_single_step"),
    Line("kgdbts_break_test", "OK", "sw_break"),
    Line("c", "T0*"),
    Line("g", "kgdbts_break_test", None, "check_and_rewind_pc"),
    Line("write", "OK", "write_regs"),
    Line("D", "OK"),
]
KERNEL_CLONE = [
    Line("?", "S0*"),
    Line("kernel_clone", "OK", "sw_break"),
    Line("c", "T0*", None, "get_thread_id_continue"),
    Line("kernel_clone", "OK", "sw_rem_break"),
    Line("g", "kernel_clone", None, "check_and_rewind_pc"),
    Line("write", "OK", "write_regs", "emul_reset"),
    Line("s", "T0*", "emul_sstep_get", "emul_sstep_put"),
    Line("g", "kernel_clone", None, "check_single_step"),
    Line("kernel_clone", "OK", "sw_break"),
    Line("7", "T0*", "skip_back_repeat_test"),
    Line("D", "OK", None, "final_ack_set"),
]
HW_BREAKPOINT = [
    Line("?", "S0*"),
    Line("kgdbts_break_test", "OK", "hw_break"),
    Line("c", "T0*"),
    Line("g", "kgdbts_break_test", None, "check_and_rewind_pc"),
    Line("write", "OK", "write_regs"),
    Line("kgdbts_break_test", "OK", "hw_rem_break"),
    Line("D", "OK"),
    Line("D", "OK", None, "got_break"),
]
HW_WRITE_BREAK = [
    Line("?", "S0*"),
    Line("hw_break_val", "OK", "hw_write_break"),
    Line("c", "T0*", None, "got_break"),
    Line("g", "silent", None, "check_and_rewind_pc"),
    Line("write", "OK", "write_regs"),
    Line("hw_break_val", "OK", "hw_rem_write_break"),
    Line("D", "OK"),
    Line("D", "OK", None, "got_break"),
]
HW_ACCESS_BREAK = [
    Line("?", "S0*"),
    Line("hw_break_val", "OK", "hw_access_break"),
    Line("c", "T0*", None, "got_break"),
    Line("g", "silent", None, "check_and_rewind_pc"),
    Line("write", "OK", "write_regs"),
    Line("hw_break_val", "OK", "hw_rem_access_break"),
    Line("D", "OK"),
    Line("D", "OK", None, "got_break"),
]


def hex2long(text: str) -> int:
    """kgdb_hex2long: hex digits up to the first other character."""
    digits = ""
    for char in text:
        if char not in "0123456789abcdefABCDEF":
            break
        digits += char
    return int(digits, 16) if digits else 0


class Kgdbts:
    """kgdbts's state for one run: run_simple_test's loop and its handlers."""

    def __init__(self, server, table: list[Line], repeat_test: int = 0):
        self.server = server
        self.image = Image(server.elf)
        self.tst = table
        self.idx = 0
        self.repeat_test = repeat_test
        self.test_complete = 0
        self.final_ack = False
        self.cont_thread_id = self.sstep_thread_id = None
        self.cont_instead_of_sstep = False
        self.cont_addr = 0
        self.regs = b""
        self.sent: list[tuple[str, str]] = []

    def lookup_addr(self, arg: str) -> int:
        return self.image.address_of(SYMBOLS.get(arg, arg))

    # -- what is sent (the get handlers) --------------------------------------

    def break_helper(self, bp_type: str, arg: str) -> str:
        return f"{bp_type},{self.lookup_addr(arg):x},{BREAK_INSTR_SIZE}"

    def sw_break(self, arg):
        return self.break_helper("Z0", arg)

    def sw_rem_break(self, arg):
        return self.break_helper("z0", arg)

    def hw_break(self, arg):
        return self.break_helper("Z1", arg)

    def hw_rem_break(self, arg):
        return self.break_helper("z1", arg)

    def hw_write_break(self, arg):
        return self.break_helper("Z2", arg)

    def hw_rem_write_break(self, arg):
        return self.break_helper("z2", arg)

    def hw_access_break(self, arg):
        return self.break_helper("Z4", arg)

    def hw_rem_access_break(self, arg):
        return self.break_helper("z4", arg)

    def write_regs(self, arg):
        return "G" + self.regs.hex()

    def emul_sstep_get(self, arg):
        # x86 needs no single-step emulation: `s`, or `c` when the step is to be retried.
        if self.cont_instead_of_sstep:
            self.cont_instead_of_sstep = False
            return "c"
        return arg

    def skip_back_repeat_test(self, arg):
        self.repeat_test -= 1
        if self.repeat_test <= 0:
            self.idx += 1
        else:
            self.idx -= int(arg)
        return self.tst[self.idx].get

    # -- what is checked (the put handlers) ------------------------------------

    def get_thread_id_continue(self, put: str, arg: str) -> bool:
        if put[1:3] != "T0":
            return False
        self.cont_thread_id = hex2long(put[11:])
        return True

    def check_and_rewind_pc(self, put: str, arg: str) -> bool:
        regs = bytearray.fromhex(put[1 : 1 + 2 * NUMREGBYTES])
        ip = int.from_bytes(regs[16 * 8 : 17 * 8], "little")
        offset = 0
        if arg != "silent":
            addr = self.lookup_addr(arg)
            if addr + BREAK_INSTR_SIZE == ip:  # GDB_ADJUSTS_BREAK_OFFSET
                offset = -BREAK_INSTR_SIZE
            if ip + offset != addr:
                return False
        ip += offset
        self.cont_addr = ip
        regs[16 * 8 : 17 * 8] = ip.to_bytes(8, "little")
        self.regs = bytes(regs)
        return True

    def check_single_step(self, put: str, arg: str) -> bool:
        ip = int.from_bytes(bytes.fromhex(put[1 + 32 * 8 : 1 + 34 * 8]), "little")
        if self.sstep_thread_id != self.cont_thread_id:
            self.cont_instead_of_sstep = True
            self.idx -= 4
            return True
        return ip != self.lookup_addr(arg)

    def emul_sstep_put(self, put: str, arg: str) -> bool:
        if put[1:3] != "T0":
            return False
        self.sstep_thread_id = hex2long(put[11:])
        return True

    def got_break(self, put: str, arg: str) -> bool:
        self.test_complete = 1
        if put[1:3] == arg[:2]:
            if arg.startswith("T0"):
                self.test_complete = 2
            return True
        return False

    def emul_reset(self, put: str, arg: str) -> bool:
        return put.startswith("$OK")

    def final_ack_set(self, put: str, arg: str) -> bool:
        if put[1:3] != arg[:2]:
            return False
        self.final_ack = True
        return True

    # -- run_simple_test ----------------------------------------------------------

    @staticmethod
    def validate_simple_test(put: str, check: str) -> bool:
        """The reply against the expected text, where '*' matches the rest."""
        put = put[1:] if put.startswith("$") else put
        for want, got in zip(check, put):
            if got == "#" or want == "*":
                return True
            if want != got:
                return False
        return len(check) == len(put) or (len(check) > len(put) and check[len(put)] == "*")

    async def run(self) -> None:
        """Connect (kgdb_breakpoint), then each line: send its packet, check its reply.

        A `D` ends the connection; the next line's packet goes to the next
        entry into the debugger, made by connecting again.
        """
        client = None
        try:
            while self.idx < len(self.tst):
                line = self.tst[self.idx]
                if client is None:
                    client = await connect(self.server.address, handshake=False, timeout=TIMEOUT)
                handler = getattr(self, line.get_handler) if line.get_handler else None
                packet = handler(line.get) if handler else line.get
                line = self.tst[self.idx]  # a handler may have moved the test on
                reply = "$" + (await client.request(packet.encode(), timeout=TIMEOUT)).decode("latin-1")
                self.sent.append((packet, reply))
                checker = getattr(self, line.put_handler) if line.put_handler else None
                ok = checker(reply, line.put) if checker else self.validate_simple_test(reply, line.put)
                assert ok, f"kgdbts: line {self.idx} sent {packet!r}, got {reply!r}, wanted {line.put!r}"
                if packet.startswith("D"):
                    await client.close()
                    client = None
                self.idx += 1
        finally:
            if client is not None:
                await client.close()


def run_kgdbts(server, table, **options) -> Kgdbts:
    harness = Kgdbts(server, table, **options)
    trio.run(harness.run)
    return harness


def test_plant_and_detach_test(server):
    harness = run_kgdbts(server, PLANT_AND_DETACH)
    assert harness.sent[1] == ("Z0,%x,1" % harness.lookup_addr("kgdbts_break_test"), "$OK")


def test_sw_breakpoint_test(server):
    harness = run_kgdbts(server, SW_BREAKPOINT)
    assert harness.test_complete == 1


def test_bad_read_test(server):
    harness = run_kgdbts(server, BAD_READ)
    assert [reply for _, reply in harness.sent[1:9]] == ["$E22"] * 8


def test_singlestep_break_test(server):
    run_kgdbts(server, SINGLESTEP_BREAK)


def test_hw_breakpoint_test(server):
    harness = run_kgdbts(server, HW_BREAKPOINT)
    assert harness.test_complete == 1


def test_hw_write_break_test(server):
    harness = run_kgdbts(server, HW_WRITE_BREAK)
    assert harness.test_complete == 1


def test_hw_access_break_test(server):
    harness = run_kgdbts(server, HW_ACCESS_BREAK)
    assert harness.test_complete == 1


def test_kernel_clone_test(server):
    harness = run_kgdbts(server, KERNEL_CLONE, repeat_test=3)
    assert harness.final_ack
