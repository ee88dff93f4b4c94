"""The root of tradectl's exceptions, light enough for the CLI's fast path."""

from __future__ import annotations


class TradectlError(Exception):
    """Base of every error tradectl raises on purpose."""


class ConfigError(TradectlError):
    """The configuration (or a file it names) is invalid; the message says where and why."""
