"""One debugger at a time, loopback by default, and one clear line for bad configuration."""
import socket
import subprocess
import sys

import pytest
import trio

from gdbtools import REPO_ROOT, start_server
from kgdbstub.client import connect

SERVE = [sys.executable, "-m", "kgdbstub", "serve"]


async def test_a_second_connection_is_refused_and_the_first_is_not_disturbed(server):
    async with await connect(server.address) as first:
        before = await first.read_register("rip")
        with trio.fail_after(10):
            second = await trio.open_tcp_stream(server.host, server.port)
            said = b""
            while chunk := await second.receive_some(1024):
                said += chunk
        assert said == b"kgdbstub: another debugger is attached; only one is served at a time\n"
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
