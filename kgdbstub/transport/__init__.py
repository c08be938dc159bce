"""Byte streams a debugger reaches the stub over."""
