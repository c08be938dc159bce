"""Counting in C the debug-register hits whose owners only count them (counting.c).

A `HitCounter` belongs to one engine. The processor hangs every execute
hook on its C code hook (which passes what it does not count to the
Python hook), loads the running CPU's countable slots before each run,
makes watched pages hot or cold, and collects what was counted.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, Uc, UcError
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

from . import native

SLOTS = 4
EXECUTES = 8
PIECES = 8
HOT_PAGES = 8
DEFERRED = 3
KEY_ACCESSES = 16
UNLIMITED = 2**64 - 1  # a budget that never runs out: a perf event's
# The widest access unicorn reports to a memory hook (a 16-byte one comes
# as two halves): an access starting this far below a page can reach into it.
WIDEST_ACCESS = 8


def _load() -> ctypes.CDLL:
    library = native.load("counting")
    library.count_state_size.restype = ctypes.c_uint64
    library.count_abandon.argtypes = (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64)
    library.count_abandon.restype = ctypes.c_int
    return library


_library = _load()
_u32, _u64 = ctypes.c_uint32, ctypes.c_uint64


class _CountState(ctypes.Structure):
    """struct count_state of counting.c, field for field."""

    _fields_ = [
        ("blocks", ctypes.c_void_p),
        ("python", ctypes.c_void_p),
        ("reg_read", ctypes.c_void_p),
        ("rip_register", ctypes.c_int32),
        ("counting_data", _u32),
        ("executes", _u32),
        ("pieces", _u32),
        ("hot_pages", _u32),
        ("pool_of_slot", _u32 * SLOTS),
        ("execute_address", _u64 * EXECUTES),
        ("execute_slots", _u32 * EXECUTES),
        ("piece_slot", _u32 * PIECES),
        ("piece_reads", _u32 * PIECES),
        ("piece_start", _u64 * PIECES),
        ("piece_end", _u64 * PIECES),
        ("hot_page", _u64 * HOT_PAGES),
        ("deferred", _u64 * DEFERRED),
        ("budget", _u64 * SLOTS),
        ("exceptions", _u64),
        ("slot_hits", _u64 * SLOTS),
        ("pool_hits", _u64 * SLOTS),
        ("pool_last", _u32 * SLOTS),
        ("last_b_bits", _u32),
        ("overrun", _u32),
        ("page_touches", _u64 * HOT_PAGES),
        ("merge_block", _u64),
        ("merge_rip", _u64),
        ("merge_next_rip", _u64),
        ("key_block", _u64),
        ("key_rip", _u64),
        ("key_slots", _u32),
        ("key_prev_b_bits", _u32),
        ("key_prev_pool_last", _u32 * SLOTS),
        ("key_accesses", _u32),
        ("key_shadow_accesses", _u32),
        ("key_merged", _u32),
        ("key_access_address", _u64 * KEY_ACCESSES),
        ("key_access_size", _u32 * KEY_ACCESSES),
        ("key_access_write", _u32 * KEY_ACCESSES),
    ]


if ctypes.sizeof(_CountState) != _library.count_state_size():
    raise ImportError("kgdbstub/x86/counting.py and counting.c disagree on struct count_state: rebuild")

_COUNT_EXECUTE = ctypes.cast(_library.count_execute, ctypes.c_void_p)
_COUNT_ACCESS = ctypes.cast(_library.count_access, ctypes.c_void_p)


@dataclass(frozen=True)
class CountedHits:
    """Debug exceptions of one CPU that were counted without stopping it, in the order they came.

    `slot_hits[i]`: the exceptions DR i took part in. `pool_exceptions[p]`:
    the exceptions each pool (the slots whose owners share a budget) took
    part in, and `pool_last[p]` the B bits of its last one; `last_b_bits`
    those of the very last exception, which DR6 holds.
    """

    exceptions: int
    slot_hits: tuple[int, ...]
    pool_exceptions: tuple[int, ...]
    pool_last: tuple[int, ...]
    last_b_bits: int


class HitCounter:
    def __init__(self, uc: Uc, blocks_address: int, python_hook):
        self._uc = uc
        self._state = state = _CountState(
            blocks=blocks_address, python=ctypes.cast(python_hook, ctypes.c_void_p),
            reg_read=ctypes.cast(uclib.uc_reg_read, ctypes.c_void_p), rip_register=X.UC_X86_REG_RIP,
            counting_data=1)
        self._pointer = ctypes.cast(ctypes.pointer(state), ctypes.c_void_p)
        self._python_hook = python_hook  # kept alive: C calls it
        self._access_hooks: dict[int, int] = {}  # hot physical page -> its memory hook
        self._deferred: tuple[int | None, ...] = ()
        self.hot_pages: tuple[int, ...] = ()  # physical, in the order of page_touches

    # -- hooks ---------------------------------------------------------------

    def add_execute_hook(self, address: int) -> int:
        return self._add(UC_HOOK_CODE, _COUNT_EXECUTE, address, address)

    def delete_hook(self, handle: int) -> None:
        status = uclib.uc_hook_del(self._uc._uch, uc_hook_h(handle))
        if status:
            raise UcError(status)

    def _add(self, kind: int, callback, begin: int, end: int) -> int:
        handle = uc_hook_h()
        status = uclib.uc_hook_add(self._uc._uch, ctypes.byref(handle), kind, callback, self._pointer,
                                   ctypes.c_uint64(begin), ctypes.c_uint64(end))
        if status:
            raise UcError(status)
        return handle.value

    # -- what is counted ------------------------------------------------------

    def load(self, pools: list[int], executes: list[tuple[int, int]],
             pieces: list[tuple[int, int, int, bool]], hot_pages: tuple[int, ...]) -> None:
        """The running CPU's countable slots: each DR's pool; (address, B bits) of
        execute hits; (physical start, end, DR, reads too) of data slots on hot pages."""
        state = self._state
        for slot, pool in enumerate(pools):
            state.pool_of_slot[slot] = pool
        executes, pieces = executes[:EXECUTES], pieces[:PIECES]
        for index, (address, b_bits) in enumerate(executes):
            state.execute_address[index], state.execute_slots[index] = address, b_bits
        state.executes = len(executes)
        for index, (start, end, slot, reads_too) in enumerate(pieces):
            state.piece_start[index], state.piece_end[index] = start, end
            state.piece_slot[index], state.piece_reads[index] = slot, reads_too
        state.pieces = len(pieces)
        self._set_hot_pages(hot_pages[:HOT_PAGES])

    def set_budgets(self, budgets: list[int]) -> None:
        """What each pool may still count without a stop."""
        state = self._state
        for pool, budget in enumerate(budgets):
            state.budget[pool] = budget

    def clear(self) -> None:
        """Nothing counted here: every hit goes to the Python hook or a protected page."""
        state = self._state
        state.executes = state.pieces = 0
        self._set_hot_pages(())

    def _set_hot_pages(self, pages: tuple[int, ...]) -> None:
        if pages == self.hot_pages:
            return
        for page in set(self._access_hooks) - set(pages):
            self.delete_hook(self._access_hooks.pop(page))
        for page in set(pages) - set(self._access_hooks):
            self._access_hooks[page] = self._add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, _COUNT_ACCESS,
                                                 max(page - (WIDEST_ACCESS - 1), 0), page + 4095)
        # Unicorn decides when it translates code whether its loads and
        # stores call memory hooks (those made while none existed never do,
        # those made while one exists always do, at 1.27 times the cost):
        # the code is translated again, as the hooks now are.
        self._uc.ctl_flush_tb()
        state = self._state
        for index, page in enumerate(pages):
            state.hot_page[index] = page
            state.page_touches[index] = 0
        state.hot_pages = len(pages)
        self.hot_pages = pages

    def take_page_touches(self) -> list[int]:
        """Accesses to each hot page since the last take, in the order of hot_pages."""
        touches = self._state.page_touches
        taken = list(touches[: len(self.hot_pages)])
        for index in range(len(taken)):
            touches[index] = 0
        return taken

    def defer(self, *addresses: int | None) -> None:
        """Addresses whose next execution the Python hook decides (None: none)."""
        if addresses != self._deferred:  # set at every run of the engine: mostly unchanged
            self._deferred = addresses
            deferred = self._state.deferred
            for index in range(DEFERRED):
                address = addresses[index] if index < len(addresses) else None
                deferred[index] = address or 0  # no instruction runs at 0

    def counting_data(self, on: bool) -> None:
        self._state.counting_data = on

    def shadow(self, block: int, rip: int, next_rip: int) -> None:
        """A MOV SS at rip, in this block, is about to run: the instruction after it is one exception with it."""
        state = self._state
        state.merge_block, state.merge_rip, state.merge_next_rip = block, rip, next_rip

    def take(self, block: int, rip: int) -> tuple[list[tuple[int, int, bool]], list[tuple[int, int, bool]]]:
        """Take back the data hits counted for the instruction at rip begun in that block.

        For an instruction that did not complete, or whose debug exception
        the host reports itself. Returns the matching accesses (physical
        address, size, write) of the MOV SS it follows, if any, and its own.
        """
        state = self._state
        if not state.key_slots or not _library.count_abandon(self._pointer, block, rip):
            return [], []
        if state.key_accesses > KEY_ACCESSES:
            raise RuntimeError("an instruction made more matching accesses than the counter records")
        accesses = [(state.key_access_address[i], state.key_access_size[i], bool(state.key_access_write[i]))
                    for i in range(state.key_accesses)]
        if not (rip == state.merge_next_rip and block == state.merge_block + 1):
            return [], accesses
        shadow = state.key_shadow_accesses if state.key_merged else len(accesses)
        return accesses[:shadow], accesses[shadow:]

    @property
    def pending(self) -> bool:
        return bool(self._state.exceptions)

    def collect(self) -> CountedHits | None:
        """What was counted since the last collect, if anything."""
        state = self._state
        if state.overrun:
            raise RuntimeError("a data hit was counted past its owner's budget")
        if not state.exceptions:
            state.key_slots = 0
            return None
        counted = CountedHits(state.exceptions, tuple(state.slot_hits), tuple(state.pool_hits),
                              tuple(state.pool_last), state.last_b_bits)
        state.exceptions = 0
        ctypes.memset(ctypes.addressof(state.slot_hits), 0, ctypes.sizeof(state.slot_hits))
        ctypes.memset(ctypes.addressof(state.pool_hits), 0, ctypes.sizeof(state.pool_hits))
        state.key_slots = 0  # that instruction has completed
        return counted


# When a watched page is worth a memory hook. A touch of a protected page
# (any access to it, a hit or not) costs a fault and a step of the
# instruction, about 15 µs, some 500 blocks of guest time; a memory hook
# makes every access of the machine about 1.27 times slower while it
# exists. So a page turns hot at a touch every ~1,000 blocks, and cold
# again when its touches fall an order of magnitude below that.
HOT_TOUCHES = 16
HOT_WINDOW = 16_000  # blocks
COLD_TOUCHES = 16
COLD_WINDOW = 160_000  # blocks


class PageHeat:
    """Which watched pages of each CPU are hot, from how often they are touched in guest time.

    Only performance hangs on it: a hit is counted exactly whether its page
    is hot or not.
    """

    def __init__(self, cpus: int, hot_touches: int = HOT_TOUCHES, hot_window: int = HOT_WINDOW,
                 cold_touches: int = COLD_TOUCHES, cold_window: int = COLD_WINDOW):
        self.hot_touches, self.hot_window = hot_touches, hot_window
        self.cold_touches, self.cold_window = cold_touches, cold_window
        self._cold: list[dict[int, list[int]]] = [{} for _ in range(cpus)]  # page -> [window start, touches]
        self.hot: list[dict[int, list[int]]] = [{} for _ in range(cpus)]

    def touched(self, cpu: int, page: int, now: int) -> bool:
        """A protected page was touched at guest time `now`: True if it turns hot."""
        window = self._cold[cpu].get(page)
        if window is None or now - window[0] >= self.hot_window:
            window = self._cold[cpu][page] = [now, 0]
        window[1] += 1
        if window[1] < self.hot_touches:
            return False
        del self._cold[cpu][page]
        self.hot[cpu][page] = [now, 0]
        return True

    def seen(self, cpu: int, page: int, touches: int, now: int) -> bool:
        """A hot page was touched `touches` more times by `now`: True if it turns cold."""
        window = self.hot[cpu].get(page)
        if window is None:
            return False
        window[1] += touches
        if now - window[0] < self.cold_window:
            return False
        if window[1] < self.cold_touches:
            del self.hot[cpu][page]
            return True
        window[:] = [now, 0]
        return False

    def drop(self, cpu: int, page: int) -> None:
        """The page cannot be hot now (a slot on it must stop): it earns its way back."""
        self.hot[cpu].pop(page, None)
