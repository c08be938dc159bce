"""Benchmarks of the machine and of stops through the stub, as ratios measured in one run.

    python tools/bench_machine.py [--seconds S]

1. Emulation speed: looper iterations per second on the machine with nothing
   armed, against plain unicorn running the same looper code (no virtual TLB,
   no hooks but the one that absorbs its system calls), and with four data
   watches armed on a page the workload never touches.
2. Hits handled inside the machine: seconds for the 1,000,000 ptrace hits of
   the ptrace-loop scenario, and perf hits per second in perf-watch (a
   wide event on jiffies) and on looper_iterations (written every iteration).
3. Stops through the session on loopback with a raw client: a software
   breakpoint hit (z0, s, Z0, c for each stop, as gdb steps over it) and
   a write watchpoint hit (c for each stop).
4. One single step with 1000 software breakpoints set (kgdb's most), which
   it puts in and takes out again as kgdb does, against one with none.
   A guest MOV DRn, intercepted and run on the machine's registers: the
   time a loop of them takes against the same loop with a 3-byte nop in
   its place; and the one-time scan of a code page for them.
5. Break-in: the latency of Ctrl-C (0x03 to the stop reply) at random
   points of a run with looper busy, p50 and p99, and the share of those
   stops with looper's pc in its loop, against the share of the machine's
   instructions looper runs there (counted one by one with a code hook).
"""
from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_64, Uc
from unicorn import x86_const as X

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from kgdbstub import scenario, targets  # noqa: E402
from kgdbstub.core.debugger import Debugger  # noqa: E402
from kgdbstub.kernel import layout  # noqa: E402
from kgdbstub.kernel.image import Image  # noqa: E402
from kgdbstub.kernel.kernel import Kernel  # noqa: E402
from kgdbstub.x86.codepages import CodePages  # noqa: E402
from kgdbstub.x86.cpu import Processor  # noqa: E402
from kgdbstub.x86.debugregs import Access  # noqa: E402
from kgdbstub.x86.memory import AddressSpace, Mapping  # noqa: E402
from kgdbstub.client import SyncTarget  # noqa: E402


def plain_unicorn(image: Image, iterations: int) -> float:
    """Iterations per second of the looper on a bare unicorn engine."""
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0x400000, 0x10000)
    stack = 0x7FF000000000
    uc.mem_map(stack, 0x10000)
    for segment in image.segments:
        if layout.is_user(segment.address):
            uc.mem_write(segment.address, segment.data)
    counter = image.address_of("looper_iterations")

    def on_syscall(uc, _):
        # Stand in for the kernel: sched_yield returns 0; clone is refused.
        uc.reg_write(X.UC_X86_REG_RAX, 0 if uc.reg_read(X.UC_X86_REG_RAX) == 24 else 2**64 - 11)
        if int.from_bytes(uc.mem_read(counter, 8), "little") >= iterations:
            uc.emu_stop()

    uc.hook_add(UC_HOOK_INSN, on_syscall, None, 1, 0, X.UC_X86_INS_SYSCALL)
    uc.reg_write(X.UC_X86_REG_RSP, stack + 0x10000 - 8)
    started = time.perf_counter()
    uc.emu_start(image.address_of("looper_main"), 0)
    return int.from_bytes(uc.mem_read(counter, 8), "little") / (time.perf_counter() - started)


def machine(image: Image, iterations: int, watches: int = 0) -> float:
    kernel = Kernel(image, cpus=2)
    debugger = Debugger(kernel)
    debugger.resume()  # boot to kgdbwait
    kernel.processor.arm_debug_registers(True)  # run on as if the debugger had left
    counter = image.address_of("looper_iterations")
    untouched = layout.kernel_stack_top(layout.MAX_TASKS - 2)  # no task has this slot
    for registers in kernel.processor.debug_registers:
        for index in range(watches):
            registers.install(index, untouched - 64 + 8 * index, Access.WRITE, 8)
    kernel.processor.debug_registers_changed()
    start = kernel.read_u64(counter)
    started = time.perf_counter()
    kernel.run(lambda: kernel.read_u64(counter) >= iterations)
    return (kernel.read_u64(counter) - start) / (time.perf_counter() - started)


