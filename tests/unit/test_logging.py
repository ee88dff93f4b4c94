"""Log lines: JSON under systemd, key-value events, and never a secret."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from daemon.credentials import ApiCredentials
from daemon.logging_setup import configure_logging, wants_json
from daemon.redaction import scrub


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


@pytest.fixture
def fresh_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()  # later tests must not print to a captured, closed stderr


def _fail_with_a_signed_request() -> None:
    headers = {"X-MBX-APIKEY": "KEYINALOCAL123456"}  # a frame local, as in ccxt's fetch
    url = "https://fapi.binance.com/fapi/v1/order?symbol=ETHUSDT&signature=" + "ab" * 32
    raise RuntimeError(f"binanceusdm POST {url} 503 Service Unavailable {headers}")


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_tracebacks_carry_no_frame_locals_and_no_signed_urls(
    capsys: pytest.CaptureFixture[str], fresh_logging: None, log_format: str
) -> None:
    configure_logging(log_format, "info")
    try:
        _fail_with_a_signed_request()
    except RuntimeError as e:
        structlog.get_logger().error("bot_errored", error=str(e), exc_info=e)
    out = capsys.readouterr().err
    assert "_fail_with_a_signed_request" in out, "the traceback itself is kept"
    assert "KEYINALOCAL123456" not in out and "ab" * 32 not in out, out
    assert "fapi.binance.com/fapi/v1/order?***" in out


def test_a_loaded_credential_is_masked_wherever_it_appears(
    capsys: pytest.CaptureFixture[str], fresh_logging: None
) -> None:
    ApiCredentials("acct", "SENTINEL-KEY-0042", "SENTINEL-SECRET-0042")
    configure_logging("json", "info")
    structlog.get_logger().warning("odd", note="echo SENTINEL-KEY-0042 and SENTINEL-SECRET-0042")
    out = capsys.readouterr().err
    assert "SENTINEL-KEY-0042" not in out and "SENTINEL-SECRET-0042" not in out, out
    assert scrub("ACCESS-SIGN: c2lnbmF0dXJl, ACCESS-PASSPHRASE: pass1234") == (
        "ACCESS-SIGN: ***, ACCESS-PASSPHRASE: ***"
    )
