"""The project's error tree. Every error says whether retrying it can help.

    SluicegateError            retriable = False unless a subclass says otherwise
    ├── ConfigError            a bad setting; the message names the key and what is accepted
    └── ...                    the runtime, model client and handlers add theirs here

Third-party errors are mapped into this tree at exactly one boundary per library, so the
runtime needs one rule only: retry what is retriable, dead-letter the rest.
"""

from __future__ import annotations


class SluicegateError(Exception):
    """Root of every error this project raises on purpose."""

    retriable: bool = False


class ConfigError(SluicegateError):
    """The configuration is invalid; raised before anything connects anywhere."""


class KafkaUnavailable(SluicegateError):
    """The cluster did not answer in time; the message names the address to check."""

    retriable = True
