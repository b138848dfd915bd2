"""``ensemble chain``: create a chain (``init``), run its node (``serve``), check it (``verify``).

This layer, and only this layer, reads the environment (``ENSEMBLE_PASSWORD`` for an encrypted
node hotkey, ``ENSEMBLE_WALLET_PATH`` through :func:`default_wallet_root`) and installs signal
handlers. Everything else is :mod:`protocol.ledger.node` and :func:`protocol.ledger.verify`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from protocol.cli.ledger_cmds import address_arg, format_tokens, parse_tokens
from protocol.errors import ConfigError
from protocol.keys import SEED_SIZE, Keypair
from protocol.ledger.errors import CorruptChainError
from protocol.logging_setup import add_log_options, configure_logging

if TYPE_CHECKING:
    from protocol.ledger.node import ChainNode

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
PASSWORD_ENV = "ENSEMBLE_PASSWORD"  # noqa: S105 - the variable's name, not a password
#: The block key's seed, kept out of argv (which ``ps`` and shell history show to others).
NODE_KEY_ENV = "ENSEMBLE_NODE_KEY_SEED"

_GROUP_EPILOG = """\
examples:
  ensemble chain init --db /srv/chain.db --name mynet --authority ens1... --balance ens1...=1000
  ensemble chain serve --db ./dev.db --dev                   dev chain, 1 s blocks, port 8700
  ensemble chain serve --db ./dev.db --dev --block-time 0.2 --port 0
  ensemble chain serve --db /srv/chain.db --wallet node --hotkey authority --host 0.0.0.0
  ensemble chain verify --db ./dev.db

Clients then use --chain http://127.0.0.1:8700 (or set $ENSEMBLE_CHAIN).
"""

_SERVE_EPILOG = """\
examples:
  ensemble chain serve --db ./dev.db --dev
  ensemble chain serve --db ./dev.db --dev --block-time 0.2 --port 0
  ensemble chain serve --db /srv/chain.db --wallet node --hotkey authority
  ENSEMBLE_NODE_KEY_SEED=$(cat /etc/ensemble/node.seed) ensemble chain serve --db /srv/chain.db

Prints one line 'chain node listening on URL (height H, chain id X)' when ready, and stops on
SIGINT or SIGTERM after committing the block in production. Only one process may own a chain
file (it is locked through PATH.lock): other programs connect with --chain URL.

Without --dev the file must already exist: create a production chain with 'ensemble chain
init'. A dev chain without a key option uses the well-known dev authority key, so restarts keep
producing blocks; never fund that key on a real network.
"""

_INIT_EPILOG = """\
examples:
  ensemble chain init --db /srv/chain.db --name mynet --authority ens1<node hotkey> \\
      --balance ens1<treasury coldkey>=1000000 --balance ens1<owner coldkey>=5000

Creates the chain file of a production (non-dev) chain from its genesis: the chain name, the
block authorities (the hotkey addresses whose nodes may sign blocks: 'ensemble wallet show'),
and the initial coldkey balances, which are the whole initial supply (no faucet exists).
Prints the chain id. Then serve it with an authority's key:
  ensemble chain serve --db /srv/chain.db --wallet node --hotkey authority --host 0.0.0.0
An existing file is never overwritten.
"""

_VERIFY_EPILOG = """\
examples:
  ensemble chain verify --db ./dev.db

