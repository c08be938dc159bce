"""The `modern` dialect at the packet level: negotiation, errors, stop replies.

Driven with kgdbstub.client: raw packets (`handshake=False`, `request`) where
the bytes on the wire are the point, typed operations where the meaning is.
"""
import errno
import re

import pytest
import trio
import trio.testing

from kgdbstub.client import BreakpointRefused, RemoteError, connect
from kgdbstub.kernel.image import Image

GDB_OFFER = (b"qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;vfork-events+;"
             b"exec-events+;vContSupported+;QThreadEvents+;no-resumed+;memory-tagging+;xmlRegisters=i386")


@pytest.fixture
async def raw(server):
    """A connection that sends nothing but what the test asks for."""
    async with await connect(server.address, handshake=False) as target:
        yield target, Image(server.elf)


@pytest.fixture
async def modern(server):
    """A connection set up as gdb sets it up (qSupported, no-ack, target description, ?)."""
    async with await connect(server.address) as target:
        yield target, Image(server.elf)


async def test_qsupported_advertises_what_is_implemented_and_only_offered_stop_reasons(raw):
    client, _ = raw
    features = (await client.request(GDB_OFFER)).split(b";")
    assert b"PacketSize=4000" in features
    assert {b"QStartNoAckMode+", b"qXfer:features:read+", b"swbreak+", b"hwbreak+", b"vContSupported+",
            b"qXfer:exec-file:read+"} <= set(features)
    assert b"swbreak+" not in (await client.request(b"qSupported:xmlRegisters=i386")).split(b";")


async def test_no_ack_mode_stops_acknowledgements(server):
    wire = []
    async with await connect(server.address, handshake=False, trace=lambda way, data: wire.append((way, data))) as client:
        assert await client.request(b"QStartNoAckMode") == b"OK"
        assert not client.connection.codec.ack_mode
        del wire[:]
        assert await client.request(b"g")
        received = [data for way, data in wire if way == "<-"]
        assert received[0][:1] == b"$", "no '+' before the reply in no-ack mode"
        assert [data for way, data in wire if way == "->"] == [b"$g#67"], "and none sent for it"


