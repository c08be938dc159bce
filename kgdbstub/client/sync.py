"""The client without async: for plain scripts, notebooks and REPLs.

    from kgdbstub.client import SyncTarget

    with SyncTarget("127.0.0.1:1234") as target:
        target.insert_breakpoint(target.symbol("do_fork"), kind="hardware")
        stop = target.resume()
        print(stop.thread, hex(stop.pc))

A SyncTarget runs a trio loop of its own in a background thread and hands
each call to it, so it works where another event loop already runs (a
Jupyter kernel). Calls may come from any thread: interrupt() from one while
another waits in resume(). Ctrl-C during resume() or step() interrupts the
target, waits for it to stop, then raises KeyboardInterrupt.
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from .connection import Trace
from .errors import ClientError
from .packets import Breakpoint, BreakpointKind, Register, Stop, Thread
from .target import DEFAULT, Exchange, Target, connect


class _LoopThread:
    """A trio loop in a daemon thread that runs coroutines handed to it."""

    def __init__(self):
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread = threading.Thread(target=self._main, name="kgdbstub-client", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as failure:  # noqa: BLE001 -- handed to the caller
            self._failure = failure
            self._ready.set()

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._done = trio.Event()
        self._ready.set()
        await self._done.wait()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def run(self, function, *args, **kwargs):
        if not self._thread.is_alive():
            raise ClientError("this SyncTarget is closed")
        return trio.from_thread.run(functools.partial(function, *args, **kwargs), trio_token=self._token)

    def stop(self) -> None:
        if self._thread.is_alive():
            trio.from_thread.run_sync(self._done.set, trio_token=self._token)
            self._thread.join()


class _Call:
    """One blocking call handed to the loop: did it start, was it given up."""

    started = False
    abandoned = False


class SyncTarget:
    """kgdbstub.client.Target with blocking methods; see connect() for the arguments."""

    def __init__(self, address: str, *, timeout: float | None = 10.0, handshake: bool = True,
                 no_ack: bool = True, elf: str | Path | None = None, baud: int | None = None,
                 trace: Trace | None = None):
        self._loop = _LoopThread()
        try:
            self.target: Target = self._loop.run(connect, address, timeout=timeout, handshake=handshake,
                                                 no_ack=no_ack, elf=elf, baud=baud, trace=trace)
        except BaseException:
            self._loop.stop()
            raise

    def _call(self, method, *args, **kwargs) -> Any:
        return self._loop.run(method, *args, **kwargs)

    # -- lifetime -----------------------------------------------------------------

    def __enter__(self) -> "SyncTarget":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if not self._loop.alive:
            return  # closed or detached already
        try:
            self._call(self.target.__aexit__, kind, error, traceback)
        finally:
            self._loop.stop()

    def close(self) -> None:
        """Drop the connection without detaching (the machine stays stopped)."""
        try:
            self._call(self.target.close)
        finally:
            self._loop.stop()

    def detach(self, *, timeout: float | None = DEFAULT) -> None:
        try:
            self._call(self.target.detach, timeout=timeout)
        finally:
            self._loop.stop()

    @property
    def stop(self) -> Stop | None:
        return self.target.stop

    @property
    def features(self) -> dict[str, str | bool]:
        return self.target.features

    @property
    def running(self) -> bool:
        return self.target.running

    @property
    def timeout(self) -> float | None:
        return self.target.timeout

    @timeout.setter
    def timeout(self, seconds: float | None) -> None:
        self.target.timeout = seconds

    # -- packets ------------------------------------------------------------------

    def request(self, payload: bytes, *, timeout: float | None = DEFAULT) -> bytes:
        return self._run_to_stop(self.target.request, payload, timeout=timeout)

    def exchange(self, payload: bytes, *, timeout: float | None = DEFAULT) -> Exchange:
        return self._call(self.target.exchange, payload, timeout=timeout)

    def registers_layout(self) -> tuple[Register, ...]:
        return self._call(self.target.registers_layout)

    # -- registers and memory -------------------------------------------------------

    def read_register(self, name: str, *, thread: int | None = None) -> int:
        return self._call(self.target.read_register, name, thread=thread)

    def read_registers(self, *, thread: int | None = None) -> dict[str, int]:
        return self._call(self.target.read_registers, thread=thread)

    def write_register(self, name: str, value: int, *, thread: int | None = None) -> None:
        self._call(self.target.write_register, name, value, thread=thread)

    def read_memory(self, address: int, length: int) -> bytes:
        return self._call(self.target.read_memory, address, length)

    def write_memory(self, address: int, data: bytes) -> None:
        self._call(self.target.write_memory, address, data)

    def read_int(self, address: int, size: int = 8, *, signed: bool = False) -> int:
        return self._call(self.target.read_int, address, size, signed=signed)

    def write_int(self, address: int, value: int, size: int = 8) -> None:
        self._call(self.target.write_int, address, value, size)

    # -- breakpoints and running -------------------------------------------------------

    def insert_breakpoint(self, address: int, kind: BreakpointKind = "software", *,
                          conditions: Sequence[bytes] = (), commands: Sequence[bytes] = (),
                          persist: bool = False) -> Breakpoint:
        return self._call(self.target.insert_breakpoint, address, kind, conditions=conditions,
                          commands=commands, persist=persist)

    def watch(self, address: int, length: int = 8, kind: BreakpointKind = "write") -> Breakpoint:
        return self._call(self.target.watch, address, length, kind)

    def remove_breakpoint(self, breakpoint: Breakpoint) -> None:
        self._call(self.target.remove_breakpoint, breakpoint)

    def resume(self, *, timeout: float | None = DEFAULT) -> Stop:
        return self._run_to_stop(self.target.resume, timeout=timeout)

    def step(self, *, timeout: float | None = DEFAULT) -> Stop:
        return self._run_to_stop(self.target.step, timeout=timeout)

    def resume_nowait(self, packet: bytes = b"c") -> None:
        self._call(self.target.resume_nowait, packet)

    def wait_stop(self, *, timeout: float | None = DEFAULT) -> Stop:
        return self._run_to_stop(self.target.wait_stop, timeout=timeout)

    def interrupt(self, *, timeout: float | None = DEFAULT, sequence: str = "Ctrl-C") -> Stop:
        return self._call(self.target.interrupt, timeout=timeout, sequence=sequence)

    def _run_to_stop(self, method, *args, **kwargs):
        call = _Call()
        try:
            return self._call(self._guarded, call, method, *args, **kwargs)
        except KeyboardInterrupt:
            # The call may go on in the loop thread: stop the target so that
            # the session is in step again, then let the script stop too.
            self._call(self._abandon, call)
            raise

    async def _guarded(self, call: "_Call", method, *args, **kwargs):
        if call.abandoned:  # Ctrl-C came before the loop thread got to it
            return None
        call.started = True  # from here to the packet going out the request lock is held
        return await method(*args, **kwargs)

    async def _abandon(self, call: "_Call") -> None:
        call.abandoned = True
        if call.started:
            async with self.target._request_lock:  # a resume being sent is out once we hold it
                pass
            if self.target.running:
                await self.target.interrupt()

    # -- threads, monitor, files -------------------------------------------------------

    def threads(self) -> list[Thread]:
        return self._call(self.target.threads)

    def monitor(self, command: str, *, timeout: float | None = DEFAULT) -> str:
        return self._call(self.target.monitor, command, timeout=timeout)

    def exec_file(self) -> str:
        return self._call(self.target.exec_file)

    def read_file(self, path: str) -> bytes:
        return self._call(self.target.read_file, path)

    def symbol(self, name: str) -> int:
        return self._call(self.target.symbol, name)