Replays the whole block log from genesis read-only, checking every hash link, signature,
transaction and state digest and every stored snapshot. Exit 0 when the chain checks out,
1 naming the first bad block otherwise. Safe while a node serves the file.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``chain`` command group to the ``ensemble`` parser."""
    group = subparsers.add_parser(
        "chain", help="run a chain node or verify a chain file",
        description="The ledger ('chain'): serve it over HTTP, or check a chain file.",
        epilog=_GROUP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    group.set_defaults(handler=partial(_print_help, group))
    sub = group.add_subparsers(dest="chain_command", metavar="SUBCOMMAND")

    init = sub.add_parser("init", help="create a production chain file from its genesis",
                          description="Create a non-dev chain file: name, block authorities "
                                      "and initial balances.",
                          epilog=_INIT_EPILOG,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    init.add_argument("--db", type=Path, required=True, metavar="PATH",
                      help="the chain file to create (must not exist)")
    init.add_argument("--name", required=True, type=_chain_name,
                      help="the chain's name (1 to 64 characters; part of its id)")
    init.add_argument("--authority", action="append", required=True, type=address_arg,
                      metavar="ADDRESS",
                      help="a hotkey address allowed to sign blocks (repeat for several)")
    init.add_argument("--balance", action="append", default=[], type=_balance,
                      metavar="ADDRESS=TOKENS",
                      help="an initial coldkey balance (repeat; one entry per address)")
    init.add_argument("--timestamp-ms", type=_timestamp_ms, default=None, metavar="MS",
                      help="genesis time, Unix milliseconds (default now); blocks never "
                           "go below it")
    init.set_defaults(handler=_cmd_init)

    serve = sub.add_parser("serve", help="run a chain node (HTTP API, block production)",
                           description="Run a chain node over a SQLite chain file.",
                           epilog=_SERVE_EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--db", type=Path, required=True, metavar="PATH",
                       help="the chain file (SQLite); created with --dev if missing, else "
                            "made by 'ensemble chain init'")
    serve.add_argument("--dev", action="store_true",
                       help="create a dev chain (faucet enabled) if PATH does not exist")
    serve.add_argument("--block-time", type=_seconds, default=None, metavar="S",
                       help="seconds between blocks (default 12, or 1 with a dev chain)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    serve.add_argument("--port", type=_port, default=8700,
                       help="TCP port, 0 = any free port (default 8700)")
    serve.add_argument("--rate-limit", type=rate_arg, default=50.0, metavar="N",
                       help="requests per second per client IP address, bursts of 4N, 429 "
                            "beyond; clients on this machine are exempt; 0 = no limit "
                            "(default 50)")
    keys = serve.add_argument_group("block key (the chain's authority; optional on dev chains)")
    keys.add_argument("--node-key-seed", type=_seed_hex, metavar="HEX",
                      help="DEV ONLY: the block key's 32-byte seed as 64 hex digits; any user "
                           f"can read it in 'ps': set ${NODE_KEY_ENV} instead, or use --wallet")
    keys.add_argument("--wallet", help="take the block key from this wallet's hotkey")
    keys.add_argument("--hotkey", default="default",
                      help="hotkey name within --wallet (default 'default')")
    keys.add_argument("--wallet-path", type=Path, metavar="PATH",
                      help="wallet root (default $ENSEMBLE_WALLET_PATH or ~/.ensemble/wallets)")
    add_log_options(serve)
    serve.set_defaults(handler=_cmd_serve)

    verify = sub.add_parser("verify", help="replay and check a chain file",
                            description="Replay a chain file from genesis and check it.",
                            epilog=_VERIFY_EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("--db", type=Path, required=True, metavar="PATH", help="the chain file")
    verify.set_defaults(handler=_cmd_verify)


# --- argument types ---------------------------------------------------------------------------


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 3600 seconds")
    return value


def rate_arg(text: str) -> float:
    """argparse type: requests per second, 0 to 1 000 000."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of requests per second: {text!r}") \
            from None
    if not 0 <= value <= 1e6:
        raise argparse.ArgumentTypeError("must be 0 (no limit) to 1000000 requests per second")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {text!r}")
    return int(text)


def _seed_hex(text: str) -> bytes:
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not hexadecimal") from None
    if len(seed) != SEED_SIZE:
        raise argparse.ArgumentTypeError(f"a seed is {2 * SEED_SIZE} hex digits")
    return seed


def _chain_name(text: str) -> str:
    if not 1 <= len(text) <= 64:
        raise argparse.ArgumentTypeError("a chain name is 1 to 64 characters")
    return text


def _balance(text: str) -> tuple[str, int]:
    address, sep, amount = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"write ADDRESS=TOKENS, got {text!r}")
    try:
        return address_arg(address.strip()), parse_tokens(amount)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _timestamp_ms(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"Unix milliseconds, got {text!r}")
    return int(text)


def _print_help(parser: argparse.ArgumentParser, _args: argparse.Namespace) -> int:
    parser.print_help()
    return EXIT_USAGE


# --- serve ------------------------------------------------------------------------------------


def _node_key(args: argparse.Namespace) -> Keypair | None:
    """The block key from --node-key-seed, $ENSEMBLE_NODE_KEY_SEED or --wallet/--hotkey;
    ``None`` when none names one. Two sources at once are refused: an authority key must never
    be chosen by precedence rules."""
    seed = args.node_key_seed
    from_env = os.environ.get(NODE_KEY_ENV, "").strip()
    sources = [name for name, given in (("--node-key-seed", seed is not None),
                                        (f"${NODE_KEY_ENV}", bool(from_env)),
                                        ("--wallet", bool(args.wallet))) if given]
    if len(sources) > 1:
        raise ConfigError(f"choose the block key with one of {' or '.join(sources)}, not both")
    if from_env:
        try:
            seed = _seed_hex(from_env)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"${NODE_KEY_ENV}: {exc}") from None
    if seed is not None:
        return Keypair(seed)
    if not args.wallet:
        return None
    from protocol.wallet import Wallet, default_wallet_root  # noqa: PLC0415 - CLI-only import

    wallet = Wallet(args.wallet_path or default_wallet_root(os.environ), args.wallet)
    password = None
    if wallet.hotkey_encrypted(args.hotkey):
        password = os.environ.get(PASSWORD_ENV)
        if not password:
            import getpass  # noqa: PLC0415

            try:
                password = getpass.getpass(f"Password for hotkey '{args.hotkey}': ")
            except EOFError:
                raise ConfigError(f"no password given; set ${PASSWORD_ENV}") from None
    return wallet.hotkey(args.hotkey, password)


