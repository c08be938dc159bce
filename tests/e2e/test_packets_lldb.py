"""`modern`'s thread model and LLDB's packets, at the packet level.

The packets are those LLDB 14 sends (GDBRemoteCommunicationClient.cpp) and
lldb/docs/lldb-gdb-remote.txt describes; kgdb's behaviour is getthread()
and gdb_cmd_reg_get() in kernel/debug/gdbstub.c.
"""
import json
import re

import pytest

from kgdbstub.client import connect
from kgdbstub.kernel.image import Image

RIP = b"p10"  # register 16 in both dialects' layouts


@pytest.fixture
async def raw(server):
    async with await connect(server.address, handshake=False) as target:
        yield target, Image(server.elf)


async def threads(client) -> list[bytes]:
    listed = (await client.request(b"qfThreadInfo"))[1:].split(b",")
    while (more := await client.request(b"qsThreadInfo")) != b"l":
        listed += more[1:].split(b",")
    return listed


async def rip_of(client, thread: bytes) -> bytes:
    assert await client.request(b"Hg" + thread) == b"OK"
    return await client.request(RIP)


async def stop_at_do_fork(client, image) -> dict:
    assert await client.request(b"Z1,%x,1" % image.address_of("do_fork")) == b"OK"
    reply = await client.request(b"c")
    assert await client.request(b"z1,%x,1" % image.address_of("do_fork")) == b"OK"
    return dict(field.split(b":", 1) for field in reply[3:].rstrip(b";").split(b";"))


async def test_a_shadow_thread_is_its_cpus_idle_task_not_the_task_running_there(raw):
    client, image = raw
    stop = await stop_at_do_fork(client, image)
    shadow = b"%08x" % ((-(int(stop[b"core"], 16) + 2)) & 0xFFFFFFFF)
    task_rip = await rip_of(client, stop[b"thread"])
    assert task_rip == b"%016x" % int.from_bytes(image.address_of("do_fork").to_bytes(8, "little"), "big")
    assert await rip_of(client, shadow) != task_rip


@pytest.mark.server_args("--dialect", "kgdb")
async def test_kgdb_shows_the_task_on_the_cpu_under_the_shadow_thread_too(raw):
    # getthread(): a shadow id -(cpu + 2) is kgdb_info[cpu].task, what runs there.
    client, image = raw
    stop = await stop_at_do_fork(client, image)
    task_rip = await rip_of(client, stop[b"thread"])
    shadows = [await rip_of(client, b"%08x" % ((-(cpu + 2)) & 0xFFFFFFFF)) for cpu in (0, 1)]
    assert task_rip in shadows


async def test_stepping_a_thread_steps_it_and_the_stop_names_it(raw):
    client, image = raw
    stop = await stop_at_do_fork(client, image)
    other_cpu = 1 - int(stop[b"core"], 16)
    other = b"%08x" % ((-(other_cpu + 2)) & 0xFFFFFFFF)  # that CPU's idle task, running there
    before = await rip_of(client, other)
    reply = await client.request(b"vCont;s:%s" % other.lstrip(b"0"))
    assert re.match(rb"T05thread:%s;core:%x;" % (other, other_cpu), reply), reply
    assert await rip_of(client, other) != before
    # The task that hit the breakpoint did not move.
    assert await rip_of(client, stop[b"thread"]) == b"%016x" % int.from_bytes(
        image.address_of("do_fork").to_bytes(8, "little"), "big")


async def test_stepping_a_thread_on_no_cpu_runs_the_machine_until_it_has_one(raw):
    client, image = raw
    await stop_at_do_fork(client, image)
    init = b"00000001"  # asleep in schedule_timeout
    before = await rip_of(client, init)
    reply = await client.request(b"vCont;s:1", timeout=60)
    assert reply.startswith(b"T05thread:%s;" % init), reply
    assert await rip_of(client, init) != before