async def test_target_description_names_the_registers_of_the_g_packet(raw):
    client, _ = raw
    xml = await client.request(b"qXfer:features:read:target.xml:0,3fff")
    assert xml.startswith(b"l<?xml")
    registers = re.findall(rb'<reg name="(\w+)" bitsize="(\d+)"', xml)
    assert len(await client.request(b"g")) == 2 * sum(int(bits) // 8 for _, bits in registers)
    # The client reads the same description and names every register of `g` with it.
    layout = await client.registers_layout()
    assert [(r.name.encode(), b"%d" % (r.size * 8)) for r in layout] == registers
    assert set(await client.read_registers()) == {r.name for r in layout}


async def test_errors_and_unknown_packets(raw):
    client, _ = raw
    assert await client.request(b"m0,4") == b"E14"
    assert await client.request(b"M0,1:00") == b"E14"
    assert await client.request(b"m,") == b"E22"
    assert await client.request(b"Gxyz") == b"E22"
    assert await client.request(b"Z0,zz,1") == b"E22"
    assert await client.request(b"qNoSuchQuery") == b""
    assert await client.request(b"Hgfffffff0") == b"E22"
    # The same errors, typed.
    with pytest.raises(RemoteError) as bad_read:
        await client.read_memory(0, 4)
    assert bad_read.value.errno == errno.EFAULT
    with pytest.raises(RemoteError) as bad_write:
        await client.write_memory(0, b"\x00")
    assert bad_write.value.errno == errno.EFAULT
    with pytest.raises(RemoteError) as bad_thread:
        await client.read_register("rip", thread=-16)
    assert bad_thread.value.errno == errno.EINVAL


async def test_software_breakpoint_stop_reports_the_pc_at_the_breakpoint_with_expedited_registers(modern):
    client, image = modern
    do_fork = image.address_of("do_fork")
    await client.insert_breakpoint(do_fork)
    stop = await client.resume()
    assert stop.raw.startswith(b"T05") and stop.reason == "swbreak"
    assert stop.pc == do_fork == stop.address
    assert {"rbp", "rsp", "rip"} <= set(stop.registers)  # 06, 07 and 10 of the reply
    fields = dict(f.split(b":", 1) for f in stop.raw[3:].split(b";") if f)
    assert {b"06", b"07", b"10", b"thread", b"core", b"swbreak"} <= set(fields)
    assert stop.thread is not None and stop.cpu is not None
    # memory shows the original byte while stopped, not the int3
    assert await client.read_memory(do_fork, 1) != b"\xcc"


async def test_hardware_watch_stop_carries_the_watch_reason(modern):
    client, image = modern
    total_forks = image.address_of("total_forks")
    await client.watch(total_forks, 8, kind="write")
    stop = await client.resume()
    assert b"watch:%x;" % total_forks in stop.raw
    assert (stop.reason, stop.address) == ("watch", total_forks)
    before = await client.read_int(total_forks)
    assert (await client.resume()).signal == 5
    assert await client.read_int(total_forks) == before + 1


async def test_a_write_alone_does_not_stop_a_read_watch(modern):
    client, image = modern
    jiffies = image.address_of("jiffies")
    do_timer = image.address_of("do_timer")
    await client.watch(jiffies, 8, kind="read")
    pcs = set()
    for _ in range(3):
        stop = await client.resume()
        assert b"rwatch:%x;" % jiffies in stop.raw
        assert (stop.reason, stop.address) == ("rwatch", jiffies)
        pcs.add(stop.pc)
    # Every stop is right after do_timer's load; its store never stops a read watch.
    assert len(pcs) == 1 and do_timer < pcs.pop() < do_timer + 16


async def test_interrupt_while_running_stops_with_sigint(modern):
    client, _ = modern
    for _ in range(2):
        await client.resume_nowait()
        stop = await client.interrupt()
        assert stop.raw.startswith(b"T02") and stop.signal == 2


async def test_interrupt_from_another_task_ends_that_tasks_resume(modern):
    client, _ = modern
    stops = []
    async with trio.open_nursery() as nursery:
        async def run():
            stops.append(await client.resume())
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()  # run() sent `c` and waits for the stop
        assert client.running
        stops.append(await client.interrupt())
    assert [s.signal for s in stops] == [2, 2] and stops[0] is stops[1]


async def test_an_unaligned_watch_across_two_fields_stops_at_each_store(modern):
    client, image = modern
    last_fork = image.address_of("last_fork")
    await client.watch(last_fork + 3, 8)  # bytes 3-7 of pid, 0-2 of nr
    addresses = []
    for _ in range(2):
        stop = await client.resume()
        assert stop.reason == "watch"
        addresses.append(stop.address)
    assert all(last_fork + 3 <= a < last_fork + 11 for a in addresses)
    assert addresses[0] < last_fork + 8 <= addresses[1], "one stop per field"


async def test_a_fifth_hardware_slot_is_refused_with_enospc(modern):
    client, image = modern
    jiffies = image.address_of("jiffies")
    for offset in range(4):
        await client.watch(jiffies + offset, 1)
    with pytest.raises(BreakpointRefused) as refused:
        await client.insert_breakpoint(image.address_of("do_fork"), kind="hardware")
    assert refused.value.errno == errno.ENOSPC and refused.value.reply == b"E28"


async def test_a_refused_register_write_is_an_error_and_changes_nothing(raw):
    client, _ = raw
    # fs and gs take a null selector alone: the machine has no descriptor table.
    assert await client.request(b"P16=33000000") == b"E22"
    registers = bytearray.fromhex((await client.request(b"g")).decode())
    changed = bytearray(registers)
    changed[0:8] = (0x1234).to_bytes(8, "little")  # rax
    changed[17 * 8 + 20 : 17 * 8 + 24] = (0x33).to_bytes(4, "little")  # fs, after eflags cs ss ds es
    assert await client.request(b"G" + changed.hex().encode()) == b"E22"
    assert bytearray.fromhex((await client.request(b"g")).decode()) == registers  # rax unchanged too
    # What gdb writes after a PC change (jump): rip, and the same selectors back.
    assert await client.request(b"P10=" + registers[128:136].hex().encode()) == b"OK"
    assert await client.request(b"G" + registers.hex().encode()) == b"OK"
