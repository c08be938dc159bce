"""LLDB's stop-reply fields stay within the packet size the stub advertises."""
from kgdbstub.core.debugger import Debugger
from kgdbstub.gdbstub.actions import PACKET_SIZE
from kgdbstub.gdbstub.dialects import MODERN
from kgdbstub.gdbstub.session import Session
from kgdbstub.kernel import layout
from kgdbstub.kernel.hostif import CLONE_USER
from kgdbstub.kernel.kernel import Kernel


def stopped_session(tasks: int) -> tuple[Session, object]:
    from kgdbstub.kernel.image import Image
    from kgdbstub.targets import resolve

    kernel = Kernel(Image(resolve("minikernel")), cpus=8)
    debugger = Debugger(kernel)
    debugger.late_init()
    stop = debugger.resume()
    entry = kernel.image.address_of("looper_main")
    while len(kernel.tasks) < tasks:
        assert kernel.clone(entry, 0, "filler", CLONE_USER) > 0
    session = Session(debugger, MODERN)
    session.handle(b"QListThreadsInStopReply")
    return session, stop


def test_with_few_threads_every_field_is_there():
    session, stop = stopped_session(2)
    reply = session.stop_reply(stop)
    assert b"threads:" in reply and b"jstopinfo:" in reply and b"memory:" in reply


def test_with_every_task_slot_taken_the_reply_still_fits():
    session, stop = stopped_session(layout.MAX_TASKS - 8)
    reply = session.stop_reply(stop)
    assert len(reply) <= PACKET_SIZE
    assert reply.count(b"threads:") == 1