async def test_a_thread_suffix_names_the_thread_of_one_register_packet(raw):
    client, image = raw
    stop = await stop_at_do_fork(client, image)
    assert await client.request(b"QThreadSuffixSupported") == b"OK"
    init_rip = await rip_of(client, b"1")
    assert await client.request(b"Hg0") == b"OK"
    assert await client.request(RIP + b";thread:1;") == init_rip
    assert await client.request(RIP) == await rip_of(client, stop[b"thread"]), "Hg is left as it was"
    assert len(await client.request(b"g;thread:1;")) == len(await client.request(b"g"))
    assert await client.request(RIP + b";thread:zz;") == b"E22"
    assert await client.request(RIP + b";thread:4242;") == b"E22"


async def test_watchpoint_support_info_counts_what_kgdb_could_hold_now(raw):
    client, image = raw

    async def count() -> int:
        return int(re.fullmatch(rb"num:(\d+);", await client.request(b"qWatchpointSupportInfo:"))[1])

    assert await count() == 4
    assert await client.request(b"Z2,%x,8" % image.address_of("total_forks")) == b"OK"
    assert await count() == 4, "the ones it holds count"
    for expected in (3, 2, 1):
        await client.request(b"qRcmd," + b"perf add wide jiffies w 8".hex().encode())
        assert await count() == expected
    assert await client.request(b"Z2,%x,8" % image.address_of("jiffies")) == b"E28"


@pytest.mark.server_args("--policy", "boot")
async def test_watchpoint_support_info_under_the_boot_policy(raw):
    client, _ = raw
    assert await client.request(b"qWatchpointSupportInfo:") == b"num:4;"


async def test_stop_replies_carry_threads_pcs_and_reasons_only_when_asked(raw):
    client, image = raw
    plain = await client.request(b"?")
    assert b"threads:" not in plain and b"jstopinfo:" not in plain and b"memory:" not in plain
    assert await client.request(b"QListThreadsInStopReply") == b"OK"
    reply = await client.request(b"?")
    fields = {}
    for field in reply[3:].rstrip(b";").split(b";"):
        key, _, value = field.partition(b":")
        fields.setdefault(key, []).append(value)
    listed = [int(t, 16) for t in await threads(client)]
    assert [int(t, 16) for t in fields[b"threads"][0].split(b",")] == listed
    pcs = [int(pc, 16) for pc in fields[b"thread-pcs"][0].split(b",")]
    for thread, pc in zip(listed, pcs):
        assert pc == int.from_bytes(bytes.fromhex((await rip_of(client, b"%x" % thread)).decode()), "little")
    infos = json.loads(bytes.fromhex(fields[b"jstopinfo"][0].decode()))
    assert [info["tid"] for info in infos] == listed
    assert [info.get("signal") for info in infos].count(5) == 1
    assert all(set(info["registers"]) == {"6", "7", "16"} for info in infos)
    assert len(fields[b"memory"]) >= len(listed)


async def test_host_and_process_info_say_x86_64(raw):
    client, _ = raw
    host = dict(f.split(b":") for f in (await client.request(b"qHostInfo")).rstrip(b";").split(b";"))
    process = dict(f.split(b":") for f in (await client.request(b"qProcessInfo")).rstrip(b";").split(b";"))
    assert bytes.fromhex(host[b"triple"].decode()) == bytes.fromhex(process[b"triple"].decode()) \
        == b"x86_64-unknown-none"
    assert host[b"ptrsize"] == process[b"ptrsize"] == b"8" and host[b"endian"] == b"little"


@pytest.mark.server_args("--dialect", "kgdb")
async def test_kgdb_knows_none_of_lldbs_packets(raw):
    client, _ = raw
    for packet in (b"qHostInfo", b"qProcessInfo", b"qWatchpointSupportInfo:", b"QThreadSuffixSupported",
                   b"QListThreadsInStopReply"):
        assert await client.request(packet) == b"", packet
