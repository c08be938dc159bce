"""Hex helpers: lower-case out, either case in, nothing sloppy accepted."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kgdbstub.rsp import decode_hex, encode_hex


def test_encode_hex_is_lower_case_two_digits_per_byte():
    assert encode_hex(b"\x00\x0a\xab\xff") == b"000aabff"


def test_encode_hex_of_nothing_is_nothing():
    assert encode_hex(b"") == b""


def test_decode_hex_accepts_either_case():
    assert decode_hex(b"00aBfF") == b"\x00\xab\xff"


@pytest.mark.parametrize(
    "text", [b"0", b"abc", b"0g", b"zz", b"0 1", b" 01", b"01\n", b"+1", b"0x01", b"\xff\xff"]
)
def test_decode_hex_refuses_odd_length_and_non_hex(text):
    with pytest.raises(ValueError):
        decode_hex(text)


@given(st.binary())
def test_hex_round_trips(data):
    text = encode_hex(data)
    assert len(text) == 2 * len(data)
    assert set(text) <= set(b"0123456789abcdef")
    assert decode_hex(text) == data
    assert decode_hex(text.upper()) == data
