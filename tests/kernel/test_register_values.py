"""Any value in any register, through `P` and `G`, in both dialects.

A value the machine cannot hold (a segment selector with no descriptor
behind it: gdb's `set $fs = 8`) is refused with E22 and changes nothing;
every other value is taken, as the CPU holds it. Neither a refused nor an accepted value may
raise out of the session or out of the machine when it runs or steps
afterwards: a register value must never end the stub.
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_harness import Machine

from kgdbstub.gdbstub.actions import Reply
from kgdbstub.gdbstub.dialects import DIALECTS
from kgdbstub.rsp import decode_hex, encode_hex
from kgdbstub.x86 import registers

pytestmark = pytest.mark.timeout(300)

# Register numbers past the end of both layouts too: kgdb reaches fs, gs
# and orig_rax (0x39) with `p` and `P` alone.
NUMBERS = range(0x40)


@pytest.fixture(scope="module")
def machine():
    return Machine()


def whole_state(session) -> bytes:
    """Every register of the task that stopped (which P and G write), segment bases included."""
    debugger = session.debugger
    return registers.encode(debugger.kernel.current[debugger.stop.cpu].regs, registers.MODERN)


def register_size(session, number: int) -> int:
    reply = session.handle(b"p%x" % number).payload
    return 8 if reply.startswith(b"E") else len(reply) // 2


def odd_values(size: int):
    top = (1 << (8 * size)) - 1
    return st.one_of(st.sampled_from([0, top, 1, 3, 8, 0x10, 0x2b, 0x33, 0xFFFF, 0x8000_0000_0000_0000 & top]),
                     st.integers(0, top))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dialect=st.sampled_from(sorted(DIALECTS)), number=st.sampled_from(NUMBERS), data=st.data())
def test_a_register_write_is_taken_or_refused_with_nothing_changed(machine, dialect, number, data):
    session = DIALECTS[dialect].session(machine.debugger, DIALECTS[dialect])
    size = register_size(session, number)
    value = data.draw(odd_values(size), label="value")
    before = whole_state(session)
    reply = session.handle(b"P%x=%s" % (number, encode_hex(value.to_bytes(size, "little"))))
    assert isinstance(reply, Reply) and reply.payload in (b"OK", b"E22"), reply
    if reply.payload == b"E22":
        assert whole_state(session) == before, "a refused write changed nothing"
    elif dialect == "modern" and size >= 8:
        # What gdb sends as 32 bits is often narrower in the CPU (selectors,
        # the x87 control words) or has fixed bits (eflags bit 1), as on
        # hardware; the 64-bit and wider registers hold any value exactly.
        assert decode_hex(session.handle(b"p%x" % number).payload) == value.to_bytes(size, "little")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dialect=st.sampled_from(sorted(DIALECTS)), data=st.data())
def test_a_whole_register_write_is_taken_or_refused_as_a_whole(machine, dialect, data):
    session = DIALECTS[dialect].session(machine.debugger, DIALECTS[dialect])
    size = len(session.handle(b"g").payload) // 2
    layout = session.dialect.layout
    if registers.layout_size(layout) == size:
        values = [data.draw(odd_values(r.size), label=r.name).to_bytes(r.size, "little") for r in layout]
        payload = b"".join(values)
    else:  # a layout of the dialect's own making: any bytes of the right size
        payload = data.draw(st.binary(min_size=size, max_size=size))
    before = whole_state(session)
    reply = session.handle(b"G" + encode_hex(payload))
    assert isinstance(reply, Reply) and reply.payload in (b"OK", b"E22"), reply
    if reply.payload == b"E22":
        assert whole_state(session) == before, "a refused G changed nothing, not even the registers before the bad one"
    elif dialect == "modern":
        read = decode_hex(session.handle(b"g").payload)
        offset = 0
        for register in layout:
            if register.size >= 8:
                assert read[offset : offset + register.size] == payload[offset : offset + register.size], register
            offset += register.size


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_gdb_set_fs_8_is_refused_and_the_session_goes_on(dialect):
    """gdb's `set $fs = 8` (P16=08000000), and all ones in fs and gs."""
    machine = Machine(dialect=dialect)
    session = machine.session()
    before = whole_state(session)
    for packet in (b"P16=08000000", b"P16=ffffffff", b"P17=ffffffff"):
        assert session.handle(packet).payload in (b"OK", b"E22"), packet
        assert whole_state(session) == before, packet
    g = session.handle(b"g").payload
    if dialect == "modern":
        fs = sum(r.size for r in registers.MODERN[: registers.index_of(registers.MODERN, "fs")])
        bad = bytearray(decode_hex(g))
        bad[0] ^= 0xFF  # rax changes first, then fs cannot: neither may stay
        bad[fs : fs + 4] = (8).to_bytes(4, "little")
        assert session.handle(b"G" + encode_hex(bytes(bad))).payload == b"E22"
        assert whole_state(session) == before
    assert session.handle(b"g").payload == g


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_the_machine_runs_and_steps_with_any_register_value(dialect):
    """After each write the machine steps and runs; every resume ends in a stop, nothing raises."""
    layout = DIALECTS[dialect].layout
    for number, register in enumerate(layout):
        machine = Machine(dialect=dialect)
        session = machine.session()
        top = (1 << (8 * register.size)) - 1
        for value in (0, top, 0x5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A & top, 8):
            session.handle(b"P%x=%s" % (number, encode_hex(value.to_bytes(register.size, "little"))))
            machine.debugger.resume(step=True)
            machine.resume(limit=3, expect_stop=False)
