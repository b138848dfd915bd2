"""The query client (protocol/client.py): verified receipts, typed failures, three deadlines."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest
from aiohttp import web

from miners.echo import EchoRequest, EchoResponse
from miners.server import CallContext, MinerServer, ServerConfig
from protocol import envelope
from protocol.client import (
    Client,
    ClientConfig,
    QueryResult,
    Target,
    Timeouts,
    endpoint_url,
    result_summary,
)
from protocol.clock import ManualClock
from protocol.errorbody import ErrorBody
from protocol.errors import (
    ConnectFailed,
    HandlerError,
    QueryTimeout,
    ReceiptError,
    RemoteError,
)
from protocol.keys import Keypair
from tests.conftest import (
    LaggingClock,
    closed_port,
    keypair_for,
    running_miner,
    serve_raw,
    verify_raw_request,
)

HELLO = EchoRequest(text="hello")
FAST = Timeouts(connect=1.0, first_byte=0.3, total=5.0)


async def ask(client: Client, target: Target,
              timeouts: Timeouts | None = None) -> QueryResult[EchoResponse]:
    """Send the hello echo to ``target``."""
    return await client.query(target, "echo", HELLO, EchoResponse, timeouts=timeouts)


def failure(result: QueryResult[EchoResponse]) -> Exception:
    """The error of a failed result (asserting it carries nothing else)."""
    assert not result.ok
    assert (result.response, result.receipt) == (None, None)
    assert result.error is not None
    return result.error


@asynccontextmanager
async def silent_server(first_bytes: bytes = b"") -> AsyncIterator[str]:
    """A TCP server that accepts, optionally sends ``first_bytes``, then never says more."""
    release = asyncio.Event()
    handlers: list[asyncio.Task[None]] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)  # type: ignore[arg-type]
        writer.write(first_bytes)
        await release.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        release.set()
        server.close()
        await server.wait_closed()
        await asyncio.gather(*handlers, return_exceptions=True)


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A listening port whose accept backlog is full, so new connections hang in SYN-SENT."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            yield port
        finally:
            for filler in fillers:
                filler.close()


def impostor_handler(signer: Keypair, *, body_override: bytes | None = None,
                     status: int = 200) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A fake miner signing with ``signer``; it may swap body or status after signing."""

    async def handle(request: web.Request) -> web.Response:
        signed, body = await verify_raw_request(request)
        echo = EchoRequest.decode(body)
        answer = EchoResponse(text=echo.text, caller=envelope.encode_address(
            signed.header.caller)).encode()
        receipt = envelope.Receipt.issue(signer, signed.digest, 200, envelope.sha256(answer),
                                         signed.header.timestamp_ms)
        return web.Response(status=status, body=answer if body_override is None else body_override,
                            headers=receipt.headers())

    return handle


# --- verified answers ---------------------------------------------------------------------------


async def test_query_returns_a_verified_answer(client: Client, target: Target) -> None:
    """A query returns the decoded response and a receipt from the intended miner."""
    result = await ask(client, target)
    assert result.ok
    assert result.error is None
    assert result.target == target
    assert result.response == EchoResponse(text="hello", caller=client.address)
    assert result.receipt is not None
    result.receipt.verify(request_digest=result.receipt.request_digest, status=200,
                          body_digest=envelope.sha256(result.response.encode()),
                          miner=target.public_key)
    assert result.latency_s > 0
    assert result_summary(result).startswith("ok ")


async def test_receipt_can_be_stored_and_reverified(client: Client, target: Target) -> None:
    """A receipt serialised with to_bytes re-verifies after from_bytes, against the same answer."""
    result = await ask(client, target)
    assert result.receipt is not None
    assert result.response is not None
    stored = result.receipt.to_bytes()
    again = envelope.Receipt.from_bytes(stored)
    assert again == result.receipt
    assert again.is_valid()
    again.verify(request_digest=result.receipt.request_digest, status=200,
                 body_digest=envelope.sha256(result.response.encode()), miner=target.public_key)


