"""The router's view of its subnet: the metagraph, miners' ``info``, and the candidate pool.

:func:`candidates_from` is pure: metagraph arrays and known ``info`` answers in, candidates out.
:class:`Directory` is the thin adapter that reads the ledger and asks new miners for ``info``
(once per registration and endpoint; a failed query is retried after ``info_retry_s``), then
swaps in a new :class:`CandidatePool` atomically, so requests in flight keep the snapshot
they planned with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from protocol.client import Client, Target, Timeouts, endpoint_url
from protocol.clock import Clock
from protocol.errors import RemoteError
from protocol.ledger.interface import Ledger
from protocol.ledger.metagraph import Metagraph
from protocol.messages import ROUTE_INFO, InfoRequest, InfoResponse
from router.candidates import Candidate, CandidatePool
from router.config import RouterConfig

__all__ = ["Directory", "Snapshot", "candidates_from"]

log = logging.getLogger("ensemble.router")


@dataclass(frozen=True, slots=True)
class _Known:
    """What the directory learnt about one registration at one endpoint."""

    registered_at: int
    url: str
    info: InfoResponse | None
    retry_at: float


def candidates_from(metagraph: Metagraph, infos: Mapping[str, InfoResponse], *,
                    exclude: frozenset[str] = frozenset(),
                    cold_start: bool = False) -> tuple[Candidate, ...]:
    """The candidates of a metagraph: serving miners whose ``info`` is known, in uid order.

    Args:
        metagraph: the subnet snapshot.
        infos: hotkey -> the ``info`` it answered (miners missing here are skipped).
        exclude: hotkeys never to route to (the router's own).
        cold_start: when no neuron has incentive yet, give every candidate the neutral quality
            0.5 so that eligibility (which needs incentive or quality) admits them.
    """
    cold = cold_start and not bool((metagraph.incentive > 0).any())
    out = []
    for i, hotkey in enumerate(metagraph.hotkeys):
        endpoint = metagraph.endpoints[i]
        info = infos.get(hotkey)
        if endpoint is None or info is None or hotkey in exclude:
            continue
        out.append(Candidate(
            uid=int(metagraph.uids[i]), hotkey=hotkey,
            url=endpoint_url(endpoint.host, endpoint.port),
            incentive=min(max(float(metagraph.incentive[i]), 0.0), 1.0),
            trust=min(max(float(metagraph.trust[i]), 0.0), 1.0),
            quality=0.5 if cold else None,
            capabilities=frozenset(info.capabilities), context_length=max(info.context_length, 0),
            model=info.model))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One synced view: the pool, every hotkey of the subnet, uids, and the block."""

    pool: CandidatePool
    hotkeys: tuple[str, ...]
    block: int


class Directory:
    """Keeps a :class:`Snapshot` of the subnet current. No I/O in the constructor."""

    def __init__(self, ledger: Ledger, client: Client, config: RouterConfig, clock: Clock, *,
                 own_hotkey: str) -> None:
        self._ledger = ledger
        self._client = client
        self._config = config
        self._clock = clock
        self._own = frozenset({own_hotkey})
        self._known: dict[str, _Known] = {}
        self.snapshot = Snapshot(CandidatePool((), config.eligibility), (), -1)

    async def refresh(self, *, retry_failed: bool = False) -> Snapshot:
        """Read the metagraph, ask new miners for ``info``, and swap in a new snapshot.

        ``retry_failed`` asks miners whose ``info`` failed again now rather than after
        ``info_retry_s``. Returns the new snapshot (also kept as :attr:`snapshot`).
        """
        metagraph = await self._ledger.metagraph(self._config.netuid)
        await self._learn(metagraph, retry_failed=retry_failed)
        infos = {h: k.info for h, k in self._known.items() if k.info is not None}
        candidates = candidates_from(metagraph, infos, exclude=self._own,
                                     cold_start=self._config.cold_start)
        self.snapshot = Snapshot(CandidatePool(candidates, self._config.eligibility),
                                 metagraph.hotkeys, metagraph.block)
        return self.snapshot

    async def _learn(self, metagraph: Metagraph, *, retry_failed: bool) -> None:
        """Query ``info`` of every new registration or endpoint, concurrently."""
        now = self._clock.monotonic()
        present = set(metagraph.hotkeys)
        for gone in [h for h in self._known if h not in present]:
            del self._known[gone]
        wanted: list[tuple[str, int, str]] = []
        for i, hotkey in enumerate(metagraph.hotkeys):
            endpoint = metagraph.endpoints[i]
            if endpoint is None or hotkey in self._own:
                continue
            url = endpoint_url(endpoint.host, endpoint.port)
            registered = int(metagraph.registered_at[i])
            known = self._known.get(hotkey)
            fresh = (known is not None and known.registered_at == registered and known.url == url)
            if fresh and known is not None and (
                    known.info is not None or (not retry_failed and now < known.retry_at)):
                continue
            wanted.append((hotkey, registered, url))
        if not wanted:
            return
        timeouts = Timeouts(connect=min(self._config.connect_s, self._config.info_timeout_s),
                            first_byte=self._config.info_timeout_s,
                            total=self._config.info_timeout_s)
        results = await self._client.fan_out([Target(h, u) for h, _, u in wanted], ROUTE_INFO,
                                             InfoRequest(), InfoResponse, timeouts=timeouts)
        retry_at = self._clock.monotonic() + self._config.info_retry_s
        refused = 0
        for (hotkey, registered, url), result in zip(wanted, results, strict=True):
            self._known[hotkey] = _Known(registered, url, result.response, retry_at)
            if result.error is not None:
                log.info("miner %s at %s gave no info: %s", hotkey, url, result.error)
                if isinstance(result.error, RemoteError) and result.error.status == 403:
                    refused += 1
        if refused:
            log.warning("%d miners refuse this router's hotkey (403): register it on subnet %d "
                        "or ask for access", refused, self._config.netuid)

    async def follow(self, stop: asyncio.Event, on_sync: Callable[[Snapshot], None]) -> None:
        """Refresh on every new block (and at least every ``resync_s``) until ``stop`` is set.

        A failed refresh is logged and retried at the next block; the old snapshot stays.
        """
        while not stop.is_set():
            height = max(self.snapshot.block, 0)
            waiter = asyncio.ensure_future(
                self._ledger.wait_for_block(height + 1, self._config.resync_s))
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (waiter, stopper):
                    task.cancel()
                await asyncio.gather(waiter, stopper, return_exceptions=True)
            if stop.is_set():
                return
            try:
                on_sync(await self.refresh())
            except Exception as exc:  # the ledger or a miner failed: keep routing on the old view
                log.warning("metagraph sync failed: %s", exc)
                await _pause(stop, min(self._config.resync_s, 1.0))


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds`` or until ``stop`` is set, whichever comes first."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return
