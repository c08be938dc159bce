import pytest

from kgdbstub.kernel import layout
from kgdbstub.x86.memory import AddressSpace, Mapping, MemoryFault


def test_translation_follows_the_mappings():
    space = layout.address_space()
    assert space.translate(0xFFFFFFFF81000123) == 0x1000123
    assert space.translate(0x400010) == 0x4000010
    assert space.translate(layout.kernel_stack_top(1) - 8) == 0x8000000 + 2 * 0x4000 - 8
    assert space.translate(0xFFFF800000000000) is None


def test_pieces_split_at_page_boundaries():
    space = AddressSpace([Mapping("a", 0x10000, 0x1000, 0x2000)])
    assert list(space.pieces(0x10FFE, 4)) == [(0x10FFE, 0x1FFE, 2), (0x11000, 0x2000, 2)]


def test_an_access_past_the_mapping_faults_before_anything_is_done():
    space = AddressSpace([Mapping("a", 0x10000, 0x1000, 0x1000)])
    with pytest.raises(MemoryFault) as fault:
        list(space.pieces(0x10FFE, 4))
    assert fault.value.address == 0x11000


def test_overlapping_mappings_are_refused():
    with pytest.raises(ValueError):
        AddressSpace([Mapping("a", 0x10000, 0, 0x2000), Mapping("b", 0x11000, 0x8000, 0x1000)])
