"""The simulated kernel: tasks, scheduling, the timer, system calls, the console."""
