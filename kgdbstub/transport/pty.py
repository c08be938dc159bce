"""A pseudo-terminal as the line: the stub owns the master, gdb opens the slave.

    gdb -ex 'target remote /dev/pts/N'

Both ends are in raw mode, so that no echo or line discipline touches a
packet, and the stub keeps them so: any program may change the slave's
settings (`stty -F /dev/pts/N echo`, or a client that only leaves canonical
mode), and with echo on the stub would read its own replies back as
packets, without end. Before each write and after each read it looks at
the slave's settings (through the master, which on Linux shows and sets the
slave's), sets them back to raw if they changed, and says so on stderr. On Linux a read of the master fails with EIO while nobody has the
slave open. The stub therefore holds the slave open itself while no debugger
is attached: reads then wait, and console text written meanwhile stays in
the pty's buffer (about 16 KiB of it) for whoever opens the slave next. When
a debugger's first packet arrives the stub lets go of its own slave
descriptor, so that the debugger closing the slave -- `detach` and quit, or
gdb killed -- shows as EIO: the stub then knows the debugger is gone, as it
does when a TCP connection closes, and takes the slave again. (If another
program also has the slave open, say a terminal showing the console, that
EIO never comes: the line then behaves as a serial line does, where the next
debugger's arrival ends the previous session.)

A BREAK cannot cross a pty (tcsendbreak on a pty sends nothing), so on a pty
the bytes FF F3 stand for it: see line.py.
"""
from __future__ import annotations

import contextlib
import os
import sys
import termios
import tty
from collections.abc import Callable
from pathlib import Path

import trio

from .line import FdLine


# Terminal settings that make a pty touch the bytes that cross it: echo, a
# line discipline, signals from control bytes, translations of CR and NL,
# flow control, output processing. (termios flag word, flags, what they are)
_NOT_RAW = (
    (3, termios.ECHO | termios.ECHONL, "echo"),
    (3, termios.ICANON, "canonical (line-by-line) input"),
    (3, termios.ISIG | termios.IEXTEN, "control characters as signals"),
    (0, termios.ICRNL | termios.INLCR | termios.IGNCR | termios.ISTRIP | termios.BRKINT,
     "input translation"),
    (0, termios.IXON | termios.IXOFF, "XON/XOFF flow control"),
    (1, termios.OPOST, "output processing"),
)


def _report_on_stderr(message: str) -> None:
    print(f"kgdbstub: {message}", file=sys.stderr, flush=True)


class PtyLine(FdLine):
    kind = "pty"
    hangs_up = True

    def __init__(self, *, link: str | os.PathLike | None = None,
                 report: Callable[[str], None] = _report_on_stderr):
        self._report = report
        master, slave = os.openpty()
        try:
            tty.setraw(master, termios.TCSANOW)
            tty.setraw(slave, termios.TCSANOW)
            path = os.ttyname(slave)
            super().__init__(master, path)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self._held: int | None = slave
        self.link: Path | None = None
        if link is not None:
            try:
                self._make_link(Path(link))
            except BaseException:
                self.close()
                raise

    def _make_link(self, link: Path) -> None:
        """A symlink to the slave with a stable name; an old symlink there is replaced."""
        if link.exists() or link.is_symlink():
            if not link.is_symlink():
                raise FileExistsError(f"{link} exists and is not a symlink: not replacing it")
        temporary = link.with_name(f".{link.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(self.path)
        os.replace(temporary, link)
        self.link = link

    def remove_link(self) -> None:
        """Remove the symlink if it still points at this pty."""
        if self.link is not None:
            with contextlib.suppress(OSError):
                if os.readlink(self.link) == self.path:
                    self.link.unlink()
            self.link = None

    def _check_mode(self) -> None:
        """Set the slave back to raw if another program changed it, and say what was found."""
        attributes = termios.tcgetattr(self._fd)  # the master: the slave's settings
        found = [what for word, flags, what in _NOT_RAW if attributes[word] & flags]
        if found:
            tty.setraw(self._fd, termios.TCSANOW)
            self._report(f"{self.path}: another program set {', '.join(found)} on the pty; "
                         "set it back to raw, as the protocol needs every byte as it is")

    def debugger_arrived(self) -> None:
        """Let go of our slave descriptor: the debugger closing its own is then seen."""
        if self._held is not None:
            os.close(self._held)
            self._held = None

    def debugger_left(self, *, gone: bool) -> None:
        """Hold the slave again; after a debugger that vanished, drop what it left unread.

        Whatever the stub wrote to a debugger that had already gone (a stop
        reply, say) would otherwise greet the next program that opens the
        slave.
        """
        self.hold()
        if gone:
            termios.tcflush(self._held, termios.TCIFLUSH)

    async def until_hung_up(self, patience: float) -> None:
        """Wait (at most `patience` seconds) for the debugger to close the slave.

        Closing the master hangs the slave up and discards what it has not
        read yet, such as the reply to a last `detach`.
        """
        with trio.move_on_after(patience):
            while await self.receive_some():
                pass

    def hold(self) -> None:
        if self._held is None:
            self._held = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        # Whoever had it open may have left echo or a line discipline on.
        # TCSANOW: what waits unread in the pty (a debugger's last reply) stays.
        tty.setraw(self._held, termios.TCSANOW)

    def close(self) -> None:
        if not self.closed:
            self.remove_link()
            if self._held is not None:
                os.close(self._held)
                self._held = None
        super().close()
