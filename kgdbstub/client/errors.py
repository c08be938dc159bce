"""What can go wrong when talking to a stub, each kind its own exception.

    ClientError                 anything the client raises on purpose
    ├── RemoteError             the stub answered `E..`: .errno says why
    │   └── BreakpointRefused   ... to an insert (Z): no slot, bad address
    ├── Unsupported             the stub answered empty: it has no such packet
    ├── Timeout                 no answer within the deadline (also a TimeoutError)
    └── ConnectionLost          the peer went away (also a ConnectionError)
"""
from __future__ import annotations

import errno as _errno
import os


class ClientError(Exception):
    """Base class of the client's errors; also raised for misuse, such as a
    request while the target runs."""


class RemoteError(ClientError):
    """The stub refused a request with an error reply.

    `errno` is the number the reply carries (`E14` is EFAULT; kgdb writes
    errno in two decimal digits), or None for a textual `E.message` reply.
    """

    def __init__(self, request: bytes, reply: bytes, errno: int | None, text: str = ""):
        self.request = request
        self.reply = reply
        self.errno = errno
        if errno is None:
            why = text or "no reason given"
        else:
            name = _errno.errorcode.get(errno, "?")
            why = f"errno {errno}, {name}: {os.strerror(errno)}" if name != "?" else f"errno {errno}"
        super().__init__(f"{_show(request)}: the stub answered {_show(reply)} ({why})")

    @property
    def strerror(self) -> str | None:
        return None if self.errno is None else os.strerror(self.errno)


class BreakpointRefused(RemoteError):
    """The stub would not insert a breakpoint or watchpoint: no free
    debug-register slot (kgdb answers E01, the modern dialect ENOSPC), a
    length it cannot watch, an address it cannot write a breakpoint to."""


class Unsupported(ClientError):
    """The stub answered a request with the empty reply: it does not know it.

    Also raised before sending a request whose meaning the stub did not
    offer in its qSupported answer (why says so), where sending it would
    have it half understood.
    """

    def __init__(self, request: bytes, what: str = "", *, why: str = "empty reply"):
        self.request = request
        super().__init__(f"{_show(request)}: the stub does not support {what or 'this packet'} ({why})")


class Timeout(ClientError, TimeoutError):
    """No reply (or, for a resume, no stop) within the deadline.

    A request that timed out still owes its reply: the client reads and
    drops it before the next request goes out. A resume that timed out
    leaves the target running: interrupt() it or wait_stop() again.
    """


class ConnectionLost(ClientError, ConnectionError):
    """The stub closed the connection or the line went away."""


def _show(packet: bytes, limit: int = 60) -> str:
    text = packet.decode("latin-1")
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text)
