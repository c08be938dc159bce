"""Checksums, escapes and run-length encoding, on bytes alone."""

import pytest

from kgdbstub.rsp import checksum, encode_frame
from kgdbstub.rsp.framing import MalformedBody, compress_run, decode_body, encode_body

# What gdb 13 sends first, as seen in real packet traces: ...#77.
GDB13_QSUPPORTED = (
    b"qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;"
    b"vfork-events+;exec-events+;vContSupported+;QThreadEvents+;no-resumed+;"
    b"memory-tagging+;xmlRegisters=i386"
)

ESCAPES = [(b"$", b"}\x04"), (b"#", b"}\x03"), (b"}", b"}]"), (b"*", b"}\x0a")]


def repeat_counts(wire):
    """The count after each '*' of a body without escapes."""
    counts = []
    at = wire.find(b"*")
    while at >= 0:
        counts.append(wire[at + 1])
        at = wire.find(b"*", at + 2)
    return counts


@pytest.mark.parametrize(
    "body, expected",
    [(b"", 0x00), (b"OK", 0x9A), (b"g", 0x67), (b"QStartNoAckMode", 0xB0), (GDB13_QSUPPORTED, 0x77)],
)
def test_checksum_of_known_packets(body, expected):
    assert checksum(body) == expected


def test_checksum_wraps_modulo_256():
    assert checksum(b"\xff\x02") == 0x01


def test_frames_of_known_packets():
    assert encode_frame(b"OK") == b"$OK#9a"
    assert encode_frame(b"g") == b"$g#67"
    assert encode_frame(b"") == b"$#00"
    assert encode_frame(GDB13_QSUPPORTED) == b"$" + GDB13_QSUPPORTED + b"#77"


def test_checksum_digits_are_lower_case():
    assert encode_frame(b"\xfe\x0f") == b"$\xfe\x0f#0d"
    assert encode_frame(b"\xfa") == b"$\xfa#fa"


@pytest.mark.parametrize("special, escaped", ESCAPES)
def test_special_bytes_are_escaped(special, escaped):
    for run_length_encode in (False, True):
        assert encode_body(b"a" + special + b"b", run_length_encode) == b"a" + escaped + b"b"


@pytest.mark.parametrize("special, escaped", ESCAPES)
def test_escapes_are_undone(special, escaped):
    assert decode_body(b"a" + escaped + b"b") == b"a" + special + b"b"


def test_no_other_byte_is_escaped():
    ordinary = bytes(byte for byte in range(256) if byte not in b"$#}*")
    assert encode_body(ordinary, False) == ordinary
    assert encode_body(ordinary, True) == ordinary
    assert decode_body(ordinary) == ordinary


def test_checksum_is_over_the_escaped_bytes_as_on_the_wire():
    # '}' is sent as '}' ']': 0x7d + 0x5d = 0xda; the payload's own sum would be 0x7d.
    assert encode_frame(b"}", False) == b"$}]#da"


def test_any_escaped_byte_is_accepted():
    assert decode_body(b"}a}\x00") == b"A "


def test_the_byte_after_an_escape_is_never_special():
    assert decode_body(b"}}") == b"]"
    assert decode_body(b"}*") == b"\x0a"


def test_escaped_star_is_a_literal_star_not_a_repeat():
    assert decode_body(b"0* ") == b"0000"
    assert decode_body(b"0}\x0a ") == b"0* "


def test_run_of_four_is_compressed():
    assert encode_body(b"0000") == b"0* "
    assert decode_body(b"0* ") == b"0000"


def test_runs_of_any_ordinary_byte_are_compressed():
    for byte in bytes(range(256)).translate(None, b"$#}*"):
        assert encode_body(bytes([byte]) * 4) == bytes([byte, *b"* "]), byte


@pytest.mark.parametrize("length", [1, 2, 3])
def test_runs_shorter_than_four_are_left_alone(length):
    assert encode_body(b"0" * length) == b"0" * length


def test_runs_are_left_alone_when_run_length_encoding_is_off():
    assert encode_body(b"00000000", False) == b"00000000"


