"""One debugger at a time, loopback by default, and one clear line for bad configuration."""
import errno
import os
import re
import socket
import subprocess
import sys

import pytest
import trio

from gdbtools import REPO_ROOT, start_server
from kgdbstub import cli
from kgdbstub.client import connect

SERVE = [sys.executable, "-m", "kgdbstub", "serve"]


async def test_a_second_connection_is_refused_and_the_first_is_not_disturbed(server):
    async with await connect(server.address) as first:
        before = await first.read_register("rip")
        with trio.fail_after(10):
            second = await trio.open_tcp_stream(server.host, server.port)
            await second.send_all(_frame(b"qSupported"))
            said = b""
            while chunk := await second.receive_some(1024):
                said += chunk
        assert said == b"+" + _frame(b"E.kgdbstub: another debugger is attached; only one is served at a time")
        assert await first.read_register("rip") == before
        assert await first.monitor("ps")


def _serve_fails(*args: str, timeout: float = 60) -> str:
    done = subprocess.run([*SERVE, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    return done.stderr


def test_a_non_loopback_address_needs_allow_remote():
    said = _serve_fails("--tcp", "0.0.0.0:0")
    assert "not a loopback address" in said and "--allow-remote" in said


def test_allow_remote_listens_and_warns():
    with start_server("--allow-remote", address="0.0.0.0:0") as server:
        assert server.host == "0.0.0.0"
        assert "whoever connects controls the machine" in server.stderr_text()


@pytest.mark.parametrize("args, message", [
    (["--target", "/nonexistent/kernel.elf"], "no target"),
    (["--scenario", "no-such-scenario"], "no scenario"),
    (["--policy", "greedy"], "invalid choice"),
    (["--dialect", "ancient"], "invalid choice"),
    (["--cpus", "0"], "--cpus takes 1 to 8"),
])
def test_bad_configuration_is_one_clear_error_and_status_2(args, message):
    assert message in _serve_fails(*args)


def test_a_malformed_or_wrong_scenario_is_refused(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[[perf]\naddress = ")
    assert "broken.toml" in _serve_fails("--scenario", str(broken))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[[perf]]\nkind = "wide"\naddress = "no_such_symbol"\ntype = "w"\nlength = 8\n')
    said = _serve_fails("--scenario", str(unknown))
    assert "no_such_symbol" in said and len(said.strip().splitlines()) == 1


def test_a_port_in_use_is_one_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = _serve_fails("--tcp", f"127.0.0.1:{port}")
    assert "address already in use" in said.lower() and len(said.strip().splitlines()) == 1


def test_no_pty_support_is_one_clear_error(monkeypatch, capsys):
    def no_ptys():
        raise OSError(errno.ENOENT, "out of pseudo-terminals")

    monkeypatch.setattr(os, "openpty", no_ptys)
    assert cli.main(["serve", "--pty"]) == 2
    said = capsys.readouterr()
    assert said.out == "" and "pseudo-terminals" in said.err and len(said.err.strip().splitlines()) == 1


def _frame(payload: bytes) -> bytes:
    return b"$%s#%02x" % (payload, sum(payload) & 0xFF)


async def _read_until(stream, needle: bytes) -> bytes:
    seen = b""
    while needle not in seen:
        chunk = await stream.receive_some(65536)
        assert chunk, f"the stub hung up; it said {seen!r}"
        seen += chunk
    return seen


@pytest.mark.parametrize("ack_mode", [True, False])
async def test_an_oversize_packet_gets_an_error_and_the_stream_goes_on(server, ack_mode):
    with trio.fail_after(30):
        stream = await trio.open_tcp_stream(server.host, server.port)
        async with stream:
            await stream.send_all(_frame(b"qSupported"))
            said = await _read_until(stream, b"#")
            size = int(re.search(rb"PacketSize=([0-9a-f]+)", said)[1], 16)
            await stream.send_all(b"+")
            if not ack_mode:
                await stream.send_all(_frame(b"QStartNoAckMode"))
                await _read_until(stream, _frame(b"OK"))
                await stream.send_all(b"+")
            # A write of one byte more than fits, sent intact: acknowledged, then refused.
            too_big = b"M402000,%x:" % size
            too_big += b"55" * ((size + 1 - len(too_big)) // 2) + b"5" * ((size + 1 - len(too_big)) % 2)
            assert len(too_big) == size + 1
            await stream.send_all(_frame(too_big))
            reply = await _read_until(stream, b"#")
            await stream.send_all(b"+" if ack_mode else b"")
            assert reply.startswith(b"+$E" if ack_mode else b"$E"), reply
            # Damaged as well as too big: a '-', so that it is sent again.
            if ack_mode:
                await stream.send_all(_frame(too_big)[:-2] + b"00")
                assert await stream.receive_some(1) == b"-"
            # The stream is in step again: the next packet is answered, and nothing was written.
            await stream.send_all(_frame(b"m402000,1"))
            reply = await _read_until(stream, b"#")
            assert reply.startswith(b"+$00#" if ack_mode else b"$00#"), reply


async def test_packets_sent_while_the_machine_runs_wait_and_ctrl_c_still_stops_it(server):
    with trio.fail_after(30):
        stream = await trio.open_tcp_stream(server.host, server.port)
        async with stream:
            await stream.send_all(_frame(b"QStartNoAckMode"))
            assert (await _read_until(stream, b"#")).startswith(b"+$OK#")
            await stream.send_all(b"+" + _frame(b"c"))
            # Nothing stops the machine by itself; a script asks things meanwhile.
            for _ in range(3):
                await stream.send_all(_frame(b"m402000,1"))
            await stream.send_all(b"\x03")
            said = b""
            # Console text the run printed comes first, as O packets.
            while len(replies := [r for r in re.findall(rb"\$([^#]*)#", said) if not r.startswith(b"O")]) < 4:
                chunk = await stream.receive_some(65536)
                assert chunk, f"the stub hung up; it said {said!r}"
                said += chunk
            assert replies[0].startswith(b"T02"), replies  # the stop comes first, then the answers
            assert [len(r) for r in replies[1:]] == [2, 2, 2], replies
