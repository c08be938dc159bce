import sys
from pathlib import Path

import pytest

# Test helpers (gdbtools) live beside the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gdbtools  # noqa: E402

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.fixture
def server(request):
    """A `kgdbstub serve --tcp 127.0.0.1:0` for one test (a gdbtools.Server).

    Extra arguments come from the test's marker, if any:
    `@pytest.mark.server_args("--cpus", "3")`. If the test fails, the
    server's stdout and stderr are shown with the failure.
    """
    marker = request.node.get_closest_marker("server_args")
    args = marker.args if marker is not None else ()
    with gdbtools.start_server(*args) as running:
        yield running
        if request.node.stash.get(_FAILED, False):
            running.failed = True
