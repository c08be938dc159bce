"""The host side of the image-host interface (docs/host-interface.md).

Mirrors targets/minikernel/include/hostif.h; a test keeps the two equal.
"""
from enum import IntEnum


class Hypercall(IntEnum):
    CONSOLE_WRITE = 1
    SCHEDULE = 2
    SLEEP = 3
    CLONE = 4
    EXIT = 5
    CPU_UP = 6
    SYSRET = 7
    IRET = 8
    NR_CPUS = 9
    CURRENT = 10
    KGDB_TRAP = 11
    NMI_ALLBUTSELF = 12
    HALT = 13


CLONE_USER = 1


class Syscall(IntEnum):
    write = 1
    sched_yield = 24
    clone = 56
    exit = 60


EINVAL = 22
ENOSYS = 38
EAGAIN = 11
EFAULT = 14

CURRENT_COMM_LEN = 16
