"""The command line as a new user meets it: options, scenarios, policies and the attach line.

A bad option or scenario is one line on stderr and exit status 2; an event
the kernel refuses is one line on stderr at start-up and the stub serves
on; the line the stub prints to attach gdb shows source lines from the
first stop, copied as it is, from any directory.
"""
import re
import shlex
import socket
import subprocess
import sys

import pytest

from gdbtools import GDB, REPO_ROOT, _gdb_env, run_gdb, start_server
from kgdbstub import cli
from kgdbstub.client import SyncTarget

pytestmark = pytest.mark.timeout(120)
SERVE = [sys.executable, "-m", "kgdbstub", "serve"]


def fails(capsys, *argv: str) -> str:
    """cli.main's stderr, which must be one line, after exit status 2."""
    try:
        status = cli.main(list(argv))
    except SystemExit as leaving:
        status = leaving.code
    said = capsys.readouterr()
    assert status == 2, said
    assert said.out == "" and "Traceback" not in said.err
    assert len(said.err.strip().splitlines()) == 1, said.err
    return said.err


# -- options --------------------------------------------------------------------


@pytest.mark.parametrize("argv, said", [
    (["serve", "--cpus", "x"], "argument --cpus: invalid int value: 'x'"),
    (["serve", "--bogus"], "unrecognized arguments: --bogus"),
    (["serve", "--tcp", "nowhere"], "expected HOST:PORT"),
    (["serve", "--link", "/tmp/x"], "--link goes with --pty"),
    (["serve", "--pty", "--tcp", "127.0.0.1:0"], "not allowed with argument"),
    ([], "the following arguments are required: COMMAND"),
])
def test_an_option_error_is_one_line_that_points_to_help(capsys, argv, said):
    error = fails(capsys, *argv)
    assert said in error and "--help" in error


def test_every_option_says_what_it_does():
    _, serve = cli._parser()
    for action in serve._actions:
        assert action.help, f"{action.option_strings} has no help"
    listing = subprocess.run(SERVE + ["--help"], capture_output=True, text=True, timeout=60).stdout
    for option in ("--target", "--cpus", "--dialect", "--policy", "--trace"):
        described = re.search(rf"^  {option} .*?\n(?=  -|\Z)", listing, re.M | re.S)
        assert described and len(described[0].split()) > 3, listing


def test_version(capsys):
    with pytest.raises(SystemExit) as leaving:
        cli.main(["--version"])
    assert leaving.value.code == 0
    assert re.fullmatch(r"kgdbstub \d+\.\d+\.\d+\n", capsys.readouterr().out)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_an_ipv6_loopback_address_in_brackets_is_served():
    with start_server(address="[::1]:0") as server:
        assert server.host == "::1"
        first = server.stdout.text.splitlines()[0]
        assert re.fullmatch(r"listening on tcp:\[::1\]:\d+", first)
        with SyncTarget(server.address) as target:
            assert "comm=init" in target.monitor("ps")


# -- scenarios ---------------------------------------------------------------------


@pytest.mark.parametrize("text, said", [
    ("perf = 5\n", "'perf' must be [[perf]] tables"),
    ('[[perf]]\nkind = "wide"\n', "'address' is missing"),
    ('[[perf]]\nkind = "cpu"\ncpu = \'0\'\naddress = "jiffies"\n', "'cpu' must be an integer"),
    ('[[perf]]\ntype = [\'w\']\naddress = "jiffies"\n', "'type' must be one of x, w, rw"),
    ('[[ptrace]]\naddress = "looper_tick"\n', "'task' is missing"),
    ('[[ptrace]]\ntask = "looper"\naddress = "looper_tick"\ncontinues = \'x\'\n', "'continues' must be an integer"),
    ('[[ptrace]]\ntask = true\naddress = "looper_tick"\n', "'task' must be a pid or a task name, not true"),
    ('[[perf]]\naddress = "jiffies"\nlength = 8.0\n', "'length' must be an integer, not 8.0"),
    ('[[perf]]\naddress = "jiffies"\nlength = \'8\'\n', "'length' must be an integer, not \"8\""),
])
def test_a_malformed_scenario_is_one_line_and_status_2(capsys, tmp_path, text, said):
    broken = tmp_path / "broken.toml"
    broken.write_text(text)
    error = fails(capsys, "serve", "--tcp", "127.0.0.1:0", "--scenario", str(broken))
    assert said in error and "broken.toml" in error


