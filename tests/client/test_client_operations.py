"""kgdbstub.client's typed operations against a real `kgdbstub serve`."""
import os
import signal
import subprocess
import sys
import threading

import pytest
import trio

from gdbtools import REPO_ROOT, OutputReader
from kgdbstub.client import Stop, SyncTarget, Thread, connect
from kgdbstub.kernel.image import Image


async def test_registers_by_name_agree_with_the_g_packet_and_can_be_written(server):
    async with await connect(server.address) as target:
        registers = await target.read_registers()
        assert registers["rip"] == await target.read_register("rip") == target.stop.pc
        assert len(registers) == len(await target.registers_layout())
        old = await target.read_register("r12")
        await target.write_register("r12", 0x1122334455667788)
        assert await target.read_register("r12") == 0x1122334455667788
        assert (await target.read_registers())["r12"] == 0x1122334455667788
        await target.write_register("r12", old)
        with pytest.raises(KeyError, match="no register 'r99'"):
            await target.read_register("r99")


async def test_registers_of_another_thread_and_back(server):
    async with await connect(server.address) as target:
        stopped = target.stop.thread
        others = [t for t in await target.threads() if t.id != stopped and t.id > 0]
        assert others, "init and looper exist besides the thread that stopped"
        sleeping = await target.read_register("rip", thread=others[0].id)
        assert sleeping != target.stop.pc
        assert await target.read_register("rip") == target.stop.pc, "no thread: the one that stopped"
        assert await target.read_register("rip", thread=others[0].id) == sleeping
        await target.request(b"?")  # the stub forgets the Hg thread: the client selects it again
        assert await target.read_register("rip", thread=others[0].id) == sleeping


async def test_memory_round_trips_across_several_packets(server):
    async with await connect(server.address) as target:
        jiffies = await target.symbol("jiffies")
        page = jiffies & ~0xFFF
        big = await target.read_memory(page, 20000)  # more than one `m` can carry
        assert len(big) == 20000
        assert big[jiffies - page : jiffies - page + 8] == await target.read_memory(jiffies, 8)
        scratch = await target.symbol("last_fork")
        pattern = bytes(range(16))
        await target.write_memory(scratch, pattern)
        assert await target.read_memory(scratch, 16) == pattern
        await target.write_int(scratch, -2, 8)
        assert await target.read_int(scratch, 8, signed=True) == -2


async def test_threads_have_kgdb_ids_and_names(server):
    async with await connect(server.address) as target:
        threads = await target.threads()
    assert threads[:4] == [Thread(-2, "shadowCPU0"), Thread(-3, "shadowCPU1"), Thread(1, "init"), Thread(2, "looper")]


async def test_breakpoints_of_every_kind_stop_with_their_reason(server):
    async with await connect(server.address) as target:
        do_fork, jiffies = await target.symbol("do_fork"), await target.symbol("jiffies")
        for kind, reason in (("software", "swbreak"), ("hardware", "hwbreak")):
            breakpoint = await target.insert_breakpoint(do_fork, kind=kind)
            stop = await target.resume()
            assert (stop.reason, stop.address, stop.pc, stop.signal_name) == (reason, do_fork, do_fork, "SIGTRAP")
            await target.remove_breakpoint(breakpoint)
        for kind, reason in (("write", "watch"), ("read", "rwatch"), ("access", "awatch")):
            watch = await target.watch(jiffies, 8, kind=kind)
            stop = await target.resume()
            assert (stop.reason, stop.address) == (reason, jiffies)
            await target.remove_breakpoint(watch)
        with pytest.raises(ValueError):
            await target.watch(jiffies, 8, kind="software")


async def test_step_moves_one_instruction(server):
    async with await connect(server.address) as target:
        before = target.stop.pc
        stop = await target.step()
        assert isinstance(stop, Stop) and stop.signal == 5 and stop.pc != before


async def test_monitor_returns_the_text_and_the_image_comes_over_host_io(server):
    async with await connect(server.address) as target:
        ps = await target.monitor("ps")
        assert "pid=1 comm=init" in ps and ps.endswith("\n")
        assert await target.exec_file() == str(server.elf)
        assert await target.read_file(str(server.elf)) == server.elf.read_bytes()
        assert await target.symbol("do_fork") == Image(server.elf).address_of("do_fork")
        with pytest.raises(KeyError):
            await target.symbol("no_such_symbol")


async def test_tasks_sharing_a_target_take_turns(server):
    async with await connect(server.address) as target:
        jiffies = await target.symbol("jiffies")
        results = []

        async def reader():
            for _ in range(20):
                results.append(await target.read_int(jiffies))

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(reader)
            nursery.start_soon(target.monitor, "slots")
        assert len(results) == 60 and len(set(results)) == 1, "the machine is stopped: one value"


async def test_tasks_reading_registers_of_different_threads_get_each_their_own(server):
    async with await connect(server.address) as target:
        threads = [t.id for t in await target.threads()]
        alone = {thread: await target.read_register("rsp", thread=thread) for thread in threads}
        assert len(set(alone.values())) > 1
        together = {}

        async def read(thread):
            for _ in range(5):
                together.setdefault(thread, set()).add(await target.read_register("rsp", thread=thread))
                together[thread].add((await target.read_registers(thread=thread))["rsp"])

        async with trio.open_nursery() as nursery:
            for thread in threads:
                nursery.start_soon(read, thread)
        assert together == {thread: {value} for thread, value in alone.items()}


async def test_leaving_the_block_while_running_interrupts_and_detaches(server):
    async with await connect(server.address) as target:
        await target.resume_nowait()
    # The machine ran on after the detach: the next debugger's connection
    # breaks in, and it finds the machine stopped by that interrupt.
    async with await connect(server.address) as again:
        assert again.stop.signal == 2 and not again.running


def test_sync_facade_interrupt_from_another_thread_ends_a_blocking_resume(server):
    resumed = threading.Event()

    def trace(direction, data):
        if direction == "->" and data.startswith(b"$c#"):
            resumed.set()

    with SyncTarget(server.address, trace=trace) as target:
        stops = []
        worker = threading.Thread(target=lambda: stops.append(target.resume(timeout=30)))
        worker.start()
        assert resumed.wait(10), "the worker's resume went out"
        interrupted = target.interrupt(timeout=30)
        worker.join(30)
        assert not worker.is_alive() and stops[0].signal == 2
        assert stops[0] is interrupted is target.stop


CTRL_C_SCRIPT = """
import sys
from kgdbstub.client import SyncTarget

def trace(direction, data):
    if direction == "->" and data.startswith(b"$c#"):
        print("resumed", flush=True)

target = SyncTarget(sys.argv[1], trace=trace)
try:
    target.resume(timeout=None)
except KeyboardInterrupt:
    print("interrupted:", target.stop.signal_name, "running:", target.running, flush=True)
    target.detach()
"""


def test_ctrl_c_in_a_sync_script_stops_the_target_before_the_script_stops(server, tmp_path):
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    process = subprocess.Popen([sys.executable, str(script), server.address], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    try:
        output = OutputReader(process.stdout, "ctrl_c.py")
        output.wait_for("resumed", timeout=30)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, process.stderr.read()
        assert "interrupted: SIGINT running: False" in output.wait_closed(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
