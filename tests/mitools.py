"""Drive gdb through its machine interface (MI 3), as an IDE does, with pygdbmi.

An IDE (VS Code's cppdbg, CLion, Eclipse CDT) runs `gdb --interpreter=mi3`,
sends numbered commands and reads result records (`^done`, `^error`,
`^running`) and asynchronous ones (`*stopped`, `=breakpoint-modified`).
pygdbmi parses the records; MiSession waits for the one a step expects,
each wait with a deadline.
"""
from __future__ import annotations

import itertools
import subprocess
import time

from pygdbmi.gdbcontroller import GdbController

from gdbtools import GDB, LineServer, Server


class MiError(AssertionError):
    pass


class MiSession:
    def __init__(self, elf):
        if GDB is None:
            raise AssertionError("gdb is not installed")
        # A short look for more output after each read: the waits below are
        # for records, not for quiet.
        self.gdb = GdbController(
            command=[GDB, "--nx", "--quiet", "--interpreter=mi3", "-iex", "set debuginfod enabled off", str(elf)],
            time_to_check_for_additional_output_sec=0.01)
        self.records: list[dict] = []
        self._tokens = itertools.count(1)

    def wait_for(self, done, start: int, *, timeout: float = 30.0, what: str = "record"):
        """The first record from `start` on that `done` accepts, reading more as needed."""
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for index in range(seen, len(self.records)):
                if done(self.records[index]):
                    return self.records[index]
            seen = len(self.records)
            left = deadline - time.monotonic()
            if left <= 0:
                raise MiError(f"gdb/MI: no {what} within {timeout:g} s; records:\n" +
                              "\n".join(map(str, self.records[-40:])))
            self.records += self.gdb.get_gdb_response(timeout_sec=left, raise_error_on_timeout=False)

    def command(self, text: str, *, timeout: float = 30.0, expect: str = "done") -> dict:
        """Send an MI command; its result record's payload. `expect`: done, running, connected or error."""
        token = next(self._tokens)
        start = len(self.records)
        self.gdb.write(f"{token}{text}", read_response=False)
        result = self.wait_for(lambda r: r["type"] == "result" and r["token"] == token, start,
                               timeout=timeout, what=f"result of {text!r}")
        if result["message"] != expect:
            raise MiError(f"gdb/MI: {text!r} gave ^{result['message']} {result['payload']}, not ^{expect}")
        return result["payload"] or {}

    def console(self, text: str, *, timeout: float = 30.0) -> str:
        """A CLI command through `-interpreter-exec console`; what it printed."""
        start = len(self.records)
        self.command(f'-interpreter-exec console "{text}"', timeout=timeout)
        return "".join(r["payload"] for r in self.records[start:]
                       if r["type"] in ("console", "target") and isinstance(r["payload"], str))

    def wait_stopped(self, start: int, *, timeout: float = 60.0) -> dict:
        """The first `*stopped` record's payload from record `start` on."""
        return self.wait_for(lambda r: r["type"] == "notify" and r["message"] == "stopped", start,
                             timeout=timeout, what="*stopped")["payload"]

    def resume(self, text: str, *, timeout: float = 60.0) -> dict:
        """An -exec-* command that runs the target, and the stop it ends with."""
        start = len(self.records)
        self.command(text, expect="running")
        return self.wait_stopped(start, timeout=timeout)

    def close(self) -> None:
        """End gdb: SIGTERM, then SIGKILL if it has not gone within 10 s."""
        process = self.gdb.gdb_process
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        self.gdb.gdb_process = None


def target_select(server: Server) -> str:
    address = server.path if isinstance(server, LineServer) else server.address
    return f"-target-select remote {address}"
