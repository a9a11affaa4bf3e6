"""Fault scenarios against the real broker and the model simulator (RELIABILITY.md)."""
