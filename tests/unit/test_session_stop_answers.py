"""What a stop reply carries, and answers kept for the length of a stop, are what gdb would read.

- The registers a modern stop reply expedites (rbp, rsp, rip: gdb takes
  them from the reply instead of asking, remote.c's process_stop_reply
  supplies them to the regcache) have the values `g` and `p` give.
- A memory read asked again within one stop is answered as before without
  reading the machine again, until anything that may change memory comes:
  a write, a resume, a monitor command.
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
    # Reads, thread queries and breakpoints between two reads change no memory.
    for packet in (b"qXfer:threads:read::0,fff", b"qfThreadInfo", b"qsThreadInfo", b"g", b"p10",
                   b"Z2,%x,8" % kernel.image.address_of("total_forks"),
                   b"z2,%x,8" % kernel.image.address_of("total_forks"), b"m0,1"):
        session.handle(packet)
    assert session.handle(jiffies) == first
    assert reads.count == 2  # jiffies once, m0,1 once


@pytest.mark.parametrize("change", ["M", "X", "resume", "monitor"])
def test_a_write_a_resume_or_a_monitor_command_makes_the_next_read_read_again(stopped, change):
    kernel, debugger, session = stopped
    address = kernel.image.address_of("jiffies")
    read = b"m%x,8" % address
    before = session.handle(read).payload
    if change == "M":
        assert session.handle(b"M%x,8:%s" % (address, b"11" * 8)).payload == b"OK"
    elif change == "X":
        assert session.handle(b"X%x,8:" % address + b"\x22" * 8).payload == b"OK"
    elif change == "resume":
        session.handle(b"Z2,%x,8" % address)
        resume(session)  # until the timer tick writes jiffies
    else:
        kernel.write(address, b"\x33" * 8)  # as a monitor command could
        assert isinstance(session.handle(b"qRcmd,%s" % b"help".hex().encode()), Reply)
    after = session.handle(read).payload
    assert after == kernel.read(address, 8).hex().encode()
    assert after != before


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