async def test_answer_signed_by_another_key_is_a_receipt_error(client: Client, miner_key: Keypair,
                                                               other_key: Keypair) -> None:
    """A server answering for the target's address but signing with another key is refused."""
    async with serve_raw(impostor_handler(other_key)) as url:
        error = failure(await ask(client, Target(miner_key.address, url)))
    assert type(error) is ReceiptError
    assert str(error) == f"receipt signed by {other_key.address}, expected {miner_key.address}"


async def test_body_swapped_after_signing_is_a_receipt_error(client: Client,
                                                             miner_key: Keypair) -> None:
    """An answer body other than the one the receipt covers is refused."""
    swapped = EchoResponse(text="evil", caller="x").encode()
    async with serve_raw(impostor_handler(miner_key, body_override=swapped)) as url:
        error = failure(await ask(client, Target(miner_key.address, url)))
    assert type(error) is ReceiptError
    assert str(error) == "receipt signature is invalid"  # it covers what was signed


async def test_status_changed_after_signing_is_a_receipt_error(client: Client,
                                                               miner_key: Keypair) -> None:
    """An answer whose status differs from the one signed is refused."""
    async with serve_raw(impostor_handler(miner_key, status=203)) as url:
        error = failure(await ask(client, Target(miner_key.address, url)))
    assert type(error) is ReceiptError
    assert str(error) == "receipt signature is invalid"  # it covers what was signed


async def test_unsigned_success_is_a_receipt_error(client: Client, miner_key: Keypair) -> None:
    """A 200 answer without receipt headers is never a result."""

    async def unsigned(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=EchoResponse(text="hello", caller="x").encode())

    async with serve_raw(unsigned) as url:
        error = failure(await ask(client, Target(miner_key.address, url)))
    assert type(error) is ReceiptError
    assert str(error).startswith("answer has no valid receipt")


async def test_signed_malformed_answer_is_a_remote_error(client: Client,
                                                         miner_key: Keypair) -> None:
    """A correctly signed 200 whose body is not the response type is RemoteError bad_answer."""

    async def wrong_shape(request: web.Request) -> web.Response:
        signed, _ = await verify_raw_request(request)
        body = ErrorBody("x", "y").encode()
        receipt = envelope.Receipt.issue(miner_key, signed.digest, 200, envelope.sha256(body), 1)
        return web.Response(body=body, headers=receipt.headers())

    async with serve_raw(wrong_shape) as url:
        error = failure(await ask(client, Target(miner_key.address, url)))
    assert isinstance(error, RemoteError)
    assert (error.status, error.code, error.signed) == (200, "bad_answer", True)


async def test_forged_error_receipt_is_a_receipt_error(client: Client, miner_key: Keypair,
                                                       other_key: Keypair) -> None:
    """An error answer carrying a receipt by the wrong key is refused, not believed."""

    async def forged(request: web.Request) -> web.Response:
        signed, _ = await verify_raw_request(request)
        body = ErrorBody("overloaded", "go away", 1.0).encode()
        receipt = envelope.Receipt.issue(other_key, signed.digest, 503, envelope.sha256(body), 1)
        return web.Response(status=503, body=body, headers=receipt.headers())

    async with serve_raw(forged) as url:
        error = failure(await ask(client, Target(miner_key.address, url)))
    assert type(error) is ReceiptError


async def test_redirects_are_not_followed(client: Client, miner: MinerServer) -> None:
    """A miner answering 307 elsewhere gets a RemoteError; the client never posts to the target."""
    hits: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=204)

    async with serve_raw(elsewhere) as other_url:
        async def redirect(request: web.Request) -> web.Response:
            await request.read()
            raise web.HTTPTemporaryRedirect(other_url + "/v1/echo")

        async with serve_raw(redirect) as url:
            error = failure(await ask(client, Target(miner.address, url)))
    assert isinstance(error, RemoteError)
    assert (error.status, error.code, error.signed) == (307, "http_307", False)
    assert hits == []


# --- remote errors ------------------------------------------------------------------------------


async def test_signed_error_answer(client: Client, miner_key: Keypair) -> None:
    """A handler's error reaches the client as RemoteError with status, code and signed=True."""

    async def refusing(ctx: CallContext, request: EchoRequest) -> EchoResponse:
        raise HandlerError("model unavailable")

    async with running_miner(miner_key, echo=False) as server:
        server.add_route("echo", EchoRequest, EchoResponse, refusing)
        error = failure(await ask(client, Target(server.address, server.url)))
    assert isinstance(error, RemoteError)
    assert (error.status, error.code, str(error), error.signed) == (
        500, "handler_failed", "model unavailable", True)
    assert error.kind == "remote"


