"""What the real gdb asks at each watch stop it shows, in the modern dialect.

gdb 13 refreshes its thread list at every stop it shows (infrun.c,
normal_stop: update_thread_list) and, when the stub offers
qXfer:threads:read, does it in one packet (remote.c,
remote_target::update_thread_list) and takes each thread's name from it
(extra_thread_info). gdb's own listing must look the same as with
qfThreadInfo and qThreadExtraInfo.
"""
import re

import pytest

from gdbtools import run_gdb, start_server

pytestmark = pytest.mark.timeout(120)


def test_gdb_reads_the_thread_list_in_one_packet_and_names_threads_as_before(tmp_path):
    trace = tmp_path / "trace"
    with start_server("--trace", str(trace)) as traced:
        output = run_gdb(traced, ["watch looper_iterations", "continue", "continue", "continue", "info threads",
                                  "detach"])
    for listed in ("Thread 1 (init)", "Thread 2 (looper)", "(shadowCPU0)", "(shadowCPU1)"):
        assert listed in output, output
    lines = trace.read_text().splitlines()
    stops = [i for i, line in enumerate(lines) if line.startswith("-> 'T05")]
    assert len(stops) >= 3, lines
    asked = [re.match(r"<- '([^']*)'", line)[1] for line in lines[stops[1] + 1 : stops[2]] if line.startswith("<- ")]
    assert sum(packet.startswith("qXfer:threads:read::0,") for packet in asked) == 1, asked
    assert not [packet for packet in asked if packet.startswith(("qfThreadInfo", "qsThreadInfo", "qThreadExtraInfo"))]
    # The rest is what gdb needs at a watch stop: the watched value, its
    # watchpoint out and in again, a frame's stack, and the resume.
    assert {"m" if packet[0] == "m" else packet[:2] for packet in asked} <= {"m", "qX", "z2", "Z2", "vC"}, asked
