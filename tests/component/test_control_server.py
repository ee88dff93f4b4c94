"""The control socket in-process: a real Unix socket, real frames, handlers that answer or fail
on purpose; what a client gets back for each outcome, and how the socket file is treated."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon.control import server as control_server
from daemon.control.server import (
    ArgumentError,
    ControlServer,
    Forbidden,
    Peer,
    SocketInUse,
    SocketPathError,
    arg,
    current_peer,
)
from daemon.domain.errors import IllegalTransition, NotFound, Refused, TradectlError
from tests.integration.daemon_process import remove, short_socket_dir
from tradectl.protocol import MAX_REQUEST_BYTES, ErrorCode, Request

Reply = dict[str, Any]


@pytest.fixture
def sock_path() -> Any:
    folder = short_socket_dir()
    yield folder / "c.sock"
    remove(folder)


async def echo(request: Request) -> Any:
    return {"cmd": request.cmd, "args": request.args}


async def who(request: Request) -> Any:
    peer = current_peer.get()
    return {"pid": peer.pid, "uid": peer.uid, "gid": peer.gid}


def failing(error: Exception) -> Callable[[Request], Awaitable[Any]]:
    async def handler(request: Request) -> Any:
        raise error

    return handler


HANDLERS = {"ping": echo, "status": who, "positions": echo}


@asynccontextmanager
async def serving(
    path: Path, handlers: dict[str, Any] | None = None, **kw: Any
) -> AsyncIterator[ControlServer]:
    server = ControlServer(path, handlers if handlers is not None else HANDLERS, **kw)
    unhandled: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda loop, context: unhandled.append(context)
    )
    await server.start()
    try:
        yield server
    finally:
        await server.close()
        await asyncio.sleep(0)  # let a connection task that just failed report it
        assert unhandled == [], "a connection task died of an error nobody handled"


async def exchange(path: Path, data: bytes, replies: int | None = None) -> list[Reply]:
    """Send raw bytes, close our side, read every reply line until the server closes."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=2**20)
    writer.write(data)
    await writer.drain()
    if replies is None:
        writer.write_eof()
    got = []
    while replies is None or len(got) < replies:
        line = await asyncio.wait_for(reader.readline(), 10)
        if not line:
            break
        got.append(json.loads(line))
    await closed(writer)
    return got


