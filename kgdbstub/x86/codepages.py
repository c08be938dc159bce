"""The pages the CPUs have fetched code from, and what the emulator must know of their instructions.

A page becomes a code page when it is first fetched from, and is scanned
then for every address where a MOV DRn or a MOV SS may start
(instructions.candidate_starts): the emulator hooks those, so that it sees
each such instruction before it runs. Bytes written to a code page, by the
host or by the guest, are scanned again, so code the guest writes is
intercepted as well. Decodings asked of an address (is it a repeated string
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

    def __contains__(self, page: int) -> bool:
        return page in self.pages

    def add(self, page: int) -> set[int]:
        """Make a page a code page; the candidates found in it."""
        self.pages.add(page)
        found = self._scan(page, page + PAGE_SIZE)
        self.candidates |= found
        return found

    def written(self, begin: int, end: int) -> bool:
        """Bytes [begin, end) changed: scan what they may be part of again. Whether any code page holds them."""
        if not any(page in self.pages for page in range(begin & PAGE_MASK, end, PAGE_SIZE)):
            return False
        first, last = begin - MAX_LENGTH + 1, end
        for address in [a for a in self._rep_strings if first <= a < last]:
            del self._rep_strings[address]
        self.candidates -= {a for a in self.candidates if first <= a < last}
        for page in range(first & PAGE_MASK, last, PAGE_SIZE):
            if page in self.pages:
                self.candidates |= self._scan(max(first, page), min(last, page + PAGE_SIZE))
        return True

    def _scan(self, first: int, last: int) -> set[int]:
        code = self._read(first, last - first + MAX_LENGTH)
        return {first + offset for offset in candidate_starts(code, 0, last - first)}

    def rep_string(self, address: int) -> RepString | None:
        """The repeated string instruction at address, if that is one (kept while a code page's bytes stay)."""
        known = self._rep_strings.get(address, _UNKNOWN)
        if known is _UNKNOWN:
            known = rep_string(self._read(address, MAX_LENGTH))
            if address & PAGE_MASK in self.pages:
                self._rep_strings[address] = known
        return known
