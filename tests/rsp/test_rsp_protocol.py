"""The state machine, driven with bytes alone."""

import pytest

from kgdbstub.rsp import (
    Ack,
    BadPacket,
    Interrupt,
    Nak,
    Packet,
    ProtocolError,
    RemoteProtocol,
    checksum,
)


def frame_of(body: bytes) -> bytes:
    """A frame with exactly this body, whatever it holds."""
    return b"$%s#%02x" % (body, checksum(body))


def feed(protocol: RemoteProtocol, data: bytes) -> list:
    protocol.receive_data(data)
    return list(protocol.events())


def sent_once(protocol: RemoteProtocol, payload: bytes) -> RemoteProtocol:
    """`protocol` after sending `payload`, with the frame already on the wire."""
    protocol.send_packet(payload)
    protocol.data_to_send()
    return protocol


# Receiving


def test_good_packet_is_delivered_and_acknowledged():
    stub = RemoteProtocol()
    assert feed(stub, b"$OK#9a") == [Packet(b"OK")]
    assert stub.data_to_send() == b"+"


def test_upper_case_checksum_digits_are_accepted():
    stub = RemoteProtocol()
    assert feed(stub, b"$OK#9A") == [Packet(b"OK")]


def test_empty_packet():
    stub = RemoteProtocol()
    assert feed(stub, b"$#00") == [Packet(b"")]


def test_gdb13_qsupported():
    body = (
        b"qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;"
        b"vfork-events+;exec-events+;vContSupported+;QThreadEvents+;no-resumed+;"
        b"memory-tagging+;xmlRegisters=i386"
    )
    stub = RemoteProtocol()
    assert feed(stub, b"+$" + body + b"#77") == [Ack(), Packet(body)]
    assert stub.data_to_send() == b"+"


def test_ack_is_queued_before_the_reply_to_the_packet():
    stub = RemoteProtocol()
    stub.receive_data(b"$g#67")
    assert stub.next_event() == Packet(b"g")
    stub.send_packet(b"00")
    assert stub.data_to_send() == b"+$00#60"


def test_next_event_is_none_until_a_packet_is_complete():
    stub = RemoteProtocol()
    assert stub.next_event() is None
    for byte in b"$OK#9":
        stub.receive_data(bytes([byte]))
        assert stub.next_event() is None
    stub.receive_data(b"a")
    assert stub.next_event() == Packet(b"OK")
    assert stub.next_event() is None


def test_checksum_digits_may_arrive_later():
    stub = RemoteProtocol()
    assert feed(stub, b"$m1000,4#") == []
    assert feed(stub, b"8") == []
    assert feed(stub, b"e") == [Packet(b"m1000,4")]


def test_bad_checksum_is_dropped_and_refused():
    stub = RemoteProtocol()
    assert feed(stub, b"$OK#9b$OK#9a") == [BadPacket("checksum"), Packet(b"OK")]
    assert stub.data_to_send() == b"-+"


@pytest.mark.parametrize("digits", [b"zz", b"9g", b"\x03a", b"+9", b" 9"])
def test_checksum_digits_that_are_not_hex_are_a_bad_checksum(digits):
    stub = RemoteProtocol()
    assert feed(stub, b"$OK#" + digits) == [BadPacket("checksum")]
    assert stub.data_to_send() == b"-"


def test_escapes_in_received_packets_are_undone():
    stub = RemoteProtocol()
    wire = frame_of(b"X1000,4:}\x03}\x04}]}\x0a")
    assert feed(stub, wire) == [Packet(b"X1000,4:#$}*")]


def test_run_length_encoding_in_received_packets_is_expanded():
    stub = RemoteProtocol()
    assert feed(stub, frame_of(b"0* 1}\x0a ")) == [Packet(b"00001* ")]


@pytest.mark.parametrize(
    "body, reason", [(b"X0,1:}", "escape"), (b"*!", "run-length"), (b"a*\x01", "run-length")]
)
def test_malformed_body_is_dropped_and_refused(body, reason):
    stub = RemoteProtocol()
    assert feed(stub, frame_of(body)) == [BadPacket(reason)]
    assert stub.data_to_send() == b"-"


def test_noise_between_packets_is_skipped():
    stub = RemoteProtocol()
    noise = b"\r\n[    0.000000] Linux version 6.1 #1 SMP}*\r\nlogin: 9a#00\r\n"
    assert feed(stub, noise + b"$g#67" + noise) == [Packet(b"g")]
    assert stub.data_to_send() == b"+"


# Interrupts


def test_interrupt_outside_a_packet():
    stub = RemoteProtocol()
    assert feed(stub, b"\x03") == [Interrupt()]
    assert stub.data_to_send() == b""


