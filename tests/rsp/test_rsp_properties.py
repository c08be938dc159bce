"""Properties of the codec over arbitrary payloads, splits and garbage."""

from hypothesis import given
from hypothesis import strategies as st

from kgdbstub.rsp import Packet, RemoteProtocol, checksum, encode_frame

# Bytes that mean something to the codec, and fragments built from them, so
# that garbage often lands in each state the decoder can be in.
SIGNIFICANT = [b"$", b"#", b"}", b"*", b"\x03", b"+", b"-", b"0", b"9", b"a", b"F", b"z", b"\r\n"]

runs = st.tuples(st.sampled_from(SIGNIFICANT) | st.binary(min_size=1, max_size=1), st.integers(1, 120)).map(
    lambda run: run[0] * run[1]
)
payloads = st.binary(max_size=300) | st.lists(runs | st.binary(max_size=8), max_size=12).map(b"".join)

bad_frames = payloads.map(lambda payload: b"$%s#%02x" % (payload, (checksum(payload) + 1) & 0xFF))
garbage = st.lists(
    st.sampled_from(SIGNIFICANT) | st.binary(max_size=8) | payloads.map(encode_frame) | bad_frames,
    max_size=30,
).map(b"".join)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[start:end] for start, end in zip(points, points[1:])]


def feed_in_pieces(protocol: RemoteProtocol, pieces: list[bytes]) -> list:
    events = []
    for piece in pieces:
        protocol.receive_data(piece)
        events += protocol.events()
    return events


@given(payloads, st.booleans(), st.lists(st.integers(min_value=0)))
def test_any_payload_arrives_intact_however_the_stream_is_split(payload, run_length_encode, cuts):
    sender = RemoteProtocol(run_length_encode=run_length_encode)
    sender.send_packet(payload)
    wire = sender.data_to_send()
    # A receiver whose bound is exactly this frame's body.
    receiver = RemoteProtocol(max_packet_size=max(1, len(wire) - 4))

    assert feed_in_pieces(receiver, split(wire, cuts)) == [Packet(payload)]
    assert receiver.data_to_send() == b"+"

    assert sender.awaiting_ack
    sender.receive_data(b"+")
    list(sender.events())
    assert not sender.awaiting_ack


@given(garbage, payloads, st.lists(st.integers(min_value=0)), st.integers(0, 40))
def test_a_good_frame_after_any_garbage_is_decoded(noise, payload, cuts, slack):
    # '$' starts a new frame in every state the decoder can be in: between
    # packets, inside a body, in place of a checksum digit and while skipping
    # an oversized body. So whatever the garbage left behind, a complete frame
    # that follows it is decoded, and is the last thing decoded.
    frame = encode_frame(payload)
    receiver = RemoteProtocol(max_packet_size=max(1, len(frame) - 4 + slack))
    events = feed_in_pieces(receiver, split(noise + frame, cuts))
    assert events[-1] == Packet(payload)
    assert receiver.data_to_send().endswith(b"+")


@given(st.lists(garbage | st.binary(max_size=200), max_size=20), st.integers(1, 32))
def test_buffered_bytes_stay_bounded(pieces, max_packet_size):
    receiver = RemoteProtocol(max_packet_size=max_packet_size)
    for piece in pieces:
        receiver.receive_data(piece)
        list(receiver.events())
        # An incomplete body, its '#' and one checksum digit at most.
        assert receiver.buffered_bytes <= max_packet_size + 2


@given(garbage, st.lists(st.integers(min_value=0)), st.integers(1, 64), st.booleans())
def test_how_the_stream_is_split_changes_nothing(stream, cuts, max_packet_size, ack_mode):
    def run(pieces):
        protocol = RemoteProtocol(max_packet_size=max_packet_size)
        protocol.send_packet(b"OK")
        protocol.send_packet(b"S05")
        if not ack_mode:
            protocol.start_no_ack_mode()
        protocol.data_to_send()
        events = feed_in_pieces(protocol, pieces)
        return events, protocol.data_to_send(), protocol.awaiting_ack

    assert run(split(stream, cuts)) == run([stream])


@given(st.lists(payloads.filter(bool), min_size=1, max_size=8), st.data())
def test_damaged_frames_are_sent_again_until_all_arrive_in_order(sent, data):
    # A line that damages some of the first transmissions: one body byte
    # becomes another that is neither '$' nor '#' (those would change the
    # framing rather than damage a frame), so the checksum no longer matches.
    sender = RemoteProtocol()
    receiver = RemoteProtocol(max_packet_size=1 << 20)
    for payload in sent:
        sender.send_packet(payload)
    damaged = data.draw(st.sets(st.integers(0, len(sent) - 1)))
    received = []
    transmissions = 0
    while wire := sender.data_to_send():
        if transmissions in damaged:
            at = data.draw(st.integers(1, wire.rindex(b"#") - 1))
            replacement = data.draw(st.integers(0, 255).filter(lambda byte: byte not in (wire[at], *b"$#")))
            wire = wire[:at] + bytes([replacement]) + wire[at + 1 :]
        transmissions += 1
        receiver.receive_data(wire)
        received += [event for event in receiver.events() if isinstance(event, Packet)]
        sender.receive_data(receiver.data_to_send())
        list(sender.events())

    assert received == [Packet(payload) for payload in sent]
    assert not sender.awaiting_ack
