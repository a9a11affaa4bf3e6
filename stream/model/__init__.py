"""The model client: one per process, shared by every handler (see client.py)."""
