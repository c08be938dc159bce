"""A raw RSP client over TCP for packet-level tests: send a payload, get the reply."""
from __future__ import annotations

import socket
import time

from kgdbstub.rsp import Packet, RemoteProtocol


class RawClient:
    def __init__(self, host: str, port: int, *, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.codec = RemoteProtocol(run_length_encode=False, max_packet_size=1 << 20)
        self.timeout = timeout
        self._pending: list[bytes] = []

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    def send(self, payload: bytes) -> None:
        self.codec.send_packet(payload)
        self.sock.sendall(self.codec.data_to_send())

    def receive(self) -> bytes:
        deadline = time.monotonic() + self.timeout
        while not self._pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"no reply within {self.timeout} s")
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError("the server closed the connection")
            self.codec.receive_data(data)
            self._pending += [e.payload for e in self.codec.events() if isinstance(e, Packet)]
            self.sock.sendall(self.codec.data_to_send())
        return self._pending.pop(0)

    def request(self, payload: bytes) -> bytes:
        self.send(payload)
        return self.receive()

    def interrupt(self) -> None:
        self.sock.sendall(b"\x03")
