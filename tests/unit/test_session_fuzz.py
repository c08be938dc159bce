"""The session never raises on any packet and answers every one (issue: robustness)."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgdbstub import targets
from kgdbstub.core.debugger import Debugger
from kgdbstub.kernel.image import Image
from kgdbstub.kernel.kernel import Kernel
from kgdbstub.gdbstub.actions import Detach, NoReply, Reply, Resume
from kgdbstub.gdbstub.dialects import DIALECTS
from kgdbstub.gdbstub.session import Session


@pytest.fixture(scope="module")
def machine():
    kernel = Kernel(Image(targets.resolve("minikernel")), cpus=2)
    debugger = Debugger(kernel)
    debugger.resume()
    return kernel, debugger


COMMANDS = [b"?", b"g", b"G", b"p", b"P", b"m", b"M", b"X", b"H", b"T", b"Z", b"z", b"q", b"Q", b"v", b"c", b"s",
            b"D", b"k", b"qRcmd,", b"qXfer:features:read:", b"qThreadExtraInfo,", b"vCont;", b"Hg", b"Z1,", b"Z2,",
            b"z3,", b"Z4,", b"qSupported:"]
NUMBERS = st.one_of(st.integers(0, 2**64 - 1), st.integers(-5, 5)).map(lambda n: b"%x" % n if n >= 0 else b"%d" % n)
ARGUMENT = st.one_of(NUMBERS, st.binary(max_size=12), st.sampled_from([b"ffffffff81002000", b"8", b",", b":", b";", b"=", b"-1"]))
PAYLOAD = st.builds(lambda head, parts: head + b"".join(parts), st.sampled_from(COMMANDS), st.lists(ARGUMENT, max_size=6))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(DIALECTS)), st.lists(PAYLOAD, min_size=1, max_size=8))
def test_any_packet_gets_an_answer_and_nothing_raises(machine, dialect, payloads):
    kernel, debugger = machine
    before = kernel.accounting.snapshot()
    session = DIALECTS[dialect].session(debugger, DIALECTS[dialect], monitor=lambda line: "ok\n")
    for payload in payloads:
        action = session.handle(payload)
        assert isinstance(action, (Reply, Resume, Detach, NoReply))
        if isinstance(action, Reply):
            assert isinstance(action.payload, bytes)
    debugger.detach()
    assert kernel.accounting.snapshot() == before, "nothing a session took is left behind"


def test_a_huge_watch_region_is_refused_at_once(machine):
    _, debugger = machine
    session = Session(debugger, DIALECTS["modern"])
    assert session.handle(b"Z2,ffffffff81002000,ffffffffffff").payload == b"E28"
    assert session.handle(b"Z2,ffffffff81002000,21").payload == b"E28"  # 33 bytes: more than four slots hold
    assert session.handle(b"Z2,ffffffff81002000,20").payload == b"OK"  # 32 bytes: four 8-byte pieces
    assert session.handle(b"z2,ffffffff81002000,20").payload == b"OK"


def test_an_empty_memory_write_is_answered_ok(machine):
    _, debugger = machine
    session = Session(debugger, DIALECTS["modern"])
    assert session.handle(b"Mffffffff81002000,0:").payload == b"OK"
    assert session.handle(b"Xffffffff81002000,0:").payload == b"OK"


def test_the_fuzz_program_runs_clean_for_a_few_seconds():
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[2] / "tools" / "fuzz.py"
    done = subprocess.run([sys.executable, str(tool), "--seconds", "3", "--seed", "7"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "violations 0" in done.stdout


def test_a_kgdb_write_longer_than_its_buffer_holds_is_refused_at_once_and_writes_nothing():
    # Linux would take the data from past remcom_in_buffer (BUFMAX 1024); nothing to copy.
    kernel = Kernel(Image(targets.resolve("minikernel")), cpus=2)
    debugger = Debugger(kernel, **DIALECTS["kgdb"].core)
    debugger.resume()
    session = DIALECTS["kgdb"].session(debugger, DIALECTS["kgdb"])
    jiffies = kernel.image.address_of("jiffies")
    before = kernel.read(jiffies, 0x1000)
    for packet in (b"M%x,7fffffff:00" % jiffies, b"X%x,7fffffff:\x01" % jiffies, b"M%x,200:00" % jiffies):
        assert session.handle(packet).payload == b"E22", packet
    assert kernel.read(jiffies, 0x1000) == before
    assert session.handle(b"M%x,1:07" % jiffies).payload == b"OK"  # within it: written
    assert kernel.read(jiffies, 1) == b"\x07"
