"""Virtual memory: which virtual pages are backed by which physical ones.

Unicorn runs with a virtual TLB, so every translation the CPUs make comes
from here; that lets kernel code run at real kernel addresses without page
tables in guest memory.
"""
from __future__ import annotations

from dataclasses import dataclass

PAGE_SIZE = 0x1000
PAGE_MASK = ~(PAGE_SIZE - 1)


class MemoryFault(Exception):
    """An access to a virtual address that no mapping backs."""

    def __init__(self, address: int):
        super().__init__(f"no memory at {address:#x}")
        self.address = address


@dataclass(frozen=True)
class Mapping:
    name: str
    virtual: int
    physical: int
    size: int

    def __post_init__(self):
        for value in (self.virtual, self.physical, self.size):
            if value % PAGE_SIZE:
                raise ValueError(f"mapping {self.name} is not page aligned")

    def contains(self, address: int) -> bool:
        return self.virtual <= address < self.virtual + self.size


class AddressSpace:
    """A fixed set of non-overlapping virtual-to-physical mappings."""

    def __init__(self, mappings: list[Mapping]):
        self.mappings = sorted(mappings, key=lambda m: m.virtual)
        for before, after in zip(self.mappings, self.mappings[1:]):
            if before.virtual + before.size > after.virtual:
                raise ValueError(f"mappings {before.name} and {after.name} overlap")

    def translate(self, address: int) -> int | None:
        for mapping in self.mappings:
            if mapping.virtual <= address < mapping.virtual + mapping.size:
                return mapping.physical + (address - mapping.virtual)
        return None

    def contiguous(self, address: int, size: int) -> int | None:
        """The physical address of [address, address+size) if one mapping holds it all, else None."""
        for mapping in self.mappings:
            if mapping.virtual <= address and address + size <= mapping.virtual + mapping.size:
                return mapping.physical + (address - mapping.virtual)
        return None

    def virtual(self, physical: int) -> int:
        for mapping in self.mappings:
            if mapping.physical <= physical < mapping.physical + mapping.size:
                return mapping.virtual + (physical - mapping.physical)
        raise MemoryFault(physical)

    def physical(self, address: int) -> int:
        translated = self.translate(address)
        if translated is None:
            raise MemoryFault(address)
        return translated

    def pieces(self, address: int, size: int):
        """Split [address, address+size) at page boundaries into (virtual, physical, length)."""
        end = address + size
        while address < end:
            length = min(end, (address & PAGE_MASK) + PAGE_SIZE) - address
            yield address, self.physical(address), length
            address += length
