"""The C callbacks of hothooks.c, loaded with ctypes, and the clock they keep.

`pip install` builds hothooks.c into a shared library next to this file.
A `GuestClock` hangs one C block hook on an engine: it counts guest time in
translation blocks and stops the engine at the start of a block when the
time a run was given is up, when any thread asks (`request_stop`), or when a
wall-clock deadline passes.
"""
from __future__ import annotations

import ctypes
import threading
import time

from unicorn import UC_HOOK_BLOCK, Uc, UcError
from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

from . import native

STOPPED_BY_NOTHING, STOPPED_BY_LIMIT, STOPPED_BY_REQUEST, STOPPED_BY_DEADLINE = range(4)
NO_LIMIT = 2**64 - 1
# A stop requested from another thread while the host had the CPU waits
# for as much of the engine's time as the host had been working, up to
# this. The kernel's work between two runs takes tens of microseconds, and
# the host thread often waits longer for the interpreter while the event
# loop reads the request: a longer wait would add latency, and stops would
# land where they do anyway, in the guest's time after the host's work.
MAX_OWED_NS = 100_000
# ... and is taken wherever the CPU is once this has passed, in case the
# engine hardly runs (every CPU idle).
GIVE_UP_NS = 5_000_000


def _load() -> ctypes.CDLL:
    library = native.load("hothooks")
    library.hot_state_size.restype = ctypes.c_uint64
    return library


_library = _load()


class _HotState(ctypes.Structure):
    """struct hot_state of hothooks.c, field for field."""

    _fields_ = [
        ("blocks", ctypes.c_uint64),
        ("limit", ctypes.c_uint64),
        ("deadline_ns", ctypes.c_uint64),
        ("stop_request", ctypes.c_uint32),
        ("interruptible", ctypes.c_uint32),
        ("until_clock", ctypes.c_uint32),
        ("stopped_by", ctypes.c_uint32),
        ("hold", ctypes.c_uint32),
        ("stop_deferred", ctypes.c_uint32),
        ("last_start", ctypes.c_uint64),
        ("last_end", ctypes.c_uint64),
        ("emu_stop", ctypes.c_void_p),
        ("host_since_ns", ctypes.c_uint64),
        ("owed_ns", ctypes.c_uint64),
        ("due_ns", ctypes.c_uint64),
        ("looked_ns", ctypes.c_uint64),
    ]


if ctypes.sizeof(_HotState) != _library.hot_state_size():
    raise ImportError("kgdbstub/x86/hothooks.py and hothooks.c disagree on struct hot_state: rebuild")

_ON_BLOCK = ctypes.cast(_library.on_block, ctypes.c_void_p)
_EMU_STOP = ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p)


