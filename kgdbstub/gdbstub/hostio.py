"""Letting a debugger fetch the image through the stub: exec-file and host I/O.

With these a `gdb` started with no file finds the symbols by itself after
`target remote`: it asks which file the target runs (`qXfer:exec-file:read`),
then reads that file over the connection with the host I/O packets
(`vFile:setfs`, `vFile:open`, `vFile:fstat`, `vFile:pread`, `vFile:close`),
as it would read a remote program from gdbserver.

Host I/O here serves one file, read-only: the ELF the machine runs. Every
other path is answered ENOENT, so a debugger cannot read anything else on
the host the stub runs on. An open file is a snapshot of the ELF held by the
session (gdb 13 never sends vFile:close), so a debugger that vanishes
without closing its files leaks nothing.

Both are session extensions (`extensions.Extension`).
"""
from __future__ import annotations

import errno
import os
import re
import struct
from collections.abc import Callable
from pathlib import Path

from ..rsp import decode_hex
from .actions import PACKET_SIZE, Reply
from .extensions import Extension

# Host I/O numbers are hex; errno values are the protocol's (File-I/O
# "errno values"), which for these agree with Linux's.
O_ACCMODE = 0x3
O_RDONLY = 0x0
S_IFREG = 0o100000
MAX_OPEN_FILES = 64  # gdb 13 never closes the files it reads
# A reply must fit a packet of the size we advertise, escapes included.
REPLY_LIMIT = PACKET_SIZE - 32
_ESCAPED = (b"$", b"#", b"}", b"*")
# gdb's `struct stat` for File-I/O: big-endian dev, ino, mode, nlink, uid,
# gid, rdev (4 bytes each), size, blksize, blocks (8 each), atime, mtime,
# ctime (4 each).
_STAT = struct.Struct(">7I3Q3I")
_HEX = rb"[0-9a-fA-F]+"


def image_path(session) -> Path:
    """The ELF the session's machine runs: the file `kgdbstub serve` prints as `symbols:`."""
    return Path(session.debugger.kernel.image.path)


class ExecFile(Extension):
    """`qXfer:exec-file:read`: the absolute path of the image, in m/l chunks."""

    def advertise(self, offered: set[str]) -> str | None:
        return "qXfer:exec-file:read+"

    def handlers(self, session) -> dict[str, Callable]:
        path = os.fsencode(str(image_path(session)))

        def read(args: bytes):
            # The annex is empty, or the pid in hex when gdb uses multiprocess
            # ids: every process of this machine runs from the one image.
            match = re.fullmatch(rb"(%s)?:(%s),(%s)" % (_HEX, _HEX, _HEX), args)
            if not match:
                return Reply(b"E00")
            offset, length = int(match[2], 16), int(match[3], 16)
            chunk = path[offset : offset + min(length, REPLY_LIMIT)]
            return Reply((b"m" if offset + len(chunk) < len(path) else b"l") + chunk)

        return {"qXfer:exec-file:read:": read}


class HostIO(Extension):
    """`vFile:` packets on a file system that holds the image and nothing else."""

    def advertise(self, offered: set[str]) -> str | None:
        return None  # gdb finds host I/O by trying it, not from qSupported

    def handlers(self, session) -> dict[str, Callable]:
        files = HostFiles(image_path(session))

        def serve(args: bytes):
            operation, _, rest = args.partition(b":")
            handler = files.operations.get(operation)
            if handler is None:
                return Reply(b"")  # not implemented: gdb stops asking
            try:
                return Reply(handler(rest))
            except (ValueError, IndexError):
                return Reply(_failure(errno.EINVAL))

        return {"vFile:": serve}


class HostFiles:
    """One session's open files. Operations take a packet's arguments and
    return the `F` reply: `Fresult[;attachment]` or `F-1,errno`."""

    def __init__(self, image: Path):
        self.image = image
        self._name = os.fsencode(str(image))
        self._data: bytes | None = None  # the image as first opened; every fd shares it
        self._open: dict[int, bytes] = {}
        self.operations: dict[bytes, Callable[[bytes], bytes]] = {
            b"setfs": self.setfs, b"open": self.open, b"close": self.close,
            b"pread": self.pread, b"pwrite": self.pwrite, b"fstat": self.fstat,
        }

    def setfs(self, args: bytes) -> bytes:
        _number(args)  # any pid: the one file system this stub has
        return b"F0"

    def open(self, args: bytes) -> bytes:
        name, flags, _mode = args.split(b",")
        if decode_hex(name) not in (self._name, os.fsencode(os.path.realpath(self._name))):
            return _failure(errno.ENOENT)
        if _number(flags) & O_ACCMODE != O_RDONLY:
            return _failure(errno.EACCES)
        if len(self._open) >= MAX_OPEN_FILES:
            return _failure(errno.EMFILE)
        if self._data is None:
            try:
                self._data = self.image.read_bytes()
            except OSError as error:
                return _failure(error.errno or errno.EIO)
        fd = next(n for n in range(MAX_OPEN_FILES + 1) if n not in self._open)
        self._open[fd] = self._data
        return b"F%x" % fd

    def close(self, args: bytes) -> bytes:
        if self._open.pop(_number(args), None) is None:
            return _failure(errno.EBADF)
        return b"F0"

    def pread(self, args: bytes) -> bytes:
        fd, count, offset = (_number(a) for a in args.split(b","))
        data = self._open.get(fd)
        if data is None:
            return _failure(errno.EBADF)
        chunk = data[offset : offset + min(count, REPLY_LIMIT)]
        if _wire_size(chunk) > REPLY_LIMIT:
            # An escaped byte takes two on the wire: the longest prefix that fits.
            fits, too_long = 0, len(chunk)
            while too_long - fits > 1:
                middle = (fits + too_long) // 2
                fits, too_long = (middle, too_long) if _wire_size(chunk[:middle]) <= REPLY_LIMIT else (fits, middle)
            chunk = chunk[:fits]
        return b"F%x;" % len(chunk) + chunk

    def pwrite(self, args: bytes) -> bytes:
        return _failure(errno.EBADF)  # every file here is open read-only

    def fstat(self, args: bytes) -> bytes:
        data = self._open.get(_number(args))
        if data is None:
            return _failure(errno.EBADF)
        try:
            mtime = int(self.image.stat().st_mtime) & 0xFFFFFFFF
        except OSError:
            mtime = 0
        blocks = (len(data) + 511) // 512
        record = _STAT.pack(0, 0, S_IFREG | 0o444, 1, 0, 0, 0, len(data), 4096, blocks, mtime, mtime, mtime)
        return b"F%x;" % len(record) + record


def _wire_size(data: bytes) -> int:
    return len(data) + sum(data.count(special) for special in _ESCAPED)


def _number(text: bytes) -> int:
    if not re.fullmatch(_HEX, text):
        raise ValueError(text)
    return int(text, 16)


def _failure(code: int) -> bytes:
    return b"F-1,%x" % code
