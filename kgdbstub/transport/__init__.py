"""Byte streams a debugger reaches the stub over.

TCP connections are trio's socket streams, with sends and receives at
request-and-reply pace (tcp.py). A pty (pty.py) or a serial port
(serial.py) is a *line*: it outlives debugger sessions and carries the
kernel console too (line.py, console.py), and kgdboc.py recognises a
debugger, a Ctrl-C or SysRq-G among the console traffic on it.
"""
from .console import ConsoleBuffer
from .kgdboc import Arrival, BreakIn, LineWatcher, SysRqG
from .line import BREAK, FdLine, LineConnection, LineLost
from .pty import PtyLine
from .serial import BreakMarks, SerialLine
from .tcp import ReplyStream

__all__ = [
    "BREAK",
    "Arrival",
    "BreakIn",
    "BreakMarks",
    "ConsoleBuffer",
    "FdLine",
    "LineConnection",
    "LineLost",
    "LineWatcher",
    "PtyLine",
    "ReplyStream",
    "SerialLine",
    "SysRqG",
]
