"""`serve --trace FILE`: a log readable by its owner alone, never written over a file or through a
symbolic link, and a log that cannot be written is one line on stderr while the stub serves on."""
import os
import stat

import pytest

from gdbtools import start_server
from kgdbstub import cli
from kgdbstub.client import SyncTarget
from kgdbstub.trace import Trace

pytestmark = pytest.mark.timeout(120)


def refused(capsys, path) -> str:
    assert cli.main(["serve", "--tcp", "127.0.0.1:0", "--trace", str(path)]) == 2
    said = capsys.readouterr()
    assert said.out == "" and len(said.err.strip().splitlines()) == 1 and "Traceback" not in said.err
    return said.err


def test_an_existing_file_is_refused_and_left_as_it_was(capsys, tmp_path):
    existing = tmp_path / "notes.txt"
    existing.write_text("my notes\n")
    assert "exists" in refused(capsys, existing)
    assert existing.read_text() == "my notes\n"


def test_a_symbolic_link_is_refused_and_its_target_left_as_it_was(capsys, tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    link = tmp_path / "trace.log"
    link.symlink_to(target)
    assert "symbolic link" in refused(capsys, link)
    assert target.read_text() == "keep me\n"
    dangling = tmp_path / "dangling.log"
    dangling.symlink_to(tmp_path / "nowhere")
    assert "symbolic link" in refused(capsys, dangling)
    assert not (tmp_path / "nowhere").exists()


def test_a_fifo_with_no_reader_and_a_directory_are_refused(capsys, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "no reader" in refused(capsys, fifo)
    assert "directory" in refused(capsys, tmp_path).lower()


def test_the_log_is_a_new_file_only_its_owner_can_read(tmp_path):
    log = tmp_path / "trace.log"
    with start_server("--trace", str(log)) as server:
        with SyncTarget(server.address) as target:
            target.read_memory(target.symbol("jiffies"), 8)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert "<- 'm" in log.read_text()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_a_log_that_cannot_be_written_stops_with_one_line_and_the_stub_serves_on():
    with start_server("--trace", "/dev/full") as server:
        with SyncTarget(server.address) as target:
            assert "comm=init" in target.monitor("ps")
            assert target.read_int(target.symbol("jiffies")) >= 0
        with SyncTarget(server.address) as target:  # and the next debugger too
            assert "comm=init" in target.monitor("ps")
        assert server.proc.poll() is None
        said = server.stderr_text()
    assert said.count("--trace /dev/full") == 1 and "tracing stopped" in said, said


def test_a_pipe_whose_reader_went_away_stops_the_log_not_the_stub(tmp_path, capfd):
    read_end, write_end = os.pipe()
    os.close(read_end)
    trace = Trace(write_end, name="PIPE")
    trace("<-", b"qSupported")  # EPIPE: Python ignores SIGPIPE, the write fails
    trace("->", b"OK")
    said = capfd.readouterr().err
    assert said.count("kgdbstub: --trace PIPE:") == 1 and "tracing stopped" in said


def test_a_fifo_with_a_reader_is_written_to(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        trace = Trace.open(str(fifo))
        trace("<-", b"g")
        trace.close()
        assert os.read(reader, 100) == b"<- 'g'\n"
    finally:
        os.close(reader)
