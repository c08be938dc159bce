"""Finding targets: a name in targets/ or a path to an ELF."""
from __future__ import annotations

from pathlib import Path

TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"
DEFAULT_TARGET = "minikernel"


class TargetError(Exception):
    pass


def available() -> list[str]:
    if not TARGETS_DIR.is_dir():
        return []
    return sorted(p.name for p in TARGETS_DIR.iterdir() if (p / f"{p.name}.elf").is_file())


def resolve(name_or_path: str) -> Path:
    """The ELF of a named target, or the ELF at a path."""
    candidate = TARGETS_DIR / name_or_path / f"{name_or_path}.elf"
    if "/" not in name_or_path and candidate.is_file():
        return candidate
    path = Path(name_or_path)
    if path.is_file():
        return path.resolve()
    known = ", ".join(available()) or "none"
    raise TargetError(f"no target {name_or_path!r} (known targets: {known}; or give the path of an ELF)")
