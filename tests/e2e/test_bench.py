"""tools/bench.py runs end to end at a tiny size and reports every measure.

Speed is the benchmark's business, not the suite's: this only keeps the
tool working, so that its numbers can be had by anyone with one command.
"""
import json
import subprocess
import sys

from gdbtools import REPO_ROOT

MEASURES = (
    "plain unicorn: looper iterations/s",
    "machine, nothing armed: iterations/s",
    "machine, four watches armed: iterations/s",
    "ptrace-loop: 1,000,000 ptrace hits",
    "perf hits/s (watch written every iteration)",
    "one step, 1000 software breakpoints set",
    "3 watch stops, ignore count: kgdbstub",
    "3 watch stops, gdb Python continue loop: kgdbstub",
    "m reads/s (raw client, loopback)",
    "Z1/z1 pairs/s (raw client, loopback)",
    "gdb dump memory, 1 MiB",
    "attach: serve start to gdb showing the stop",
    "break-in latency p50 (5 Ctrl-Cs, looper busy)",
    "break-in latency p99 (5 Ctrl-Cs, looper busy)",
    "looper's loop: share of instructions",
    "conditional breakpoint, 300 hits, target evaluates: kgdbstub hits/s",
    "conditional breakpoint, 20 hits, gdb evaluates: kgdbstub hits/s",
    "dprintf, agent style, 200 lines: kgdbstub lines/s",
)


def test_the_benchmark_reports_every_measure(tmp_path):
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "tools/bench.py", "--json", str(report), "--stops", "3", "--requests", "50",
         "--iterations", "20000", "--rounds", "1", "--break-ins", "5", "--condition-hits", "300",
         "--condition-host-hits", "20", "--dprintf-lines", "200"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(report.read_text())["results"]
    for measure in MEASURES:
        assert results[measure] > 0, measure
        assert measure in done.stdout
    # A peer is measured or skipped with a note, never missing.
    for peer in ("gdbserver (native)", "udbserver"):
        name = f"3 watch stops, ignore count: {peer}"
        assert name in results and (results[name] is None) == ("skipped" in _row(done.stdout, name))
    name = "conditional breakpoint, 300 hits, target evaluates: gdbserver (native) hits/s"
    assert name in results and (results[name] is None) == ("skipped" in _row(done.stdout, name))


def _row(table: str, name: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(name))


def test_the_hostile_bench_runs_at_a_tiny_size(tmp_path):
    """tools/bench_hostile.py: every figure is there, and says what the stub promises."""
    figures_file = tmp_path / "hostile.json"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "bench_hostile.py"), "--requests", "200",
                           "--json", str(figures_file)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(figures_file.read_text())
    assert figures["unacknowledged"]["all_answered"] and figures["unacknowledged"]["next_debugger_served"]
    assert figures["naks"]["next_request_answered"]
    assert figures["refusals"]["first_said"].startswith("+$E.kgdbstub: another debugger is attached")
    assert figures["sigint_detached"]["exit_status"] == figures["sigint_continued"]["exit_status"] == 130
    assert figures["echo"]["packets_answered_in_3_s"] == 1
