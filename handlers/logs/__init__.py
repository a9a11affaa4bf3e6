"""Log parsing: header fields, Drain3 clusters, the model's templates (see handler.py)."""

from handlers.logs.handler import BurstDetector, LogsHandler
from handlers.logs.templates import slot_names

__all__ = ["BurstDetector", "LogsHandler", "slot_names"]
