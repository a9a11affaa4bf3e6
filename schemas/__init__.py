"""Pydantic models of events, model outputs, enriched events, DLQ envelopes and alerts.

Imports nothing from Kafka, HTTP or handlers.
"""
