"""The thread list in one reply (`qXfer:threads:read`, modern only).

gdb refreshes its thread list at every stop it shows (infrun.c, normal_stop:
update_thread_list), with qXfer:threads:read when the stub offers it
(remote.c, remote_target::update_thread_list tries it first). Each
<thread> element's `id` is read as a thread id (start_thread: read_ptid)
and its text becomes the thread's extra info (end_thread), which
remote_target::extra_thread_info then answers instead of asking
qThreadExtraInfo. So the document must list exactly the threads that
qfThreadInfo lists, each with the text qThreadExtraInfo gives.
"""
import xml.etree.ElementTree as ElementTree

import pytest

from kgdbstub.core.debugger import Debugger
from kgdbstub.gdbstub.dialects import KGDB, MODERN
from kgdbstub.gdbstub.session import Session
from kgdbstub.kernel.hostif import CLONE_USER
from kgdbstub.kernel.image import Image
from kgdbstub.kernel.kernel import Kernel
from kgdbstub.targets import resolve

GDB_OFFER = b"qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+;xmlRegisters=i386"


@pytest.fixture(scope="module")
def stopped():
    kernel = Kernel(Image(resolve("minikernel")), cpus=2)
    debugger = Debugger(kernel)
    debugger.late_init()
    debugger.resume()
    looper_main = kernel.image.address_of("looper_main")
    # A name with markup in it and a character XML cannot carry.
    assert kernel.clone(looper_main, 0, "a<b>&c\x01", CLONE_USER) > 0
    return kernel, debugger


def listed_by_qfthreadinfo(session: Session) -> list[bytes]:
    ids, reply = [], session.handle(b"qfThreadInfo").payload
    while reply != b"l":
        ids += reply[1:].split(b",")
        reply = session.handle(b"qsThreadInfo").payload
    return ids


def read_whole(session: Session, length: int) -> bytes:
    document, offset = b"", 0
    while True:
        reply = session.handle(b"qXfer:threads:read::%x,%x" % (offset, length)).payload
        assert reply[:1] in (b"m", b"l"), reply
        document += reply[1:]
        offset += len(reply) - 1
        if reply[:1] == b"l":
            return document


def test_the_document_lists_qfthreadinfo_threads_with_qthreadextrainfo_names(stopped):
    _, debugger = stopped
    session = Session(debugger, MODERN)
    assert b"qXfer:threads:read+" in session.handle(GDB_OFFER).payload.split(b";")
    root = ElementTree.fromstring(read_whole(session, 0x3FFF))
    assert root.tag == "threads"
    ids = [element.get("id").encode() for element in root]
    assert ids == listed_by_qfthreadinfo(session)
    for element in root:
        extra = bytes.fromhex(session.handle(b"qThreadExtraInfo," + element.get("id").encode()).payload.decode())
        text = element.text.replace("\\x01", "\x01")  # what XML cannot carry comes as \xNN
        assert text.encode() == extra, element.get("id")
    assert "a<b>&c\\x01" in [element.text for element in root]


def test_a_document_read_in_pieces_is_the_one_made_at_offset_zero(stopped):
    kernel, debugger = stopped
    session = Session(debugger, MODERN)
    first = session.handle(b"qXfer:threads:read::0,20").payload
    assert first.startswith(b"m") and len(first) == 0x21
    # A task that appears between two pieces waits for the next reading.
    kernel.clone(kernel.image.address_of("looper_main"), 0, "latecomer", CLONE_USER)
    document, offset = first[1:], 0x20
    while (reply := session.handle(b"qXfer:threads:read::%x,20" % offset).payload)[:1] == b"m":
        document, offset = document + reply[1:], offset + 0x20
    document += reply[1:]
    assert [e.text for e in ElementTree.fromstring(document)].count("latecomer") == 0
    assert [e.text for e in ElementTree.fromstring(read_whole(session, 0x3FFF))].count("latecomer") == 1


def test_an_unknown_annex_is_refused_and_kgdb_has_no_such_packet(stopped):
    _, debugger = stopped
    modern = Session(debugger, MODERN)
    assert modern.handle(b"qXfer:threads:read:other:0,10").payload == b"E00"
    kgdb = KGDB.session(debugger, KGDB)
    assert kgdb.handle(GDB_OFFER).payload == b""  # kgdb's qSupported is empty
    assert kgdb.handle(b"qXfer:threads:read::0,fff").payload == b""


def test_a_task_renamed_between_two_readings_shows_its_new_name(stopped):
    """Names are escaped once and kept: the document still follows each task's name as it is now."""
    kernel, debugger = stopped
    session = Session(debugger, MODERN)
    pid = kernel.clone(kernel.image.address_of("looper_main"), 0, "before&", CLONE_USER)
    names = lambda: [e.text for e in ElementTree.fromstring(read_whole(session, 0x3FFF))]  # noqa: E731
    assert "before&" in names()
    task = debugger.task_of(pid)
    task.comm = "after<"
    assert "after<" in names() and "before&" not in names()
    task.comm = "before&"
    assert names().count("before&") == 1
