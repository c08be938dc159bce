"""ReplyStream: a TCP connection's sends and receives at request-and-reply pace.

It must behave as the trio SocketStream it wraps: bytes arrive whole and in
order whatever their size, the end of the stream reads as b"", a peer that
is gone and a stream closed here raise trio's errors, and a receive can be
cancelled.
"""
import socket
import threading

import pytest
import trio

from kgdbstub.transport import ReplyStream, tcp

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


async def test_only_a_request_after_a_reply_is_awaited_outside_trio(monkeypatch):
    """receive_some, the reader of whatever may come while the machine runs, never waits in a spin or poll."""
    stream, peer = await connected_pair()
    prompt_waits = []
    monkeypatch.setattr(stream._prompt, "readable_within",
                        lambda seconds, wait=stream._prompt.readable_within: prompt_waits.append(seconds) or wait(seconds))
    with trio.fail_after(10):
        await stream.send_all(b"$OK#9a")
        peer.sendall(b"$g#67")
        assert await stream.receive_some() == b"$g#67"
        assert prompt_waits == []
        peer.sendall(b"$g#67")
        assert await stream.receive_request() == b"$g#67"  # no reply since the last receive: trio's wait
        assert prompt_waits == []
        await stream.send_all(b"$OK#9a")
        peer.sendall(b"$g#67")
        assert await stream.receive_request() == b"$g#67"
        assert prompt_waits == [tcp.PROMPT_WAIT]
    await stream.aclose()
    peer.close()


async def test_a_client_that_keeps_the_stub_busy_leaves_the_event_loop_to_other_tasks():
    """A receive right after a send waits for the request in a blocking poll
    (tcp.py): every PROMPT_STREAK + 1 receives at most, one goes through
    trio's scheduler, where other tasks run and a cancellation arrives."""
    stream, peer = await connected_pair()
    requests = 40 * (tcp.PROMPT_STREAK + 1)
    answered = threading.Event()

    def busy_client():
        for n in range(requests):
            peer.sendall(b"$m%x,8#00" % n)
            assert peer.recv(100) == b"$%016x#00" % n
        answered.set()

    turns = 0

    async def other_task():
        nonlocal turns
        while True:
            await trio.lowlevel.checkpoint()
            turns += 1

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_task)
            client = threading.Thread(target=busy_client, daemon=True)
            client.start()
            for n in range(requests):
                assert await stream.receive_request() == b"$m%x,8#00" % n
                await stream.send_all(b"$%016x#00" % n)
            nursery.cancel_scope.cancel()
    client.join(10)
    assert answered.is_set()
    # The other task ran once per trio pass at least; a stub that never
    # left its prompt waits would have given it none after the first pass.
    assert turns >= requests // (tcp.PROMPT_STREAK + 1) - 1, turns
    await stream.aclose()
    peer.close()


async def test_a_cancellation_reaches_a_receive_while_a_client_keeps_it_busy():
    stream, peer = await connected_pair()
    stop = threading.Event()

    def busy_client():
        n = 0
        while not stop.is_set():
            try:
                peer.sendall(b"$m%x,8#00" % n)
                if not peer.recv(100):
                    return
            except OSError:
                return
            n += 1

    client = threading.Thread(target=busy_client, daemon=True)
    client.start()
    served = 0
    with trio.move_on_after(10) as scope:
        with trio.CancelScope() as busy:
            while True:
                await stream.receive_request()
                await stream.send_all(b"$OK#9a")
                served += 1
                if served == 3 * tcp.PROMPT_STREAK:
                    busy.cancel()  # takes effect at the next pass through trio
        assert served <= 4 * tcp.PROMPT_STREAK + 1, served
    assert not scope.cancelled_caught
    stop.set()
    await stream.aclose()
    peer.close()
    client.join(10)
