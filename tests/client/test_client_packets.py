"""What the client makes of replies, without a stub."""
import pytest

from kgdbstub.client.packets import (
    KGDB_LAYOUT, Register, error_number, format_thread_id, is_output, is_resume, output_text, parse_stop,
    parse_thread_id, target_registers,
)
from kgdbstub.core import arch_x86
from kgdbstub.x86 import registers
from kgdbstub.x86.tdesc import target_xml


@pytest.mark.parametrize("reply, expected", [
    (b"E14", (14, "")), (b"E01", (1, "")), (b"E22", (22, "")), (b"E0a", (10, "")),
    (b"E.no such task", (None, "no such task")), (b"OK", None), (b"E", None), (b"", None), (b"E1", None),
])
def test_error_replies_carry_errno_in_decimal_as_kgdb_writes_it(reply, expected):
    assert error_number(reply) == expected


def test_console_output_is_o_and_hex_but_never_ok():
    assert is_output(b"O" + b"hello\n".hex().encode()) and output_text(b"O68690a") == "hi\n"
    assert not is_output(b"OK") and not is_output(b"O") and not is_output(b"Oxyz")


@pytest.mark.parametrize("text, thread", [(b"fffffffe", -2), (b"fffffffd", -3), (b"00000001", 1), (b"2", 2),
                                          (b"-1", -1), (b"p1.fffffffe", -2)])
def test_thread_ids_are_kgdbs_signed_numbers(text, thread):
    assert parse_thread_id(text) == thread
    if thread >= 0 or not text.startswith(b"-"):
        assert parse_thread_id(format_thread_id(thread)) == thread


def test_a_modern_stop_reply_gives_reason_address_thread_cpu_and_named_registers():
    layout = target_registers(target_xml().encode())
    stop = parse_stop(b"T05thread:00000002;core:1;06:1000000000000000;07:2000000000000000;"
                      b"10:84000081ffffffff;watch:ffffffff81003000;", layout, "out\n")
    assert (stop.signal, stop.reason, stop.address, stop.thread, stop.cpu) == (5, "watch", 0xFFFFFFFF81003000, 2, 1)
    assert stop.registers == {"rbp": 0x10, "rsp": 0x20, "rip": 0xFFFFFFFF81000084} and stop.pc == 0xFFFFFFFF81000084
    assert stop.output == "out\n" and stop.signal_name == "SIGTRAP"
    breakpoint = parse_stop(b"T05thread:fffffffe;10:6200008100000000;swbreak:;", layout)
    assert (breakpoint.reason, breakpoint.address, breakpoint.thread) == ("swbreak", 0x81000062, -2)


def test_kgdb_stop_replies_and_exits():
    assert parse_stop(b"S05", None).signal == 5
    stop = parse_stop(b"T05thread:00000001;", KGDB_LAYOUT)
    assert (stop.reason, stop.address, stop.cpu, stop.registers, stop.pc) == (None, None, None, {}, None)
    assert parse_stop(b"T0210:0100000000000000;", None).registers == {"10": 1}, "no layout: the stub's numbers"
    assert (parse_stop(b"W00", None).reason, parse_stop(b"X09", None).signal) == ("exited", 9)
    with pytest.raises(ValueError):
        parse_stop(b"OK", None)


def test_resume_packets():
    assert all(is_resume(p) for p in (b"c", b"cffffffff81000000", b"s", b"C05", b"S02", b"vCont;c", b"vCont;s:1"))
    assert not any(is_resume(p) for p in (b"vCont?", b"qC", b"?", b"m0,1", b"D"))


def test_the_target_description_gives_the_g_layout_and_includes_are_followed():
    layout = target_registers(target_xml().encode())
    assert [(r.name, r.size) for r in layout] == [(r.name, r.size) for r in registers.MODERN]
    assert [r.number for r in layout] == list(range(len(layout)))
    top = (b'<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">'
           b'<target xmlns:xi="http://www.w3.org/2001/XInclude"><architecture>i386:x86-64</architecture>'
           b'<xi:include href="core.xml"/><feature name="x"><reg name="extra" bitsize="32" regnum="40"/></feature>'
           b'</target>')
    core = b'<feature name="org.gnu.gdb.i386.core"><reg name="rax" bitsize="64"/><reg name="rbx" bitsize="64"/></feature>'
    assert target_registers(top, {"core.xml": core}.get) == (
        Register("rax", 8, 0), Register("rbx", 8, 1), Register("extra", 4, 40))


def test_kgdbs_layout_is_17_quads_and_5_longs():
    # arch/x86/include/asm/kgdb.h: NUMREGBYTES = 17 * 8 + 5 * 4 (fs and gs only through `p`)
    assert [r.size for r in KGDB_LAYOUT] == [8] * 17 + [4] * 5
    # The stub's own definition, dbg_reg_def up to NUMREGBYTES (fs and gs only through `p`).
    assert [(r.name, r.size) for r in KGDB_LAYOUT] == [(d.name, d.size) for d in arch_x86.DBG_REG_DEF[:22]]
    assert KGDB_LAYOUT[16].name == "rip" and sum(r.size for r in KGDB_LAYOUT) == arch_x86.NUMREGBYTES
