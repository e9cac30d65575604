"""Runnable recipes: one short, top-to-bottom function per task that wires the library pieces together."""
