"""What a stop reply carries, and answers kept for the length of a stop, are what gdb would read.

- The registers a modern stop reply expedites (rbp, rsp, rip: gdb takes
  them from the reply instead of asking, remote.c's process_stop_reply
  supplies them to the regcache) have the values `g` and `p` give.
- A memory read asked again within one stop is answered as before without
  reading the machine again, until a packet other than a query comes: a
  write, a breakpoint inserted or removed, a register written, a resume, a
  monitor command. Every answer is byte for byte the one an uncached read
  gives at that point.
"""
import pytest

from kgdbstub.core.debugger import Debugger
from kgdbstub.gdbstub.actions import Reply, Resume
from kgdbstub.gdbstub.dialects import MODERN
from kgdbstub.gdbstub.session import MEMORY_ANSWERS, Session
from kgdbstub.kernel.image import Image
from kgdbstub.kernel.kernel import Kernel
from kgdbstub.targets import resolve
from kgdbstub.x86 import registers


@pytest.fixture
def stopped():
    kernel = Kernel(Image(resolve("minikernel")), cpus=2)
    debugger = Debugger(kernel)
    debugger.late_init()
    debugger.resume()
    debugger.attach()
    session = Session(debugger, MODERN, monitor=lambda command: "done\n")
    session.handle(b"qSupported:swbreak+;hwbreak+")
    return kernel, debugger, session


def resume(session: Session, packet: bytes = b"vCont;c") -> bytes:
    """What the server does with a resume: run the machine, then the stop reply."""
    action = session.handle(packet)
    assert isinstance(action, Resume)
    debugger = session.debugger
    with debugger.resumed(step=action.step, cpu=action.cpu, address=action.address, thread=action.thread) as run:
        return session.stop_reply(run())


def fields(reply: bytes) -> dict[bytes, bytes]:
    return dict(field.split(b":", 1) for field in reply[3:].split(b";") if field)


def test_expedited_registers_are_what_g_and_p_read(stopped):
    kernel, debugger, session = stopped
    image = kernel.image
    layout = MODERN.layout
    offsets, at = {}, 0
    for number, register in enumerate(layout):
        offsets[number] = (at, register.size)
        at += register.size
    session.handle(b"Z2,%x,8" % image.address_of("total_forks"))
    session.handle(b"Z0,%x,1" % image.address_of("looper_tick"))
    replies = [resume(session) for _ in range(3)] + [resume(session, b"vCont;s")]
    for reply in replies:
        stop = fields(reply)
        everything = bytes.fromhex(session.handle(b"g").payload.decode())
        expedited = [key for key in stop if len(key) == 2 and key.isalnum()]
        assert {int(key, 16) for key in expedited} == {registers.index_of(layout, name)
                                                        for name in registers.EXPEDITED}
        for key in expedited:
            at, size = offsets[int(key, 16)]
            assert stop[key] == everything[at : at + size].hex().encode(), (reply, key)
            assert stop[key] == session.handle(b"p" + key).payload


class CountingReads:
    """The debugger's memory reads, counted."""

    def __init__(self, debugger: Debugger):
        self.count = 0
        read = debugger.read_memory

        def counted(address, length):
            self.count += 1
            return read(address, length)

        debugger.read_memory = counted


def test_a_read_asked_again_within_a_stop_is_answered_without_reading_again(stopped):
    kernel, debugger, session = stopped
    reads = CountingReads(debugger)
    jiffies = b"m%x,8" % kernel.image.address_of("jiffies")
    first = session.handle(jiffies)
    # Queries between two reads change nothing.
    for packet in (b"qXfer:threads:read::0,fff", b"qfThreadInfo", b"qsThreadInfo", b"qC", b"g", b"p10", b"Hg2",
                   b"T2", b"m0,1"):
        session.handle(packet)
    assert session.handle(jiffies) == first
    assert reads.count == 2  # jiffies once, m0,1 once


@pytest.mark.parametrize("change", ["M", "X", "Z0", "z0", "Z2", "P", "G", "resume", "monitor"])
def test_any_packet_but_a_query_makes_the_next_read_read_again(stopped, change):
    kernel, debugger, session = stopped
    address, tick = kernel.image.address_of("jiffies"), kernel.image.address_of("looper_tick")
    read = b"m%x,8" % address
    session.handle(read)
    registers_now = session.handle(b"g").payload
    rip = registers.index_of(MODERN.layout, "rip")
    packets = {
        "M": [b"M%x,8:%s" % (address, b"11" * 8)],
        "X": [b"X%x,8:" % address + b"\x22" * 8],
        "Z0": [b"Z0,%x,1" % tick],
        "z0": [b"Z0,%x,1" % tick, read, b"z0,%x,1" % tick],
        "Z2": [b"Z2,%x,8" % address],
        "P": [b"P%x=%s" % (rip, session.handle(b"p%x" % rip).payload)],
        "G": [b"G" + registers_now],
        "resume": [b"Z2,%x,8" % address, b"vCont;c"],  # until the timer tick writes jiffies
        "monitor": [b"qRcmd,%s" % b"help".hex().encode()],
    }[change]
    if change == "monitor":
        kernel.write(address, b"\x33" * 8)  # as a monitor command could
    for packet in packets:
        if packet.startswith(b"vCont"):
            resume(session, packet)
        else:
            session.handle(packet)
    reads = CountingReads(debugger)
    after = session.handle(read).payload
    assert reads.count == 1, "answered from before the change"
    assert after == kernel.read(address, 8).hex().encode()


