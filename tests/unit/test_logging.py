"""Log lines: JSON under systemd, key-value events, and never a secret."""

from __future__ import annotations

import json

import pytest
import structlog

from daemon.logging_setup import configure_logging, wants_json


def test_json_under_the_journal_and_readable_lines_in_a_terminal() -> None:
    assert wants_json("auto", {"JOURNAL_STREAM": "8:1234"})
    assert wants_json("json", {})
    assert not wants_json("console", {"JOURNAL_STREAM": "8:1234"})


def test_secrets_never_reach_a_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "info")
    structlog.get_logger().info(
        "account_loaded", bot="b1", api_key="AKIA123", api_secret="s3cr3t", passphrase="p"
    )
    line = json.loads(capsys.readouterr().err.strip())
    assert line["bot"] == "b1" and line["event"] == "account_loaded"
    assert "AKIA123" not in json.dumps(line) and "s3cr3t" not in json.dumps(line)
    assert line["api_key"] == line["api_secret"] == line["passphrase"] == "***"
