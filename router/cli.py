"""``ensemble router ...`` commands: serve the OpenAI-compatible gateway, make API keys."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from protocol.logging_setup import add_log_options, configure_logging

_EPILOG_SERVE = """examples:
  ensemble router serve --chain http://127.0.0.1:9944 --netuid 1 --wallet app --port 8000 \\
      --api-keys-file keys.json
  ensemble router serve --chain ./chain.db --netuid 1 --dev-seed 0101...01   # open, dev only

Prints 'gateway listening on URL' when ready; stops on SIGINT/SIGTERM. Point any OpenAI client
at URL/v1 with model 'ensemble/NETUID' (or ':best', ':weighted', ':ensemble'). Without
--api-keys-file the gateway takes no keys: bind it to loopback only.
"""

_EPILOG_KEY = """examples:
  ensemble router add-key --api-keys-file keys.json --id alice --rate 5 --burst 20

Prints the new key once; the file keeps only its SHA-256.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``router`` command group."""
    from miners.cli import add_key_options  # noqa: PLC0415 - shared key options

    router = sub.add_parser("router", help="route prompts to a subnet (OpenAI-compatible)",
                            description="Route prompts to a subnet's miners.")
    group = router.add_subparsers(dest="router_command", metavar="SUBCOMMAND")
    serve = group.add_parser("serve", help="serve the OpenAI-compatible gateway",
                             description="Serve /v1/chat/completions, /v1/completions and "
                             "/v1/models over a subnet's miners.", epilog=_EPILOG_SERVE,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    add_key_options(serve)
    serve.add_argument("--chain", default=None,
                       help="ledger: chain file PATH or node URL (default $ENSEMBLE_CHAIN)")
    serve.add_argument("--netuid", type=int, required=True, help="subnet to route to")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port, 0 = any (default 8000)")
    serve.add_argument("--api-keys-file", type=Path, default=None,
                       help="JSON file of hashed API keys (see 'ensemble router add-key')")
    serve.add_argument("--strategy", choices=("best", "weighted", "ensemble"), default="best",
                       help="strategy of the plain 'ensemble/NETUID' model (default best)")
    add_log_options(serve)
    serve.set_defaults(handler=_serve)
    key = group.add_parser("add-key", help="make a gateway API key",
                           description="Make a gateway API key and store its hash.",
                           epilog=_EPILOG_KEY,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    key.add_argument("--api-keys-file", type=Path, required=True, help="the keys file")
    key.add_argument("--id", required=True, help="a name for the key (its owner)")
    key.add_argument("--rate", type=float, default=1.0, help="requests per second (default 1)")
    key.add_argument("--burst", type=float, default=10.0, help="burst size (default 10)")
    key.set_defaults(handler=_add_key)
    router.set_defaults(handler=lambda _args: _usage(router))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _add_key(args: argparse.Namespace) -> int:
    from router.apikeys import add_key  # noqa: PLC0415 - keep CLI start-up light

    token = add_key(args.api_keys_file, args.id, rate=args.rate, burst=args.burst)
    print(token)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from miners.cli import load_hotkey  # noqa: PLC0415

    configure_logging(args.log_format, args.log_level)
    from protocol.cli.ledger_cmds import chain_spec  # noqa: PLC0415

    chain = chain_spec(args)
    keys = None
    if args.api_keys_file is not None:
        from router.apikeys import load_store  # noqa: PLC0415

        keys = load_store(args.api_keys_file)
    return asyncio.run(_run(chain, args, load_hotkey(args), keys))


async def _run(chain: str, args: argparse.Namespace, keypair: object, keys: object) -> int:
    from protocol.keys import Keypair  # noqa: PLC0415
    from router.apikeys import APIKeyStore  # noqa: PLC0415
    from router.config import RouterConfig  # noqa: PLC0415
    from router.gateway import Gateway, GatewayConfig  # noqa: PLC0415
    from router.router import Router  # noqa: PLC0415
    from router.strategies import Strategy  # noqa: PLC0415

    assert isinstance(keypair, Keypair)
    assert keys is None or isinstance(keys, APIKeyStore)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    config = RouterConfig(netuid=args.netuid, strategy=Strategy(args.strategy))
    async with Router(chain=chain, keypair=keypair, config=config) as router, Gateway(
            router, GatewayConfig(host=args.host, port=args.port), api_keys=keys) as gateway:
        print(f"gateway listening on {gateway.url} for subnet {args.netuid} "
              f"({len(router.snapshot.pool)} miners eligible at block {router.snapshot.block}, "
              f"{'API keys required' if keys else 'no API keys: open access'})", flush=True)
        await stop.wait()
    return 0
