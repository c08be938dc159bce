"""Each kind of client error, provoked with a real `kgdbstub serve`."""
import errno
from functools import partial

import pytest
import trio

from gdbtools import start_server
from kgdbstub.client import (
    BreakpointRefused, ClientError, ConnectionLost, RemoteError, SyncTarget, Timeout, Unsupported, connect,
)
from kgdbstub.kernel.image import Image
from kgdbstub.rsp import Packet, RemoteProtocol


async def test_a_bad_address_raises_remote_error_with_efault(server):
    async with await connect(server.address) as target:
        with pytest.raises(RemoteError) as read:
            await target.read_memory(0x10, 8)
        assert read.value.errno == errno.EFAULT and read.value.reply == b"E14"
        assert "EFAULT" in str(read.value) and "'m10,8'" in str(read.value)
        with pytest.raises(RemoteError) as write:
            await target.write_int(0x10, 1)
        assert write.value.errno == errno.EFAULT
        assert not isinstance(read.value, BreakpointRefused)
        # The session goes on after an error.
        assert await target.read_int(await target.symbol("jiffies")) >= 0


@pytest.mark.server_args("--scenario", "perf-watch")
async def test_a_slot_perf_holds_is_refused_with_enospc(server):
    async with await connect(server.address) as target:
        jiffies, do_fork = await target.symbol("jiffies"), await target.symbol("do_fork")
        # perf-watch holds one slot per CPU; take two more, so one is left for kgdb.
        for _ in range(2):
            assert "id=" in await target.monitor(f"perf add wide {jiffies:#x} w 8")
        hbreak = await target.insert_breakpoint(do_fork, kind="hardware")
        with pytest.raises(BreakpointRefused) as refused:
            await target.watch(await target.symbol("total_forks"), 8)
        assert refused.value.errno == errno.ENOSPC and isinstance(refused.value, RemoteError)
        assert "ENOSPC" in str(refused.value)
        # Give the slot back and the watch fits.
        await target.remove_breakpoint(hbreak)
        await target.watch(await target.symbol("total_forks"), 8)


@pytest.mark.server_args("--dialect", "kgdb")
async def test_kgdb_refuses_a_read_watch_and_does_not_know_host_io(server):
    async with await connect(server.address, elf=server.elf) as target:
        with pytest.raises(BreakpointRefused) as refused:
            await target.watch(Image(server.elf).address_of("jiffies"), 8, kind="read")
        assert refused.value.errno == 1  # kgdb's E01
        with pytest.raises(Unsupported) as unsupported:
            await target.exec_file()
        assert "does not support" in str(unsupported.value)


async def test_a_resume_that_does_not_stop_in_time_times_out_and_leaves_the_target_running(server):
    async with await connect(server.address) as target:
        with pytest.raises(Timeout) as late:
            await target.resume(timeout=0.3)  # nothing is set: the machine runs on
        assert isinstance(late.value, TimeoutError) and "still running" in str(late.value)
        assert target.running
        with pytest.raises(ClientError, match="the target is running"):
            await target.read_memory(0x1000, 1)
        stop = await target.interrupt()
        assert stop.signal == 2 and not target.running
        assert await target.read_register("rip") == stop.pc


async def _late_stub(stream, release: trio.Event):
    """A peer that answers its first packet only once released, then at once."""
    codec = RemoteProtocol(run_length_encode=False)
    answers = {b"qC": b"QC1", b"qAttached": b"1", b"D": b"OK"}
    first = True
    while data := await stream.receive_some(4096):
        codec.receive_data(data)
        for event in codec.events():
            if isinstance(event, Packet):
                if first:
                    await release.wait()
                    first = False
                codec.send_packet(answers.get(event.payload, b""))
        await stream.send_all(codec.data_to_send())


async def test_a_request_nobody_answers_times_out_and_its_late_reply_is_dropped():
    release = trio.Event()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, lambda stream: _late_stub(stream, release), 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with await connect(f"127.0.0.1:{port}", handshake=False, timeout=0.5) as late:
            with pytest.raises(Timeout) as nobody:
                await late.request(b"qC")
            assert "no reply to 'qC' within 0.5 s" in str(nobody.value)
            release.set()  # now the peer answers the qC nobody waits for any more
            late.timeout = 10
            assert await late.request(b"qAttached") == b"1", "the late QC was not taken for this reply"
            assert (await late.request(b"qC")).startswith(b"QC")
        nursery.cancel_scope.cancel()


async def test_a_server_that_dies_during_a_resume_raises_connection_lost():
    with start_server() as server:
        async with await connect(server.address) as target:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, server.stop)
                with pytest.raises(ConnectionLost) as lost:
                    await target.resume(timeout=30)
            assert isinstance(lost.value, ConnectionError) and server.address in str(lost.value)
            # Every later call says the same, at once.
            with pytest.raises(ConnectionLost):
                await target.read_memory(0, 1)


def test_a_server_gone_between_requests_raises_connection_lost_from_the_sync_facade():
    with start_server() as server:
        target = SyncTarget(server.address)
        server.stop()
        with pytest.raises(ConnectionLost):
            target.threads()
        target.close()


async def test_connecting_to_nothing_raises_connection_lost():
    with start_server() as server:
        address = server.address
    with pytest.raises(ConnectionLost, match="cannot connect"):
        await connect(address)
    with pytest.raises(ConnectionLost, match="cannot open"):
        await connect("/nonexistent/tty")
    with pytest.raises(ValueError):
        await connect("no-port-here")


@pytest.mark.server_args("--dialect", "kgdb")
async def test_kgdb_is_interrupted_with_sysrq_g_and_stops_in_kgdb_breakpoint(server):
    kgdb_breakpoint = Image(server.elf).symbols["kgdb_breakpoint"]
    async with await connect(server.address, elf=server.elf) as target:
        with pytest.raises(ValueError, match="BREAK-g"):
            await target.interrupt(sequence="BREAK")
        await target.resume_nowait()
        stop = await target.interrupt(sequence="BREAK-g", timeout=20)
        assert stop.signal == 5 and not target.running
        # The pc one byte after the int3 (kgdb_breakpoint's own, no breakpoint of ours).
        assert await target.read_register("rip") == kgdb_breakpoint.address + 1
