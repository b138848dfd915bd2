"""``ensemble miner ...`` commands."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from protocol.cli.chain import rate_arg
from protocol.errors import ConfigError
from protocol.keys import Keypair
from protocol.logging_setup import add_log_options, configure_logging
from protocol.ratelimit import DEFAULT_RATE

_EPILOG_ECHO = """examples:
  ensemble miner echo --wallet alice --hotkey default --port 8091
  ensemble miner echo --dev-seed 0101...01 --port 0     # throwaway key, dev only

Serves the deterministic 'echo' and 'echo_stream' routes (SPEC.md §3.9) behind the signed
protocol. Prints one line 'listening on URL as ADDRESS' when ready; stops on SIGINT/SIGTERM.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``miner`` command group."""
    miner = sub.add_parser("miner", help="run a miner", description="Run a miner server.")
    group = miner.add_subparsers(dest="miner_command", metavar="SUBCOMMAND")
    echo = group.add_parser("echo", help="serve the deterministic echo handler (tests, demo)",
                            description="Serve the echo routes behind the signed protocol.",
                            epilog=_EPILOG_ECHO,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_key_options(echo)
    echo.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    echo.add_argument("--port", type=int, default=8091,
                      help="TCP port, 0 = any free (default 8091)")
    echo.add_argument("--netuid", type=int, default=1, help="subnet served (default 1)")
    add_log_options(echo)
    echo.set_defaults(handler=_run_echo)
    run = group.add_parser("run", help="serve a model on a subnet (registered hotkey)",
                           description="Serve a model behind the signed protocol on a subnet: "
                           "checks registration, publishes the endpoint, follows the metagraph.",
                           epilog=_EPILOG_RUN, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_key_options(run)
    run.add_argument("--chain", default=None,
                     help="ledger: chain file PATH or node URL (default $ENSEMBLE_CHAIN)")
    run.add_argument("--netuid", type=int, required=True, help="subnet to serve")
    run.add_argument("--model", required=True,
                     help="'echo-math', 'garbage', 'hang', or a local Hugging Face model directory")
    run.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=8091, help="TCP port, 0 = any (default 8091)")
    run.add_argument("--external-host", default=None,
                     help="host published on the ledger (default: --host; required when "
                          "--host is 0.0.0.0 or ::)")
    run.add_argument("--register", action="store_true",
                     help="register the hotkey if needed, paying the burn from the coldkey")
    run.add_argument("--min-stake", type=float, default=0.0,
                     help="stake (units) a non-validator caller needs (default 0)")
    run.add_argument("--device", default="cpu", help="torch device for model directories")
    run.add_argument("--max-batch", type=_positive_int, default=8,
                     help="largest dynamic batch; also the concurrency limit (default 8)")
    run.add_argument("--rate-limit", type=_positive_rate, default=DEFAULT_RATE, metavar="N",
                     help="requests per second one caller may send, in bursts of 2N; 429 "
                          "beyond. Raise it when routers send you application traffic "
                          f"(default {DEFAULT_RATE:g})")
    run.add_argument("--capabilities", default="",
                     help="comma-separated task tags the model claims (e.g. math)")
    add_log_options(run)
    run.set_defaults(handler=_run_model)
    miner.set_defaults(handler=lambda _args: _usage(miner))


_EPILOG_RUN = """examples:
  ensemble miner run --wallet alice --hotkey default --chain http://127.0.0.1:9944 \\
      --netuid 1 --model models/tiny-add-q99 --capabilities math --port 8091
  ensemble miner run --wallet alice --chain ./chain.db --netuid 1 --model echo-math --register