def _cmd_serve(args: argparse.Namespace) -> int:
    from protocol.ledger.node import ChainNode, NodeConfig  # noqa: PLC0415 - light start-up

    configure_logging(args.log_format, args.log_level)
    from protocol.ratelimit import RateLimitConfig  # noqa: PLC0415

    limit = RateLimitConfig(rate=args.rate_limit, burst=4 * args.rate_limit) \
        if args.rate_limit > 0 else None
    config = NodeConfig(host=args.host, port=args.port, dev=args.dev,
                        block_time=args.block_time, rate_limit=limit)
    node = ChainNode(args.db, config, node_key=_node_key(args))
    return asyncio.run(_serve_until_signal(node))


async def _serve_until_signal(node: ChainNode) -> int:
    """Start the node, print the ready line, serve until SIGINT/SIGTERM or a failed block."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with node:
        head = node.head
        print(f"chain node listening on {node.url} "
              f"(height {head.height}, chain id {head.chain_id.hex()})", flush=True)
        stopped = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(node.failed.wait())
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        failed.cancel()
        print("chain node stopping: finishing the current block", file=sys.stderr, flush=True)
    height = node.head.height
    if node.failed.is_set():
        print(f"error: block production failed at height {height}; restart the node to "
              "recover from the last committed block (see the log above)", file=sys.stderr)
        return EXIT_FAILURE
    print(f"chain node stopped at height {height}", file=sys.stderr, flush=True)
    return EXIT_OK


# --- init -------------------------------------------------------------------------------------


def _cmd_init(args: argparse.Namespace) -> int:
    from protocol.ledger.chain import Chain, ChainConfig  # noqa: PLC0415
    from protocol.ledger.genesis import Genesis  # noqa: PLC0415

    db = Path(args.db)
    if db.exists():
        raise ConfigError(f"{db} already exists; a chain file is created once (choose another "
                          "path, or serve this one with 'ensemble chain serve')")
    timestamp_ms = args.timestamp_ms if args.timestamp_ms is not None else time.time_ns() // 10**6
    # Genesis checks the rest (one entry per address and authority, the supply cap).
    genesis = Genesis(chain_name=args.name, authorities=tuple(args.authority),
                      timestamp_ms=timestamp_ms, balances=tuple(args.balance))
    # Any key may create and read a chain; only an authority's key produces its blocks.
    Chain.open(db, ChainConfig(node_key=Keypair(os.urandom(SEED_SIZE)), genesis=genesis)).close()
    supply = sum(amount for _, amount in genesis.balances)
    print(f"created chain '{genesis.chain_name}' in {db}")
    print(f"  chain id      {genesis.chain_id.hex()}")
    print(f"  authorities   {len(genesis.authorities)}")
    for address in genesis.authorities:
        print(f"                {address}")
    print(f"  balances      {len(genesis.balances)} accounts, {format_tokens(supply)} tokens "
          "in all")
    print(f"next: ensemble chain serve --db {db} --wallet WALLET --hotkey HOTKEY "
          "(an authority's key)")
    return EXIT_OK


# --- verify -----------------------------------------------------------------------------------


def _cmd_verify(args: argparse.Namespace) -> int:
    from protocol.ledger.verify import verify  # noqa: PLC0415

    if not Path(args.db).is_file():
        raise ConfigError(f"no chain file at {args.db}")
    try:
        report = verify(args.db)
    except CorruptChainError as exc:
        print(f"chain file {args.db} is CORRUPT at block {exc.height}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"chain file {args.db} verified: {report.blocks} blocks, {report.transactions} "
          f"transactions, {report.snapshots_checked} snapshots checked")
    print(f"  height        {report.height}")
    print(f"  chain id      {report.chain_id.hex()}")
    print(f"  tip hash      {report.tip_hash.hex()}")
    print(f"  state digest  {report.state_digest.hex()}")
    return EXIT_OK