LOOPER = 2  # looper's pid


def booted(image: Image, scenario_name: str | None = None) -> tuple[Kernel, Debugger]:
    kernel = Kernel(image, cpus=2)
    debugger = Debugger(kernel)
    debugger.resume()
    debugger.late_init()
    scenario.load(targets.TARGETS_DIR / targets.DEFAULT_TARGET, scenario_name).apply(kernel)
    kernel.processor.arm_debug_registers(True)  # run on as if the debugger had left
    return kernel, debugger


def ptrace_million(image: Image) -> float:
    """Seconds until the tracer of ptrace-loop has seen its 1,000,000 hits."""
    kernel, _ = booted(image, "ptrace-loop")
    tracee = kernel.ptrace.tracees[2]
    started = time.perf_counter()
    kernel.run(lambda: tracee.stopped)
    assert tracee.hits[0] == 1_000_000
    return time.perf_counter() - started


def step_seconds(image: Image, breakpoints: int, steps: int = 50) -> float:
    """Seconds for one single step with this many software breakpoints set."""
    kernel, debugger = booted(image)
    text = image.address_of("start_kernel")
    for address in range(text, text + breakpoints):
        debugger.insert_breakpoint(address)
    started = time.perf_counter()
    for _ in range(steps):
        debugger.resume(step=True)
    return (time.perf_counter() - started) / steps


def mov_dr_seconds(iterations: int = 20_000) -> float:
    """Seconds a guest MOV r64, DR7 costs over a 3-byte nop: the interception."""
    text, stack = 0xFFFFFFFF81000000, 0xFFFFC90000004000

    def loop_seconds(body: bytes) -> float:
        processor = Processor(AddressSpace([Mapping("text", text, 0x100000, 0x1000),
                                            Mapping("stack", stack - 0x1000, 0x200000, 0x1000)]))
        processor.write(text, body + bytes.fromhex("ff c9 75 f9 f4"))  # dec ecx; jnz back; hlt
        context = processor.new_context(rip=text, rcx=iterations, rsp=stack)
        started = time.perf_counter()
        processor.run(0, context)
        return time.perf_counter() - started

    mov_dr7, nop = bytes.fromhex("0f 21 f8"), bytes.fromhex("0f 1f 00")  # mov rax, dr7; nop dword [rax]
    return (loop_seconds(mov_dr7) - loop_seconds(nop)) / iterations


def code_page_scan_seconds(image: Image, pages: int = 200) -> float:
    """Seconds to scan one page of the kernel's code for MOV DRn and MOV SS."""
    text = image.address_of("start_kernel") & ~0xFFF
    code = b"".join(s.data for s in image.segments if s.address == image.address_of("kthread_trampoline"))
    code_pages = CodePages(lambda address, size: code[address - text:address - text + size])
    started = time.perf_counter()
    for _ in range(pages):
        code_pages.pages.clear()
        code_pages.add(text)
    return (time.perf_counter() - started) / pages


def perf_rate(image: Image, scenario_name: str | None, address: str | None, hits: int) -> float:
    kernel, _ = booted(image, scenario_name)
    if address:
        scenario.add_perf_event(kernel, "wide", None, None, address, "w", 8)
    events = kernel.perf.events()
    counted = lambda: sum(e.hits for e in events)  # noqa: E731
    started = time.perf_counter()
    kernel.run(lambda: counted() >= hits)
    return counted() / (time.perf_counter() - started)


