"""structlog set-up: JSON lines under systemd (or when asked), readable lines in a terminal."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from daemon.redaction import scrub_value

SECRET_KEYS = ("secret", "api_key", "apikey", "password", "passphrase", "token")


def _redact_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Last line of defence: a key that smells of a secret never reaches a log line."""
    for key in list(event):
        if any(word in key.lower() for word in SECRET_KEYS):
            event[key] = "***"
    return event


def _scrub(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Every value of every line, the rendered traceback included: ccxt's errors quote
    signed URLs and carry request headers."""
    return {key: scrub_value(value) for key, value in event.items()}


def wants_json(log_format: str, environ: Mapping[str, str] = os.environ) -> bool:
    if log_format == "json":
        return True
    if log_format == "console":
        return False
    return bool(environ.get("JOURNAL_STREAM")) or not sys.stderr.isatty()


def configure_logging(log_format: str = "auto", level: str = "info") -> None:
    json_lines = wants_json(log_format)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]
    # Tracebacks without frame locals (a ccxt frame holds the request headers, API key
    # included), rendered to text or dicts before the scrub, so the scrub sees them.
    if json_lines:
        processors += [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            _scrub,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors += [
            structlog.processors.ExceptionRenderer(),
            _scrub,
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
            ),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
