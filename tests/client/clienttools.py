"""Helpers for the client tests: servers reached over TCP or a pty, and running scripts."""
from __future__ import annotations

import contextlib
import os
import selectors
import socket
import subprocess
import sys
import threading
import tty
from typing import Iterator

import pytest

import gdbtools
from gdbtools import REPO_ROOT, Server, start_server

LINES = ["tcp", "pty-bridge", "serve-pty"]


@contextlib.contextmanager
def served(line: str, *server_args: str) -> Iterator[tuple[Server, str]]:
    """A `kgdbstub serve` and the address a client uses to reach it over `line`:

    - "tcp": the server's TCP address;
    - "pty-bridge": a pty plumbed to the server's TCP port (pty_bridge);
    - "serve-pty": `kgdbstub serve --pty` itself, skipped while the test
      harness has no gdbtools.start_line_server for it.
    """
    if line == "serve-pty":
        start_line_server = getattr(gdbtools, "start_line_server", None)
        if start_line_server is None:
            pytest.skip("kgdbstub serve --pty is not available yet")
        with start_line_server("--pty", *server_args) as server:
            yield server, server.address
    elif line == "pty-bridge":
        with start_server(*server_args) as server, pty_bridge(server) as path:
            yield server, path
    else:
        with start_server(*server_args) as server:
            yield server, server.address


@contextlib.contextmanager
def pty_bridge(server: Server, *, timeout: float = 10.0) -> Iterator[str]:
    """The slave path of a pseudo-terminal whose master end is plumbed to a
    new TCP connection to `server`: a client that opens the path talks to the
    server through a real pty, as it would to `kgdbstub serve --pty`.

    The bridge keeps a slave descriptor open, so the master never reads EIO
    between the client's open and close, and the slave is raw from the start.
    """
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    connection = socket.create_connection((server.host, server.port), timeout=timeout)
    connection.setblocking(False)
    os.set_blocking(master, False)
    wake_read, wake_write = os.pipe()

    def pump() -> None:
        selector = selectors.DefaultSelector()
        selector.register(master, selectors.EVENT_READ, "pty")
        selector.register(connection, selectors.EVENT_READ, "tcp")
        selector.register(wake_read, selectors.EVENT_READ, "stop")
        try:
            while True:
                for key, _ in selector.select():
                    if key.data == "stop":
                        return
                    try:
                        data = os.read(master, 65536) if key.data == "pty" else connection.recv(65536)
                    except BlockingIOError:
                        continue
                    if not data:  # the server went away: forward nothing more
                        selector.unregister(key.fileobj)
                        continue
                    if key.data == "pty":
                        connection.setblocking(True)
                        connection.sendall(data)
                        connection.setblocking(False)
                    else:
                        _write_all(master, data)
        except OSError:
            return
        finally:
            selector.close()

    thread = threading.Thread(target=pump, name=f"pty-bridge:{path}", daemon=True)
    thread.start()
    try:
        yield path
    finally:
        os.write(wake_write, b"x")
        thread.join(timeout)
        for fd in (master, slave, wake_read, wake_write):
            os.close(fd)
        connection.close()


def _write_all(fd: int, data: bytes) -> None:
    os.set_blocking(fd, True)  # the client reads what it asked for: a full pty drains
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.set_blocking(fd, False)


def run_script(path: str, *args: str, timeout: float = 120.0, input: str | None = None) -> subprocess.CompletedProcess:
    """Run a repository script (examples/, tools/) with this Python, as a user
    with kgdbstub installed would; its output as text. Fails past the deadline."""
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    try:
        return subprocess.run([sys.executable, str(REPO_ROOT / path), *args], cwd=REPO_ROOT, env=environment,
                              capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired as expired:
        raise AssertionError(f"{path} did not finish within {timeout} s; output so far:\n"
                             f"{expired.stdout}\n{expired.stderr}") from None
