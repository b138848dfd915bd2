"""``ensemble status``: a live overview of one subnet.

One screen answers "is my subnet healthy?": the block height, the subnet's key hyperparameters
(tempo, next epoch block, commit-reveal) and one row per neuron with its stake, last epoch
outputs, permit, activity, endpoint and, for every neuron that publishes an endpoint, a live
``GET http://HOST:PORT/health`` probe (alive/dead and the miner's queue depth). Probes run
concurrently with a short timeout (1 s by default), so one dead miner never stalls the view.

``--watch`` redraws the overview every ``--interval`` seconds until Ctrl-C (a terminal gets a
live-updating table; a pipe gets one overview per refresh).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeAlias

from protocol.cli.ledger_cmds import (
    CHAIN_ENV,
    EXIT_OK,
    _console,
    _ledger,
    _netuid_arg,
    _seconds_arg,
    _subnet_or_explain,
    format_tokens,
    short_address,
)
from protocol.client import endpoint_url
from protocol.errors import EnsembleError
from protocol.ledger.interface import Ledger
from protocol.ledger.metagraph import Metagraph
from protocol.ledger.views import SubnetInfo

__all__ = ["Health", "Snapshot", "collect", "probe_health", "register", "render", "status"]

_SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

#: Seconds one /health probe may take.
HEALTH_TIMEOUT = 1.0
#: Default seconds between refreshes with --watch.
DEFAULT_INTERVAL = 5.0

_EPILOG = f"""examples:
  ensemble status --chain http://127.0.0.1:8700 --netuid 1
  ensemble status --chain http://127.0.0.1:8700 --netuid 1 --watch --interval 2

--chain takes a node URL or a chain file (default ${CHAIN_ENV}). A chain file is run in-process
for the command's duration (this process then produces its blocks), and only one process may
own it: while a node serves it, use the node's URL. Miners are probed at GET /health with a
{HEALTH_TIMEOUT:g} s timeout; 'dead' means no answer in time or an error status.
"""


# --- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Health:
    """The answer of one ``/health`` probe."""

    alive: bool
    queue_depth: int | None = None
    in_flight: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one overview shows, read at (about) one block."""

    info: SubnetInfo
    metagraph: Metagraph
    health: dict[int, Health]

    @property
    def block(self) -> int:
        """The block height the metagraph was read at."""
        return self.metagraph.block


def _url(host: str, port: int) -> str:
    return endpoint_url(host, port) + "/health"


async def probe_health(session: Any, host: str, port: int,
                       timeout: float = HEALTH_TIMEOUT) -> Health:
    """``GET http://host:port/health`` within ``timeout`` seconds; never raises."""
    import aiohttp  # noqa: PLC0415 - keep CLI start-up light

    try:
        async with asyncio.timeout(timeout):
            async with session.get(_url(host, port)) as response:
                if response.status != 200:
                    return Health(alive=False, error=f"HTTP {response.status}")
                body = await response.json(content_type=None)
    except TimeoutError:
        return Health(alive=False, error="timeout")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return Health(alive=False, error=type(exc).__name__)
    if not isinstance(body, dict):
        return Health(alive=False, error="not a health document")

    def count(key: str) -> int | None:
        value = body.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return Health(alive=body.get("status", "ok") == "ok", queue_depth=count("queue_depth"),
                  in_flight=count("in_flight"))


