"""Byte streams to a stub: TCP, or a pty or serial line opened by its path."""
from __future__ import annotations

import os
import termios
import tty

import trio

from .errors import ConnectionLost


def parse_address(address: str) -> tuple[str, str | tuple[str, int]]:
    """("tcp", (host, port)) or ("path", path) for an address as users write it.

    Accepted: `HOST:PORT`, `[V6]:PORT`, and the forms `kgdbstub serve` prints:
    `tcp:HOST:PORT`, `pty:/dev/pts/N`, `serial:DEVICE`; or a path
    (anything with a `/`).
    """
    for prefix in ("pty:", "serial:"):
        if address.startswith(prefix):
            return "path", address[len(prefix):]
    if address.startswith("tcp:"):
        address = address[4:]
    elif "/" in address:
        return "path", address
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not an address: {address!r} (HOST:PORT, tcp:HOST:PORT, or the path of a pty or serial line)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return "tcp", (host or "127.0.0.1", int(port))


async def open_stream(address: str, *, baud: int | None = None) -> trio.abc.Stream:
    kind, where = parse_address(address)
    if kind == "tcp":
        host, port = where
        try:
            return await trio.open_tcp_stream(host, port)
        except OSError as error:
            raise ConnectionLost(f"cannot connect to {host}:{port}: {error.strerror or error}") from None
    return open_line(where, baud=baud)


def open_line(path: str, *, baud: int | None = None) -> trio.lowlevel.FdStream:
    """A pty or serial line in raw mode: 8 bits, no echo, no line editing,
    modem control lines ignored; `baud` sets the speed of a real line."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as error:
        raise ConnectionLost(f"cannot open {path}: {error.strerror}") from None
    try:
        if os.isatty(fd):
            tty.setraw(fd)
            attributes = termios.tcgetattr(fd)
            attributes[2] |= termios.CLOCAL | termios.CREAD
            if baud is not None:
                speed = getattr(termios, f"B{baud}", None)
                if speed is None:
                    raise ValueError(f"unsupported baud rate {baud}")
                attributes[4] = attributes[5] = speed
            termios.tcsetattr(fd, termios.TCSANOW, attributes)
        return trio.lowlevel.FdStream(fd)
    except BaseException:
        os.close(fd)
        raise
