"""kgdb, perf and ptrace share the debug registers: the two seed cases and the
three slot policies, with the real gdb (and kgdbstub.client where gdb would
need hundreds of continues)."""
import re

import pytest

from gdbtools import GDB, run_gdb, start_server
from kgdbstub.client import SyncTarget
from kgdbstub.kernel.image import Image

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


def test_seed_case_2_ptrace_hits_equal_looper_iterations_and_the_tracer_lets_go_after_a_million():
    with start_server("--scenario", "ptrace-loop") as server:
        image = Image(server.elf)
        do_fork, jiffies = image.address_of("do_fork"), image.address_of("jiffies")
        iterations = image.address_of("looper_iterations")
        with SyncTarget(server.address, timeout=60) as client:
            breakpoint = client.insert_breakpoint(do_fork, kind="hardware")
            for _ in range(5):
                assert client.resume().signal == 5
                hits = int(re.search(r"hits=(\d+)", client.monitor("ptrace"))[1])
                assert hits == client.read_int(iterations) > 0
            client.remove_breakpoint(breakpoint)
            # Follow the ticks (a read watch on jiffies) until the tracer is done: it
            # continued the looper 1,000,000 times, then detached.
            client.watch(jiffies, 8, kind="read")
            last = ""
            for _ in range(1000):
                client.resume()
                state = client.monitor("ptrace")
                if state == "":
                    break
                last = state
            assert client.monitor("ptrace") == "", last
            hits = int(re.search(r"hits=(\d+)", last)[1])
            assert hits <= 1_000_000 and "state=running" in last, last
            left, ticks = client.read_int(iterations), client.read_int(jiffies)
            assert left >= 999_999
            for _ in range(3):
                client.resume()
            assert client.read_int(iterations) > left, "untraced, the looper runs on"
            assert client.read_int(jiffies) > ticks
            assert "state=T" not in re.search(r"pid=2 comm=looper[^\n]*", client.monitor("ps"))[0]
            assert "ptrace:" not in client.monitor("slots"), "its breakpoint went with the tracer"


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
        out = run_gdb(server, ["set breakpoint always-inserted on", "hbreak do_fork", "continue",
                               "hbreak schedule_timeout", "continue", "monitor slots", "detach"])
        after = run_gdb(server, ["monitor slots", "detach"])
    assert "hit Breakpoint 1, do_fork" in out
    assert re.search(r"Cannot insert hardware breakpoint 2\.", out), out
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
        out = run_gdb(server, ["set breakpoint always-inserted on", "monitor perf", "monitor perf add cpu=0 jiffies w 8",
                               "monitor ptrace add 2 looper_tick x 1 5",
                               "hbreak do_fork", "hbreak schedule_timeout", "watch total_forks", "rwatch jiffies",
                               "continue", "monitor slots", "detach"])
    assert "kind=wide" not in out
    assert out.count("error: ENOSPC") == 2
    assert "Could not insert" not in out
    assert out.count("owner=kgdb") == 8
