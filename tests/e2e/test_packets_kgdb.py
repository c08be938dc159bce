"""The `kgdb` dialect answers as Linux's x86 kgdb does (FACTS.md §3), byte for byte."""
import re

import pytest

from gdbtools import start_server
from kgdbstub.kernel.image import Image
from rawclient import RawClient

GDB_OFFER = (b"qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;vfork-events+;"
             b"exec-events+;vContSupported+;QThreadEvents+;no-resumed+;memory-tagging+;xmlRegisters=i386")


@pytest.fixture(scope="module")
def kgdb():
    with start_server("--dialect", "kgdb") as server:
        image = Image(server.elf)
        with RawClient(server.host, server.port) as client:
            yield client, image


def test_kgdb_answers_qsupported_with_nothing_and_status_with_s05(kgdb):
    client, _ = kgdb
    assert client.request(GDB_OFFER) == b""
    assert client.request(b"?") == b"S05"
    assert client.request(b"QStartNoAckMode") == b""


def test_kgdb_register_layout_is_17_quads_and_7_longs(kgdb):
    client, _ = kgdb
    registers = client.request(b"g")
    assert len(registers) == 2 * (17 * 8 + 7 * 4)
    rip = int.from_bytes(bytes.fromhex(registers[16 * 16 : 17 * 16].decode()), "little")
    assert rip >= 0xFFFFFFFF80000000


def test_kgdb_threads_shadows_first_then_pids(kgdb):
    client, _ = kgdb
    first = client.request(b"qfThreadInfo")
    assert first.startswith(b"mfffffffe,fffffffd,00000001,00000002")
    assert client.request(b"qsThreadInfo") == b"l"
    assert bytes.fromhex(client.request(b"qThreadExtraInfo,fffffffe").decode()) == b"shadowCPU0"
    assert bytes.fromhex(client.request(b"qThreadExtraInfo,1").decode()) == b"init"


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


def test_kgdb_stop_reply_has_the_thread_and_no_reason(kgdb):
    client, image = kgdb
    client.request(b"?")
    assert client.request(b"Z2,%x,8" % image.address_of("total_forks")) == b"OK"
    reply = client.request(b"c")
    assert re.fullmatch(rb"T05thread:[0-9a-f]{8};", reply), reply
    assert client.request(b"?") == b"S05"


def test_kgdb_errors_are_decimal_errno(kgdb):
    client, _ = kgdb
    assert client.request(b"m0,8") == b"E14"
    assert client.request(b"mzz,8") == b"E22"
    assert client.request(b"vMustReplyEmpty") == b""
