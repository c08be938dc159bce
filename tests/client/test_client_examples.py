"""The README's scripting examples and the packet console, run against a real
`kgdbstub serve`, over TCP and over a pty.

Over a pty twice: through a real pseudo-terminal plumbed to the server's TCP
port (clienttools.pty_bridge), which needs nothing of the server, and with
`kgdbstub serve --pty` itself once the test harness can start it.
"""
import re

import pytest

from clienttools import LINES, run_script, served
from gdbtools import REPO_ROOT, start_server
from kgdbstub.kernel.image import Image

WATCH_LINE = re.compile(r"^ *(\d+)  total_forks=(\d+) +thread=(-?\d+) \((\w+)\) cpu=(\d+) reason=watch pc=0x[0-9a-f]+$",
                        re.M)
TABLE_ROW = re.compile(r"^ +(\d+) +(-?\d+) +(\d+|-) +(\d+) +(\d+) +(\d+)  (yes|NO)$", re.M)


def check_watch_total_forks(output: str, count: int) -> None:
    threads = re.search(r"^threads: (.*)$", output, re.M)
    assert threads and "-2 (shadowCPU0)" in threads[1] and "1 (init)" in threads[1], output
    start = int(re.search(r"total_forks is at 0x[0-9a-f]+, now (\d+)", output)[1])
    rows = WATCH_LINE.findall(output)
    assert [int(r[0]) for r in rows] == list(range(1, count + 1)), output
    # Every stop is the next write: the value goes up by one each time.
    assert [int(r[1]) for r in rows] == list(range(start + 1, start + count + 1))
    assert all(name != "None" for name in (r[3] for r in rows))


@pytest.mark.parametrize("line", LINES)
def test_watch_total_forks_example_prints_a_hundred_consecutive_values_and_their_threads(line):
    with served(line) as (server, address):
        done = run_script("examples/watch_total_forks.py", address)
        assert done.returncode == 0, done.stderr
        check_watch_total_forks(done.stdout, 100)
        # It detached: the machine ran on, and the next debugger finds more forks.
        again = run_script("examples/watch_total_forks.py", server.address, "--count", "1")
    assert again.returncode == 0, again.stderr
    before = int(WATCH_LINE.findall(done.stdout)[-1][1])
    assert int(WATCH_LINE.findall(again.stdout)[0][1]) > before


def test_watch_total_forks_example_works_with_the_kgdb_dialect_given_the_elf():
    with start_server("--dialect", "kgdb") as server:
        done = run_script("examples/watch_total_forks.py", server.address, "--count", "5", "--elf", str(server.elf))
    assert done.returncode == 0, done.stderr
    # kgdb sends no reason: the example prints what it has.
    rows = re.findall(r"^ +\d+  total_forks=(\d+) .* reason=None pc=0x[0-9a-f]+$", done.stdout, re.M)
    assert len(rows) == 5 and [int(v) for v in rows] == list(range(int(rows[0]), int(rows[0]) + 5))


@pytest.mark.parametrize("line", LINES)
@pytest.mark.parametrize("server_args", [("--scenario", "perf-watch"), ()], ids=["perf-watch", "monitor-perf-add"])
def test_seed_case_1_example_counts_every_jiffies_write_at_each_do_fork_stop(line, server_args):
    with served(line, *server_args) as (server, address):
        image = Image(server.elf)
        done = run_script("examples/seed_case_1.py", address, "--stops", "8")
        # What it added it deleted: no perf event is left on jiffies but the scenario's.
        after = run_script("tools/rsp_console.py", server.address, "qRcmd," + b"perf".hex())
    assert done.returncode == 0, done.stdout + done.stderr
    rows = TABLE_ROW.findall(done.stdout)
    assert len(rows) == 8, done.stdout
    for number, (stop, _thread, _cpu, jiffies, hits, expected, ok) in enumerate(rows, 1):
        assert (int(stop), ok) == (number, "yes")
        assert int(hits) == int(expected) > 0
    # Forks come faster than ticks (a tick is 100,000 blocks of guest time, looper forks every
    # 20,000 iterations of 3 blocks), so two stops may share a jiffy; over the eight it advances.
    seen = [int(r[3]) for r in rows]
    assert seen == sorted(seen) and seen[-1] > seen[0], "jiffies goes on between stops"
    assert "every write to jiffies was counted" in done.stdout
    assert re.search(r"slots in use at the first stop: kgdb, perf:\d+, perf:\d+", done.stdout)
    assert ("added perf events" in done.stdout) == ("--scenario" not in server_args)
    events = re.findall(r"addr=(0x[0-9a-f]+)", after.stdout)
    assert events == ([f"{image.address_of('jiffies'):#x}"] * 2 if server_args else []), after.stdout


