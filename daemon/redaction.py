"""Exchange credentials and request signatures never leave the process in any text.

ccxt's errors quote the request they failed on: the whole signed URL (query string with
`signature=`), and its exceptions carry the headers (`X-MBX-APIKEY`, Bitget's
`ACCESS-KEY`/`ACCESS-SIGN`/`ACCESS-PASSPHRASE`). Every text that goes to a log line, a
status field, an error reply, the journal or the terminal passes `scrub` on its way:
the values of loaded credentials are replaced wherever they appear, query strings of
URLs are dropped, and anything shaped like a key, signature or passphrase is masked.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "***"
MIN_SECRET_CHARS = 6  # shorter values would mask ordinary words; no real key is that short

_known: tuple[str, ...] = ()
_known_in_json: tuple[str, ...] = ()  # the same as JSON text writes them inside a string
_lock = threading.Lock()

_URL_QUERY = re.compile(r"(?i)\b((?:https?|wss?)://[^\s?#\"'<>]+)\?[^\s\"'<>]*")
_NAMED = re.compile(
    r"(?i)\b(x-mbx-apikey|access-key|access-sign|access-passphrase|api[-_]?key|secret"
    r"|password|passphrase|signature|sign|authorization)"
    r"(\"?'?\s*[:=]\s*\"?'?)"
    r"([^\s\"',}&]+)"
)
# Cheap substring tests before the regex: most texts (timestamps, symbols) have none.
_KEYWORDS = (
    "apikey",
    "api-key",
    "api_key",
    "access-",
    "secret",
    "password",
    "passphrase",
    "sign",
    "authorization",
)


def register_secret(value: str | None) -> None:
    """Remember a credential's value, so that it is masked wherever it shows up."""
    global _known, _known_in_json
    if value and len(value) >= MIN_SECRET_CHARS:
        with _lock:
            if value not in _known:
                _known = (*_known, value)
                _known_in_json = (*_known_in_json, json.dumps(value, ensure_ascii=False)[1:-1])


def scrub(text: str) -> str:
    """The text with credentials, signatures and URL query strings masked."""
    for secret in _known:
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _URL_QUERY.sub(r"\1?" + MASK, text)
    lowered = text.lower()
    if any(word in lowered for word in _KEYWORDS):
        text = _NAMED.sub(r"\1\2" + MASK, text)
    return text


def may_need_scrub(json_text: str) -> bool:
    """False when `scrub_value` would change no string of the value `json_text` encodes:
    no URL, no key-like word (in keys too), no known credential, raw or as JSON escapes it.
    A few substring searches over a whole reply (the tests `scrub` makes first, on the
    same lower-casing) instead of `scrub` on each of its strings."""
    if "://" in json_text:
        return True
    lowered = json_text.lower()
    if any(word in lowered for word in _KEYWORDS):
        return True
    return any(secret in json_text for secret in (*_known, *_known_in_json))


def scrub_value(value: Any) -> Any:
    """`scrub` applied to every string inside nested dicts, lists and tuples."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {k: scrub_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub_value(v) for v in value)
    return value
