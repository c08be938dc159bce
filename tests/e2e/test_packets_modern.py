"""The `modern` dialect at the packet level: negotiation, errors, stop replies."""
import re

import pytest

from gdbtools import start_server
from kgdbstub.kernel.image import Image
from rawclient import RawClient

GDB_OFFER = (b"qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;vfork-events+;"
             b"exec-events+;vContSupported+;QThreadEvents+;no-resumed+;memory-tagging+;xmlRegisters=i386")


@pytest.fixture
def modern():
    with start_server() as server:
        with RawClient(server.host, server.port) as client:
            yield client, Image(server.elf)


def test_qsupported_advertises_what_is_implemented_and_only_offered_stop_reasons(modern):
    client, _ = modern
    features = client.request(GDB_OFFER).split(b";")
    assert b"PacketSize=4000" in features
    assert {b"QStartNoAckMode+", b"qXfer:features:read+", b"swbreak+", b"hwbreak+", b"vContSupported+"} <= set(features)
    assert b"swbreak+" not in client.request(b"qSupported:xmlRegisters=i386").split(b";")


def test_no_ack_mode_stops_acknowledgements(modern):
    client, _ = modern
    assert client.request(b"QStartNoAckMode") == b"OK"
    client.codec.start_no_ack_mode()
    client.sock.sendall(b"$g#67")
    reply = client.sock.recv(1)
    assert reply == b"$", "no '+' before the reply in no-ack mode"


def test_target_description_names_the_registers_of_the_g_packet(modern):
    client, _ = modern
    xml = client.request(b"qXfer:features:read:target.xml:0,3fff")
    assert xml.startswith(b"l<?xml")
    registers = re.findall(rb'<reg name="(\w+)" bitsize="(\d+)"', xml)
    assert len(client.request(b"g")) == 2 * sum(int(bits) // 8 for _, bits in registers)


def test_errors_and_unknown_packets(modern):
    client, _ = modern
    assert client.request(b"m0,4") == b"E14"
    assert client.request(b"M0,1:00") == b"E14"
    assert client.request(b"m,") == b"E22"
    assert client.request(b"Gxyz") == b"E22"
    assert client.request(b"Z0,zz,1") == b"E22"
    assert client.request(b"qNoSuchQuery") == b""
    assert client.request(b"Hgfffffff0") == b"E22"


def test_software_breakpoint_stop_reports_the_pc_at_the_breakpoint_with_expedited_registers(modern):
    client, image = modern
    client.request(GDB_OFFER)
    do_fork = image.address_of("do_fork")
    assert client.request(b"Z0,%x,1" % do_fork) == b"OK"
    reply = client.request(b"c")
    fields = dict(f.split(b":", 1) for f in reply[3:].split(b";") if f)
    assert reply.startswith(b"T05") and b"swbreak" in fields
    assert int.from_bytes(bytes.fromhex(fields[b"10"].decode()), "little") == do_fork
    assert {b"06", b"07", b"thread", b"core"} <= set(fields)
    # memory shows the original byte while stopped, not the int3
    assert client.request(b"m%x,1" % do_fork) != b"cc"


def test_hardware_watch_stop_carries_the_watch_reason(modern):
    client, image = modern
    total_forks = image.address_of("total_forks")
    assert client.request(b"Z2,%x,8" % total_forks) == b"OK"
    reply = client.request(b"c")
    assert b"watch:%x;" % total_forks in reply
    before = int.from_bytes(bytes.fromhex(client.request(b"m%x,8" % total_forks).decode()), "little")
    assert client.request(b"c").startswith(b"T05")
    after = int.from_bytes(bytes.fromhex(client.request(b"m%x,8" % total_forks).decode()), "little")
    assert after == before + 1


def test_a_write_alone_does_not_stop_a_read_watch(modern):
    client, image = modern
    jiffies = image.address_of("jiffies")
    do_timer = image.address_of("do_timer")
    assert client.request(b"Z3,%x,8" % jiffies) == b"OK"
    pcs = set()
    for _ in range(3):
        reply = client.request(b"c")
        assert b"rwatch:%x;" % jiffies in reply
        fields = dict(f.split(b":", 1) for f in reply[3:].split(b";") if f)
        pcs.add(int.from_bytes(bytes.fromhex(fields[b"10"].decode()), "little"))
    # Every stop is right after do_timer's load; its store never stops a read watch.
    assert len(pcs) == 1 and do_timer < pcs.pop() < do_timer + 16


def test_interrupt_while_running_stops_with_sigint(modern):
    client, _ = modern
    client.send(b"c")
    client.interrupt()
    assert client.receive().startswith(b"T02")
    client.send(b"c")
    client.interrupt()
    assert client.receive().startswith(b"T02")


def test_an_unaligned_watch_across_two_fields_stops_at_each_store(modern):
    client, image = modern
    last_fork = image.address_of("last_fork")
    assert client.request(b"Z2,%x,8" % (last_fork + 3)) == b"OK"  # bytes 3-7 of pid, 0-2 of nr
    addresses = []
    for _ in range(2):
        reply = client.request(b"c")
        fields = dict(f.split(b":", 1) for f in reply[3:].split(b";") if f)
        addresses.append(int(fields[b"watch"], 16))
    assert all(last_fork + 3 <= a < last_fork + 11 for a in addresses)
    assert addresses[0] < last_fork + 8 <= addresses[1], "one stop per field"
