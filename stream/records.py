"""The record shapes the runtime moves around (defined in schemas/ so handlers share them)."""

from __future__ import annotations

from schemas.records import Headers, OutRecord, SourceRecord

__all__ = ["Headers", "OutRecord", "SourceRecord"]
