"""Scenario files are checked whole when loaded: the first problem is one line naming the entry and the key,
and no value is coerced into something it does not say."""
import tomllib

import pytest

from kgdbstub import scenario
from kgdbstub.scenario import PerfSpec, PtraceSpec, ScenarioError

WATCH = 'address = "jiffies"\n'


@pytest.mark.parametrize("text, said", [
    ("perf = 5\n", "'perf' must be [[perf]] tables, not 5"),
    ("[[perf]]\nkind = \"wide\"\n", "[[perf]] 1: 'address' is missing"),
    ("[[perf]]\nkind = \"cpu\"\ncpu = '0'\n" + WATCH, "[[perf]] 1: 'cpu' must be an integer, not \"0\""),
    ("[[perf]]\ntype = ['w']\n" + WATCH, "[[perf]] 1: 'type' must be one of x, w, rw, not [\"w\"]"),
    ("[[ptrace]]\naddress = \"looper_tick\"\n", "[[ptrace]] 1: 'task' is missing"),
    ("[[ptrace]]\ntask = \"looper\"\naddress = \"looper_tick\"\ncontinues = 'x'\n",
     "[[ptrace]] 1: 'continues' must be an integer, not \"x\""),
    ("[[ptrace]]\ntask = true\naddress = \"looper_tick\"\n", "[[ptrace]] 1: 'task' must be a pid or a task name, not true"),
    ("[[perf]]\nlength = 8.0\n" + WATCH, "[[perf]] 1: 'length' must be an integer, not 8.0"),
    ("[[perf]]\nlength = '8'\n" + WATCH, "[[perf]] 1: 'length' must be an integer, not \"8\""),
    ("[[perf]]\nlength = true\n" + WATCH, "'length' must be an integer, not true"),
    ("[[perf]]\nlenght = 8\n" + WATCH, "[[perf]] 1: unknown key 'lenght'"),
    ("[[perf]]\n" + WATCH + "[[perf]]\nearly = 1\n" + WATCH, "[[perf]] 2: 'early' must be true or false, not 1"),
    ("[[perf]]\nkind = \"task\"\n" + WATCH, "[[perf]] 1: 'task' is missing"),
    ("[[perf]]\nkind = \"cpu\"\n" + WATCH, "[[perf]] 1: 'cpu' is missing"),
    ("[[perf]]\ncpu = 0\n" + WATCH, "a wide event is on every CPU"),
    ("[[perf]]\nkind = \"global\"\n" + WATCH, "'kind' must be one of wide, cpu, task, not \"global\""),
    ("[[perf]]\ncpu = -1\nkind = \"cpu\"\n" + WATCH, "'cpu' must be at least 0, not -1"),
    ("[[perf]]\naddress = 1.5\n", "'address' must be a symbol or a number, not 1.5"),
    ("[[perf]]\naddress = \"0xzz\"\n", "'address' \"0xzz\" is not a hexadecimal number"),
    ("[[perf]]\naddress = -4096\n", "'address' must be at least 0, not -4096"),
    ("[[ptrace]]\ntask = 0\naddress = \"looper_tick\"\n", "'task' must be a pid above 0, not 0"),
    ("[[ptrace]]\ntask = \"looper\"\naddress = \"looper_tick\"\ncontinues = -5\n", "'continues' must be at least 0"),
    ("perf = [5]\n", "[[perf]] 1: must be a table, not 5"),
    ("description = 5\n", "'description' must be a string, not 5"),
    ("[[watch]]\n" + WATCH, "unknown key 'watch'"),
])
def test_a_malformed_scenario_is_one_line_naming_what_is_wrong(text, said):
    with pytest.raises(ScenarioError) as refused:
        scenario.parse("broken", tomllib.loads(text), where="broken.toml")
    message = str(refused.value)
    assert said in message and message.startswith("broken.toml: ") and "\n" not in message


def test_a_well_formed_scenario_says_exactly_what_the_file_says():
    text = """
description = "both"
[[perf]]
kind = "task"
task = "looper"
cpu = 1
address = 0x400000
type = "rw"
length = 4
early = true
[[ptrace]]
task = 2
address = "looper_tick"
continues = 10
"""
    loaded = scenario.parse("both", tomllib.loads(text))
    assert loaded.description == "both"
    assert loaded.perf == [PerfSpec(address=0x400000, kind="task", type="rw", length=4, cpu=1, task="looper", early=True)]
    assert loaded.ptrace == [PtraceSpec(task=2, address="looper_tick", type="x", length=1, continues=10)]


def test_the_shipped_scenarios_load():
    from kgdbstub import targets

    target = targets.TARGETS_DIR / targets.DEFAULT_TARGET
    for name in scenario.available(target):
        scenario.load(target, name)
