"""PromptWait: a short spin before sleeping, only where it costs nobody a CPU and while it pays.

The waits are on a socket pair; a counting wrapper around the poll object
tells spinning (polls that do not sleep) from sleeping.
"""
import socket
import threading

import pytest

from kgdbstub.transport import prompt
from kgdbstub.transport.prompt import SPIN_LIMIT, PromptWait


class CountingPoll:
    def __init__(self, poll):
        self.poll_object, self.spins, self.sleeps = poll, 0, 0

    def poll(self, timeout):
        if timeout == 0:
            self.spins += 1
        else:
            self.sleeps += 1
        return self.poll_object.poll(timeout)

    def unregister(self, fd):
        self.poll_object.unregister(fd)


@pytest.fixture
def pair():
    ours, peer = socket.socketpair()
    yield ours, peer
    ours.close()
    peer.close()


def counted(fd: int, cpus: int = 2) -> tuple[PromptWait, CountingPoll]:
    wait = PromptWait(fd)
    wait._cpus = cpus
    wait.spin = SPIN_LIMIT if cpus > 1 else 0.0
    wait._poll = counting = CountingPoll(wait._poll)
    return wait, counting


def test_an_answer_that_is_there_is_seen_at_once(pair, monkeypatch):
    ours, peer = pair
    monkeypatch.setattr(prompt, "_cpus_to_spare", lambda cpus: True)
    wait, polls = counted(ours.fileno())
    peer.send(b"$g#67")
    assert wait.readable_within(0.001)
    assert (polls.spins, polls.sleeps) == (1, 0)
    assert wait.spin == SPIN_LIMIT


def test_an_answer_that_comes_while_sleeping_is_seen(pair, monkeypatch):
    ours, peer = pair
    monkeypatch.setattr(prompt, "_cpus_to_spare", lambda cpus: True)
    yields = []
    monkeypatch.setattr(prompt.os, "sched_yield", lambda: yields.append(1))
    wait, polls = counted(ours.fileno())
    sender = threading.Timer(0.05, peer.send, (b"$g#67",))
    sender.start()
    assert wait.readable_within(5.0)
    sender.join()
    assert polls.spins >= 1 and polls.sleeps == 1  # it spun, found nothing, slept and woke for it
    assert len(yields) == polls.spins - 1  # the CPU offered to others between two looks


def test_no_answer_is_no_answer_and_spinning_that_does_not_pay_stops(pair, monkeypatch):
    ours, peer = pair
    monkeypatch.setattr(prompt, "_cpus_to_spare", lambda cpus: True)
    wait, polls = counted(ours.fileno())
    spins = []
    for _ in range(12):
        assert not wait.readable_within(0.001)
        spins.append(wait.spin)
    assert spins[0] == SPIN_LIMIT / 2
    assert spins[-1] == 0.0  # halved down to nothing
    polls.spins = 0
    assert not wait.readable_within(0.001)
    assert polls.spins == 0
    peer.send(b"$g#67")
    assert wait.readable_within(0.001)
    assert wait.spin == SPIN_LIMIT  # a prompt answer brings the whole spin back


def test_it_never_spins_when_the_tasks_ready_to_run_need_every_cpu(pair, monkeypatch):
    ours, peer = pair
    monkeypatch.setattr(prompt, "_cpus_to_spare", lambda cpus: False)
    wait, polls = counted(ours.fileno())
    assert not wait.readable_within(0.002)
    peer.send(b"$g#67")
    assert wait.readable_within(0.001)
    assert polls.spins == 0 and polls.sleeps == 2


def test_it_never_spins_on_one_cpu(pair, monkeypatch):
    ours, peer = pair
    monkeypatch.setattr(prompt, "_cpus_to_spare", lambda cpus: True)
    wait, polls = counted(ours.fileno(), cpus=1)
    for _ in range(3):
        peer.send(b"$g#67")
        assert wait.readable_within(0.001)
        ours.recv(100)
    assert polls.spins == 0 and wait.spin == 0.0


def test_the_kernel_count_of_ready_tasks_is_read(monkeypatch):
    """/proc/loadavg's fourth field, running/total (fs/proc/loadavg.c): this test itself runs."""
    with open("/proc/loadavg") as loadavg:
        running = int(loadavg.read().split()[3].split("/")[0])
    assert running >= 1
    assert prompt._cpus_to_spare(10_000)
    assert not prompt._cpus_to_spare(0)