async def closed(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def mode(path: Path) -> int:
    """Permission bits of what is at `path`; 0 when nothing is, -1 when it is not a socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    return stat.S_IMODE(st.st_mode) if stat.S_ISSOCK(st.st_mode) else -1


def frame(cmd: Any = "ping", id: Any = "r1", v: Any = 1, **args: Any) -> bytes:
    return json.dumps({"v": v, "id": id, "cmd": cmd, "args": args}).encode() + b"\n"


def code(reply: Reply) -> str | None:
    return None if reply["ok"] else reply["error"]["code"]


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


# --- replies ------------------------------------------------------------------------------


def test_a_request_gets_its_handlers_result_under_its_own_id(sock_path: Path) -> None:
    async def body() -> None:
        async with serving(sock_path):
            [reply] = await exchange(sock_path, frame("ping", id="abc", bot="eth"))
            assert reply == {
                "v": 1,
                "id": "abc",
                "ok": True,
                "result": {"cmd": "ping", "args": {"bot": "eth"}},
            }

    run(body)


def test_many_requests_on_one_connection_are_answered_in_order(sock_path: Path) -> None:
    async def body() -> None:
        async with serving(sock_path):
            data = frame(id="1") + b"\n  \n" + frame(id="2") + b"not json\n" + frame(id="3")
            replies = await exchange(sock_path, data)
            assert [(r["id"], code(r)) for r in replies] == [
                ("1", None),
                ("2", None),
                (None, ErrorCode.BAD_REQUEST),
                ("3", None),
            ], "blank lines get no reply; a bad frame does not end the connection"

    run(body)


def test_a_one_character_request_is_answered_before_the_next_line(sock_path: Path) -> None:
    async def body() -> None:
        async with serving(sock_path):
            [reply] = await exchange(sock_path, b"5\n", replies=1)
            assert code(reply) == ErrorCode.BAD_REQUEST

    run(body)


def test_a_last_frame_without_its_newline_is_still_answered(sock_path: Path) -> None:
    async def body() -> None:
        async with serving(sock_path):
            [reply] = await exchange(sock_path, frame(id="tail").rstrip(b"\n"))
            assert reply["id"] == "tail" and reply["ok"]

    run(body)


def test_a_frame_at_the_size_limit_is_served_and_one_byte_more_is_refused(
    sock_path: Path,
) -> None:
    def padded(size: int) -> bytes:
        bare = frame(pad="")[:-1]
        line = frame(pad="x" * (size - len(bare)))
        assert len(line) == size + 1  # plus its newline
        return line

    async def body() -> None:
        async with serving(sock_path):
            [at_limit] = await exchange(sock_path, padded(MAX_REQUEST_BYTES))
            assert at_limit["ok"] and len(at_limit["result"]["args"]["pad"]) > 60_000
            [over] = await exchange(sock_path, padded(MAX_REQUEST_BYTES + 1), replies=1)
            assert code(over) == ErrorCode.FRAME_TOO_LARGE
            assert str(MAX_REQUEST_BYTES) in over["error"]["message"]

    run(body)


def test_a_frame_without_end_past_the_limit_is_refused_and_the_connection_closed(
    sock_path: Path,
) -> None:
    async def body() -> None:
        async with serving(sock_path):
            reader, writer = await asyncio.open_unix_connection(str(sock_path))
            writer.write(b'{"v":1,"id":"big","pad":"' + b"x" * MAX_REQUEST_BYTES)  # no newline
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 10)
            refused = json.loads(line)
            assert code(refused) == ErrorCode.FRAME_TOO_LARGE
            assert str(MAX_REQUEST_BYTES) in refused["error"]["message"]
            assert await asyncio.wait_for(reader.read(), 10) == b"", "then the server hangs up"
            await closed(writer)

    run(body)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (frame(cmd=7), ErrorCode.BAD_REQUEST),
        (frame(id="x" * 129), ErrorCode.BAD_REQUEST),
        (frame(v=2), ErrorCode.UNSUPPORTED_VERSION),
        (frame(cmd="launch"), ErrorCode.UNKNOWN_COMMAND),
        (frame(cmd="start"), ErrorCode.UNKNOWN_COMMAND),  # a command this server has no handler for
        (b"[1]\n", ErrorCode.BAD_REQUEST),
    ],
    ids=["cmd-not-a-string", "id-too-long", "version", "unknown", "not-served", "not-an-object"],
)
def test_a_bad_request_gets_its_error_code(sock_path: Path, data: bytes, expected: str) -> None:
    async def body() -> None:
        async with serving(sock_path):
            [reply] = await exchange(sock_path, data)
            assert code(reply) == expected and reply["error"]["message"]
            readable = json.loads(data) if data.startswith(b"{") else {}
            id_kept = isinstance(readable.get("id"), str) and len(readable["id"]) <= 128
            assert reply["id"] == ("r1" if id_kept else None), "the id, whenever it was readable"

    run(body)


def test_an_id_of_128_characters_is_accepted(sock_path: Path) -> None:
    async def body() -> None:
        async with serving(sock_path):
            [reply] = await exchange(sock_path, frame(id="x" * 128))
            assert reply["ok"] and reply["id"] == "x" * 128

    run(body)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NotFound("no bot 'x'"), ErrorCode.NOT_FOUND),
        (Refused("not now"), ErrorCode.REFUSED),
        (IllegalTransition("halted bots do not start"), ErrorCode.REFUSED),
        (ArgumentError("start: argument 'bot' must be str"), ErrorCode.BAD_REQUEST),
        (TradectlError("something the daemon refuses"), ErrorCode.REFUSED),
        (Forbidden("not yours"), ErrorCode.FORBIDDEN),
        (ZeroDivisionError("bug"), ErrorCode.INTERNAL),
    ],
)
def test_a_handlers_failure_becomes_its_error_code_and_the_server_carries_on(
    sock_path: Path, error: Exception, expected: str
) -> None:
    async def body() -> None:
        async with serving(sock_path, {"ping": failing(error), "status": echo}):
            replies = await exchange(sock_path, frame("ping", id="f") + frame("status", id="s"))
            assert [(r["id"], code(r)) for r in replies] == [("f", expected), ("s", None)]
            assert str(error) in replies[0]["error"]["message"]
            if expected == ErrorCode.INTERNAL:
                assert "ZeroDivisionError" in replies[0]["error"]["message"]

    run(body)


def test_the_authorizer_sees_the_kernels_peer_and_may_refuse(sock_path: Path) -> None:
    seen: list[tuple[Peer, str]] = []

    def authorize(peer: Peer, request: Request) -> None:
        seen.append((peer, request.cmd))
        if request.cmd == "positions":
            raise Forbidden(f"uid {peer.uid} may not")

    async def body() -> None:
        async with serving(sock_path, authorize=authorize):
            replies = await exchange(
                sock_path, frame("status", id="a") + frame("positions", id="b")
            )
            assert replies[0]["result"] == {
                "pid": os.getpid(),
                "uid": os.getuid(),
                "gid": os.getgid(),
            }
            assert code(replies[1]) == ErrorCode.FORBIDDEN
            assert replies[1]["error"]["message"] == f"uid {os.getuid()} may not"
            assert [cmd for _, cmd in seen] == ["status", "positions"]
            groups = frozenset(os.getgroups())  # as the kernel tells them (SO_PEERGROUPS)
            assert seen[0][0] == Peer(os.getpid(), os.getuid(), os.getgid(), groups)

    run(body)


def test_too_many_clients_get_busy_and_a_freed_slot_serves_again(sock_path: Path) -> None:
    async def body() -> None:
        async with serving(sock_path, max_clients=2):
            held = [await asyncio.open_unix_connection(str(sock_path)) for _ in range(2)]
            for reader, writer in held:  # both are being served
                writer.write(frame())
                assert json.loads(await asyncio.wait_for(reader.readline(), 10))["ok"]
            [busy] = await exchange(sock_path, frame(id="third"))
            assert code(busy) == ErrorCode.BUSY
            assert busy["error"]["message"].startswith("too many clients")
            await closed(held[0][1])

            async def served() -> bool:
                return bool((await exchange(sock_path, frame(id="again")))[0]["ok"])

            for _ in range(100):
                if await served():
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the freed slot never served again")
            await closed(held[1][1])

    run(body)


# --- the socket file ----------------------------------------------------------------------

_modes_at_chmod: list[int] = []
_watched: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Records the socket's mode at the instant before the server's chmod: right after bind."""
    if event == "os.chmod" and _watched and str(args[0]) == _watched[0]:
        _modes_at_chmod.append(stat.S_IMODE(os.stat(_watched[0]).st_mode))


sys.addaudithook(_audit)


def test_the_socket_is_born_0660_never_wider_and_the_umask_is_restored(sock_path: Path) -> None:
    async def body() -> None:
        previous = os.umask(0)  # a careless parent: without care the socket would be 0777
        try:
            _watched[:] = [str(sock_path)]
            async with serving(sock_path):
                assert _modes_at_chmod and all(m & ~0o660 == 0 for m in _modes_at_chmod)
                assert mode(sock_path) == 0o660
                assert os.umask(0) == 0, "the process umask is given back"
        finally:
            _watched.clear()
            os.umask(previous)
        assert mode(sock_path) == 0, "close removes the socket"

    run(body)


def test_a_second_server_refuses_a_live_socket_and_the_first_keeps_serving(
    sock_path: Path,
) -> None:
    async def body() -> None:
        async with serving(sock_path):
            second = ControlServer(sock_path, HANDLERS)
            with pytest.raises(SocketInUse, match="another daemon answers"):
                await second.start()
            [reply] = await exchange(sock_path, frame(id="still"))
            assert reply["ok"]

    run(body)


def test_a_regular_file_at_the_socket_path_is_left_intact(sock_path: Path) -> None:
    async def body() -> None:
        with pytest.raises(SocketPathError, match="exists and is not a socket"):
            await ControlServer(sock_path, HANDLERS).start()

    sock_path.write_text("precious")
    run(body)
    assert sock_path.read_text() == "precious"


def test_a_stale_socket_left_by_a_crash_is_replaced(sock_path: Path) -> None:
    async def body() -> None:
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(str(sock_path))  # bound, never listening: what a killed daemon leaves
        dead.close()
        assert mode(sock_path) > 0
        async with serving(sock_path):
            [reply] = await exchange(sock_path, frame(id="new"))
            assert reply["ok"]

    run(body)


def test_a_missing_folder_is_named_and_closing_twice_is_harmless(sock_path: Path) -> None:
    async def body() -> None:
        nested = sock_path.parent / "run" / "c.sock"
        with pytest.raises(SocketPathError) as refused:
            await ControlServer(nested, HANDLERS).start()
        assert str(refused.value) == (
            f"control socket {nested}: cannot listen there: No such file or directory"
        )
        assert not nested.parent.exists(), "the daemon's folders are checked, not made, here"
        server = ControlServer(sock_path, HANDLERS)
        await server.start()
        [reply] = await exchange(sock_path, frame())
        assert reply["ok"]
        await server.close()
        await server.close()
        assert mode(sock_path) == 0
        await ControlServer(sock_path, HANDLERS).close()  # never started: nothing to do

    run(body)


# --- arguments and peers ------------------------------------------------------------------


def request(**args: Any) -> Request:
    return Request(id="r", cmd="start", args=args)


def test_arguments_are_typed_and_a_wrong_one_is_named() -> None:
    assert arg(request(bot="eth"), "bot", str) == "eth"
    assert arg(request(), "timeout", float, 30.0) == 30.0
    assert arg(request(bot=None), "bot", str, None) is None
    assert arg(request(timeout=5), "timeout", (int, float)) == 5
    assert arg(request(all=True), "all", bool) is True
    with pytest.raises(ArgumentError, match="start: missing argument 'bot'"):
        arg(request(), "bot", str)
    with pytest.raises(ArgumentError, match="start: argument 'bot' must be str"):
        arg(request(bot=3), "bot", str)
    with pytest.raises(ArgumentError, match="argument 'timeout' must be int or float"):
        arg(request(timeout=True), "timeout", (int, float))
    with pytest.raises(ArgumentError, match="argument 'bot' must be str"):
        arg(request(bot=None), "bot", str, "eth")  # null only where null is the default


def test_a_peers_groups_come_from_the_kernel_and_a_gone_peer_keeps_its_primary_group() -> None:
    me = Peer(os.getpid(), os.getuid(), os.getgid())
    assert me.groups() == {os.getgid(), *os.getgroups()}
    assert Peer(2**22 + 7, 1, 4242).groups() == {4242}


# --- clients that stall -------------------------------------------------------------------
# The waits are module constants (10 s, 300 s); these tests shorten them to keep the suite fast.


@pytest.fixture
def quick_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control_server, "FRAME_TIMEOUT_S", 0.3)
    monkeypatch.setattr(control_server, "IDLE_TIMEOUT_S", 0.6)