@pytest.mark.parametrize(
    "length, wire",
    [
        (6, b'0*"'),  # 5 more copies: count '"' (34)
        (7, b'0*"0'),  # 6 more would be count '#' (35)
        (8, b'0*"00'),  # 7 more would be count '$' (36)
        (9, b"0*%"),  # 8 more: count '%' (37)
        (98, b"0*~"),  # 97 more: the largest count
        (99, b"0*~0"),
        (102, b"0*~0* "),
        (3 * 98 + 7, b"0*~0*~0*~0*\"0"),  # whole counts first, then the rest as above
    ],
)
def test_run_lengths_that_need_care(length, wire):
    assert compress_run(b"0", length) == wire
    assert encode_body(b"0" * length) == wire
    assert decode_body(wire) == b"0" * length


def test_every_run_length_round_trips_without_unusable_counts():
    for length in range(1, 400):
        wire = encode_body(b"x" * length)
        assert b"#" not in wire and b"$" not in wire, length
        assert all(ord(" ") <= count <= ord("~") for count in repeat_counts(wire)), length
        if length >= 4:
            assert len(wire) < length, length
        assert decode_body(wire) == b"x" * length, length


@pytest.mark.parametrize("special, escaped", ESCAPES)
def test_runs_of_bytes_that_need_escaping_are_not_compressed(special, escaped):
    assert encode_body(special * 6) == escaped * 6


def test_run_right_after_an_escape_repeats_the_plain_byte():
    # '}' ']' is the escape for '}'; the four ']' after it are a run of their own.
    wire = encode_body(b"}]]]]")
    assert wire == b"}]]* "
    assert decode_body(wire) == b"}]]]]"


def test_runs_inside_a_payload():
    payload = b"T0506:0000000000000000;07:" + b"f" * 10 + b";"
    wire = encode_body(payload)
    assert wire == b"T0506:0*,;07:f*&;"
    assert decode_body(wire) == payload


@pytest.mark.parametrize("count", range(ord(" "), ord("~") + 1))
def test_every_printable_count_expands(count):
    assert decode_body(b"a*" + bytes([count]) + b"b") == b"a" * (count - 28) + b"b"


def test_repeat_copies_the_byte_before_it_as_decoded():
    assert decode_body(b"}]* ") == b"}}}}"


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"abc}", "escape"),
        (b"}", "escape"),
        (b"*!", "run-length"),  # nothing to repeat
        (b"a*", "run-length"),  # no count
        (b"a*\x1f", "run-length"),  # count below ' '
        (b"a*\x7f", "run-length"),  # count above '~'
        (b"a*\xff", "run-length"),
    ],
)
def test_malformed_bodies_are_refused(body, reason):
    with pytest.raises(MalformedBody) as refused:
        decode_body(body)
    assert refused.value.reason == reason


def test_a_remembered_frame_is_the_frame_of_its_own_payload():
    """Short frames are kept for reuse: each payload still gets exactly its own frame,
    with and without run-length encoding, whatever was framed before it."""
    from kgdbstub.rsp import framing

    payloads = [b"0200000000000000", b"0300000000000000", b"OK", b"*#}$", b"x" * framing.REMEMBERED_PAYLOAD,
                b"7" * (framing.REMEMBERED_PAYLOAD + 1)]
    for _ in range(2):
        for payload in payloads:
            for rle in (True, False):
                assert encode_frame(payload, rle) == framing._frame(payload, rle)
                assert decode_body(encode_frame(payload, rle)[1:-3]) == payload
    assert encode_frame(b"0000", True) != encode_frame(b"0000", False)  # the choice is part of the key


def test_remembered_frames_are_bounded():
    from kgdbstub.rsp import framing

    for n in range(framing.REMEMBERED_FRAMES * 2):
        encode_frame(b"%x" % n)
    assert framing._remembered_frame.cache_info().currsize <= framing.REMEMBERED_FRAMES
    assert encode_frame(b"%x" % 0) == b"$0#30"


def test_payloads_that_can_change_are_framed_afresh():
    data = bytearray(b"1111")
    first = encode_frame(data)
    data[:] = b"2222"
    assert encode_frame(data) == encode_frame(b"2222") != first