def test_interrupts_between_packets_keep_their_order():
    stub = RemoteProtocol()
    assert feed(stub, b"$g#67\x03\x03$g#67") == [Packet(b"g"), Interrupt(), Interrupt(), Packet(b"g")]


def test_0x03_inside_a_packet_is_data():
    stub = RemoteProtocol()
    assert feed(stub, frame_of(b"X0,3:a\x03b")) == [Packet(b"X0,3:a\x03b")]


def test_0x03_split_from_its_packet_is_still_data():
    stub = RemoteProtocol()
    assert feed(stub, b"$X0,1:") == []
    assert feed(stub, b"\x03") == []
    assert feed(stub, b"#" + b"%02x" % checksum(b"X0,1:\x03")) == [Packet(b"X0,1:\x03")]


# Truncated and oversized frames


def test_dollar_inside_a_body_starts_a_new_frame():
    stub = RemoteProtocol()
    assert feed(stub, b"$m1000,4$g#67") == [BadPacket("truncated"), Packet(b"g")]
    # No '-' for the cut-short frame: it would make gdb send the $g again.
    assert stub.data_to_send() == b"+"


def test_frame_that_starts_in_the_same_piece_as_a_truncation():
    stub = RemoteProtocol()
    assert feed(stub, b"$m1000,4") == []
    assert feed(stub, b"$g#67") == [BadPacket("truncated"), Packet(b"g")]


@pytest.mark.parametrize("cut", [b"$g#", b"$g#6"])
def test_dollar_in_place_of_checksum_digits_starts_a_new_frame(cut):
    stub = RemoteProtocol()
    assert feed(stub, cut) == []
    assert feed(stub, b"$g#67") == [BadPacket("truncated"), Packet(b"g")]
    assert stub.data_to_send() == b"+"


def test_body_of_exactly_max_packet_size_is_accepted():
    stub = RemoteProtocol(max_packet_size=4)
    assert feed(stub, b"$1234#ca") == [Packet(b"1234")]


def test_an_intact_oversized_frame_is_acknowledged_once_whole_and_the_next_one_decoded():
    stub = RemoteProtocol(max_packet_size=4)
    oversized = frame_of(b"12345")
    assert feed(stub, oversized[:-1]) == []
    assert stub.data_to_send() == b""
    assert feed(stub, oversized[-1:] + b"$OK#9a") == [BadPacket("oversize"), Packet(b"OK")]
    # Acknowledged, so that the peer stops sending it and awaits the answer.
    assert stub.data_to_send() == b"++"


def test_a_damaged_oversized_frame_is_refused_as_a_damaged_one_is():
    stub = RemoteProtocol(max_packet_size=4)
    assert feed(stub, b"$12345#00") == [BadPacket("checksum")]
    assert stub.data_to_send() == b"-"


def test_an_oversized_frame_gets_no_ack_in_no_ack_mode():
    stub = RemoteProtocol(max_packet_size=4)
    stub.start_no_ack_mode()
    assert feed(stub, frame_of(b"123456789") + frame_of(b"g")) == [BadPacket("oversize"), Packet(b"g")]
    assert stub.data_to_send() == b""


def test_max_packet_size_counts_wire_bytes_not_payload_bytes():
    stub = RemoteProtocol(max_packet_size=4)
    assert feed(stub, frame_of(b"0*~")) == [Packet(b"0" * 98)]
    assert feed(stub, frame_of(b"}]}]}]")) == [BadPacket("oversize")]


def test_oversized_frame_is_never_buffered_beyond_the_bound():
    stub = RemoteProtocol(max_packet_size=16)
    events = feed(stub, b"$")
    for _ in range(1000):
        events += feed(stub, b"x")
        assert stub.buffered_bytes <= 16 + 2
    assert events == []
    assert feed(stub, b"x#" + b"%02x" % (1001 * ord("x") % 256) + b"$OK#9a") == [BadPacket("oversize"), Packet(b"OK")]


def test_acks_inside_an_oversized_frame_are_not_acks():
    stub = sent_once(RemoteProtocol(max_packet_size=4), b"OK")
    assert feed(stub, frame_of(b"1234567-+-")) == [BadPacket("oversize")]
    assert stub.data_to_send() == b"+"
    assert stub.awaiting_ack
    assert feed(stub, b"+") == [Ack()]


def test_interrupt_gets_through_an_oversized_frame():
    stub = RemoteProtocol(max_packet_size=4)
    assert feed(stub, b"$console noise\x03") == [Interrupt()]
    assert feed(stub, b"+") == [Ack()]


@pytest.mark.parametrize("cut", [b"$123456$", b"$123456#$", b"$123456#0$"])
def test_dollar_inside_an_oversized_frame_starts_a_new_frame(cut):
    stub = RemoteProtocol(max_packet_size=4)
    assert feed(stub, cut + b"OK#9a") == [BadPacket("truncated"), Packet(b"OK")]
    assert stub.data_to_send() == b"+"


