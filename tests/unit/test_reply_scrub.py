"""The control socket's replies skip the per-string scrub only when it would change nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon.redaction import may_need_scrub, register_secret, scrub_value

SECRETS = ['SENTINEL-Q"uote\\back-0077', "SENTINEL-KEY-ÄÖ-0078", "SENTINEL-PLAIN-0079"]

VALUES: list[Any] = [
    {"bots": [{"name": "eth-1", "position_qty": "0.02", "error": None, "restarts": 0}]},
    {"error": "GET https://fapi.binance.com/fapi/v1/order?symbol=ETHUSDT&signature=abcd 503"},
    {"last_problem": "binance {'X-MBX-APIKEY': 'abcdefgh12345'}"},
    {"note": "Api_Key=abcdefgh12345"},
    {"note": "api\u212aey=abcdefgh12345"},  # KELVIN SIGN: lower() makes it "apikey"
    {"reason": f"rejected, echoing {SECRETS[0]}"},
    {"reason": f"rejected, echoing {SECRETS[1]}"},
    [f"nested {SECRETS[2]} in a list", ("a tuple", 3)],
    {"halt_reason": "daily loss limit", "account": "paper0", "symbol": "ETH/USDT:USDT"},
]


@pytest.fixture(autouse=True)
def loaded_secrets() -> None:
    for secret in SECRETS:
        register_secret(secret)


@pytest.mark.parametrize("value", VALUES)
def test_a_reply_goes_out_unscrubbed_only_when_scrubbing_would_change_nothing(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    if not may_need_scrub(text):
        assert scrub_value(value) == value
    if scrub_value(value) != value:
        assert may_need_scrub(text)


def test_an_ordinary_status_reply_takes_the_fast_path() -> None:
    status = {"name": "eth-1", "state": "running", "symbol": "ETH/USDT:USDT", "error": None}
    assert not may_need_scrub(json.dumps({"bots": [status] * 100}, ensure_ascii=False))


@pytest.mark.parametrize("secret", SECRETS)
def test_a_loaded_credential_in_a_reply_is_always_caught(secret: str) -> None:
    assert may_need_scrub(json.dumps({"error": f"x{secret}y"}, ensure_ascii=False))
