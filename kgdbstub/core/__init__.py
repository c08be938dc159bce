"""The debugger core: kgdb's own state in front of the machine.

As Linux splits kgdb, the session (kgdbstub.gdbstub, gdbstub.c) speaks the
protocol and this package does the rest: software breakpoints and entering
and leaving the debugger (debug_core.c), the hardware breakpoint table
(breakinfo, arch/x86/kernel/kgdb.c) and how kgdb gets debug-register slots.
"""
