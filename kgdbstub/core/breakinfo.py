"""kgdb's hardware breakpoint table (breakinfo[4]) and what gdb asked of it.

gdb's requests (Z1-Z4) become pieces, each one debug-register slot: an
address, a length of 1, 2, 4 or 8 and an access type. In the `kgdb` dialect
a request is exactly one piece, as in Linux; in `modern` a region of any
length and alignment is split into aligned pieces and identical pieces share
an entry with a reference count, as gdbserver does. The table changes as a
whole or not at all.

A request made again (gdb never does, other clients may) is counted, not
stored again: what the table holds stays bounded by its four entries
however often a request comes, and so does the work of a hit or a removal.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass, replace
from enum import IntEnum

from ..x86.cpu import DebugException
from ..x86.debugregs import SLOTS, Access


class Kind(IntEnum):
    """gdb's Z packet types for hardware breakpoints."""

    EXECUTE = 1
    WRITE = 2
    READ = 3
    ACCESS = 4


_HARDWARE_ACCESS = {Kind.EXECUTE: Access.EXECUTE, Kind.WRITE: Access.WRITE,
                    Kind.READ: Access.READ_WRITE, Kind.ACCESS: Access.READ_WRITE}


class BreakpointRefused(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.errno = code


@dataclass(frozen=True)
class Piece:
    address: int
    length: int
    access: Access


@dataclass(frozen=True)
class Entry:
    piece: Piece
    users: int = 1


@dataclass(frozen=True)
class Request:
    kind: Kind
    address: int
    length: int

    def satisfied_by(self, address: int, size: int, write: bool) -> bool:
        if not (address < self.address + self.length and self.address < address + size):
            return False
        if self.kind is Kind.WRITE:
            return write
        if self.kind is Kind.READ:
            return not write
        return self.kind is Kind.ACCESS


def split(address: int, length: int) -> list[tuple[int, int]]:
    """Aligned 1/2/4/8-byte pieces covering [address, address + length)."""
    pieces = []
    while length > 0:
        size = next(s for s in (8, 4, 2, 1) if address % s == 0 and s <= length)
        pieces.append((address, size))
        address, length = address + size, length - size
    return pieces


def _normal(request: Request) -> Request:
    """An execute breakpoint covers one byte whatever length gdb gave it."""
    return replace(request, length=1) if request.kind is Kind.EXECUTE else request


@dataclass(frozen=True)
class Hit:
    """What a debug exception means to gdb: the request it satisfies."""

    request: Request
    address: int  # for watchpoints: an address inside the watched range that was accessed


class BreakTable:
    def __init__(self, *, split_regions: bool):
        self.split_regions = split_regions
        self.entries: list[Entry | None] = [None] * SLOTS
        self._made: dict[Request, int] = {}  # each distinct request: how many times it is in

    @property
    def requests(self) -> list[Request]:
        """The distinct requests in the table."""
        return list(self._made)

    def pieces_of(self, request: Request) -> list[Piece]:
        access = _HARDWARE_ACCESS[request.kind]
        if request.kind is Kind.EXECUTE:
            return [Piece(request.address, 1, access)]
        if not self.split_regions:
            return [Piece(request.address, request.length, access)]
        return [Piece(a, n, access) for a, n in split(request.address, request.length)]

    def check(self, request: Request) -> None:
        """Refuse what kgdb refuses, before anything changes."""
        if self.split_regions:
            if request.kind is Kind.EXECUTE:
                return
            if request.length <= 0:
                raise BreakpointRefused(errno.EINVAL, "empty watch region")
            if request.length > SLOTS * 8:
                # Checked before splitting: a huge length must not cost a huge split.
                raise BreakpointRefused(errno.ENOSPC, f"{request.length} bytes cannot fit {SLOTS} debug registers")
            return
        if request.kind is Kind.READ:
            raise BreakpointRefused(errno.EPERM, "x86 has no read-only breakpoint")
        if request.kind is not Kind.EXECUTE and request.length not in (1, 2, 4, 8):
            raise BreakpointRefused(errno.EINVAL, f"length {request.length} is not 1, 2, 4 or 8")

    def with_request(self, request: Request) -> list[Entry | None]:
        """The entries after adding a request; raises if they cannot hold it."""
        self.check(request)
        entries = list(self.entries)
        for piece in self.pieces_of(request):
            shared = next((i for i, e in enumerate(entries) if e and self.split_regions and e.piece == piece), None)
            if shared is not None:
                entries[shared] = replace(entries[shared], users=entries[shared].users + 1)
                continue
            free = next((i for i, e in enumerate(entries) if e is None), None)
            if free is None:
                raise BreakpointRefused(errno.ENOSPC, "no free hardware breakpoint slot")
            entries[free] = Entry(piece)
        return entries

    def insert(self, request: Request, entries: list[Entry | None]) -> None:
        """Commit the entries with_request computed."""
        self.entries = entries
        request = _normal(request)
        self._made[request] = self._made.get(request, 0) + 1

    def request_for(self, kind: Kind, address: int, length: int) -> Request:
        """The request a removal of (kind, address, length) removes."""
        if self.split_regions:
            wanted = _normal(Request(kind, address, length))
            request = wanted if wanted in self._made else None
        else:
            # kgdb matches on the address alone.
            request = next((r for r in self._made if r.address == address), None)
        if request is None:
            raise BreakpointRefused(errno.ENOENT, "no such hardware breakpoint")
        return request

    def without_request(self, kind: Kind, address: int, length: int) -> tuple[Request, list[Entry | None]]:
        request = self.request_for(kind, address, length)
        entries = list(self.entries)
        for piece in self.pieces_of(request):
            index = next(i for i, e in enumerate(entries) if e and e.piece == piece)
            users = entries[index].users - 1
            entries[index] = replace(entries[index], users=users) if users else None
        return request, entries

    def remove(self, request: Request, entries: list[Entry | None]) -> None:
        self.entries = entries
        if self._made[request] > 1:
            self._made[request] -= 1
        else:
            del self._made[request]

    def clear(self) -> None:
        self.entries = [None] * SLOTS
        self._made = {}

    def active(self) -> list[Piece]:
        return [e.piece for e in self.entries if e]

    def hit(self, exception: DebugException, rip: int | None) -> Hit | None:
        """The request a debug exception satisfies, or None (a write to a read watch).

        `rip` is the CPU's pc, which only a fault (not a trap) needs.
        """
        if not exception.trap:
            for request in self._made:
                if request.kind is Kind.EXECUTE and request.address == rip:
                    return Hit(request, rip)
            return None
        for access in exception.accesses:
            for request in self._made:
                if request.kind is not Kind.EXECUTE and request.satisfied_by(access.address, access.size, access.write):
                    return Hit(request, max(access.address, request.address))
        return None
