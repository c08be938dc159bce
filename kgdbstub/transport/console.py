"""The kernel console on its way to a line.

The machine prints from its worker thread (Kernel.console_listeners are
called there). `ConsoleBuffer` takes that output under a lock and wakes the
trio side through the run's TrioToken, so no trio call is ever made from the
worker thread; the trio side then decides where the text goes: raw onto the
line, or to gdb as `O` packets, or to the terminal (`copy_to_file`).

The buffer is bounded like a kernel's log buffer: when nobody drains it
(the line is full because nothing reads the pty) the oldest text is dropped
first, and `dropped` counts it.
"""
from __future__ import annotations

import os
import threading

import trio

LIMIT = 64 * 1024


class ConsoleBuffer:
    def __init__(self, limit: int = LIMIT):
        self.limit = limit
        self.dropped = 0
        self._token = trio.lowlevel.current_trio_token()
        self._lock = threading.Lock()
        self._data = bytearray()
        self._wake_scheduled = False
        self._waiters = trio.lowlevel.ParkingLot()
        self._kernel = None

    # -- any thread -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Console output, from any thread (a Kernel console listener)."""
        if not data:
            return
        with self._lock:
            self._data += data
            excess = len(self._data) - self.limit
            if excess > 0:
                del self._data[:excess]
                self.dropped += excess
            wake = not self._wake_scheduled
            self._wake_scheduled = True
        if wake:
            try:
                self._token.run_sync_soon(self._wake)
            except trio.RunFinishedError:
                pass

    def _wake(self) -> None:
        with self._lock:
            self._wake_scheduled = False
        self._waiters.unpark_all()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def peek(self, limit: int | None = None) -> bytes:
        """What is waiting (at most `limit` bytes), left in place."""
        with self._lock:
            return bytes(self._data if limit is None else self._data[:limit])

    def consume(self, count: int) -> None:
        """Forget the first `count` bytes, once they are delivered."""
        with self._lock:
            del self._data[:count]

    def take(self) -> bytes:
        with self._lock:
            data = bytes(self._data)
            self._data.clear()
            return data

    # -- trio ---------------------------------------------------------------------

    async def wait(self) -> None:
        """Until some output is waiting."""
        await trio.lowlevel.checkpoint()
        while not len(self):
            await self._waiters.park()

    def attach(self, kernel, *, backlog: bool = True) -> None:
        """Listen to a kernel's console, starting with what it printed so far."""
        if backlog:
            self.write(bytes(kernel.console_log))
        kernel.console_listeners.append(self.write)
        self._kernel = kernel

    def detach(self) -> None:
        if self._kernel is not None:
            self._kernel.console_listeners.remove(self.write)
            self._kernel = None


async def copy_to_file(console: ConsoleBuffer, fd: int) -> None:
    """Console text to a file descriptor (the terminal `serve` runs in), as it comes, for ever.

    The writes block, so they run on a worker thread: a reader that does
    not keep up (a pipe nobody drains) holds back only this copy, which
    the buffer bounds by dropping its oldest text. Ends quietly if the
    descriptor is closed at the far end.
    """
    while True:
        await console.wait()
        try:
            written = await trio.to_thread.run_sync(os.write, fd, console.peek(), abandon_on_cancel=True)
        except OSError:
            console.detach()
            return
        console.consume(written)
