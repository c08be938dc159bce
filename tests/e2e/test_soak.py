"""tools/soak.py: a short soak keeps every invariant and does real work, and its
checkers report what they must (fed doctored listings)."""
import json
import subprocess
import sys

from gdbtools import GDB, REPO_ROOT

from kgdbstub import targets

sys.path.insert(0, str(REPO_ROOT / "tools"))
import soak  # tools/ is not a package


def test_a_short_soak_keeps_every_invariant(tmp_path):
    figures_file = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "soak.py"), "--seconds", "15", "--epoch-seconds", "5",
         "--replay", "30", "--seed", "5", "--json", str(figures_file)],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    figures = json.loads(figures_file.read_text())
    assert figures["violations"] == 0
    assert figures["epochs"] >= 2 and figures["determinism_compared"] == figures["epochs"]
    assert figures["operations"] >= 200
    assert figures["checks"] >= figures["operations"]
    assert figures["reconnects"] >= 3
    assert figures["stops"] >= 10 and figures["interrupts"] >= 1
    assert figures["gdb_sessions"] >= (1 if GDB else 0)
    assert figures["hostile_clients"] >= 1


# -- the checkers, fed doctored listings ----------------------------------------------------

MACHINE = soak.Machine(targets.resolve(targets.DEFAULT_TARGET))
JIFFIES = MACHINE.address("jiffies")
FREE_SLOTS = "".join(f"cpu={cpu} dr={dr} owner=free addr=0x0 type=- len=0\n" for cpu in range(2) for dr in range(4))


def jiffies_watch():
    """perf's wide write watch on jiffies (seed case 1), registered when jiffies was 100."""
    return [soak.Registration(f"perf:{event}", ("perf", event), cpu, None, JIFFIES, 8, "w", "jiffies",
                              {"kind": "wide", "cpu": str(cpu), "task": "-", "addr": f"{JIFFIES:#x}", "type": "w",
                               "len": "8"}, group=9, base=(100, 100))
            for event, cpu in ((9, 0), (10, 1))]


def perf_listing(*hits):
    return "".join(f"id={9 + cpu} kind=wide cpu={cpu} task=- addr={JIFFIES:#x} type=w len=8 hits={count}\n"
                   for cpu, count in enumerate(hits))


def truth(jiffies):
    return soak.Truth({"jiffies": jiffies, "total_forks": 0, "looper_iterations": 0}, looper_pc=0, cpu_pcs=(0, 0))


def test_the_slot_checker_reports_a_slot_with_two_owners():
    assert soak.check_slot_table(FREE_SLOTS, cpus=2) == []
    doctored = FREE_SLOTS + f"cpu=0 dr=1 owner=perf:9 addr={JIFFIES:#x} type=w len=8\n"
    assert soak.check_slot_table(doctored, cpus=2) == ["cpu=0 dr=1 has 2 owners: free, perf:9"]


def test_the_slot_checker_reports_an_event_missing_from_its_dr_and_a_kgdb_slot_left_behind():
    installed = FREE_SLOTS.replace("cpu=0 dr=0 owner=free addr=0x0 type=- len=0",
                                   f"cpu=0 dr=0 owner=perf:9 addr={JIFFIES:#x} type=w len=8")
    installed = installed.replace("cpu=1 dr=0 owner=free addr=0x0 type=- len=0",
                                  f"cpu=1 dr=0 owner=perf:10 addr={JIFFIES:#x} type=w len=8")
    watch = jiffies_watch()
    assert soak.check_slot_owners(installed, 2, watch, {}, soak.Counter(), settled=True) == []
    lost = installed.replace(f"cpu=1 dr=0 owner=perf:10 addr={JIFFIES:#x} type=w len=8",
                             "cpu=1 dr=0 owner=free addr=0x0 type=- len=0")
    assert soak.check_slot_owners(lost, 2, watch, {}, soak.Counter(), settled=True) == [
        f"cpu 1: perf:10 {JIFFIES:#x} w 8 should hold 1 more DR(s): lost"]
    left_behind = installed.replace("cpu=0 dr=3 owner=free addr=0x0 type=- len=0",
                                    "cpu=0 dr=3 owner=kgdb addr=0xffffffff81000062 type=x len=1")
    [problem] = soak.check_slot_owners(left_behind, 2, watch, {}, soak.Counter(), settled=True)
    assert "kgdb holds 1 DR(s) for 0xffffffff81000062" in problem


def test_the_count_checker_reports_a_lost_hit_and_a_lost_event():
    watch = jiffies_watch()
    assert soak.check_registrations(watch, perf_listing(50, 0), "", MACHINE, truth(150), cpus=2) == []
    problems = soak.check_registrations(watch, perf_listing(49, 0), "", MACHINE, truth(150), cpus=2)
    assert any("perf:9 (9,) on jiffies (w): hits=49, the machine says 50" in p for p in problems), problems
    assert any("wide perf event 9 on jiffies (w): hits=49 over its CPUs" in p for p in problems), problems
    problems = soak.check_registrations(watch, perf_listing(50), "", MACHINE, truth(150), cpus=2)
    assert problems == ["perf:10 (10,) was registered and is no longer listed: silently lost"]
