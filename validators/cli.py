"""``ensemble validator ...`` commands."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from aiohttp import web
from prometheus_client import generate_latest

from protocol.logging_setup import add_log_options, configure_logging

_EPILOG = """examples:
  ensemble validator run --wallet alice --hotkey validator --chain http://127.0.0.1:9944 \\
      --netuid 1 --state ~/.ensemble/validator-1.state --metrics-port 9100

Each step prints one line: miners queried, answers, mean reward, errors, and what happened to
weights. State (scores, pending commits, audit receipts) is saved after every step, so the
validator resumes where it stopped after a crash. Stops on SIGINT/SIGTERM.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``validator`` command group."""
    from miners.cli import _usage, add_key_options  # noqa: PLC0415 - shared key options

    validator = sub.add_parser("validator", help="run a validator",
                               description="Run a validator.")
    group = validator.add_subparsers(dest="validator_command", metavar="SUBCOMMAND")
    run = group.add_parser("run", help="challenge miners, score them, set weights",
                           description="Challenge the subnet's miners with checkable tasks, score "
                           "their signed answers and set weights on the ledger.",
                           epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_key_options(run)
    run.add_argument("--chain", default=None,
                     help="ledger: chain file PATH or node URL (default $ENSEMBLE_CHAIN)")
    run.add_argument("--netuid", type=int, required=True, help="subnet to validate")
    run.add_argument("--state", type=Path, default=None,
                     help="state file (default ~/.ensemble/validator-<hotkey>-<netuid>.state)")
    run.add_argument("--sample-size", type=int, default=8,
                     help="miners queried per step (K, default 8)")
    run.add_argument("--weights-interval", type=int, default=10,
                     help="blocks between weight submissions (default 10)")
    run.add_argument("--alpha", type=float, default=0.1, help="score EMA rate (default 0.1)")
    run.add_argument("--challenges-per-miner", type=int, default=4,
                     help="challenges sent to each sampled miner per step (default 4)")
    run.add_argument("--timeout", type=float, default=8.0,
                     help="seconds a miner has to answer a challenge (default 8)")
    run.add_argument("--relevance", action="store_true",
                     help="refine free-text grades with all-MiniLM-L6-v2 (loads torch)")
    run.add_argument("--metrics-port", type=int, default=None,
                     help="serve /health and /metrics on this port (127.0.0.1)")
    run.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    add_log_options(run)
    run.set_defaults(handler=_run)
    validator.set_defaults(handler=lambda _args: _usage(validator))


def _run(args: argparse.Namespace) -> int:
    from miners.cli import load_hotkey  # noqa: PLC0415

    configure_logging(args.log_format, args.log_level)
    from protocol.cli.ledger_cmds import chain_spec  # noqa: PLC0415

    chain = chain_spec(args)
    hotkey = load_hotkey(args)
    state = args.state or (Path.home() / ".ensemble" /
                           f"validator-{hotkey.address[:16]}-{args.netuid}.state")
    return asyncio.run(_serve(args, chain, hotkey, state))


async def _serve(args: argparse.Namespace, chain: str, hotkey: object, state: Path) -> int:
    from protocol.client import Client, Timeouts  # noqa: PLC0415
    from protocol.keys import Keypair  # noqa: PLC0415
    from protocol.ledger.connect import open_ledger  # noqa: PLC0415
    from validators.service import Validator, ValidatorConfig, derive_secret  # noqa: PLC0415
    from validators.tasks import SelectionConfig  # noqa: PLC0415

    assert isinstance(hotkey, Keypair)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    embedder = None
    if args.relevance:
        from validators.relevance import load_embedder  # noqa: PLC0415

        embedder = await asyncio.to_thread(load_embedder)
    config = ValidatorConfig(
        netuid=args.netuid, secret=derive_secret(hotkey), state_path=state,
        sample_size=args.sample_size, weights_interval=args.weights_interval, alpha=args.alpha,
        selection=SelectionConfig(challenges_per_miner=args.challenges_per_miner),
        timeouts=Timeouts(connect=min(2.0, args.timeout), first_byte=args.timeout,
                          total=args.timeout))
    async with open_ledger(chain) as ledger, Client(hotkey, netuid=args.netuid) as client:
        validator = Validator(hotkey, ledger, client, config, embedder=embedder)
        validator.load()
        print(f"validator {hotkey.address} on subnet {args.netuid}, state {state} "
              f"(step {validator.state.step})", flush=True)
        runner = await _metrics_server(validator, args.metrics_port)
        try:
            await validator.run(stop, max_steps=args.max_steps)
        finally:
            await validator.aclose()
            validator.save()
            if runner is not None:
                await runner.cleanup()
    print("validator stopped; state saved", flush=True)
    return 0


async def _metrics_server(validator: object, port: int | None) -> web.AppRunner | None:
    """Serve ``/health`` and ``/metrics`` for the validator on 127.0.0.1 (if a port is given)."""
    if port is None:
        return None
    from validators.service import Validator  # noqa: PLC0415

    assert isinstance(validator, Validator)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "step": validator.state.step,
                                  "hotkey": validator.hotkey.address})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(validator.metrics.registry),
                            headers={"Content-Type": "text/plain; version=0.0.4"})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner
