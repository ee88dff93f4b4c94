"""The control protocol's frames: what the daemon accepts and what it answers."""

from __future__ import annotations

import json

import pytest

from tradectl.protocol import (
    MAX_REQUEST_BYTES,
    PROTOCOL_VERSION,
    ErrorCode,
    ProtocolError,
    Request,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    error_reply,
    ok_reply,
)


def test_request_round_trips_as_one_line() -> None:
    frame = encode_request(Request(id="a1", cmd="status", args={"bot": "eth-ema"}))
    assert frame.endswith(b"\n") and frame.count(b"\n") == 1
    assert decode_request(frame.strip()) == Request(id="a1", cmd="status", args={"bot": "eth-ema"})


def test_reply_is_either_a_result_or_an_error() -> None:
    good = decode_reply(encode_reply(ok_reply("x", {"n": 1})).strip())
    assert good.ok and good.result == {"n": 1} and good.error is None
    bad = decode_reply(encode_reply(error_reply("y", ErrorCode.NOT_FOUND, "no bot")).strip())
    assert not bad.ok and bad.error is not None
    assert (bad.error.code, bad.error.message, bad.id) == (ErrorCode.NOT_FOUND, "no bot", "y")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"not json", ErrorCode.BAD_REQUEST),
        (b"[1, 2]", ErrorCode.BAD_REQUEST),
        (b'{"v": 1, "cmd": "status"}', ErrorCode.BAD_REQUEST),
        (b'{"v": 1, "id": 7, "cmd": "status"}', ErrorCode.BAD_REQUEST),
        (b'{"v": 99, "id": "a", "cmd": "status"}', ErrorCode.UNSUPPORTED_VERSION),
        (b'{"v": 1, "id": "a", "cmd": "launch_rockets"}', ErrorCode.UNKNOWN_COMMAND),
        (b'{"v": 1, "id": "a", "cmd": "status", "args": []}', ErrorCode.BAD_REQUEST),
        (b"\xff\xfe", ErrorCode.BAD_REQUEST),
    ],
)
def test_malformed_requests_get_a_stable_error_code(frame: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_request(frame)
    assert caught.value.code == code


def test_error_keeps_the_request_id_when_it_could_be_read() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_request(json.dumps({"v": PROTOCOL_VERSION, "id": "keep-me", "cmd": "nope"}).encode())
    assert caught.value.request_id == "keep-me"


def test_oversized_frame_is_refused_before_parsing() -> None:
    big = b'{"v":1,"id":"a","cmd":"status","args":{"x":"' + b"a" * MAX_REQUEST_BYTES + b'"}}'
    with pytest.raises(ProtocolError) as caught:
        decode_request(big)
    assert caught.value.code == ErrorCode.FRAME_TOO_LARGE
