"""No input, however broken or hostile, crashes the daemon or stalls a bot."""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import eventually
from tests.integration.daemon_process import DaemonProcess
from tradectl.protocol import ErrorCode

MakeDaemon = Callable[..., DaemonProcess]
CODES = {v for k, v in vars(ErrorCode).items() if k.isupper()}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    from tests.integration.daemon_process import remove, short_socket_dir, write_config

    folder = tmp_path_factory.mktemp("robust")
    socket_dir = short_socket_dir()
    proc = DaemonProcess(
        write_config(folder / "config.toml"),
        folder / "state",
        socket_dir / "c.sock",
        folder / "daemon.log",
    )
    proc.start()
    yield proc
    proc.stop()
    remove(socket_dir)


def connect(daemon: DaemonProcess, timeout: float = 10) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(daemon.socket))
    return s


def read_replies(s: socket.socket) -> list[dict[str, object]]:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def still_alive(daemon: DaemonProcess) -> None:
    before = daemon.bot("eth-ema")["candles_processed"]
    eventually(lambda: daemon.bot("eth-ema")["candles_processed"] > before, timeout=20)
    assert daemon.proc is not None and daemon.proc.poll() is None


def assert_well_formed(reply: dict[str, object]) -> None:
    assert reply["v"] == 1 and isinstance(reply["ok"], bool)
    if not reply["ok"]:
        error = reply["error"]
        assert isinstance(error, dict) and error["code"] in CODES and error["message"]


def test_thousands_of_random_byte_frames_get_error_replies(daemon: DaemonProcess) -> None:
    rng = random.Random(1)
    replies = 0
    for _ in range(20):
        with connect(daemon) as s:
            frames = [
                bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))).replace(b"\n", b" ")
                for _ in range(100)
            ]
            s.sendall(b"\n".join(frames) + b"\n")
            s.shutdown(socket.SHUT_WR)
            got = read_replies(s)
            for reply in got:  # random bytes are never a readable request
                assert_well_formed(reply)
                assert reply["error"]["code"] == "bad_request" and reply["id"] is None, reply  # type: ignore[index]
            replies += len(got)
    assert replies >= 1900, replies  # a frame of only spaces gets no reply; almost all others do
    still_alive(daemon)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 1, 1, 2, "1", None]),
        "id": st.text(max_size=40) | st.integers() | st.text(min_size=129, max_size=140),
        "cmd": st.sampled_from(
            [
                "ping",
                "status",
                "positions",
                "orders",
                "health",
                "start",
                "stop",
                "resume",
                "flatten",
            ]
        )
        | st.text(max_size=12),
        "args": st.dictionaries(
            st.sampled_from(["bot", "all", "timeout", "x"]), json_values, max_size=3
        )
        | json_values,
    },
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(requests, min_size=1, max_size=10))
def test_any_json_request_gets_a_result_or_a_structured_error(
    daemon: DaemonProcess, batch: list[dict[str, object]]
) -> None:
    safe = [
        r
        for r in batch
        if r.get("cmd") not in ("start", "stop", "resume", "flatten") or r.get("v") != 1
    ]
    if not safe:
        return  # real commands with valid frames would change the bot; covered elsewhere
    with connect(daemon) as s:
        s.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in safe))
        s.shutdown(socket.SHUT_WR)
        replies = read_replies(s)
    assert len(replies) == len(safe)
    for request, reply in zip(safe, replies, strict=True):
        assert_well_formed(reply)
        readable_id = isinstance(request.get("id"), str) and len(request["id"]) <= 128  # type: ignore[arg-type]
        assert reply["id"] == (request["id"] if readable_id else None), (request, reply)
        code = None if reply["ok"] else reply["error"]["code"]  # type: ignore[index]
        assert code in expected_outcomes(request), (request, reply)


