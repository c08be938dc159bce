"""The emulated x86-64 hardware: CPUs on unicorn, memory, registers."""