async def test_unsigned_error_answer(client: Client, miner: MinerServer) -> None:
    """Asking a miner under another miner's address gives an unsigned 401 wrong_receiver."""
    error = failure(await ask(client, Target(keypair_for("nobody").address, miner.url)))
    assert isinstance(error, RemoteError)
    assert (error.status, error.code, error.signed) == (401, "wrong_receiver", False)


async def test_unreadable_error_body(client: Client, miner_key: Keypair) -> None:
    """An error status with a body that is not an error body gives code http_<status>."""

    async def teapot(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=418, text="short and stout")

    async with serve_raw(teapot) as url:
        error = failure(await ask(client, Target(miner_key.address, url)))
    assert isinstance(error, RemoteError)
    assert (error.status, error.code, error.signed) == (418, "http_418", False)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversized_answer(caller_key: Keypair, target: Target, chunked: bool) -> None:
    """An answer over max_response is refused (by Content-Length or while reading)."""
    async with Client(caller_key, ClientConfig(max_response=64)) as small:
        if chunked:
            async def big(request: web.Request) -> web.StreamResponse:
                await request.read()
                response = web.StreamResponse()
                await response.prepare(request)
                for _ in range(10):
                    await response.write(b"x" * 32)
                await response.write_eof()
                return response

            async with serve_raw(big) as url:
                error = failure(await ask(small, Target(target.address, url)))
        else:
            error = failure(await small.query(target, "echo", EchoRequest(text="y" * 100),
                                              EchoResponse))
    assert isinstance(error, RemoteError)
    assert (error.status, error.code) == (200, "too_large")


# --- connection failures and deadlines ---------------------------------------------------------


async def test_closed_port_is_connect_failed(client: Client, miner_key: Keypair) -> None:
    """Nothing listening gives ConnectFailed."""
    error = failure(await ask(client, Target(miner_key.address,
                                             f"http://127.0.0.1:{closed_port()}")))
    assert type(error) is ConnectFailed
    assert error.kind == "connect"


async def test_connect_timeout(client: Client, miner_key: Keypair) -> None:
    """A connection that is never accepted times out in the connect phase, near its deadline."""
    with unanswered_port() as port:
        result = await ask(client, Target(miner_key.address, f"http://127.0.0.1:{port}"),
                           Timeouts(connect=0.3, first_byte=5.0, total=10.0))
    error = failure(result)
    assert isinstance(error, QueryTimeout)
    assert error.phase == "connect"
    assert 0.25 <= result.latency_s < 1.5


async def test_first_byte_timeout(client: Client, miner_key: Keypair) -> None:
    """A server that accepts and never answers times out in the first_byte phase, near 0.3 s."""
    async with silent_server() as url:
        result = await ask(client, Target(miner_key.address, url), FAST)
    error = failure(result)
    assert isinstance(error, QueryTimeout)
    assert (error.phase, error.kind) == ("first_byte", "timeout")
    assert 0.29 <= result.latency_s < 1.0


