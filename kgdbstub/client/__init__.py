"""A client for RSP stubs such as kgdbstub: typed operations on trio, with a
synchronous facade (SyncTarget) for plain scripts and notebooks.

    import trio
    from kgdbstub.client import connect

    async def main():
        async with await connect("127.0.0.1:1234") as target:
            jiffies = await target.symbol("jiffies")
            await target.watch(jiffies, 8, kind="write")
            stop = await target.resume()
            print(stop.reason, hex(stop.address), await target.read_int(jiffies))

    trio.run(main)
"""
from .errors import BreakpointRefused, ClientError, ConnectionLost, RemoteError, Timeout, Unsupported
from .packets import Breakpoint, Register, Stop, Thread
from .sync import SyncTarget
from .target import Exchange, Target, connect

__all__ = [
    "Breakpoint", "BreakpointRefused", "ClientError", "ConnectionLost", "Exchange", "Register",
    "RemoteError", "Stop", "SyncTarget", "Target", "Thread", "Timeout", "Unsupported", "connect",
]