@pytest.mark.parametrize("policy", ["boot", "session", "leftover"])
def test_a_refused_scenario_event_is_reported_at_start_up_and_the_stub_serves_on(policy, tmp_path):
    # Under boot kgdb holds every slot: perf-watch's event cannot have one. Under
    # the others, a length perf does not take is refused, and the next event is in.
    mixed = tmp_path / "mixed.toml"
    mixed.write_text('[[perf]]\naddress = "jiffies"\nlength = 3\n[[perf]]\naddress = "total_forks"\n')
    with start_server("--policy", policy, "--scenario", str(mixed)) as server:
        with SyncTarget(server.address) as target:
            perf = target.monitor("perf")
            slots = target.monitor("slots")
        said = server.stderr_text()
    lines = [line for line in said.splitlines() if "scenario mixed" in line]
    if policy == "boot":
        assert len(lines) == 2 and "[[perf]] 2" in lines[1] and "ENOSPC" in lines[1], said
        assert perf == ""
    else:
        assert len(lines) == 1 and "[[perf]] 1" in lines[0] and "EINVAL" in lines[0], said
        assert "type=w len=8" in perf and "len=3" not in perf
    if policy in ("boot", "session"):
        # kgdb's reservations are what perf and ptrace were refused for: shown, not "free".
        assert "owner=free" not in slots, slots


# -- the first ten minutes ------------------------------------------------------------


def _shows_the_first_stop_with_source(argv: list[str], cwd) -> str:
    done = subprocess.run(argv + ["-nx", "-batch", "-iex", "set debuginfod enabled off", "-ex", "detach"],
                          cwd=cwd, capture_output=True, text=True, timeout=60, env=_gdb_env(),
                          stdin=subprocess.DEVNULL)
    said = done.stdout + done.stderr
    assert "kgdb_breakpoint () at kernel/debug.c:" in said, said
    assert "No such file or directory" not in said, said
    assert re.search(r"^\d+\t\s*barrier\(\);", said, re.M), said
    return said


@pytest.mark.skipif(GDB is None, reason="gdb is not installed")
def test_the_attach_line_the_stub_prints_shows_source_from_the_first_stop(tmp_path):
    with start_server() as server:
        hint = server.stdout.wait_for(r"attach with: (.*)\n", timeout=30)[1]
        _shows_the_first_stop_with_source(shlex.split(hint), cwd=tmp_path)


@pytest.mark.skipif(GDB is None, reason="gdb is not installed")
def test_the_readme_attach_line_shows_source_from_the_first_stop():
    readme = (REPO_ROOT / "README.md").read_text()
    line = re.search(r"^    (gdb targets/minikernel/minikernel\.elf .*127\.0\.0\.1:1234.*)$", readme, re.M)[1]
    with start_server() as server:
        argv = shlex.split(line.replace("127.0.0.1:1234", server.address))
        _shows_the_first_stop_with_source(argv, cwd=REPO_ROOT)


@pytest.mark.skipif(GDB is None, reason="gdb is not installed")
def test_ptrace_loop_stays_usable_across_reattaches():
    """The tracer of ptrace-loop continues the looper 1,000,000 times and then
    detaches, as `gdb -batch -p PID -ex 'continue 1000000'` would: after any
    number of detaches the looper runs on, so do_fork is still hit."""
    with start_server("--scenario", "ptrace-loop") as server:
        run_gdb(server, ["monitor ptrace"])  # gdb -batch detaches at its end: the machine runs on
        with SyncTarget(server.address) as target:
            do_fork = target.symbol("do_fork")
            target.insert_breakpoint(do_fork, kind="hardware")  # resumed from without a step over it
            for _ in range(200):  # the looper forks every 20,000 iterations
                if target.monitor("ptrace") == "":
                    break
                assert target.resume(timeout=30).pc == do_fork
            else:
                pytest.fail(f"the tracer is still there: {target.monitor('ptrace')}")
            assert "ptrace:" not in target.monitor("slots")
            assert target.resume(timeout=30).pc == do_fork, "the looper runs on and forks"
            assert target.read_int(target.symbol("looper_iterations")) > 1_000_000