def test_half_a_frame_and_then_silence_is_dropped_after_the_frame_timeout(
    sock_path: Path, quick_timeouts: None
) -> None:
    async def body() -> None:
        async with serving(sock_path):
            reader, writer = await asyncio.open_unix_connection(str(sock_path))
            writer.write(b'{"v":1,"id":"half","cmd":"sta')
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b"", "dropped, not waited on"
            await closed(writer)

    run(body)


def test_an_idle_client_may_wait_between_requests_until_the_idle_timeout(
    sock_path: Path, quick_timeouts: None
) -> None:
    async def body() -> None:
        async with serving(sock_path):
            reader, writer = await asyncio.open_unix_connection(str(sock_path))
            writer.write(b"\n")  # a blank line is not the start of a request
            await writer.drain()
            await asyncio.sleep(0.4)  # longer than a frame may take, shorter than idling may
            writer.write(frame(id="late"))
            reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
            assert reply["id"] == "late" and reply["ok"]
            assert await asyncio.wait_for(reader.read(), 5) == b"", "idle too long: dropped"
            await closed(writer)

    run(body)


def test_a_client_that_does_not_read_its_replies_is_dropped_and_others_are_served(
    sock_path: Path, quick_timeouts: None
) -> None:
    async def big(request: Request) -> Any:
        return "x" * 1_000_000

    async def body() -> None:
        async with serving(sock_path, {"ping": big, "status": echo}):
            reader, writer = await asyncio.open_unix_connection(str(sock_path))
            writer.write(frame(id="1") + frame(id="2") + frame(id="3"))  # 3 MB of replies
            await writer.drain()
            [other] = await exchange(sock_path, frame("status", id="other"))
            assert other["ok"], "a stuck reader does not hold up anyone else"
            await asyncio.sleep(1.0)  # the stuck reader's time runs out meanwhile
            received = b""
            with contextlib.suppress(ConnectionError):
                while chunk := await asyncio.wait_for(reader.read(1 << 20), 5):
                    received += chunk
            assert len(received) < 3_000_000, "the server gave up on it"
            await closed(writer)

    run(body)


