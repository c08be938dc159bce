"""Register values gdb users type: a value the machine cannot hold is an error in gdb, never the end of the stub."""
import pytest

from gdbtools import VALUE_LINE, run_gdb, start_server

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("dialect", ["modern", "kgdb"])
def test_set_fs_8_is_an_error_in_gdb_and_the_session_goes_on(dialect):
    with start_server("--dialect", dialect) as server:
        said = run_gdb(server, [
            "print $rip",
            "set $fs = 8",
            "set $gs = -1",
            "print $fs",
            "print $rip",
            "stepi",
            "monitor ps",
            "detach",
        ])
        assert server.proc.poll() is None, f"the stub ended:\n{server.stderr_text()}"
        assert "internal-error" not in said and "Remote connection closed" not in said, said
        values = [m["value"] for line in said.splitlines() if (m := VALUE_LINE.match(line))]
        assert values[1] == "0", said  # fs as it was (0, or what kgdb shows for it)
        assert values[0] == values[2], said  # rip untouched by the refused writes
        assert "pid=1 comm=init" in said, said
        if dialect == "modern":
            assert 'Could not write register "fs"' in said, said
        # The next debugger is served as usual.
        assert "pid=1 comm=init" in run_gdb(server, ["monitor ps"])
