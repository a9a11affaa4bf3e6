"""Enrichment tasks (moderation, sentiment, log parsing, declared tasks), one file each.

Handlers never talk to Kafka or HTTP: the runtime hands them a small interface.
"""