def test_a_probe_of_a_socket_that_never_accepts_gives_up(sock_path: Path) -> None:
    hung = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hung.bind(str(sock_path))
    hung.listen(0)  # a daemon frozen with its backlog full
    waiting = []
    with contextlib.suppress(BlockingIOError):
        for _ in range(64):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            waiting.append(client)
            client.setblocking(False)
            client.connect(str(sock_path))
    outcome: list[BaseException] = []

    def start() -> None:
        try:
            asyncio.run(ControlServer(sock_path, HANDLERS).start())
        except BaseException as e:  # what start() raised, for the assertion below
            outcome.append(e)

    starter = threading.Thread(target=start, daemon=True)
    starter.start()
    starter.join(20)
    try:
        assert not starter.is_alive(), "start() hung on a socket that never answers"
        [error] = outcome
        assert isinstance(error, SocketInUse) and str(error) == (
            f"control socket {sock_path}: cannot tell whether it is in use "
            f"({os.strerror(errno.EAGAIN)}); refusing to take it"  # Linux: the backlog is full
        )
        assert mode(sock_path) > 0, "and left it in place"
    finally:
        for client in waiting:
            client.close()
        hung.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to be another uid and to set groups")
def test_the_peer_is_who_the_kernel_says_even_with_a_uid_above_two_to_the_31(
    sock_path: Path,
) -> None:
    high = 3_000_000_000

    async def body() -> None:
        async with serving(sock_path):
            os.chmod(sock_path, 0o666)  # let the other uid in
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: another user asks who it is
                try:
                    os.setgroups([])
                    os.setgid(4100)
                    os.setuid(high)
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                        s.connect(str(sock_path))
                        s.sendall(frame("status", id="who"))
                        os.write(write_end, s.makefile("rb").readline())
                finally:
                    os._exit(0)
            os.close(write_end)
            loop = asyncio.get_running_loop()
            data = await loop.run_in_executor(None, os.read, read_end, 65536)
            await loop.run_in_executor(None, os.waitpid, pid, 0)
            os.close(read_end)
            reply = json.loads(data)
            assert reply["result"] == {"pid": pid, "uid": high, "gid": 4100}

    os.chmod(sock_path.parent, 0o777)
    run(body)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to set groups")