def test_console_decodes_errors_output_stops_and_host_io(tmp_path):
    packets = tmp_path / "packets.txt"
    with start_server() as server:
        image = Image(server.elf)
        total_forks = image.address_of("total_forks")
        packets.write_text("\n".join([
            "# a comment, then a blank line",
            "",
            "qSupported:swbreak+;hwbreak+",
            "m0,4",
            "qRcmd," + b"ps".hex(),
            "qThreadExtraInfo,fffffffe",
            f"Z2,{total_forks:x},8",
            "c",
            f"z2,{total_forks:x},8",
            "vFile:open:" + b"/etc/passwd".hex() + ",0,0",
            "qXfer:exec-file:read::0,200",
            "nonsense",
            "c",
            "^C",
            "D",
        ]) + "\n")
        done = run_script("tools/rsp_console.py", server.address, "-f", str(packets), "--timeout", "1")
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "-> # a comment" not in out
    assert re.search(r"^<- PacketSize=4000;QStartNoAckMode\+;.*qXfer:exec-file:read\+$", out, re.M)
    assert "<- E14\n   error: errno 14, EFAULT: Bad address\n" in out
    assert re.search(r"^<- O 'pid=1 comm=init cpu=. state=.\\n'$", out, re.M)
    assert "<- 736861646f7743505530\n   'shadowCPU0'\n" in out
    stop = re.search(r"^   signal 5 \(SIGTRAP\)  thread=(\d+)  cpu=(\d+)  06=0x[0-9a-f]+  07=0x[0-9a-f]+  "
                     r"10=0x[0-9a-f]+  watch=(0x[0-9a-f]+)$", out, re.M)
    assert stop and int(stop[3], 16) == total_forks, out
    assert "<- F-1,2\n   failed: errno 2, ENOENT: No such file or directory\n" in out
    assert f"<- l{server.elf}\n" in out
    assert "-> nonsense\n<- \n   empty: the stub does not support this packet\n" in out
    assert "(no stop within 1 s: the target runs; ^C stops it)" in out
    assert re.search(r"^-> \^C \(0x03\)\n<- T02thread:[0-9a-f]{8};.*\n   signal 2 \(SIGINT\)", out, re.M)
    assert out.endswith("-> D\n<- OK\n")


def test_console_takes_packets_as_arguments_names_registers_after_a_handshake_and_shows_the_wire():
    with start_server() as server:
        done = run_script("tools/rsp_console.py", server.address, "--handshake", "--wire", "?", "qC")
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert re.search(r"^   wire -> \$qSupported:.*#[0-9a-f]{2}$", out, re.M)  # the handshake went out first
    assert re.search(r"^   signal 5 \(SIGTRAP\)  thread=1  cpu=0  rbp=0x[0-9a-f]+  rsp=0x[0-9a-f]+  rip=0x[0-9a-f]+$",
                     out, re.M), out
    assert re.search(r"^<- QC00000001\n   current thread 1$", out, re.M)


def test_console_reads_packets_from_stdin_and_reports_a_lost_connection():
    with start_server("--once") as server:
        done = run_script("tools/rsp_console.py", server.address, input="qC\nk\n")
        assert server.wait(timeout=30) == 0
    assert done.returncode == 0 and "-> k\n<- \n" in done.stdout, done.stdout + done.stderr
    with start_server() as server:
        address = server.address
        server.stop()
        refused = run_script("tools/rsp_console.py", address, "qC")
    assert refused.returncode == 1 and "cannot connect to" in refused.stderr


def test_the_readme_scripting_snippet_runs_against_a_server(capsys):
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Scripting sessions\n", 1)[1].split("\n## ", 1)[0]
    snippet = re.search(r"\n\n((?:    .*\n|\n)+?)\n(?! )", section)[1]
    code = "\n".join(line[4:] for line in snippet.splitlines())
    assert "SyncTarget(\"127.0.0.1:1234\")" in code
    with start_server() as server:
        exec(compile(code.replace("127.0.0.1:1234", server.address), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert re.search(r"^\d+ -?\d+ 0x[0-9a-f]+$", printed, re.M) and "owner=kgdb" in printed
    for script in re.findall(r"python ((?:examples|tools)/\S+\.py)", section):
        assert (REPO_ROOT / script).is_file(), script