async def test_total_timeout(client: Client, miner_key: Keypair) -> None:
    """Headers that arrive but a body that never does hit the total deadline."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    async with silent_server(head) as url:
        result = await ask(client, Target(miner_key.address, url),
                           Timeouts(connect=1.0, first_byte=5.0, total=0.4))
    error = failure(result)
    assert isinstance(error, QueryTimeout)
    assert error.phase == "total"
    assert 0.39 <= result.latency_s < 1.5


async def test_total_deadline_is_sent_to_the_miner(caller_key: Keypair, miner_key: Keypair) -> None:
    """The request's deadline is the client's clock plus the total timeout, in milliseconds."""
    clock = ManualClock()
    seen: list[CallContext] = []

    async def record(ctx: CallContext, request: EchoRequest) -> EchoResponse:
        seen.append(ctx)
        return EchoResponse(text=request.text, caller=ctx.caller)

    async with running_miner(miner_key, clock=clock, echo=False) as server, \
            Client(caller_key, clock=clock, netuid=1) as c:
        server.add_route("echo", EchoRequest, EchoResponse, record)
        result = await ask(c, Target(server.address, server.url),
                           Timeouts(connect=1, first_byte=2, total=2.5))
    assert result.ok
    assert (seen[0].deadline_ms, seen[0].netuid) == (clock.now_ms() + 2500, 1)


async def test_fan_out_mixes_results_and_never_raises(client: Client, miner: MinerServer,
                                                      miner_key: Keypair) -> None:
    """fan_out gives one typed result per target, in order, whatever each target does."""
    second_key = keypair_for("second miner")
    async with running_miner(second_key) as second, silent_server() as silent:
        targets = [
            Target(miner.address, miner.url),
            Target(miner_key.address, f"http://127.0.0.1:{closed_port()}"),
            Target(keypair_for("nobody").address, miner.url),
            Target(second.address, second.url),
            Target(miner_key.address, silent),
            Target("ens1-not-an-address", miner.url),
        ]
        results = await client.fan_out(targets, "echo", HELLO, EchoResponse, timeouts=FAST)
    assert [r.target for r in results] == targets
    assert [r.ok for r in results] == [True, False, False, True, False, False]
    assert [type(r.error).__name__ for r in results] == [
        "NoneType", "ConnectFailed", "RemoteError", "NoneType", "QueryTimeout", "QueryError"]
    assert [r.receipt.miner_address for r in results if r.receipt] == [miner.address,
                                                                        second.address]
    assert [result_summary(r).split(":")[0] for r in results[1:3]] == ["connect", "remote"]


async def test_deadline_cancels_the_handler_and_the_client_gets_a_signed_504(
        caller_key: Keypair, miner_key: Keypair) -> None:
    """When the miner's deadline passes first, its handler is cancelled and the client gets 504."""
    cancelled = asyncio.Event()

    async def stuck(ctx: CallContext, request: EchoRequest) -> EchoResponse:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    # Total 1.2 s, sent with a clock 0.8 s behind: the miner's deadline is 0.4 s away.
    async with running_miner(miner_key, echo=False) as server, \
            Client(caller_key, clock=LaggingClock(800)) as lagging:
        server.add_route("echo", EchoRequest, EchoResponse, stuck)
        result = await ask(lagging, Target(server.address, server.url),
                           Timeouts(connect=1, first_byte=5, total=1.2))
    error = failure(result)
    assert isinstance(error, RemoteError)
    assert (error.status, error.code, error.signed) == (504, "deadline_exceeded", True)
    assert cancelled.is_set()
    assert 0.35 <= result.latency_s < 1.2


async def test_fan_out_of_nothing(client: Client) -> None:
    """Fanning out to no targets gives no results."""
    assert await client.fan_out([], "echo", HELLO, EchoResponse) == []


async def test_client_needs_async_with(caller_key: Keypair, target: Target) -> None:
    """Querying outside ``async with`` is a programming error, reported clearly."""
    with pytest.raises(RuntimeError, match="async with"):
        await Client(caller_key).query(target, "echo", HELLO, EchoResponse)


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8091"), ("miner.example", "http://miner.example:8091"),
    ("::1", "http://[::1]:8091"), ("[::1]", "http://[::1]:8091"),
    ("2001:db8::7", "http://[2001:db8::7]:8091")])
def test_endpoint_url_brackets_ipv6_hosts(host: str, url: str) -> None:
    """One URL form for every published endpoint and served address."""
    assert endpoint_url(host, 8091) == url


async def test_a_miner_on_ipv6_loopback_answers_at_its_url(caller_key: Keypair,
                                                           miner_key: Keypair) -> None:
    """A miner bound to ::1 reports a usable URL, and a signed query reaches it."""
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    async with running_miner(miner_key, ServerConfig(host="::1")) as server, \
            Client(caller_key) as client:
        assert server.url == f"http://[::1]:{server.port}"
        result = await client.query(Target(server.address, server.url), "echo", HELLO,
                                    EchoResponse)
    assert result.ok, result.error
    assert result.response is not None
    assert result.response.text == "hello"