def expected_outcomes(request: dict[str, object]) -> set[str | None]:
    """What the protocol promises for a request (None: a result), checking its fields in the
    documented order: id, version, command, arguments; then what the command may answer."""
    request_id, cmd, args = request.get("id"), request.get("cmd"), request.get("args", {})
    if not isinstance(request_id, str) or len(request_id) > 128:
        return {"bad_request"}
    if request.get("v") != 1 or isinstance(request.get("v"), bool):
        return {"unsupported_version"}
    if not isinstance(cmd, str):
        return {"bad_request"}
    if cmd not in READ_COMMANDS | WRITE_COMMANDS:
        return {"unknown_command"}
    if not isinstance(args, dict):
        return {"bad_request"}
    return {None, "bad_request", "not_found"}  # a typed argument may be wrong or name no bot


READ_COMMANDS = {"ping", "status", "positions", "orders", "health"}
WRITE_COMMANDS = {"start", "stop", "resume", "flatten"}


HOSTILE_FRAMES = {
    "nested_arrays": b"[" * 30000 + b"]" * 30000,
    "nested_in_args": b'{"v":1,"id":"n","cmd":"ping","args":{"x":'
    + b"[" * 20000
    + b"]" * 20000
    + b"}}",
    "nested_objects": b'{"a":' * 10000 + b"1" + b"}" * 10000,
    "huge_int_arg": b'{"v":1,"id":"i","cmd":"ping","args":{"x":' + b"9" * 5000 + b"}}",
    "huge_int_id": b'{"v":1,"id":' + b"9" * 5000 + b',"cmd":"ping"}',
    "huge_int_version": b'{"v":' + b"1" * 4400 + b',"id":"v","cmd":"ping"}',
    "not_utf8": b'{"v":1,"id":"\xff\xfe","cmd":"ping"}',
}


@pytest.mark.parametrize("frame", HOSTILE_FRAMES.values(), ids=HOSTILE_FRAMES.keys())
def test_frames_the_parser_chokes_on_get_a_bad_request_reply_and_the_line_stays_open(
    daemon: DaemonProcess, frame: bytes
) -> None:
    with connect(daemon) as s:
        s.sendall(frame + b"\n" + b'{"v":1,"id":"after","cmd":"ping"}\n')
        s.shutdown(socket.SHUT_WR)
        replies = read_replies(s)
    assert len(replies) == 2, replies
    refused, after = replies
    assert_well_formed(refused)
    assert refused["ok"] is False and refused["error"]["code"] == "bad_request", refused  # type: ignore[index]
    assert after["ok"] is True and after["id"] == "after"
    assert "Task exception was never retrieved" not in daemon.log()
    assert "Traceback" not in daemon.log()


def test_stuck_half_open_and_vanishing_clients_do_not_block_others(daemon: DaemonProcess) -> None:
    stuck = []
    for i in range(40):
        s = connect(daemon)
        if i % 2:
            s.sendall(b'{"v":1,"id":"half","cmd":"sta')  # half a frame, then silence
        stuck.append(s)
    for _ in range(50):  # abrupt closes, with and without half a frame
        s = connect(daemon)
        s.sendall(b'{"v":1,"id":"x","cmd":"status"')
        s.close()
    began = time.monotonic()
    assert daemon.cli("status").returncode == 0
    assert time.monotonic() - began < 5, "a status call must not wait behind stuck clients"
    for s in stuck:
        s.close()
    still_alive(daemon)


def test_too_many_clients_get_busy_not_a_crash(daemon: DaemonProcess) -> None:
    held = [connect(daemon) for _ in range(64)]
    with connect(daemon) as extra:
        extra.sendall(b'{"v":1,"id":"e","cmd":"ping"}\n')
        [reply] = read_replies(extra)
    assert reply["error"]["code"] == "busy"  # type: ignore[index]
    for s in held:
        s.close()
    eventually(lambda: daemon.cli("status").returncode == 0, timeout=10)
    still_alive(daemon)
