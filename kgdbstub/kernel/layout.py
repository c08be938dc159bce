"""The minikernel's virtual memory map (docs/host-interface.md, "Memory")."""
from __future__ import annotations

from ..x86.memory import AddressSpace, Mapping

KERNEL_MAP = 0xFFFFFFFF80000000
KERNEL_PHYSICAL = 0x1000000
KERNEL_SIZE = 0x2000000

USER_IMAGE = 0x400000
USER_IMAGE_PHYSICAL = 0x4000000
USER_IMAGE_SIZE = 0xC00000

KERNEL_STACKS = 0xFFFFC90000000000
KERNEL_STACKS_PHYSICAL = 0x8000000
KERNEL_STACK_SIZE = 0x4000

USER_STACKS = 0x7FFF00000000
USER_STACKS_PHYSICAL = 0x9000000
USER_STACK_SIZE = 0x10000

MAX_TASKS = 64

USER_SPACE_END = 0x0000800000000000


def address_space() -> AddressSpace:
    return AddressSpace(
        [
            Mapping("kernel", KERNEL_MAP + KERNEL_PHYSICAL, KERNEL_PHYSICAL, KERNEL_SIZE),
            Mapping("user", USER_IMAGE, USER_IMAGE_PHYSICAL, USER_IMAGE_SIZE),
            Mapping("kernel stacks", KERNEL_STACKS, KERNEL_STACKS_PHYSICAL, KERNEL_STACK_SIZE * MAX_TASKS),
            Mapping("user stacks", USER_STACKS, USER_STACKS_PHYSICAL, USER_STACK_SIZE * MAX_TASKS),
        ]
    )


def kernel_stack_top(slot: int) -> int:
    return KERNEL_STACKS + KERNEL_STACK_SIZE * (slot + 1)


def user_stack_top(slot: int) -> int:
    return USER_STACKS + USER_STACK_SIZE * (slot + 1)


def is_user(address: int) -> bool:
    return address < USER_SPACE_END
