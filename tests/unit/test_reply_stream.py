"""ReplyStream: a TCP connection's sends and receives at request-and-reply pace.

It must behave as the trio SocketStream it wraps: bytes arrive whole and in
order whatever their size, the end of the stream reads as b"", a peer that
is gone and a stream closed here raise trio's errors, and a receive can be
cancelled.
"""
import socket

import pytest
import trio

from kgdbstub.transport import ReplyStream

pytestmark = pytest.mark.trio


async def connected_pair() -> tuple[ReplyStream, socket.socket]:
    """A ReplyStream over loopback TCP, and the plain blocking socket at the other end."""
    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(listener.getsockname(), timeout=10)
    ours = trio.socket.from_stdlib_socket(listener.accept()[0])
    listener.close()
    return ReplyStream(trio.SocketStream(ours)), peer


async def test_requests_and_replies_go_through_whole():
    stream, peer = await connected_pair()
    with trio.fail_after(10):
        for n in range(50):
            peer.sendall(b"$m%x,8#00" % n)
            assert await stream.receive_some() == b"$m%x,8#00" % n
            await stream.send_all(b"$%016x#00" % n)
            assert peer.recv(100) == b"$%016x#00" % n
    await stream.aclose()
    peer.close()


async def test_a_send_larger_than_the_socket_takes_arrives_whole_and_in_order():
    stream, peer = await connected_pair()
    data = bytes(range(256)) * (32 * 1024)  # 8 MiB: far more than the send buffer holds
    received = bytearray()

    def read_all():
        while len(received) < len(data) + len(b"after"):
            chunk = peer.recv(1 << 20)
            if not chunk:
                return
            received.extend(chunk)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, read_all)
            await stream.send_all(data)
            await stream.send_all(b"after")
        assert bytes(received) == data + b"after"
    await stream.aclose()
    peer.close()


async def test_the_end_of_the_stream_reads_empty_and_a_gone_peer_breaks_sends():
    stream, peer = await connected_pair()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()  # with linger 0: a reset
    with trio.fail_after(10):
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some()
            await stream.send_all(b"$OK#9a")  # the reset shows at the receive or at the send
        stream2, peer2 = await connected_pair()
        peer2.shutdown(socket.SHUT_WR)
        assert await stream2.receive_some() == b""
        peer2.close()
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(100):  # the first sends after a close may still be taken
                await stream2.send_all(b"$OK#9a")
                await trio.sleep(0.01)
    await stream.aclose()
    await stream2.aclose()


async def test_a_closed_stream_raises_closed_and_a_receive_can_be_cancelled():
    stream, peer = await connected_pair()
    with trio.move_on_after(0.05) as waited:
        await stream.receive_some()
    assert waited.cancelled_caught
    peer.sendall(b"+")
    with trio.fail_after(10):
        assert await stream.receive_some() == b"+"  # nothing was lost to the cancelled receive
    await stream.send_eof()
    assert peer.recv(10) == b""
    await stream.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await stream.send_all(b"$OK#9a")
    with pytest.raises(trio.ClosedResourceError):
        await stream.receive_some()
    peer.close()
