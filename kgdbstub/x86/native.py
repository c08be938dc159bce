"""The machine's C parts, built by setup.py next to their sources."""
from __future__ import annotations

import ctypes
import importlib.util


def load(name: str) -> ctypes.CDLL:
    """The shared library built from kgdbstub/x86/NAME.c, as the module _NAME."""
    spec = importlib.util.find_spec(f"{__package__}._{name}")
    if spec is None or spec.origin is None:
        raise ImportError(f"kgdbstub's C part (kgdbstub/x86/{name}.c) is not built: "
                          "run `pip install -e .` in the checkout")
    return ctypes.CDLL(spec.origin)
