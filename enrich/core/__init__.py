"""Pure logic of the log side: no I/O, no frameworks, time passed in."""