# Sending, acks and retransmission


def test_send_packet_frames_and_queues():
    stub = RemoteProtocol()
    stub.send_packet(b"OK")
    assert stub.awaiting_ack
    assert stub.data_to_send() == b"$OK#9a"
    assert stub.data_to_send() == b""


def test_send_packet_escapes():
    stub = RemoteProtocol()
    stub.send_packet(b"l<a>$#}*</a>")
    assert stub.data_to_send() == frame_of(b"l<a>}\x04}\x03}]}\x0a</a>")


def test_stub_compresses_runs():
    stub = RemoteProtocol()
    stub.send_packet(b"0000")
    assert stub.data_to_send() == b"$0* #7a"


def test_client_role_does_not_compress():
    client = RemoteProtocol(run_length_encode=False)
    client.send_packet(b"0000")
    assert client.data_to_send() == b"$0000#c0"


def test_nak_retransmits_the_frame():
    stub = sent_once(RemoteProtocol(), b"OK")
    assert feed(stub, b"-") == [Nak()]
    assert stub.data_to_send() == b"$OK#9a"
    assert feed(stub, b"-") == [Nak()]
    assert stub.data_to_send() == b"$OK#9a"
    assert stub.awaiting_ack


def test_a_flood_of_naks_costs_one_copy_until_that_copy_is_taken():
    reply = b"ab" * 4000
    stub = sent_once(RemoteProtocol(run_length_encode=False), reply)
    assert feed(stub, b"-" * 16384) == [Nak()] * 16384
    assert stub.data_to_send() == frame_of(reply)
    assert feed(stub, b"--") == [Nak(), Nak()]
    assert stub.data_to_send() == frame_of(reply)


def test_a_nak_before_the_frame_went_out_brings_no_second_copy():
    stub = RemoteProtocol()
    assert feed(stub, b"$g#67") == [Packet(b"g")]
    stub.send_packet(b"00")
    assert feed(stub, b"-") == [Nak()]  # it cannot be about a frame still to go out
    assert stub.data_to_send() == b"+$00#60"


def test_a_packet_in_place_of_the_ack_can_stand_for_it():
    stub = RemoteProtocol()
    stub.send_packet(b"O6869")
    stub.send_packet(b"OK")
    assert stub.data_to_send() == frame_of(b"O6869")
    assert stub.unacknowledged_bytes == len(frame_of(b"O6869")) + len(b"$OK#9a")
    assert feed(stub, b"$g#67") == [Packet(b"g")]
    stub.assume_acknowledged()  # the peer moved on: the rest goes at once
    assert stub.data_to_send() == b"+$OK#9a"
    assert not stub.awaiting_ack and stub.unacknowledged_bytes == 0
    assert feed(stub, b"-") == [Nak()]
    assert stub.data_to_send() == b""


def test_ack_forgets_the_frame():
    stub = sent_once(RemoteProtocol(), b"OK")
    assert feed(stub, b"+") == [Ack()]
    assert not stub.awaiting_ack
    assert feed(stub, b"-") == [Nak()]
    assert stub.data_to_send() == b""


def test_ack_with_nothing_outstanding_is_harmless():
    # gdb sends a '+' as soon as it connects.
    stub = RemoteProtocol()
    assert feed(stub, b"+$qSupported#37") == [Ack(), Packet(b"qSupported")]
    assert stub.data_to_send() == b"+"


def test_frames_wait_for_the_ack_of_the_one_before():
    stub = RemoteProtocol()
    stub.send_packet(b"O6869")
    stub.send_packet(b"OK")
    assert stub.data_to_send() == frame_of(b"O6869")
    assert feed(stub, b"-") == [Nak()]
    assert stub.data_to_send() == frame_of(b"O6869")
    assert feed(stub, b"+") == [Ack()]
    assert stub.data_to_send() == b"$OK#9a"
    assert stub.awaiting_ack
    assert feed(stub, b"-") == [Nak()]
    assert stub.data_to_send() == b"$OK#9a"
    assert feed(stub, b"+") == [Ack()]
    assert not stub.awaiting_ack
    assert stub.data_to_send() == b""


def test_interrupt_does_not_acknowledge():
    stub = sent_once(RemoteProtocol(), b"OK")
    assert feed(stub, b"\x03") == [Interrupt()]
    assert stub.awaiting_ack


# No-ack mode


def test_stub_switches_to_no_ack_mode():
    stub = RemoteProtocol()
    assert feed(stub, b"$QStartNoAckMode#b0") == [Packet(b"QStartNoAckMode")]
    stub.send_packet(b"OK")
    stub.start_no_ack_mode()
    assert stub.data_to_send() == b"+$OK#9a"
    assert not stub.ack_mode
    assert not stub.awaiting_ack
    # gdb acks the OK once more, then sends without acks.
    assert feed(stub, b"+$g#67") == [Packet(b"g")]
    assert stub.data_to_send() == b""
    stub.send_packet(b"00")
    assert not stub.awaiting_ack
    assert stub.data_to_send() == b"$00#60"


