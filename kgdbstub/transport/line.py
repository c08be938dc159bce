"""Lines: byte streams that outlive the debuggers that use them.

A TCP connection is one debugger: when it closes, that debugger is gone. A
line -- a pseudo-terminal or a serial port -- is there before the first
debugger and after the last one, carries the kernel console as well, and is
used by one debugger after another. `FdLine` is such a line on a
non-blocking file descriptor, read and written from trio without a thread:
reads wait with `trio.lowlevel.wait_readable`, writes with `wait_writable`.
`LineConnection` is one debugger's session on a line: closing it leaves the
line open for the next one.

A BREAK (the line held low for longer than a character, which is how a
serial terminal sends SysRq) reaches the stub in the byte stream as the two
bytes FF F3: Telnet's "Break" command, which is also what gdb sends over TCP
for `set remote interrupt-sequence BREAK`. A serial port turns a real break
condition into these two bytes (see serial.py); a pty cannot carry a break,
so on a pty the two bytes themselves are the BREAK.
"""
from __future__ import annotations

import errno
import fcntl
import os
import struct
import termios

import trio

BREAK = b"\xff\xf3"  # Telnet IAC BRK


class LineLost(OSError):
    """The line itself went away (a serial adapter unplugged, say)."""


class FdLine:
    """A line on a non-blocking file descriptor, shared by one reader and any writers.

    Subclasses say what the line is called and how it behaves when the far
    end hangs up (`hangs_up`: the far end closing is reported as an empty
    read instead of an error).
    """

    kind = "line"
    hangs_up = False

    def __init__(self, fd: int, path: str):
        self._fd = fd
        self.path = path
        os.set_blocking(fd, False)
        # Writers take turns: a packet is never cut by console text.
        self._write_lock = trio.StrictFIFOLock()
        self._reads = trio.lowlevel.ParkingLot()  # woken after each read
        self.closed = False

    @property
    def address(self) -> str:
        """What `kgdbstub serve` prints after `listening on `."""
        return f"{self.kind}:{self.path}"

    def fileno(self) -> int:
        return self._fd

    def _decode(self, data: bytes) -> bytes:
        """Bytes as read from the descriptor, as the stub is to see them."""
        return data

    def _check_mode(self) -> None:
        """Before each write and after each read: keep the line in the mode the stub needs."""

    def input_waiting(self) -> int:
        """How many bytes from the far end wait to be read."""
        return struct.unpack("i", fcntl.ioctl(self._fd, termios.FIONREAD, b"\0\0\0\0"))[0]

    async def receive_some(self, max_bytes: int = 65536) -> bytes:
        """The next bytes from the far end; b"" when it hung up (a pty nobody has open)."""
        await trio.lowlevel.checkpoint()
        while True:
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._fd)
                continue
            except OSError as error:
                if error.errno == errno.EIO and self.hangs_up:
                    return b""
                raise LineLost(error.errno, f"{self.path}: {error.strerror}") from None
            self._reads.unpark_all()
            self._check_mode()
            if not data:
                if self.hangs_up:
                    return b""
                raise LineLost(errno.EIO, f"{self.path}: the line was hung up")
            data = self._decode(data)
            if data:
                return data

    async def _write_some(self, data, *, after_input: bool = False) -> int:
        while True:
            if after_input:
                while self.input_waiting():
                    await self._reads.park()
                # Reading it may have made the caller stop: a cancel comes before the write.
                await trio.lowlevel.checkpoint_if_cancelled()
            self._check_mode()
            try:
                return os.write(self._fd, data)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._fd)

    async def send_all(self, data: bytes) -> None:
        """Write all of `data`, waiting while the line is full."""
        async with self._write_lock:
            view = memoryview(data)
            await trio.lowlevel.checkpoint()
            while view:
                view = view[await self._write_some(view):]

    async def send_some(self, data: bytes) -> int:
        """Write what the line takes of `data` once it takes anything; how much.

        For console text: cancelling it never loses or cuts a byte, since a
        byte is either written or left to the caller.
        """
        async with self._write_lock:
            await trio.lowlevel.checkpoint()
            return await self._write_some(data)

    async def send_console(self, data: bytes) -> int:
        """As send_some, but only once no input waits to be read (the reader is behind).

        For raw console text while no debugger is attached: what waits may
        be a debugger's first packet, and text written after it would reach
        that debugger raw. A reader must be reading the line meanwhile.
        """
        async with self._write_lock:
            await trio.lowlevel.checkpoint()
            return await self._write_some(data, after_input=True)

    def send_nowait(self, data: bytes) -> int:
        """Write what fits now, without waiting; how much (0 when the line is full)."""
        self._check_mode()
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0

    # A debugger comes and goes (the pty uses these to see it go).

    def debugger_arrived(self) -> None:
        pass

    def debugger_left(self, *, gone: bool) -> None:
        pass

    async def until_hung_up(self, patience: float) -> None:
        """Before closing: let the far end read what was written (only a pty needs to)."""

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._fd)

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


class LineConnection(trio.abc.Stream):
    """One debugger's session on a line, as a trio stream.

    It starts with the bytes that showed a debugger had arrived (`replay`),
    then reads the line. An empty read means the debugger hung up (`gone`);
    from then on sends fail as they would on a closed socket. `unread` gives
    bytes back, for the next session to start with (`pending`). Closing it
    leaves the line open.
    """

    def __init__(self, line: FdLine, replay: bytes = b""):
        self.line = line
        self._pending = bytearray(replay)
        self.gone = False
        self._sends: set[trio.CancelScope] = set()

    @property
    def pending(self) -> bytes:
        return bytes(self._pending)

    def unread(self, data: bytes) -> None:
        self._pending[:0] = data

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._pending:
            await trio.lowlevel.checkpoint()
            data = bytes(self._pending)
            self._pending.clear()
            return data
        if self.gone:
            await trio.lowlevel.checkpoint()
            return b""
        data = await self.line.receive_some()
        if not data:
            self.gone = True
            for scope in self._sends:
                scope.cancel()  # nobody will read it: a blocked write must not wait forever
        return data

    async def send_all(self, data) -> None:
        if self.gone:
            raise trio.BrokenResourceError("the debugger hung up")
        with trio.CancelScope() as scope:
            self._sends.add(scope)
            try:
                await self.line.send_all(data)
            finally:
                self._sends.discard(scope)
        if scope.cancelled_caught:
            raise trio.BrokenResourceError("the debugger hung up")

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self.line.fileno())

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()  # the line stays open for the next debugger
