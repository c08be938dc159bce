"""The packet log of `serve --trace FILE`: every packet in and out, one line each.

The log holds what the debugger read, memory contents included, so it is
made for its owner alone: a new file with mode 0600, never an existing file
written over and never a symbolic link followed. A device or a named pipe
that exists (a terminal, /dev/null, a fifo someone reads) is written to as
it is. A write that fails (a full disk, a reader gone) ends the log with one
line on stderr; the stub serves on.
"""
from __future__ import annotations

import errno
import os
import stat
import sys


class TraceError(Exception):
    """The log cannot be opened where it was asked for: nothing was created or changed."""


class Trace:
    def __init__(self, fd: int | None = None, *, name: str = ""):
        self._fd = fd
        self.name = name

    @classmethod
    def open(cls, path: str) -> "Trace":
        """A log in a new file at path, or in the device or fifo there; TraceError if neither."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            fd = _open_existing(path)
        except OSError as error:
            raise TraceError(f"--trace {path}: {error.strerror}") from None
        return cls(fd, name=path)

    def __call__(self, direction: str, payload: bytes) -> None:
        if self._fd is None:
            return
        line = f"{direction} {payload.decode('latin-1')!r}\n".encode()
        try:
            while line:
                line = line[os.write(self._fd, line):]
        except OSError as error:
            self.close()
            print(f"kgdbstub: --trace {self.name}: {error.strerror}; tracing stopped, serving on",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _open_existing(path: str) -> int:
    try:
        found = os.lstat(path)
    except OSError as error:
        raise TraceError(f"--trace {path}: {error.strerror}") from None
    if stat.S_ISLNK(found.st_mode):
        raise TraceError(f"--trace {path}: is a symbolic link; the log is never written through one")
    if stat.S_ISREG(found.st_mode):
        raise TraceError(f"--trace {path}: the file exists; the log, which holds memory contents, "
                         "is only made as a new file: remove it or choose another name")
    try:
        # Not blocking on the open: a fifo with no reader is refused at once.
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as error:
        reason = "a fifo with no reader" if error.errno == errno.ENXIO else error.strerror
        raise TraceError(f"--trace {path}: {reason}") from None
    if stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)  # it became a file since it was looked at: not ours to write
        raise TraceError(f"--trace {path}: the file exists; choose another name")
    os.set_blocking(fd, True)
    return fd