def test_stray_acks_and_naks_are_ignored_in_no_ack_mode():
    stub = sent_once(RemoteProtocol(), b"OK")
    stub.start_no_ack_mode()
    assert feed(stub, b"-+-") == []
    assert stub.data_to_send() == b""


def test_bad_packet_is_not_refused_in_no_ack_mode():
    stub = RemoteProtocol()
    stub.start_no_ack_mode()
    assert feed(stub, b"$OK#00" + frame_of(b"a}")) == [BadPacket("checksum"), BadPacket("escape")]
    assert stub.data_to_send() == b""


def test_packets_after_the_switch_are_not_acked_even_if_already_received():
    stub = RemoteProtocol()
    stub.receive_data(b"$QStartNoAckMode#b0+$g#67")
    assert stub.next_event() == Packet(b"QStartNoAckMode")
    stub.send_packet(b"OK")
    stub.start_no_ack_mode()
    assert list(stub.events()) == [Packet(b"g")]
    assert stub.data_to_send() == b"+$OK#9a"


def test_client_acks_the_ok_before_switching():
    client = RemoteProtocol(run_length_encode=False)
    client.send_packet(b"QStartNoAckMode")
    assert client.data_to_send() == b"$QStartNoAckMode#b0"
    assert feed(client, b"+$OK#9a") == [Ack(), Packet(b"OK")]
    client.start_no_ack_mode()
    assert client.data_to_send() == b"+"
    client.send_packet(b"g")
    assert client.data_to_send() == b"$g#67"
    assert feed(client, b"$00#60") == [Packet(b"00")]
    assert client.data_to_send() == b""


def test_switching_releases_frames_held_for_acks():
    stub = sent_once(RemoteProtocol(), b"OK")
    stub.send_packet(b"O6869")
    stub.send_packet(b"S05")
    assert stub.data_to_send() == b""
    stub.start_no_ack_mode()
    assert stub.data_to_send() == frame_of(b"O6869") + frame_of(b"S05")


# Misuse


@pytest.mark.parametrize("size", [0, -1, 1.5, None])
def test_max_packet_size_must_be_a_positive_int(size):
    with pytest.raises(ProtocolError):
        RemoteProtocol(max_packet_size=size)


def test_payload_must_be_bytes():
    with pytest.raises(ProtocolError):
        RemoteProtocol().send_packet("OK")
    with pytest.raises(ProtocolError):
        RemoteProtocol().send_packet(2)


def test_received_data_must_be_bytes():
    with pytest.raises(ProtocolError):
        RemoteProtocol().receive_data("$OK#9a")


def test_any_bytes_like_object_will_do():
    stub = RemoteProtocol()
    stub.send_packet(bytearray(b"OK"))
    stub.send_packet(memoryview(b"OK"))
    assert stub.data_to_send() == b"$OK#9a"
    assert feed(stub, memoryview(b"+$OK#9a")) == [Ack(), Packet(b"OK")]
    assert type(stub.data_to_send()) is bytes


# -- strict acks: Linux's put_packet --------------------------------------------------


def test_strict_acks_send_a_copy_for_every_byte_but_an_ack_one_at_a_time():
    # put_packet: after a frame, each byte read but '+' and '$' sends it again (0x03 is skipped).
    codec = RemoteProtocol(strict_acks=True)
    codec.send_packet(b"OK")
    codec.receive_data(b"--x\x03-+")
    sent = []
    while True:
        events = list(codec.events())
        acknowledged = any(isinstance(e, Ack) for e in events)
        assert acknowledged or codec.paused, "the next byte waits for the copy before it to be taken"
        sent.append(codec.data_to_send())
        if acknowledged:
            break
    assert b"".join(sent) == frame_of(b"OK") * 5  # the frame and four copies: '-', '-', 'x', '-'
    assert max(len(d) for d in sent) == len(frame_of(b"OK")), "never more than one copy held"
    assert not codec.paused and not codec.awaiting_ack


def test_strict_acks_take_a_frame_in_place_of_the_ack_as_a_nak_and_lose_it():
    # put_packet answers '-' and returns; get_packet then skips to the next '$'.
    codec = RemoteProtocol(strict_acks=True)
    codec.send_packet(b"OK")
    codec.data_to_send()
    codec.receive_data(frame_of(b"m0,1") + frame_of(b"qC"))
    events = list(codec.events())
    assert [type(e) for e in events] == [Nak, Packet] and events[1].payload == b"qC"
    assert codec.data_to_send() == b"-+"
