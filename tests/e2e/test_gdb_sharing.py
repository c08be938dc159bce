"""kgdb, perf and ptrace share the debug registers: the two seed cases and the
three slot policies, with the real gdb (and a raw client where gdb would need
hundreds of continues)."""
import re

import pytest

from gdbtools import GDB, run_gdb, start_server
from kgdbstub.kernel.image import Image
from rawclient import RawClient

pytestmark = pytest.mark.skipif(GDB is None, reason="gdb is not installed")


def perf_hits(output: str) -> list[int]:
    """The sum of hits over `monitor perf` lines, for each monitor perf in the output."""
    blocks = re.findall(r"((?:id=\d+ kind=wide[^\n]*\n)+)", output)
    return [sum(int(h) for h in re.findall(r"hits=(\d+)", block)) for block in blocks]


def printed(output: str) -> list[int]:
    return [int(v) for v in re.findall(r"^\$\d+ = (\d+)$", output, re.M)]


def test_seed_case_1_perf_counts_every_jiffies_write_while_kgdb_breaks_at_do_fork():
    with start_server("--scenario", "perf-watch") as server:
        first = run_gdb(server, ["monitor perf", "print jiffies", "hbreak do_fork",
                                 *["continue", "monitor perf", "print jiffies"] * 3, "detach"])
        second = run_gdb(server, ["monitor perf", "print jiffies", "hbreak do_fork",
                                  *["continue", "monitor perf", "print jiffies"] * 2, "detach"])
    hits = perf_hits(first) + perf_hits(second)
    jiffies = printed(first) + printed(second)
    assert len(re.findall(r"hit Breakpoint 1, do_fork", first + second)) == 5
    assert hits[0] == 0
    boot = jiffies[0]
    assert [h + boot for h in hits] == jiffies, (hits, jiffies)
    assert jiffies[-1] > jiffies[0]


def _monitor(client: RawClient, command: str) -> str:
    client.send(b"qRcmd," + command.encode().hex().encode())
    text = ""
    while True:
        reply = client.receive()
        if reply == b"OK":
            return text
        assert reply.startswith(b"O"), reply
        text += bytes.fromhex(reply[1:].decode()).decode()


def _u64(client: RawClient, address: int) -> int:
    return int.from_bytes(bytes.fromhex(client.request(b"m%x,8" % address).decode()), "little")


def test_seed_case_2_ptrace_hits_equal_looper_iterations_and_the_looper_stops_after_a_million():
    with start_server("--scenario", "ptrace-loop") as server:
        image = Image(server.elf)
        do_fork, jiffies = image.address_of("do_fork"), image.address_of("jiffies")
        iterations = image.address_of("looper_iterations")
        with RawClient(server.host, server.port, timeout=60) as client:
            assert client.request(b"Z1,%x,1" % do_fork) == b"OK"
            for _ in range(5):
                assert client.request(b"c").startswith(b"T05")
                hits = int(re.search(r"hits=(\d+)", _monitor(client, "ptrace"))[1])
                assert hits == _u64(client, iterations) > 0
            assert client.request(b"z1,%x,1" % do_fork) == b"OK"
            # Follow the ticks (a read watch on jiffies) until the tracer is done.
            assert client.request(b"Z3,%x,8" % jiffies) == b"OK"
            state = ""
            for _ in range(1000):
                client.request(b"c")
                state = _monitor(client, "ptrace")
                if "state=stopped" in state:
                    break
            assert "hits=1000000 ignore_left=0 state=stopped" in state, state
            stopped_at, ticks = _u64(client, iterations), _u64(client, jiffies)
            for _ in range(3):
                client.request(b"c")
            assert _u64(client, iterations) == stopped_at == 999_999
            assert _u64(client, jiffies) > ticks, "the rest of the machine runs on"
            assert "state=T" in re.search(r"pid=2 comm=looper[^\n]*", _monitor(client, "ps"))[0]


THREE_WIDE = """
[[perf]]
kind = "wide"
address = "jiffies"
type = "w"
length = 8

[[perf]]
kind = "wide"
address = "total_forks"
type = "w"
length = 8

[[perf]]
kind = "wide"
address = "looper_iterations"
type = "w"
length = 8
"""


@pytest.fixture
def three_wide(tmp_path):
    path = tmp_path / "three-wide.toml"
    path.write_text(THREE_WIDE)
    return str(path)


def test_leftover_gives_gdb_the_one_slot_perf_left(three_wide):
    with start_server("--scenario", three_wide, "--policy", "leftover") as server:
        out = run_gdb(server, ["hbreak do_fork", "continue", "hbreak schedule_timeout", "continue",
                               "delete 2", "monitor slots", "detach"])
        after = run_gdb(server, ["monitor slots", "detach"])
    assert "hit Breakpoint 1, do_fork" in out
    # gdb inserts both when it resumes; whichever comes second finds no slot.
    assert re.search(r"Cannot insert hardware breakpoint [12]\.", out), out
    assert re.search(r"cpu=1 dr=3 owner=kgdb addr=0x[0-9a-f]+ type=x", out)
    assert "owner=kgdb" not in after, "nothing of kgdb's is left after detach"


def test_session_takes_the_free_slots_while_attached_and_gives_them_back(three_wide):
    with start_server("--scenario", three_wide, "--policy", "session") as server:
        during = run_gdb(server, ["monitor perf add wide last_fork w 8", "hbreak do_fork", "continue", "detach"])
        # The next session reserves again when it attaches, so switch policy to see the slot free.
        after = run_gdb(server, ["monitor policy leftover", "monitor perf add wide last_fork w 8", "monitor perf",
                                 "detach"])
    assert "error: ENOSPC" in during
    assert "hit Breakpoint 1, do_fork" in during
    assert re.search(r"^id=\d+\n", after, re.M), after
    assert len(re.findall(r"kind=wide", after)) == 8


def test_boot_policy_leaves_perf_and_ptrace_nothing():
    with start_server("--scenario", "perf-watch", "--policy", "boot") as server:
        out = run_gdb(server, ["monitor perf", "monitor perf add cpu=0 jiffies w 8", "monitor ptrace add 2 looper_tick x 1 5",
                               "hbreak do_fork", "hbreak schedule_timeout", "watch total_forks", "rwatch jiffies",
                               "continue", "monitor slots", "detach"])
    assert "kind=wide" not in out
    assert out.count("error: ENOSPC") == 2
    assert "Could not insert" not in out
    assert out.count("owner=kgdb") == 8
