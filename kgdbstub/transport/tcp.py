"""A TCP connection paced for request and reply.

A debugger sends a packet and waits for the answer, so nearly every send is
short and finds room in the socket's buffer, and nearly every receive has
to wait for the peer. trio's SocketStream pays for generality there: a send
yields to the scheduler once the data went out, and a receive first tries
the socket (empty, as a rule), then waits for it, then yields once more
after reading. Each pass through the scheduler costs about as much as the
system call it surrounds.

`ReplyStream` does the common case directly: a send that the socket takes
whole is done at once, and a receive waits for the socket to be readable
and then reads it, one pass through the scheduler in all. A send the
socket cannot take whole goes on through trio's stream, which waits for
room; closing and half-closing are trio's.
"""
from __future__ import annotations

import errno
import os

import trio

RECEIVE_SIZE = 65536


class ReplyStream(trio.abc.HalfCloseableStream):
    """A trio SocketStream with sends and receives at request-and-reply pace."""

    def __init__(self, stream: trio.SocketStream):
        self.stream = stream
        self.socket = stream.socket

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        fd = self.socket.fileno()
        if not data or fd < 0 or self.socket.did_shutdown_SHUT_WR:
            await self.stream.send_all(data)  # trio's answer to these
            return
        try:
            sent = os.write(fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as failure:
            raise _stream_error(failure) from failure
        if sent < len(data):
            await self.stream.send_all(memoryview(data)[sent:])

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        fd = self.socket.fileno()
        if fd < 0:
            return await self.stream.receive_some(max_bytes)  # trio's answer to a closed socket
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                return os.read(fd, max_bytes or RECEIVE_SIZE)
            except BlockingIOError:
                continue  # readable, then not: another look
            except OSError as failure:
                raise _stream_error(failure) from failure

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


def _stream_error(failure: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    """What trio's SocketStream raises for the same failure."""
    if failure.errno == errno.EBADF:
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {failure}")
