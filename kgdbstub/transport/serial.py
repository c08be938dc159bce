"""A serial port as the line, opened and set up with pyserial.

pyserial opens the device (8N1, no flow control, an exclusive lock) and sets
the speed; from then on the stub reads and writes the port's descriptor
itself, non-blocking, so that the trio event loop never blocks on it and no
thread is needed.

A BREAK from the far end (SysRq on a serial console) is a line condition,
not a byte. The port is set to mark it (termios PARMRK): the driver then
reads a break as FF 00 00 and a real FF byte as FF FF. `BreakMarks` turns
those back into the stub's byte stream, a break becoming the two bytes FF F3
(see line.py). A serial port does not tell when the far end goes away, so a
debugger that vanishes is noticed only when the next one arrives.

Only local devices are supported (a path to a tty, including a pty slave
standing for a serial port); pyserial's URL handlers have no descriptor.
"""
from __future__ import annotations

import termios

from .line import BREAK, FdLine

DEFAULT_BAUD = 115200


class BreakMarks:
    """Undoes PARMRK marking: FF FF is FF, FF 00 00 a break, FF 00 c a damaged c.

    Bytes that are not a valid mark (FF followed by anything else, as when
    marking was switched off under us) pass through unchanged. Sans-IO:
    feed it reads in order, it keeps a mark split over two reads.
    """

    def __init__(self):
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        data = self._held + data
        self._held = b""
        if b"\xff" not in data:
            return data
        out = bytearray()
        i = 0
        while True:
            mark = data.find(b"\xff", i)
            if mark < 0:
                out += data[i:]
                return bytes(out)
            out += data[i:mark]
            rest = data[mark + 1 : mark + 3]
            if rest[:1] == b"\xff":
                out += b"\xff"
                i = mark + 2
            elif rest[:1] == b"\x00":
                if len(rest) < 2:
                    self._held = data[mark:]
                    return bytes(out)
                out += BREAK if rest == b"\x00\x00" else rest[1:]
                i = mark + 3
            elif not rest:
                self._held = data[mark:]
                return bytes(out)
            else:
                out += b"\xff"
                i = mark + 1


def open_serial(device: str, baud: int = DEFAULT_BAUD, *, keep_pending_input: bool = False):
    """A pyserial Serial for `device`: 8N1, no flow control, an exclusive lock.

    pyserial's open discards whatever input is already waiting, as gdb does
    when it opens a port. With `keep_pending_input` it is kept: the console
    text kgdbstub wrote to its pty before anyone opened it (the boot
    messages) is then read, as `cat` or `screen` would show it.
    """
    import serial  # pyserial

    class Port(serial.Serial):
        _keeping = False

        def open(self):
            self._keeping = keep_pending_input
            try:
                super().open()
            finally:
                self._keeping = False

        def _reset_input_buffer(self):  # pyserial calls it from open()
            if not self._keeping:
                super()._reset_input_buffer()

    try:
        return Port(device, baudrate=baud, bytesize=serial.EIGHTBITS, parity=serial.PARITY_NONE,
                    stopbits=serial.STOPBITS_ONE, timeout=0, xonxoff=False, rtscts=False, dsrdtr=False,
                    exclusive=True)
    except (serial.SerialException, ValueError) as problem:
        raise OSError(f"cannot open serial line {device}: {problem}") from None


class SerialLine(FdLine):
    kind = "serial"
    hangs_up = False

    def __init__(self, device: str, baud: int = DEFAULT_BAUD, *, keep_pending_input: bool = False):
        port = open_serial(device, baud, keep_pending_input=keep_pending_input)
        self._port = port
        self.baud = baud
        try:
            fd = port.fileno()
            attributes = termios.tcgetattr(fd)
            attributes[0] |= termios.PARMRK
            attributes[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.IGNPAR | termios.ISTRIP | termios.INPCK)
            # VMIN 1: with pyserial's VMIN 0 an empty read returns 0 (EOF to
            # us) instead of EAGAIN, and poll() says readable all the time.
            attributes[6][termios.VMIN], attributes[6][termios.VTIME] = 1, 0
            termios.tcsetattr(fd, termios.TCSANOW, attributes)
            super().__init__(fd, device)
        except BaseException:
            port.close()
            raise
        self._marks = BreakMarks()

    def _decode(self, data: bytes) -> bytes:
        return self._marks.feed(data)

    async def send_break(self, duration: float = 0.25) -> None:
        """Hold the line in BREAK for `duration` seconds (between whole writes)."""
        import trio

        async with self._write_lock:
            await trio.to_thread.run_sync(self._port.send_break, duration)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._port.close()
