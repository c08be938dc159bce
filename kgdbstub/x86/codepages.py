"""The pages the CPUs have fetched code from, and what the emulator must know of their instructions.

A page becomes a code page when it is first fetched from, and is scanned
then for every address where a MOV DRn or a MOV SS may start
(instructions.candidate_starts): the emulator hooks those, so that it sees
each such instruction before it runs. Bytes written to a code page, by the
host or by the guest, are scanned again before the CPUs run on, so code the
guest writes is intercepted as well. Decodings asked of an address (is it a repeated string
instruction?) are kept until its bytes change.
"""
from __future__ import annotations

from collections.abc import Callable

from .instructions import MAX_LENGTH, RepString, candidate_starts, rep_string
from .memory import PAGE_MASK, PAGE_SIZE

_UNKNOWN = object()


class CodePages:
    def __init__(self, read: Callable[[int, int], bytes]):
        """`read(address, size)` returns the bytes there, fewer if memory ends."""
        self._read = read
        self.pages: set[int] = set()
        self.candidates: set[int] = set()  # where an intercepted instruction may start
        self._rep_strings: dict[int, RepString | None] = {}
        self._pending: set[tuple[int, int]] = set()  # ranges written since the last settle

    def __contains__(self, page: int) -> bool:
        return page in self.pages

    def add(self, page: int) -> set[int]:
        """Make a page a code page; the candidates found in it."""
        self.pages.add(page)
        found = self._scan(page, page + PAGE_SIZE)
        self.candidates |= found
        return found

    def written(self, begin: int, end: int) -> bool:
        """Bytes [begin, end) changed; whether a code page holds them. They are scanned again at settle()."""
        if not any(page in self.pages for page in range(begin & PAGE_MASK, end, PAGE_SIZE)):
            return False
        self._pending.add((begin, end))
        return True

    def settle(self) -> bool:
        """Scan again what the writes since the last settle may have changed; whether the candidates changed.

        A page written in many places (a debugger planting breakpoints) is
        scanned whole, once.
        """
        if not self._pending:
            return False
        ranges: dict[int, list[tuple[int, int]]] = {}
        for begin, end in self._pending:
            first = begin - MAX_LENGTH + 1
            for page in range(first & PAGE_MASK, end, PAGE_SIZE):
                if page in self.pages:
                    ranges.setdefault(page, []).append((max(first, page), min(end, page + PAGE_SIZE)))
        self._pending.clear()
        changed = False
        for page, pieces in ranges.items():
            if len(pieces) > 16:
                pieces = [(page, page + PAGE_SIZE)]
            for first, last in pieces:
                for address in [a for a in self._rep_strings if first <= a < last]:
                    del self._rep_strings[address]
                old = {a for a in self.candidates if first <= a < last}
                new = self._scan(first, last)
                if old != new:
                    self.candidates = (self.candidates - old) | new
                    changed = True
        return changed

    def _scan(self, first: int, last: int) -> set[int]:
        code = self._read(first, last - first + MAX_LENGTH)
        return {first + offset for offset in candidate_starts(code, 0, last - first)}

    def rep_string(self, address: int) -> RepString | None:
        """The repeated string instruction at address, if that is one (kept while a code page's bytes stay)."""
        if self._pending:
            self.settle()
        known = self._rep_strings.get(address, _UNKNOWN)
        if known is _UNKNOWN:
            known = rep_string(self._read(address, MAX_LENGTH))
            if address & PAGE_MASK in self.pages:
                self._rep_strings[address] = known
        return known