async def probe_all(mg: Metagraph, timeout: float = HEALTH_TIMEOUT) -> dict[int, Health]:
    """Probe every neuron of ``mg`` that publishes an endpoint, concurrently; by uid."""
    import aiohttp  # noqa: PLC0415

    targets = [(int(mg.uids[i]), ep) for i, ep in enumerate(mg.endpoints) if ep is not None]
    if not targets:
        return {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        results = await asyncio.gather(*(probe_health(session, ep.host, ep.port, timeout)
                                         for _, ep in targets))
    return {uid: health for (uid, _), health in zip(targets, results, strict=True)}


async def collect(ledger: Ledger, netuid: int, *,
                  health_timeout: float = HEALTH_TIMEOUT) -> Snapshot:
    """Read subnet ``netuid`` and its metagraph, then probe its endpoints."""
    info = await _subnet_or_explain(ledger, netuid)
    mg = await ledger.metagraph(netuid)
    return Snapshot(info=info, metagraph=mg, health=await probe_all(mg, health_timeout))


# --- rendering ----------------------------------------------------------------------------------


def _flag(value: object) -> str:
    return "yes" if value else "no"


def summary_table(snap: Snapshot) -> Any:
    """A two-column :class:`rich.table.Table`: the block height and the subnet's essentials."""
    from rich.table import Table  # noqa: PLC0415

    info, hp = snap.info, snap.info.hyperparams
    alive = sum(h.alive for h in snap.health.values())
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    reveal = f"on (reveal after {hp.reveal_period} epochs)" if hp.commit_reveal else "off"
    for label, value in (
            ("block height", snap.block),
            ("subnet", f"{info.netuid} (owner {short_address(info.owner)})"),
            ("neurons", f"{snap.metagraph.n} (serving {len(snap.health)}, alive {alive})"),
            ("tempo", f"{hp.tempo} blocks"),
            ("next epoch block", f"{info.next_epoch_block} "
                                 f"(in {max(0, info.next_epoch_block - snap.block)} blocks; "
                                 f"{info.epochs_run} epochs run)"),
            ("commit_reveal", reveal),
            ("weights rate limit", f"{hp.weights_rate_limit} blocks"),
            ("immunity / activity", f"{hp.immunity_period} / {hp.activity_cutoff} blocks"),
            ("max validators", hp.max_allowed_validators),
            ("registration burn", f"{format_tokens(info.burn)} tokens"),
            ("pending emission", f"{format_tokens(info.pending_emission)} tokens")):
        table.add_row(label, str(value))
    return table


def neuron_table(snap: Snapshot) -> Any:
    """A :class:`rich.table.Table` with one row per uid, including the /health probe."""
    from rich.table import Table  # noqa: PLC0415

    mg = snap.metagraph
    table = Table(title=f"subnet {mg.netuid} at block {mg.block}: {mg.n} neurons")
    for header in ("uid", "hotkey", "stake", "incentive", "dividends", "trust", "emission",
                   "permit", "active", "endpoint", "health", "queue"):
        table.add_column(header, justify="left" if header in ("hotkey", "endpoint", "health")
                         else "right", no_wrap=True)
    for i in range(mg.n):
        uid, endpoint = int(mg.uids[i]), mg.endpoints[i]
        health = snap.health.get(uid)
        if health is None:
            state, queue = "-", "-"
        elif health.alive:
            state = "[green]alive[/green]"
            queue = "-" if health.queue_depth is None else str(health.queue_depth)
        else:
            state, queue = f"[red]dead[/red] ({health.error})" if health.error else "dead", "-"
        table.add_row(
            str(uid), short_address(mg.hotkeys[i]), format_tokens(int(mg.stake[i])),
            *(f"{float(col[i]):.4f}" for col in (mg.incentive, mg.dividends, mg.trust)),
            format_tokens(int(mg.emission[i])), _flag(mg.validator_permit[i]),
            _flag(mg.active[i]), "-" if endpoint is None else f"{endpoint.host}:{endpoint.port}",
            state, queue)
    return table


def render(snap: Snapshot) -> Any:
    """The whole overview as one rich renderable."""
    from rich.console import Group  # noqa: PLC0415

    return Group(summary_table(snap), neuron_table(snap))


def _error_view(exc: BaseException) -> Any:
    from rich.text import Text  # noqa: PLC0415

    return Text(f"error: {exc} (retrying)", style="red")


# --- the command --------------------------------------------------------------------------------


def register(subparsers: _SubParsers) -> None:
    """Add ``ensemble status`` to the ``ensemble`` parser."""
    parser = subparsers.add_parser(
        "status", help="show a live overview of a subnet (neurons, epochs, miner health)",
        description="Show a subnet's block height, hyperparameters and neurons, with a live "
                    "/health check of every serving miner.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chain", metavar="URL|PATH",
                        help=f"a chain node URL (http://HOST:PORT) or a chain file "
                             f"(default ${CHAIN_ENV})")
    parser.add_argument("--netuid", type=_netuid_arg, required=True, metavar="N",
                        help="the subnet")
    parser.add_argument("--watch", action="store_true",
                        help="keep refreshing the overview until Ctrl-C")
    parser.add_argument("--interval", type=_seconds_arg, default=DEFAULT_INTERVAL, metavar="S",
                        help=f"seconds between refreshes with --watch "
                             f"(default {DEFAULT_INTERVAL:g})")
    parser.add_argument("--health-timeout", type=_seconds_arg, default=HEALTH_TIMEOUT,
                        metavar="S", help=f"seconds each /health probe may take "
                                          f"(default {HEALTH_TIMEOUT:g})")
    # test hook: stop --watch after this many refreshes
    parser.add_argument("--refreshes", type=int, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(handler=run_status, dev=False, block_time=None)


def run_status(args: argparse.Namespace) -> int:
    """The handler: run :func:`status`; Ctrl-C ends ``--watch`` with exit code 0."""
    try:
        return asyncio.run(status(args))
    except KeyboardInterrupt:
        return EXIT_OK


async def status(args: argparse.Namespace) -> int:
    """Print the overview once, or keep refreshing it with ``args.watch``."""
    console = _console()
    timeout = getattr(args, "health_timeout", HEALTH_TIMEOUT)
    async with _ledger(args) as ledger:
        first = await collect(ledger, args.netuid, health_timeout=timeout)
        if not args.watch:
            console.print(render(first))
            return EXIT_OK
        await _watch(ledger, args, console, first, timeout)
    return EXIT_OK


async def _watch(ledger: Ledger, args: argparse.Namespace, console: Any, first: Snapshot,
                 timeout: float) -> None:
    refreshes = getattr(args, "refreshes", None)
    loop = asyncio.get_running_loop()

    async def views() -> AsyncIterator[Any]:
        """Yield one renderable per refresh, at most one per interval."""
        view: Any = render(first)
        count = 0
        while True:
            started = loop.time()
            yield view
            count += 1
            if refreshes is not None and count >= refreshes:
                return
            await asyncio.sleep(max(0.0, args.interval - (loop.time() - started)))
            try:
                view = render(await collect(ledger, args.netuid, health_timeout=timeout))
            except (EnsembleError, OSError) as exc:  # a node restarting: keep watching
                view = _error_view(exc)

    if console.is_terminal:
        from rich.live import Live  # noqa: PLC0415

        with Live(console=console, auto_refresh=False) as live:
            async for view in views():
                live.update(view, refresh=True)
        return
    async for view in views():  # a pipe: one overview per refresh
        console.print(view)
        with contextlib.suppress(ValueError):  # stdout closed under us
            sys.stdout.flush()
