"""gdb with no file gets the symbols from the stub: qXfer:exec-file:read names
the image, and gdb reads it over host I/O (vFile) as it would from gdbserver."""
import re

import pytest

from gdbtools import GDB, run_gdb, start_server

pytestmark = pytest.mark.skipif(GDB is None, reason="gdb is not installed")


def test_gdb_without_a_file_loads_the_symbols_after_target_remote_and_breaks_at_do_fork(tmp_path):
    trace = tmp_path / "trace.txt"
    with start_server("--trace", str(trace)) as server:
        # A string target: gdbtools gives gdb no `file` command.
        out = run_gdb(server.address, ["break do_fork", "continue", "bt 1", "print total_forks", "detach"])
        elf = server.elf
    assert f"Reading symbols from target:{elf}..." in out, out
    assert re.search(r"Breakpoint 1 at 0x[0-9a-f]+: file kernel/fork\.c, line \d+\.", out), out
    assert re.search(r"hit Breakpoint 1, do_fork \(", out), out
    assert re.search(r"^#0  do_fork \(", out, re.M)
    assert re.search(r"^\$1 = \d+$", out, re.M), "a variable by name: the DWARF came too"
    assert "No symbol table is loaded" not in out

    packets = trace.read_text()
    assert "<- 'qXfer:exec-file:read::0," in packets
    assert f"-> 'l{elf}'" in packets
    opened = f"vFile:open:{str(elf).encode().hex()},0,0"
    assert f"<- '{opened}'" in packets
    assert re.search(r"<- 'vFile:pread:0,[0-9a-f]+,0'\n-> 'F[0-9a-f]+;\\x7fELF", packets)
    assert re.search(r"<- 'vFile:fstat:0'\n-> 'F40;", packets)


def test_host_io_serves_the_image_alone_and_only_for_reading(tmp_path):
    copy, elsewhere = tmp_path / "copy.elf", tmp_path / "passwd"
    with start_server() as server:
        elf = server.elf
        out = run_gdb(server.address, [f"remote get /etc/passwd {elsewhere}", f"remote put {elf} {elf}",
                                       f"remote delete {elf}", f"remote get {elf} {copy}", "detach"])
    errors = re.findall(r"^Remote I/O error: (.*)$", out, re.M)
    assert errors == ["No such file or directory", "Permission denied", "Function not implemented"], out
    assert not elsewhere.exists()
    assert copy.read_bytes() == elf.read_bytes()
