"""A target image: an ELF's loadable segments and its symbols."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile


PF_W = 2  # a segment's p_flags bit for writable


class ImageError(Exception):
    pass


@dataclass(frozen=True)
class Segment:
    address: int
    data: bytes
    memory_size: int
    writable: bool = True


@dataclass(frozen=True)
class Symbol:
    name: str
    address: int
    size: int


class Image:
    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as stream:
                elf = ELFFile(stream)
                if elf["e_machine"] != "EM_X86_64":
                    raise ImageError(f"{self.path}: not an x86-64 ELF")
                self.entry = elf["e_entry"]
                self.segments = [
                    Segment(s["p_vaddr"], s.data(), s["p_memsz"], bool(s["p_flags"] & PF_W))
                    for s in elf.iter_segments()
                    if s["p_type"] == "PT_LOAD"
                ]
                symtab = elf.get_section_by_name(".symtab")
                if symtab is None:
                    raise ImageError(f"{self.path}: no symbol table")
                self.symbols = {
                    s.name: Symbol(s.name, s["st_value"], s["st_size"])
                    for s in symtab.iter_symbols()
                    if s.name and s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE")
                }
        except OSError as error:
            raise ImageError(f"cannot read {path}: {error.strerror}") from None
        except ELFError as error:
            raise ImageError(f"{path}: not a valid ELF file ({error})") from None

    def address_of(self, name: str) -> int:
        try:
            return self.symbols[name].address
        except KeyError:
            raise ImageError(f"{self.path}: no symbol {name!r}") from None