def serve():
    process = subprocess.Popen([sys.executable, "-m", "kgdbstub", "serve", "--tcp", "127.0.0.1:0"],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    host, port = re.match(r"listening on tcp:(\S+):(\d+)", process.stdout.readline()).groups()
    process.stdout.readline()
    return process, host, int(port)


def stops_per_second(image: Image, seconds: float) -> tuple[float, float]:
    process, host, port = serve()
    try:
        with SyncTarget(f"{host}:{port}") as client:  # negotiates no-ack mode
            tick = image.address_of("looper_tick")
            client.request(b"Z0,%x,1" % tick)
            client.request(b"c")
            count, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                client.request(b"z0,%x,1" % tick)
                client.request(b"s")
                client.request(b"Z0,%x,1" % tick)
                assert client.request(b"c").startswith(b"T05")
                count += 1
            breakpoint_rate = count / (time.perf_counter() - started)
            client.request(b"z0,%x,1" % tick)
            client.request(b"Z2,%x,8" % image.address_of("looper_iterations"))
            count, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                assert b"watch:" in client.request(b"c")
                count += 1
            return breakpoint_rate, count / (time.perf_counter() - started)
    finally:
        process.terminate()
        process.wait(10)


def loop_range(image: Image) -> tuple[int, int]:
    """looper's own code: looper_tick and looper_main, where it spends its time when it runs."""
    tick, main = image.symbols["looper_tick"], image.symbols["looper_main"]
    return tick.address, main.address + main.size


def instruction_share(image: Image, blocks: int = 3_000_000) -> float:
    """The share of all the machine's instructions that are looper's own, counted one by one.

    The run is the one break_ins interrupts: booted to kgdbwait, then on
    with nothing armed, both CPUs, the kernel's work (system calls, forks,
    the tick, the scheduler) included. A code hook on every address counts
    each instruction as it executes; the translation cache is flushed first,
    so that no block translated before the hook escapes it.
    """
    from unicorn import UC_HOOK_CODE
    kernel = Kernel(image, cpus=2)
    debugger = Debugger(kernel)
    debugger.resume()
    kernel.processor.arm_debug_registers(True)
    low, high = loop_range(image)
    counts = [0, 0]

    def count(_uc, address, _size, _data):
        counts[low <= address < high] += 1

    uc = kernel.processor.uc
    uc.hook_add(UC_HOOK_CODE, count)
    uc.ctl_flush_tb()
    end = kernel.processor.clock.blocks + blocks
    kernel.run(lambda: kernel.processor.clock.blocks >= end)
    return counts[1] / sum(counts)


class Wire:
    """A raw client: frames built once, replies found by their '#' and checksum (still run-length encoded).

    It does no more per request than a client must, so that what it times
    is the stub.
    """

    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.settimeout(None)  # a timeout would poll before every receive
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._received = b""
        self.sock.sendall(self.frame(b"QStartNoAckMode"))
        assert self.reply() == b"OK"
        self.sock.sendall(b"+")

    @staticmethod
    def frame(payload: bytes) -> bytes:
        return b"$%s#%02x" % (payload, sum(payload) & 0xFF)

    def request(self, payload: bytes) -> bytes:
        self.sock.sendall(self.frame(payload))
        return self.reply()

    def request_frame(self, frame: bytes) -> bytes:
        self.sock.sendall(frame)
        return self.reply()

    def reply(self) -> bytes:
        while True:
            start = self._received.find(b"$")
            end = self._received.find(b"#", start + 1) if start >= 0 else -1
            if end >= 0 and len(self._received) >= end + 3:
                body, digits = self._received[start + 1 : end], self._received[end + 1 : end + 3]
                self._received = self._received[end + 3 :]
                if int(digits, 16) != sum(body) & 0xFF:
                    raise ConnectionError(f"bad checksum on {body[:40]!r}")
                return body
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("the stub went away")
            self._received += data


def _expand(body: bytes) -> bytes:
    """A reply with its run-length encoding (X*n: n - 29 more of X) undone."""
    if b"*" not in body:
        return body
    out = bytearray()
    index = 0
    while index < len(body):
        if body[index] == ord("*"):
            out += out[-1:] * (body[index + 1] - 29)
            index += 2
        else:
            out.append(body[index])
            index += 1
    return bytes(out)


def break_ins(image: Image, count: int, seed: int = 1) -> tuple[list[float], float]:
    """Ctrl-C latencies (s) with looper busy, and the share of stops inside looper's own code.

    Each time: `c`, a pause of 5 to 30 ms (a random point of the run), a
    0x03, and the time until the whole stop reply is in, read with a raw
    socket. A stop is inside when it names looper's thread with its pc in
    looper's code: the instruction the break-in found was one of looper's.
    """
    import random
    chance = random.Random(seed)
    low, high = loop_range(image)
    process, host, port = serve()
    latencies, inside = [], 0
    try:
        wire = Wire(host, port)
        for _ in range(count):
            wire.sock.sendall(wire.frame(b"c"))
            time.sleep(chance.uniform(0.005, 0.03))
            started = time.perf_counter()
            wire.sock.sendall(b"\x03")
            while (stop := _expand(wire.reply())).startswith(b"O") and stop != b"OK":
                pass  # console output the run printed comes first
            latencies.append(time.perf_counter() - started)
            thread = int(re.search(rb"thread:([0-9a-f]+);", stop)[1], 16)
            if thread == LOOPER:
                assert wire.request(b"Hg%x" % LOOPER) == b"OK"
                pc = int.from_bytes(bytes.fromhex(_expand(wire.request(b"p10")).decode()), "little")
                inside += low <= pc < high
        wire.sock.close()
    finally:
        process.terminate()
        process.wait(10)
    latencies.sort()
    return latencies, inside / count


def percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(share * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=3_000_000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--break-ins", type=int, default=100)
    args = parser.parse_args()
    image = Image(targets.resolve(targets.DEFAULT_TARGET))

    plain = plain_unicorn(image, args.iterations)
    bare = machine(image, args.iterations)
    armed = machine(image, args.iterations, watches=4)
    million = ptrace_million(image)
    jiffies_rate = perf_rate(image, "perf-watch", None, 2000)
    iteration_rate = perf_rate(image, None, "looper_iterations", 20000)
    breakpoint_rate, watch_rate = stops_per_second(image, args.seconds)
    bare_step, full_step = step_seconds(image, 0), step_seconds(image, 1000)
    mov_dr, scan = mov_dr_seconds(), code_page_scan_seconds(image)
    latencies, landed = break_ins(image, args.break_ins)
    share = instruction_share(image)
    rows = [
        ("plain unicorn, looper iterations/s", f"{plain:,.0f}", "1.00"),
        ("machine, nothing armed", f"{bare:,.0f}", f"{bare / plain:.2f}"),
        ("machine, four watches on an untouched page", f"{armed:,.0f}", f"{armed / plain:.2f} ({armed / bare:.2f} of unarmed)"),
        ("ptrace-loop: seconds for 1,000,000 ptrace hits", f"{million:.2f}", f"{million:.2e} s/hit"),
        ("perf-watch: perf hits/s (jiffies, one per tick)", f"{jiffies_rate:,.0f}", ""),
        ("perf hits/s on looper_iterations (every iteration)", f"{iteration_rate:,.0f}", ""),
        ("Z0 breakpoint stops/s (z0 s Z0 c each)", f"{breakpoint_rate:,.0f}", f"{1e6 / breakpoint_rate:,.0f} us/stop"),
        ("write watchpoint stops/s (c each)", f"{watch_rate:,.0f}", f"{1e6 / watch_rate:,.0f} us/stop"),
        ("one step, no software breakpoints (ms)", f"{bare_step * 1e3:.3f}", ""),
        ("one step, 1000 software breakpoints set (ms)", f"{full_step * 1e3:.3f}", f"{full_step / bare_step:.0f} x none"),
        ("guest MOV DRn, intercepted (us each)", f"{mov_dr * 1e6:.1f}", ""),
        ("scan of a code page for MOV DRn and MOV SS, once (us)", f"{scan * 1e6:.1f}", ""),
        (f"break-in latency, {len(latencies)} Ctrl-Cs: p50 / p99 ms",
         f"{percentile(latencies, 0.5) * 1e3:.2f} / {percentile(latencies, 0.99) * 1e3:.2f}", ""),
        ("stops inside looper's loop / its share of instructions",
         f"{landed:.0%} / {share:.0%}", f"{abs(landed - share) * 100:.0f} points apart"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:>12}  {ratio}")


if __name__ == "__main__":
    main()