class GuestClock:
    """Guest time of one engine, counted in translation blocks, and the stops it makes.

    A translation block is a run of instructions that unicorn translates and
    enters as one: it ends at a jump, call, return, system call, hlt or int3,
    at a page boundary, or after unicorn's maximum of 512 instructions. The
    engine counts a block when it enters it, so the count after a run is a
    function of the instructions executed and of where each run began --
    which is the same whenever the same inputs are given.
    """

    def __init__(self, uc: Uc):
        self._state = state = _HotState(limit=NO_LIMIT, until_clock=1, emu_stop=_EMU_STOP)
        self._runner: int | None = None  # the thread that runs the engine
        self._give_up_ns = 0
        self._requested_ns = 0  # when another thread asked for a stop at once
        handle = uc_hook_h()
        status = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_BLOCK, _ON_BLOCK,
                                   ctypes.cast(ctypes.pointer(state), ctypes.c_void_p),
                                   ctypes.c_uint64(1), ctypes.c_uint64(0))
        if status:
            raise UcError(status)

    @property
    def blocks(self) -> int:
        """Blocks run so far: the engine's guest time."""
        return self._state.blocks

    @property
    def blocks_address(self) -> int:
        """Where the count lives, for other C hooks to read."""
        return ctypes.addressof(self._state) + _HotState.blocks.offset

    def arm(self, budget: int | None, *, interruptible: bool = True, deadline: float | None = None) -> None:
        """Before a run: stop after `budget` more blocks, at a request, at deadline (time.monotonic())."""
        state = self._state
        state.stopped_by = STOPPED_BY_NOTHING
        state.limit = NO_LIMIT if budget is None else state.blocks + budget
        state.interruptible = interruptible
        state.deadline_ns = 0 if deadline is None else max(1, int(deadline * 1e9))
        state.until_clock = 1  # look at the clock at the first block
        state.hold = 0
        state.last_start = state.last_end = 0
        self._runner = threading.get_ident()

    def engine_returned(self) -> None:
        """After every run of the engine (emu_start returned): the host has the CPU from now on."""
        state = self._state
        state.host_since_ns = now = time.monotonic_ns()
        if state.due_ns:
            # A deferred stop was counting down: it is owed what was left when
            # the last block began. (The rest of that block and the way out of
            # the engine are not the guest's time: counted, a stop falling due
            # in them would land at the start of the next run, after the host's
            # work.)
            state.owed_ns = max(state.due_ns - state.looked_ns, 1)
            state.due_ns = 0
        elif self._requested_ns and state.stop_request and state.stopped_by != STOPPED_BY_REQUEST:
            # Another thread's request came after the last block began, on the
            # engine's way out: placed in the engine's time as well.
            state.owed_ns, state.stop_request = max(min(now - self._requested_ns, MAX_OWED_NS), 1), 0
            state.stop_deferred = 1
            self._requested_ns = 0

    def hold_next_block(self) -> None:
        """From a hook: the next block runs whatever is requested or spent (a MOV SS shadow)."""
        self._state.hold = 1

    @property
    def last_block(self) -> tuple[int, int] | None:
        """[start, end) of the last block this run began, None if it began none."""
        state = self._state
        return (state.last_start, state.last_end) if state.last_end else None

    @property
    def stopped_by(self) -> int:
        return self._state.stopped_by

    def request_stop(self) -> None:
        """Thread-safe: the engine stops at the start of a block, where the guest is.

        A request from the thread that runs the engine is made at a point of
        the machine's work and takes effect there: at once, or at the next
        block. One from another thread (a Ctrl-C) comes at a moment of the
        wall clock. While the engine runs, the guest is where the moment
        found it: the engine stops at its next block. While the host works
        between two runs (a system call, a tick, a fork: no guest time), the
        moment falls in no guest instruction, and stopping at the next block
        would land every such request where the host's work ends. So it is
        placed in the engine's time instead: the engine stops once it has
        run as long as the host had been working when the request came,
        which makes the host's time draw no stops of its own and stops land
        in proportion to where the guest runs. Guest time is unaffected.
        """
        state = self._state
        if threading.get_ident() == self._runner:
            state.stop_request, self._requested_ns = 1, 0
            return
        if state.stop_request:
            return
        if state.stop_deferred:
            return  # one is pending already
        now = time.monotonic_ns()
        self._give_up_ns = now + GIVE_UP_NS
        since = state.host_since_ns
        if since:
            state.owed_ns = max(min(now - since, MAX_OWED_NS), 1)
            state.stop_deferred = 1  # after owed_ns: the hook reads them in this order
        else:
            self._requested_ns = now
            state.stop_request = 1

    def withdraw_stop(self) -> None:
        state = self._state
        state.stop_request = state.stop_deferred = 0
        state.owed_ns = state.due_ns = 0
        self._requested_ns = 0

    @property
    def stop_requested(self) -> bool:
        """Whether a requested stop is to be taken now; a deferred one the host waited
        GIVE_UP_NS for is, and the engine then stops at once."""
        state = self._state
        if state.stop_deferred and time.monotonic_ns() >= self._give_up_ns:
            state.stop_request, state.stop_deferred = 1, 0
        return bool(state.stop_request)

    def past_deadline(self) -> bool:
        deadline = self._state.deadline_ns
        return bool(deadline) and time.monotonic_ns() >= deadline