def test_every_answer_is_the_one_an_uncached_read_gives(stopped):
    """A stop's packets as gdb and scripts send them, each read checked against a read of the machine."""
    kernel, debugger, session = stopped
    image = kernel.image
    jiffies, tick = image.address_of("jiffies"), image.address_of("looper_tick")
    probes = [b"m%x,8" % jiffies, b"m%x,4" % tick, b"m%x,1" % tick, b"m0,8"]  # m0,8: an error, kept too
    rip = registers.index_of(MODERN.layout, "rip")
    script = [b"Z0,%x,1" % tick, b"z0,%x,1" % tick, b"Z0,%x,1" % tick, b"M%x,2:0102" % (jiffies + 2),
              b"X%x,1:" % jiffies + b"\x7d\x5d", b"Z2,%x,8" % jiffies, b"vCont;c", b"z2,%x,8" % jiffies,
              b"p%x" % rip, b"vCont;s", b"qRcmd,%s" % b"help".hex().encode(), b"vCont;c", b"z0,%x,1" % tick]
    for packet in script:
        if packet.startswith(b"vCont"):
            resume(session, packet)
        else:
            session.handle(packet)
        for _ in range(2):  # the second from the cache
            for probe in probes:
                assert session.handle(probe) == session._handle(probe), (packet, probe)


def test_a_stop_keeps_the_answers_of_its_latest_reads_only(stopped):
    kernel, debugger, session = stopped
    reads = CountingReads(debugger)
    text = kernel.image.address_of("start_kernel")
    packets = [b"m%x,40" % (text + 0x40 * n) for n in range(10 * MEMORY_ANSWERS)]
    answers = [session.handle(packet) for packet in packets]
    assert len(session._memory_answers) == MEMORY_ANSWERS
    assert [session.handle(packet) for packet in packets[-MEMORY_ANSWERS:]] == answers[-MEMORY_ANSWERS:]
    assert reads.count == len(packets)
    assert session.handle(packets[0]) == answers[0]  # read again, and still right
    assert reads.count == len(packets) + 1


class CountingCalls:
    """Calls of a debugger method, counted."""

    def __init__(self, debugger: Debugger, name: str):
        self.count = 0
        method = getattr(debugger, name)

        def counted(*args, **kwargs):
            self.count += 1
            return method(*args, **kwargs)

        setattr(debugger, name, counted)


def test_a_watchpoint_taken_out_and_put_back_with_only_queries_between_stays_as_it_was(stopped):
    """What gdb does at each stop it shows: z2, reads, the thread list, Z2."""
    kernel, debugger, session = stopped
    watched = kernel.image.address_of("looper_iterations")
    assert session.handle(b"Z2,%x,8" % watched).payload == b"OK"
    slots = debugger.slot_table()
    removals, inserts = CountingCalls(debugger, "remove_hardware"), CountingCalls(debugger, "insert_hardware")
    for packet in (b"z2,%x,8" % watched, b"m%x,8" % watched, b"qXfer:threads:read::0,fff", b"g",
                   b"Z2,%x,8" % watched):
        assert not session.handle(packet).payload.startswith(b"E"), packet
    assert (removals.count, inserts.count) == (0, 0)
    assert debugger.slot_table() == slots
    assert b"watch:%x;" % watched in resume(session)


def test_a_held_watchpoint_removal_keeps_the_answers_of_the_stop(stopped):
    """gdb reads the watched value again after its z2 at a stop it shows: the z2 is only held, nothing changed."""
    kernel, debugger, session = stopped
    watched = kernel.image.address_of("looper_iterations")
    session.handle(b"Z2,%x,8" % watched)
    session.handle(b"Z0,%x,1" % kernel.image.address_of("looper_tick"))
    resume(session)
    first = session.handle(b"m%x,8" % watched)
    reads = CountingReads(debugger)
    assert session.handle(b"z2,%x,8" % watched).payload == b"OK"
    assert session.handle(b"m%x,8" % watched) == first
    assert reads.count == 0
    assert session.handle(b"Z2,%x,8" % watched).payload == b"OK"
    assert session.handle(b"m%x,8" % watched) == first == session._handle(b"m%x,8" % watched)
    assert reads.count == 1  # only the uncached read above


@pytest.mark.parametrize("then", [b"?", b"qRcmd,%s" % b"slots".hex().encode(), b"Z2,{address},4", b"Z3,{address},8",
                                  b"z2,{address},8", b"vCont;c"])
def test_a_watchpoint_removal_is_made_before_any_packet_but_a_query(stopped, then):
    kernel, debugger, session = stopped
    watched = kernel.image.address_of("looper_iterations")
    session.handle(b"Z2,%x,8" % watched)
    assert session.handle(b"z2,%x,8" % watched).payload == b"OK"
    session.handle(b"m%x,8" % watched)
    assert debugger.holds_exactly(2, watched, 8)  # not made yet
    packet = then.replace(b"{address}", b"%x" % watched)
    if packet.startswith(b"vCont"):
        session.handle(b"Z0,%x,1" % kernel.image.address_of("looper_tick"))  # somewhere to stop
        assert b"watch:" not in resume(session, packet)
    else:
        reply = session.handle(packet).payload
        if packet.startswith(b"z2"):
            assert reply.startswith(b"E")  # removed already: nothing left to remove
    assert not debugger.holds_exactly(2, watched, 8)


def test_removing_a_watchpoint_that_is_not_there_is_refused_at_once(stopped):
    kernel, debugger, session = stopped
    watched = kernel.image.address_of("looper_iterations")
    assert session.handle(b"z2,%x,8" % watched).payload.startswith(b"E")
    session.handle(b"Z2,%x,8" % watched)
    assert session.handle(b"z2,%x,4" % watched).payload.startswith(b"E")  # another length: not this one