Any local Hugging Face causal-LM directory works as --model (loaded offline). Stops on
SIGINT/SIGTERM, cancelling in-flight work; the endpoint stays published.
"""


def add_key_options(parser: argparse.ArgumentParser) -> None:
    """Options selecting the hotkey that signs: a wallet hotkey, or a dev seed."""
    parser.add_argument("--wallet", help="wallet name (see 'ensemble wallet list')")
    parser.add_argument("--hotkey", default="default", help="hotkey name (default 'default')")
    parser.add_argument("--wallet-path", type=Path, default=None,
                        help="wallet root (default $ENSEMBLE_WALLET_PATH or ~/.ensemble/wallets)")
    parser.add_argument("--dev-seed", metavar="HEX",
                        help="use a throwaway key from a 32-byte hex seed (development only)")


def load_hotkey(args: argparse.Namespace) -> Keypair:
    """Return the signing hotkey chosen by :func:`add_key_options` options.

    Raises:
        ConfigError: neither or both of --wallet and --dev-seed, or a bad seed.
    """
    if bool(args.wallet) == bool(args.dev_seed):
        raise ConfigError("choose the signing key with --wallet NAME [--hotkey NAME], "
                          "or --dev-seed HEX for a throwaway development key")
    if args.dev_seed:
        try:
            return Keypair(bytes.fromhex(args.dev_seed))
        except ValueError:
            raise ConfigError("--dev-seed must be 64 hex digits") from None
    from protocol.cli.ledger_cmds import hotkey_of  # noqa: PLC0415 - CLI-only import

    return hotkey_of(args)


def _run_echo(args: argparse.Namespace) -> int:
    from miners.echo import add_echo_routes  # noqa: PLC0415 - keep CLI start-up light
    from miners.server import MinerServer, ServerConfig  # noqa: PLC0415

    configure_logging(args.log_format, args.log_level)
    server = MinerServer(load_hotkey(args),
                         ServerConfig(host=args.host, port=args.port, netuid=args.netuid))
    add_echo_routes(server)
    return asyncio.run(serve_until_signal(server))


async def serve_until_signal(server: object) -> int:
    """Start ``server``, print the ready line, and serve until SIGINT or SIGTERM."""
    from miners.server import MinerServer  # noqa: PLC0415

    assert isinstance(server, MinerServer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"listening on {server.url} as {server.address}", flush=True)
        await stop.wait()
        print("stopping: cancelling in-flight work", file=sys.stderr, flush=True)
    return 0


def _run_model(args: argparse.Namespace) -> int:
    from miners.backends.registry import BackendOptions, load_backend  # noqa: PLC0415
    from miners.service import MinerConfig  # noqa: PLC0415

    configure_logging(args.log_format, args.log_level)
    # Checked before the password prompt and the model load (which may take minutes).
    config = MinerConfig(netuid=args.netuid, host=args.host, port=args.port,
                         external_host=args.external_host, min_stake=args.min_stake,
                         max_concurrent=args.max_batch, register=args.register,
                         rate_limit=args.rate_limit)
    from protocol.cli.ledger_cmds import chain_spec  # noqa: PLC0415

    chain = chain_spec(args)
    hotkey = load_hotkey(args)
    coldkey = _coldkey_if_registering(args)
    caps = tuple(c for c in args.capabilities.split(",") if c)
    # Progress bars only for a person watching a terminal: in log files they are noise, and
    # they would break JSON logs' one object per line.
    bars = args.log_format == "text" and sys.stderr.isatty()
    backend = load_backend(args.model, BackendOptions(device=args.device, max_batch=args.max_batch,
                                                      capabilities=caps, progress_bars=bars))
    how = (f"ensemble register --chain {chain} --netuid {args.netuid} "
           f"--wallet {args.wallet or 'WALLET'} --hotkey {args.hotkey}")
    return asyncio.run(_serve_model(chain, hotkey, coldkey, backend, config, how))


def _coldkey_if_registering(args: argparse.Namespace) -> Keypair | None:
    if not args.register:
        return None
    if not args.wallet:
        raise ConfigError("--register pays the burn from a wallet's coldkey: pass --wallet NAME")
    from protocol.cli.ledger_cmds import coldkey_of  # noqa: PLC0415

    return coldkey_of(args)


async def _serve_model(chain: str, hotkey: Keypair, coldkey: Keypair | None, backend: object,
                       config: object, how: str) -> int:
    from miners.service import run_miner  # noqa: PLC0415
    from protocol.ledger.connect import open_ledger  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_ledger(chain) as ledger:
        await run_miner(hotkey, coldkey, ledger, backend, config, stop, how=how)  # type: ignore[arg-type]
    return 0


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def _positive_rate(text: str) -> float:
    value = rate_arg(text)
    if value == 0:  # a miner on the internet always limits each caller
        raise argparse.ArgumentTypeError("must be above 0 requests per second")
    return value


def _usage(parser: argparse.ArgumentParser) -> int:
    """Print a command group's help; exit code 2 (a subcommand is required)."""
    parser.print_help()
    return 2