def test_a_peers_supplementary_groups_are_read_from_the_kernel() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([4242, 4343, 4444])
            os.write(write_end, b"ready")
            signal.pause()
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        assert os.read(read_end, 5) == b"ready"
        assert Peer(pid, 1, 4100).groups() == {4100, 4242, 4343, 4444}
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_end)


# --- who gets a slot (issue 11: administrators' pool, everyone else's, per uid) -------------


def roles(*admin: bool) -> Callable[[Peer], bool]:
    """Each new connection's role, in the order they connect: one test process is everyone."""
    queue = list(admin)
    return lambda peer: queue.pop(0)


async def served(path: Path, id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that has been answered once, so it surely holds its slot."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(frame(id=id))
    reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
    assert (reply["id"], reply["ok"]) == (id, True), reply
    return reader, writer


def test_a_user_without_rights_holds_eight_connections_and_the_ninth_is_told_why(
    sock_path: Path,
) -> None:
    async def body() -> None:
        async with serving(sock_path, privileged=lambda peer: peer.uid != os.getuid()):
            held = [await served(sock_path, f"c{i}") for i in range(8)]
            [busy] = await exchange(sock_path, frame(id="ninth"))
            assert busy["error"] == {
                "code": ErrorCode.BUSY,
                "message": f"uid {os.getuid()} holds 8 connections already; try again",
            }
            await closed(held.pop()[1])
            for _ in range(200):
                if (await exchange(sock_path, frame(id="again")))[0]["ok"]:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the freed slot never served again")
            for _, writer in held:
                await closed(writer)

    run(body)


def test_others_share_a_pool_of_48_that_never_crowds_out_an_administrator(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control_server, "MAX_CLIENTS_PER_OTHER_UID", 1000)  # one uid fills it

    async def body() -> None:
        admin_pool = 2
        order = roles(*[False] * 49, True, True, False, True)
        async with serving(sock_path, privileged=order, max_clients=admin_pool):
            others = [await served(sock_path, f"o{i}") for i in range(48)]
            [busy] = await exchange(sock_path, frame(id="49th"))
            assert busy["error"] == {
                "code": ErrorCode.BUSY,
                "message": "too many clients without administrator rights; try again",
            }
            admins = [await served(sock_path, f"a{i}") for i in range(admin_pool)]
            [still] = await exchange(sock_path, frame(id="other"))
            assert still["error"]["message"].startswith("too many clients without"), (
                "the administrators' slots are not the others' pool"
            )
            [full] = await exchange(sock_path, frame(id="third admin"))
            assert full["error"] == {
                "code": ErrorCode.BUSY,
                "message": "too many clients; try again",
            }
            for _, writer in others + admins:
                await closed(writer)

    run(body)


def test_an_idle_user_without_rights_is_dropped_sooner_than_an_administrator(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control_server, "OTHER_IDLE_TIMEOUT_S", 0.3)
    monkeypatch.setattr(control_server, "IDLE_TIMEOUT_S", 30.0)

    async def body() -> None:
        async with serving(sock_path, privileged=roles(True, False)):
            admin_reader, admin_writer = await served(sock_path, "admin")
            other_reader, other_writer = await served(sock_path, "other")
            assert await asyncio.wait_for(other_reader.read(), 10) == b"", "idle: dropped"
            admin_writer.write(frame(id="still here"))
            reply = json.loads(await asyncio.wait_for(admin_reader.readline(), 10))
            assert (reply["id"], reply["ok"]) == ("still here", True)
            await closed(other_writer)
            await closed(admin_writer)

    run(body)


def test_a_peers_supplementary_groups_come_from_the_socket_itself(sock_path: Path) -> None:
    async def groups(request: Request) -> Any:
        peer = current_peer.get()
        return {"supplementary": sorted(peer.supplementary or ()), "groups": sorted(peer.groups())}

    extra = [4242, 4343, 4444] if os.geteuid() == 0 else []  # root can show several
    before = os.getgroups()

    async def body() -> None:
        async with serving(sock_path, {"ping": groups}):
            if extra:
                os.setgroups([*before, *extra])
            try:
                [reply] = await exchange(sock_path, frame())
            finally:
                if extra:
                    os.setgroups(before)
            expected = sorted({*before, *extra})
            assert reply["result"] == {
                "supplementary": expected,
                "groups": sorted({os.getgid(), *expected}),
            }

    run(body)


def test_groups_the_socket_told_are_used_as_they_are_without_reading_proc() -> None:
    told = Peer(os.getpid(), os.getuid(), 4100, frozenset({4242, 4343}))
    assert told.groups() == {4100, 4242, 4343}
    assert Peer(os.getpid(), os.getuid(), 4100, frozenset()).groups() == {4100}


# --- what is at the socket path -----------------------------------------------------------


def test_a_symbolic_link_at_the_socket_path_is_refused_and_left_in_place(
    sock_path: Path,
) -> None:
    target = sock_path.parent / "elsewhere"
    target.write_text("not ours")
    sock_path.symlink_to(target)

    async def body() -> None:
        with pytest.raises(SocketPathError) as refused:
            await ControlServer(sock_path, HANDLERS).start()
        assert str(refused.value) == (
            f"control socket {sock_path}: is a symbolic link; refusing to replace it"
        )

    run(body)
    assert sock_path.is_symlink() and target.read_text() == "not ours"


def test_a_folder_at_the_socket_path_is_refused_and_left_in_place(sock_path: Path) -> None:
    sock_path.mkdir()
    (sock_path / "keep").write_text("x")

    async def body() -> None:
        with pytest.raises(SocketPathError) as refused:
            await ControlServer(sock_path, HANDLERS).start()
        assert (
            str(refused.value) == f"control socket {sock_path}: is a folder; refusing to replace it"
        )

    run(body)
    assert (sock_path / "keep").read_text() == "x"


def test_a_socket_path_that_cannot_be_checked_is_refused_with_the_reason(
    sock_path: Path,
) -> None:
    sock_path.write_text("a file where a folder should be")
    inside = sock_path / "c.sock"

    async def body() -> None:
        with pytest.raises(SocketPathError) as refused:
            await ControlServer(inside, HANDLERS).start()
        assert str(refused.value) == f"control socket {inside}: cannot check it: Not a directory"

    run(body)


def test_a_socket_path_of_107_bytes_is_served_and_one_of_108_refused(sock_path: Path) -> None:
    folder = bytes(sock_path.parent)
    longest = Path(os.fsdecode(folder + b"/" + b"s" * (106 - len(folder))))
    too_long = Path(os.fsdecode(bytes(longest) + b"t"))
    assert (len(bytes(longest)), len(bytes(too_long))) == (107, 108)

    async def body() -> None:
        async with serving(longest):
            [reply] = await exchange(longest, frame(id="long"))
            assert reply["ok"]
        with pytest.raises(SocketPathError) as refused:
            await ControlServer(too_long, HANDLERS).start()
        assert str(refused.value) == (
            f"control socket {too_long}: the path is 108 bytes long; a Unix socket path may "
            "have at most 107"
        )

    run(body)
    assert not too_long.exists()


def put_file(path: Path, text: str) -> None:
    path.write_text(text)


def test_close_removes_only_the_socket_it_made(sock_path: Path) -> None:
    async def body() -> None:
        first = ControlServer(sock_path, HANDLERS)
        await first.start()
        os.unlink(sock_path)  # someone took the path over: another daemon's socket is there now
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        other.bind(str(sock_path))
        try:
            await first.close()
            assert mode(sock_path) > 0, "another's socket is left alone"
        finally:
            other.close()
        os.unlink(sock_path)
        second = ControlServer(sock_path, HANDLERS)
        await second.start()
        os.unlink(sock_path)
        put_file(sock_path, "a file now")
        await second.close()

    run(body)
    assert sock_path.read_text() == "a file now"


# --- no secret leaves in a reply ----------------------------------------------------------


def test_a_reply_never_carries_a_signed_url_or_a_key_whatever_field_it_hides_in(
    sock_path: Path,
) -> None:
    leaky = "GET https://fapi.binance.com/fapi/v1/order?symbol=ETHUSDT&signature=abcd1234 503"

    async def chatty(request: Request) -> Any:
        return {"error": leaky, "nested": [{"note": "X-MBX-APIKEY: abcdefgh12345"}], "n": 3}

    async def body() -> None:
        handlers = {"ping": chatty, "status": failing(Refused(f"exchange said: {leaky}"))}
        async with serving(sock_path, handlers):
            ok, refused = await exchange(sock_path, frame("ping", id="a") + frame("status", id="b"))
            assert ok == {
                "v": 1,
                "id": "a",
                "ok": True,
                "result": {
                    "error": "GET https://fapi.binance.com/fapi/v1/order?*** 503",
                    "nested": [{"note": "X-MBX-APIKEY: ***"}],
                    "n": 3,
                },
            }
            assert refused == {
                "v": 1,
                "id": "b",
                "ok": False,
                "error": {
                    "code": ErrorCode.REFUSED,
                    "message": "exchange said: GET https://fapi.binance.com/fapi/v1/order?*** 503",
                },
            }

    run(body)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to be in more groups than fit")
def test_a_peer_in_more_groups_than_the_socket_can_tell_is_looked_up_in_proc(
    sock_path: Path,
) -> None:
    async def groups(request: Request) -> Any:
        peer = current_peer.get()
        return {"told": peer.supplementary is not None, "groups": sorted(peer.groups())}

    many = list(range(5000, 5300))  # 300 groups: 1200 bytes, over the 1024 Python reads
    before = os.getgroups()

    async def body() -> None:
        async with serving(sock_path, {"ping": groups}):
            os.setgroups(many)
            try:
                [reply] = await exchange(sock_path, frame())
            finally:
                os.setgroups(before)
            assert reply["result"] == {"told": False, "groups": sorted({os.getgid(), *many})}

    run(body)


def test_a_client_that_connects_and_leaves_without_a_word_is_no_error(sock_path: Path) -> None:
    async def body() -> None:
        async with serving(sock_path):
            with capture_logs() as logs:
                reader, writer = await asyncio.open_unix_connection(str(sock_path))
                writer.write_eof()
                assert await asyncio.wait_for(reader.read(), 10) == b""
                await closed(writer)
                [reply] = await exchange(sock_path, frame(id="after"))  # the server is fine
            assert reply["ok"]
            assert [e["event"] for e in logs if e["log_level"] == "error"] == []

    run(body)


def test_a_parser_failure_of_any_kind_still_gets_an_answer(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parse = control_server.decode_request

    def buggy(line: bytes) -> Request:
        if b"boom" in line:
            raise KeyError("a bug in the parser")
        return parse(line)

    monkeypatch.setattr(control_server, "decode_request", buggy)

    async def body() -> None:
        async with serving(sock_path):
            bad, good = await exchange(sock_path, frame(id="boom") + frame(id="next"))
            assert bad == {
                "v": 1,
                "id": None,
                "ok": False,
                "error": {
                    "code": ErrorCode.BAD_REQUEST,
                    "message": "frame cannot be parsed (KeyError)",
                },
            }
            assert (good["id"], good["ok"]) == ("next", True)

    run(body)


def test_closing_after_someone_removed_our_socket_is_harmless(sock_path: Path) -> None:
    async def body() -> None:
        server = ControlServer(sock_path, HANDLERS)
        await server.start()
        os.unlink(sock_path)
        await server.close()
        assert mode(sock_path) == 0

    run(body)
