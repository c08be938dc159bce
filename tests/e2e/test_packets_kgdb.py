"""The `kgdb` dialect answers as Linux's x86 kgdb does (FACTS.md §3), byte for byte.

One connection for the module, through kgdbstub.client's synchronous facade:
raw packets where the bytes are the point, typed operations beside them.
"""
import errno
import re

import pytest

from gdbtools import start_server
from kgdbstub.client import BreakpointRefused, RemoteError, SyncTarget, Unsupported
from kgdbstub.client.packets import KGDB_LAYOUT
from kgdbstub.kernel.image import Image

GDB_OFFER = (b"qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;vfork-events+;"
             b"exec-events+;vContSupported+;QThreadEvents+;no-resumed+;memory-tagging+;xmlRegisters=i386")


@pytest.fixture(scope="module")
def kgdb():
    with start_server("--dialect", "kgdb") as server:
        image = Image(server.elf)
        with SyncTarget(server.address, elf=server.elf) as client:
            yield client, image


def test_kgdb_answers_qsupported_with_nothing_and_status_with_s05(kgdb):
    client, _ = kgdb
    assert client.request(GDB_OFFER) == b""
    assert client.request(b"?") == b"S05"
    assert client.request(b"QStartNoAckMode") == b""
    # What the client made of it when it connected: no features, acks on, S05.
    assert client.features == {} and client.target.connection.codec.ack_mode
    assert client.stop.raw == b"S05" and client.stop.signal == 5 and client.stop.reason is None


def test_kgdb_register_layout_is_17_quads_and_7_longs(kgdb):
    client, _ = kgdb
    registers = client.request(b"g")
    assert len(registers) == 2 * (17 * 8 + 7 * 4)
    rip = int.from_bytes(bytes.fromhex(registers[16 * 16 : 17 * 16].decode()), "little")
    assert rip >= 0xFFFFFFFF80000000
    # With no target description the client falls back to this layout.
    assert client.registers_layout() == KGDB_LAYOUT
    assert client.read_registers()["rip"] == rip == client.read_register("rip")


def test_kgdb_threads_shadows_first_then_pids(kgdb):
    client, _ = kgdb
    first = client.request(b"qfThreadInfo")
    assert first.startswith(b"mfffffffe,fffffffd,00000001,00000002")
    assert client.request(b"qsThreadInfo") == b"l"
    assert bytes.fromhex(client.request(b"qThreadExtraInfo,fffffffe").decode()) == b"shadowCPU0"
    assert bytes.fromhex(client.request(b"qThreadExtraInfo,1").decode()) == b"init"
    threads = client.threads()
    assert [(t.id, t.name) for t in threads[:4]] == [(-2, "shadowCPU0"), (-3, "shadowCPU1"), (1, "init"), (2, "looper")]


def test_kgdb_refuses_z3_bad_lengths_and_a_fifth_slot_with_e01(kgdb):
    client, image = kgdb
    jiffies = image.address_of("jiffies")
    assert client.request(b"Z3,%x,8" % jiffies) == b"E01"
    assert client.request(b"Z2,%x,3" % jiffies) == b"E01"
    for offset in range(4):
        assert client.request(b"Z2,%x,1" % (jiffies + offset)) == b"OK"
    assert client.request(b"Z4,%x,8" % jiffies) == b"E01"
    # z matches on the address alone, whatever the type
    assert client.request(b"z4,%x,1" % jiffies) == b"OK"
    assert client.request(b"Z4,%x,1" % jiffies) == b"OK"
    assert client.request(b"?") == b"S05"  # removes them all
    assert client.request(b"z2,%x,1" % (jiffies + 1)) == b"E01"
    # The same refusals, typed: kgdb's -1 comes as errno 1 whatever the cause.
    with pytest.raises(BreakpointRefused) as read_watch:
        client.watch(jiffies, 8, kind="read")
    assert read_watch.value.errno == 1 and read_watch.value.reply == b"E01"
    watches = [client.watch(jiffies + offset, 1) for offset in range(4)]
    with pytest.raises(BreakpointRefused):
        client.insert_breakpoint(image.address_of("do_fork"), kind="hardware")
    for watch in watches:
        client.remove_breakpoint(watch)


def test_kgdb_stop_reply_has_the_thread_and_no_reason(kgdb):
    client, image = kgdb
    client.request(b"?")
    assert client.request(b"Z2,%x,8" % image.address_of("total_forks")) == b"OK"
    reply = client.request(b"c")
    assert re.fullmatch(rb"T05thread:[0-9a-f]{8};", reply), reply
    assert client.request(b"?") == b"S05"
    assert client.request(b"Z2,%x,8" % image.address_of("total_forks")) == b"OK"
    stop = client.resume()
    assert (stop.signal, stop.reason, stop.address, stop.cpu, stop.registers) == (5, None, None, None, {})
    assert stop.thread is not None
    client.request(b"?")


def test_kgdb_errors_are_decimal_errno(kgdb):
    client, _ = kgdb
    assert client.request(b"m0,8") == b"E14"
    assert client.request(b"mzz,8") == b"E22"
    assert client.request(b"vMustReplyEmpty") == b""
    with pytest.raises(RemoteError) as bad_address:
        client.read_memory(0, 8)
    assert bad_address.value.errno == errno.EFAULT


def test_kgdb_has_no_host_io_so_symbols_come_from_the_given_elf(kgdb):
    client, image = kgdb
    with pytest.raises(Unsupported):
        client.exec_file()
    assert client.symbol("do_fork") == image.address_of("do_fork")
