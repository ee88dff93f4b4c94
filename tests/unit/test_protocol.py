"""The control protocol's frames: what the daemon accepts and what it answers."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tradectl.protocol import (
    MAX_REPLY_BYTES,
    MAX_REQUEST_BYTES,
    PROTOCOL_VERSION,
    Command,
    ErrorCode,
    ErrorInfo,
    ProtocolError,
    Reply,
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


def test_frames_are_compact_utf8_json_lines() -> None:
    assert encode_request(Request(id="a1", cmd="stop", args={"bot": "éth"})) == (
        '{"v":1,"id":"a1","cmd":"stop","args":{"bot":"éth"}}\n'.encode()
    )
    assert encode_reply(ok_reply("a1", {"qty": Decimal("0.05")})) == (
        b'{"v":1,"id":"a1","ok":true,"result":{"qty":"0.05"}}\n'
    )
    assert encode_reply(error_reply(None, ErrorCode.BUSY, "too many")) == (
        b'{"v":1,"id":null,"ok":false,"error":{"code":"busy","message":"too many"}}\n'
    )


def request_of_size(size: int) -> bytes:
    bare = json.dumps({"v": 1, "id": "a", "cmd": "status", "args": {"pad": ""}}).encode()
    frame = json.dumps(
        {"v": 1, "id": "a", "cmd": "status", "args": {"pad": "x" * (size - len(bare))}}
    ).encode()
    assert len(frame) == size
    return frame


def test_a_request_exactly_at_the_size_limit_is_read_and_one_byte_more_is_not() -> None:
    assert decode_request(request_of_size(MAX_REQUEST_BYTES)).cmd == "status"
    with pytest.raises(ProtocolError) as caught:
        decode_request(request_of_size(MAX_REQUEST_BYTES + 1))
    assert caught.value.code == ErrorCode.FRAME_TOO_LARGE
    assert (
        caught.value.message
        == f"frame of {MAX_REQUEST_BYTES + 1} bytes exceeds {MAX_REQUEST_BYTES}"
    )


def test_a_reply_may_be_far_larger_than_a_request_but_not_without_bound() -> None:
    result = "x" * (MAX_REQUEST_BYTES * 4)
    assert decode_reply(encode_reply(ok_reply("a", result)).strip()).result == result
    big = b'{"v":1,"id":"a","ok":true,"result":"' + b"x" * MAX_REPLY_BYTES + b'"}'
    with pytest.raises(ProtocolError) as caught:
        decode_reply(big)
    assert caught.value.code == ErrorCode.FRAME_TOO_LARGE


def test_an_id_may_have_128_characters_and_not_one_more() -> None:
    assert decode_request(frame_of(id="i" * 128)).id == "i" * 128
    with pytest.raises(ProtocolError) as caught:
        decode_request(frame_of(id="i" * 129))
    assert caught.value.code == ErrorCode.BAD_REQUEST and caught.value.request_id is None
    assert caught.value.message == "field 'id' must be a string of at most 128 chars"


def frame_of(**fields: object) -> bytes:
    base: dict[str, object] = {"v": PROTOCOL_VERSION, "id": "r", "cmd": "status"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"cmd": 7}, ErrorCode.BAD_REQUEST, "field 'cmd' must be a string"),
        ({"cmd": None}, ErrorCode.BAD_REQUEST, "field 'cmd' must be a string"),
        ({"cmd": ...}, ErrorCode.BAD_REQUEST, "field 'cmd' must be a string"),
        ({"cmd": "Status"}, ErrorCode.UNKNOWN_COMMAND, "unknown command 'Status'"),
        (
            {"v": ...},
            ErrorCode.UNSUPPORTED_VERSION,
            "protocol version None is not supported; this daemon speaks 1",
        ),
        (
            {"v": "1"},
            ErrorCode.UNSUPPORTED_VERSION,
            "protocol version '1' is not supported; this daemon speaks 1",
        ),
        ({"args": "bot"}, ErrorCode.BAD_REQUEST, "field 'args' must be an object"),
        ({"args": None}, ErrorCode.BAD_REQUEST, "field 'args' must be an object"),
    ],
)
def test_each_bad_field_is_named_and_keeps_the_request_id(
    fields: dict[str, object], code: str, words: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_request(frame_of(**fields))
    assert (caught.value.code, caught.value.request_id) == (code, "r")
    assert caught.value.message == words and str(caught.value) == words


def test_what_is_not_a_json_object_is_refused_with_the_reason() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_request(b'{"v": 1,')
    assert caught.value.message.startswith("frame is not valid JSON: Expecting")
    with pytest.raises(ProtocolError) as caught:
        decode_request(b'"status"')
    assert caught.value.message == "frame must be a JSON object"
    with pytest.raises(ProtocolError) as caught:
        decode_reply(b'{"ok": "yes"}')
    assert caught.value.message == "reply is neither a result nor an error"


def test_a_request_without_args_has_empty_ones() -> None:
    assert decode_request(frame_of(args=...)) == Request(id="r", cmd="status", args={}, v=1)


@pytest.mark.parametrize("command", sorted(Command.ALL))
def test_every_command_is_understood(command: str) -> None:
    assert decode_request(frame_of(cmd=command)).cmd == command


def test_the_commands_and_error_codes_are_the_documented_ones() -> None:
    assert {
        "ping",
        "status",
        "start",
        "stop",
        "positions",
        "orders",
        "health",
        "flatten",
        "resume",
        "schedule",
        "alerts_test",
    } == Command.ALL
    codes = {v for k, v in vars(ErrorCode).items() if k.isupper()}
    assert codes == {
        "bad_request",
        "frame_too_large",
        "unsupported_version",
        "unknown_command",
        "not_found",
        "refused",
        "forbidden",
        "busy",
        "internal",
    }


@pytest.mark.parametrize(
    "reply",
    [
        b'{"v":1,"id":"a","ok":1,"result":{}}',
        b'{"v":1,"id":"a","ok":"true","result":{}}',
        b'{"v":1,"id":"a","result":{}}',
        b'{"v":1,"id":"a","ok":false}',
        b'{"v":1,"id":"a","ok":false,"error":"boom"}',
        b'{"v":1,"id":"a","ok":0,"error":{"code":"internal","message":"x"}}',
        b"[true]",
        b"nonsense",
    ],
)
def test_a_reply_that_is_neither_a_result_nor_an_error_is_a_protocol_error(reply: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_reply(reply)
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert caught.value.message in (
        "reply is neither a result nor an error",
        "frame must be a JSON object",
    ) or caught.value.message.startswith("frame is not valid JSON: ")


def test_a_reply_is_read_field_by_field() -> None:
    good = decode_reply(b'{"v":1,"id":"a","ok":true,"result":[1,2]}')
    assert good == Reply(id="a", ok=True, result=[1, 2], error=None, v=1)
    assert decode_reply(b'{"ok":true}') == Reply(id=None, ok=True, result=None, v=0)
    bad = decode_reply(b'{"v":1,"id":"b","ok":false,"error":{"code":"busy","message":"later"}}')
    assert bad == Reply(id="b", ok=False, error=ErrorInfo("busy", "later"), v=1)
    bare = decode_reply(b'{"ok":false,"error":{}}')
    assert bare == Reply(id=None, ok=False, error=ErrorInfo("internal", ""), v=0)
    assert decode_reply(b'{"ok":false,"error":{"code":7,"message":8}}').error == ErrorInfo("7", "8")


def test_a_frame_nested_too_deeply_is_a_bad_request_that_says_so() -> None:
    deep = (
        b'{"v": 1, "id": "d", "cmd": "status", "args": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    )
    assert len(deep) < MAX_REQUEST_BYTES
    with pytest.raises(ProtocolError) as caught:
        decode_request(deep)
    assert (caught.value.code, caught.value.message) == (
        ErrorCode.BAD_REQUEST,
        "frame is nested too deeply",
    )
