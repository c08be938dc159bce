"""A TCP connection paced for request and reply.

A debugger sends a packet and waits for the answer, so nearly every send is
short and finds room in the socket's buffer, and nearly every receive has
to wait for the peer. trio's SocketStream pays for generality there: a send
yields to the scheduler once the data went out, and a receive first tries
the socket (empty, as a rule), then waits for it, then yields once more
after reading. Each pass through the scheduler costs about as much as the
system call it surrounds.

`ReplyStream` does the common case directly:

- a send that the socket takes whole is done at once;
- `receive_request`, the next request right after a reply: the peer sends
  it within a fraction of a millisecond as a rule (a debugger answering a
  stop, a script), so it waits up to PROMPT_WAIT for it outside trio
  (`PromptWait`: a short spin where a CPU is free, then a blocking poll of
  the socket), and reads it, with no pass through the scheduler;
- any other receive (`receive_some`: what may come while the machine
  runs), and a request that did not come in time, waits in trio for the
  socket, one pass through the scheduler.

A prompt wait holds the event loop: what else runs on it (a newcomer being
refused, a Ctrl-C of the server) waits PROMPT_WAIT at most, and after
PROMPT_STREAK prompt receives in a row the next one goes through trio, so
that a client that keeps the stub busy cannot keep other tasks, or a
cancellation, waiting for long. A reader that waits for whatever may come
never spins: while the machine runs, a spin would take a CPU from it. A send the socket cannot take whole goes
on through trio's stream, which waits for room; closing and half-closing
are trio's.
"""
from __future__ import annotations

import errno
import os

import trio

from .prompt import PromptWait

RECEIVE_SIZE = 65536
# How long a receive right after a send waits for the request outside trio
# (s): gdb asks its next question within a few hundred microseconds.
PROMPT_WAIT = 0.001
# Prompt receives in a row before one goes through trio's scheduler.
PROMPT_STREAK = 16


class ReplyStream(trio.abc.HalfCloseableStream):
    """A trio SocketStream with sends and receives at request-and-reply pace."""

    def __init__(self, stream: trio.SocketStream):
        self.stream = stream
        self.socket = stream.socket
        self._replied = False  # a send came after the last receive: the peer's next request is due
        self._prompt_streak = 0
        self._prompt = PromptWait(self.socket.fileno())

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
        self._replied = True

    async def receive_request(self, max_bytes: int | None = None) -> bytes:
        """What the peer sends next, when it is the request that follows a reply.

        Only a reader at request-and-reply pace calls this (a session whose
        machine is stopped); one that waits for whatever may come, such as
        a Ctrl-C while the machine runs, calls receive_some.
        """
        fd = self.socket.fileno()
        if fd >= 0 and self._replied and self._prompt_streak < PROMPT_STREAK:
            self._replied = False
            if self._prompt.readable_within(PROMPT_WAIT):
                self._prompt_streak += 1
                try:
                    return os.read(fd, max_bytes or RECEIVE_SIZE)
                except BlockingIOError:
                    pass  # readable, then not: wait in trio
                except OSError as failure:
                    raise _stream_error(failure) from failure
        return await self.receive_some(max_bytes)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._replied = False
        self._prompt_streak = 0
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
        if self.socket.fileno() >= 0:
            self._prompt.close()
        await self.stream.aclose()


def _stream_error(failure: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    """What trio's SocketStream raises for the same failure."""
    if failure.errno == errno.EBADF:
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {failure}")
