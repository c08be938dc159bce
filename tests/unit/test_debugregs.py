import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kgdbstub.x86.debugregs import DR7_ALWAYS_ONE, Access, DebugRegisters, check_slot


def test_install_encodes_dr7_as_the_manual_says():
    regs = DebugRegisters()
    regs.install(1, 0x1000, Access.WRITE, 4)  # slot 1: G1 = bit 3, RW=01, LEN=11 at bits 20-23
    assert regs.dr7 == DR7_ALWAYS_ONE | (1 << 3) | (0b1101 << 20)
    regs.install(3, 0x2008, Access.READ_WRITE, 8)  # LEN 8 is 10
    assert (regs.dr7 >> 28) & 0xF == 0b1011
    assert regs.slot(3).length == 8 and regs.slot(3).access is Access.READ_WRITE


@pytest.mark.parametrize(
    "address, access, length",
    [(0x1001, Access.WRITE, 2), (0x1004, Access.WRITE, 8), (0x1000, Access.EXECUTE, 4),
     (0x1000, Access.IO, 1), (0x1000, Access.WRITE, 3)],
)
def test_linux_refuses_what_it_cannot_program_with_einval(address, access, length):
    with pytest.raises(OSError) as refused:
        check_slot(address, access, length)
    assert refused.value.errno == errno.EINVAL


def test_encodings_dr7_lacks_are_refused_and_change_nothing():
    regs = DebugRegisters()
    regs.install(0, 0x5000, Access.WRITE, 8)
    before = (list(regs.dr), regs.dr7)
    for access, length in ((Access.IO, 1), (Access.WRITE, 3)):
        with pytest.raises(OSError):
            regs.install(0, 0x1000, access, length)
    assert (list(regs.dr), regs.dr7) == before


def test_the_hardware_ignores_address_bits_below_the_length():
    regs = DebugRegisters()
    regs.install(0, 0x1003, Access.WRITE, 4)  # watches 0x1000-0x1003
    assert regs.data_hits(0x1000, 1, write=True) == [0]
    assert regs.data_hits(0x1004, 1, write=True) == []


def test_a_data_slot_matches_any_overlapping_access_even_one_starting_below():
    regs = DebugRegisters()
    regs.install(0, 0x1004, Access.WRITE, 4)
    assert regs.data_hits(0x1000, 8, write=True) == [0]  # starts below, overlaps
    assert regs.data_hits(0x1007, 1, write=True) == [0]
    assert regs.data_hits(0x1008, 4, write=True) == []
    assert regs.data_hits(0x1000, 4, write=True) == []


def test_there_is_no_read_only_slot_reads_match_only_read_write_slots():
    regs = DebugRegisters()
    regs.install(0, 0x1000, Access.WRITE, 8)
    regs.install(1, 0x1000, Access.READ_WRITE, 8)
    assert regs.data_hits(0x1000, 8, write=False) == [1]
    assert regs.data_hits(0x1000, 8, write=True) == [0, 1]


def test_execute_slots_match_their_address_only_when_enabled():
    regs = DebugRegisters()
    regs.install(2, 0x400123, Access.EXECUTE, 1)
    assert regs.execute_hits(0x400123) == [2]
    assert regs.execute_hits(0x400124) == []
    regs.clear(2)
    assert regs.execute_hits(0x400123) == []


def test_dr6_reports_every_slot_that_matched():
    regs = DebugRegisters()
    regs.report(0b0101)
    assert regs.dr6 & 0xF == 0b0101


def test_dr7_bit_10_always_reads_one():
    regs = DebugRegisters()
    regs.write_dr7(0)
    assert regs.dr7 == DR7_ALWAYS_ONE


@given(st.integers(0, 3), st.sampled_from([1, 2, 4, 8]), st.sampled_from([Access.WRITE, Access.READ_WRITE]),
       st.integers(0, 2**20))
def test_encoding_round_trips(index, length, access, base):
    regs = DebugRegisters()
    address = base * length
    regs.install(index, address, access, length)
    slot = regs.slot(index)
    assert (slot.address, slot.access, slot.length, slot.enabled) == (address, access, length, True)
