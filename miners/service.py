"""A miner on the network: registration check, endpoint publication, metagraph-driven policy.

``run_miner`` is what ``ensemble miner run`` does once its options are parsed: check that the
hotkey is registered on the subnet (registering only when asked), serve the backend behind the
signed protocol, publish the endpoint on the ledger, keep the caller policy (who may call, in
which order) in step with the metagraph as blocks arrive, and stop cleanly when ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from miners.admission import AdmissionConfig
from miners.backends import Backend
from miners.model_routes import add_model_routes
from miners.policy import MetagraphPolicy
from miners.server import MinerServer, ServerConfig
from protocol.envelope import PROTOCOL_VERSION
from protocol.errors import ConfigError
from protocol.keys import Keypair
from protocol.ledger.builders import TxBuilder
from protocol.ledger.errors import LedgerError, NoSuchItemError, TxRejected, WaitTimeout
from protocol.ledger.interface import Ledger, submit_and_wait
from protocol.ratelimit import DEFAULT_RATE, RateLimitConfig

T = TypeVar("T")
log = logging.getLogger("ensemble.miner")

#: Seconds to wait for a registration or serve transaction to be included.
TX_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class MinerConfig:
    """Options of a networked miner (passed in by the CLI).

    Attributes:
        netuid: subnet served.
        host, port: where to bind (port 0 = any free port).
        external_host: the host published on the ledger (defaults to ``host``).
        min_stake: stake a caller without a validator permit needs (units).
        max_concurrent, max_queue: admission control (set ``max_concurrent`` to the batch size).
        register: register the hotkey if it is not (needs ``coldkey``).
        rate_limit: requests per second one caller may send, in bursts of twice that; a router
            sending application traffic needs more than a validator does.
    """

    netuid: int
    host: str = "127.0.0.1"
    port: int = 8091
    external_host: str | None = None
    min_stake: float = 0.0
    max_concurrent: int = 8
    max_queue: int = 256
    register: bool = False
    max_burn: int | None = None
    rate_limit: float = DEFAULT_RATE

    def __post_init__(self) -> None:
        if self.external_host is None and self.host in WILDCARD_HOSTS:
            raise ConfigError(
                f"--host {self.host or repr('')} listens on every interface, but the ledger "
                "needs an address validators can reach: add --external-host with your public "
                "IP address or DNS name")

    @property
    def public_host(self) -> str:
        """The host published on the ledger."""
        return self.external_host or self.host


#: Bind addresses meaning "every interface": never an address another machine can dial.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})  # noqa: S104 (a check, not a bind)


def server_config(config: MinerConfig) -> ServerConfig:
    """The server settings a networked miner runs with."""
    return ServerConfig(
        host=config.host, port=config.port, netuid=config.netuid,
        admission=AdmissionConfig(max_concurrent=config.max_concurrent,
                                  max_queue=config.max_queue),
        rate_limit=RateLimitConfig(rate=config.rate_limit, burst=2 * config.rate_limit))


class NotRegisteredError(ConfigError):
    """The hotkey is not registered on the subnet and registering was not asked for."""


async def ensure_registered(ledger: Ledger, hotkey: Keypair, coldkey: Keypair | None,
                            config: MinerConfig, how: str) -> int:
    """Return the hotkey's uid, registering it first if ``config.register`` and needed.

    ``how`` is the command the operator should run, quoted in the error message.
    """
    try:
        return (await ledger.neuron(config.netuid, hotkey.address)).uid
    except NoSuchItemError:
        pass
    if not config.register or coldkey is None:
        raise NotRegisteredError(
            f"hotkey {hotkey.address} is not registered on subnet {config.netuid}. Register it "
            f"with '{how}', or start the miner with --register (uses the wallet's coldkey)")
    subnet = await ledger.subnet(config.netuid)
    builder = TxBuilder(coldkey, await ledger.chain_id())
    nonce = (await ledger.account(coldkey.address)).next_nonce
    tx = builder.register(config.netuid, hotkey, max_burn=config.max_burn or 2 * subnet.burn,
                          nonce=nonce)
    await _apply(ledger, tx, "registration")
    uid = (await ledger.neuron(config.netuid, hotkey.address)).uid
    print(f"registered {hotkey.address} on subnet {config.netuid} as uid {uid}", flush=True)
    return uid


async def publish_endpoint(ledger: Ledger, hotkey: Keypair, netuid: int, host: str,
                           port: int) -> None:
    """Publish (host, port, protocol version) for the hotkey on the ledger."""
    builder = TxBuilder(hotkey, await ledger.chain_id())
    nonce = (await ledger.account(hotkey.address)).next_nonce
    await _apply(ledger, builder.serve(netuid, host, port, PROTOCOL_VERSION, nonce=nonce),
                 "endpoint publication")


async def _apply(ledger: Ledger, tx: object, what: str) -> None:
    try:
        outcome = await submit_and_wait(ledger, tx, TX_TIMEOUT_S)  # type: ignore[arg-type]
    except TxRejected as exc:
        raise ConfigError(f"{what} refused by the ledger: {exc}") from None
    except WaitTimeout:
        raise ConfigError(f"{what} was not included within {TX_TIMEOUT_S:.0f} s; is the chain "
                          "producing blocks?") from None
    if not outcome.applied:
        reason = outcome.reason.value if outcome.reason else "unknown"
        raise ConfigError(f"{what} refused by the ledger: {reason} {outcome.message}")


async def follow_metagraph(ledger: Ledger, netuid: int, policy: MetagraphPolicy,
                           stop: asyncio.Event) -> None:
    """Refresh ``policy`` from the metagraph at every new block until ``stop`` is set."""
    while not stop.is_set():
        try:
            policy.update_from(await ledger.metagraph(netuid))
            height = await ledger.block_height()
            await ledger.wait_for_block(height + 1, 30.0)
        except WaitTimeout:
            continue
        except LedgerError as exc:
            log.warning("metagraph refresh failed (%s); retrying", exc)
            await _sleep_or_stop(stop, 2.0)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def run_miner(hotkey: Keypair, coldkey: Keypair | None, ledger: Ledger, backend: Backend,
                    config: MinerConfig, stop: asyncio.Event, *, how: str = "") -> None:
    """Serve until ``stop`` is set: register (if asked), serve, publish, follow the metagraph.

    ``stop`` also ends the start-up at once (a registration or publication waiting for blocks
    from a stalled chain can take a minute). In-flight requests are cancelled at shutdown; the
    published endpoint is left as is (the next start publishes its new one).
    """
    try:
        await _serve_until_stopped(hotkey, coldkey, ledger, backend, config, stop, how)
    except _Stopped:
        print("miner stopping before it was serving", flush=True)
    finally:
        close = getattr(backend, "aclose", None)
        if close is not None:
            await close()


async def _serve_until_stopped(hotkey: Keypair, coldkey: Keypair | None, ledger: Ledger,
                               backend: Backend, config: MinerConfig, stop: asyncio.Event,
                               how: str) -> None:
    uid = await _unless_stopped(stop, ensure_registered(ledger, hotkey, coldkey, config, how))
    policy = MetagraphPolicy(min_stake=config.min_stake)
    policy.update_from(await _unless_stopped(stop, ledger.metagraph(config.netuid)))
    server = MinerServer(hotkey, server_config(config), policy=policy)
    add_model_routes(server, backend)
    async with server:
        await _unless_stopped(stop, publish_endpoint(
            ledger, hotkey, config.netuid, config.public_host, server.port))
        model = backend.info().model
        print(f"miner uid {uid} serving {model} on {server.url} as {hotkey.address}",
              flush=True)
        follower = asyncio.ensure_future(follow_metagraph(ledger, config.netuid, policy, stop))
        try:
            await stop.wait()
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            print("miner stopping: cancelling in-flight work", flush=True)


class _Stopped(Exception):
    """``stop`` was set while the miner was still starting."""


async def _unless_stopped(stop: asyncio.Event, work: Awaitable[T]) -> T:
    """``await work``, unless ``stop`` is set first: then cancel it and raise :class:`_Stopped`."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise _Stopped
    return task.result()
