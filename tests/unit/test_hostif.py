"""The host's mirror of the image-host interface agrees with the C header."""
import re
from pathlib import Path

from kgdbstub.kernel import hostif

HEADER = Path(__file__).resolve().parents[2] / "targets" / "minikernel" / "include" / "hostif.h"


def _defines(prefix: str) -> dict[str, int]:
    text = HEADER.read_text()
    return {m[1]: int(m[2], 0) for m in re.finditer(rf"#define {prefix}(\w+)\s+(\w+)", text)}


def test_hypercall_numbers_match_the_header():
    assert _defines("HC_") == {call.name: call.value for call in hostif.Hypercall}


def test_syscall_numbers_match_the_header():
    assert _defines("SYS_") == {call.name: call.value for call in hostif.Syscall}


def test_clone_flags_match_the_header():
    assert _defines("CLONE_") == {"USER": hostif.CLONE_USER}
