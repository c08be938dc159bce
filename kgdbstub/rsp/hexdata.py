"""Hex text as RSP uses it for memory, registers and console output."""

import binascii


def encode_hex(data: bytes) -> bytes:
    """Two lower-case ASCII hex digits per byte."""
    return binascii.hexlify(data)


def decode_hex(text: bytes) -> bytes:
    """The bytes that `text` spells in hex, digits of either case.

    Raises ValueError for an odd number of digits or anything that is not a
    hex digit, whitespace included: a peer that sends those is broken, and
    guessing what it meant would hide it.
    """
    return binascii.unhexlify(text)
