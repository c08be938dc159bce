"""Waiting for a peer's answer that is due within moments.

On a virtual machine a process that sleeps until a socket is readable pays
twice when it wakes: the wake-up itself (an interrupt to another CPU; a
loopback round trip between two sleeping processes takes about 60 us on
this project's 2-CPU machines, 19 us when both share one CPU), and code
that then runs on cold caches, two to five times slower than warm. A
debugger's round trips are back to back, so at gdb's pace that is most
of what a request costs a stub that sleeps between requests.

`PromptWait` first polls the socket without sleeping for up to SPIN_LIMIT,
then sleeps in poll for the rest of the wait, as QEMU's adaptive polling
of its event loop does. Between two looks it yields the CPU: a task the
scheduler woke onto this CPU (the peer reading the reply just sent, when
the other CPUs were busy a moment) would otherwise wait for the spin to
end. It spins only when that costs nobody a CPU: while the tasks ready
to run (this one and the peer it just woke among them) fit the CPUs this
process may use, as the kernel counts them in /proc/loadavg. And it spins
only while spinning pays: a wait whose answer came later than SPIN_LIMIT
halves the next spin, down to none; an answer within it brings the whole
spin back.
"""
from __future__ import annotations

import os
import select
import time

# The longest spin, in seconds: gdb answers a stop with its next request
# within a few hundred microseconds.
SPIN_LIMIT = 0.0005
# A spin shorter than this is dropped: it would rarely catch the answer.
SPIN_FLOOR = 0.00002


class PromptWait:
    """Waits for one file descriptor to become readable, spinning first when that pays."""

    def __init__(self, fd: int):
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self._fd = fd
        self._cpus = len(os.sched_getaffinity(0))
        self.spin = SPIN_LIMIT if self._cpus > 1 else 0.0  # one CPU: the peer needs it

    def close(self) -> None:
        self._poll.unregister(self._fd)

    def readable_within(self, seconds: float) -> bool:
        """Whether the descriptor is readable (or at its end, or failed) within `seconds`."""
        started = time.perf_counter()
        spin = min(self.spin, seconds)
        ready = False
        if spin and _cpus_to_spare(self._cpus):
            spin_end = started + spin
            while not (ready := bool(self._poll.poll(0))) and time.perf_counter() < spin_end:
                os.sched_yield()  # a task woken onto this CPU meanwhile (the peer, as a rule) runs at once
        if not ready:
            left = seconds - (time.perf_counter() - started)
            ready = left > 0 and bool(self._poll.poll(max(1, round(left * 1000))))
        if self._cpus > 1:
            prompt = ready and time.perf_counter() - started <= SPIN_LIMIT
            self.spin = SPIN_LIMIT if prompt else _halved(self.spin)
        return ready


def _halved(spin: float) -> float:
    return spin / 2 if spin / 2 >= SPIN_FLOOR else 0.0


_loadavg: int | None = None


def _cpus_to_spare(cpus: int) -> bool:
    """Whether every task ready to run has a CPU this process may use (Linux's count).

    The fourth field of /proc/loadavg is the number of tasks running or
    ready to run, this one included. Elsewhere, or if it cannot be read,
    the answer is no: spinning is never a guess.
    """
    global _loadavg
    try:
        if _loadavg is None:
            _loadavg = os.open("/proc/loadavg", os.O_RDONLY | os.O_CLOEXEC)
        runnable = int(os.pread(_loadavg, 128, 0).split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return False
    return runnable <= cpus
