"""Ledger commands: ``subnet``, ``register``, ``serve``, ``stake``, ``transfer``, ``faucet``,
``metagraph`` and ``account``.

Every command names its chain with ``--chain`` (a node URL, or a chain file run in-process for
the command's duration; ``$ENSEMBLE_CHAIN`` is the default) and its keys with ``--wallet``,
``--hotkey`` and ``--wallet-path``. Passwords come from ``$ENSEMBLE_PASSWORD`` or a prompt.
This module is the only place these variables are read. Commands that submit a transaction
wait until its block is committed and print what it did, or the rejection reason with advice.

Amounts are tokens written as decimals (``1.5``, ``0.000000001``) and converted to base units
exactly with :mod:`decimal` (1 token = 10⁹ units); more than 9 decimal places is an error.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Any, TypeAlias

from protocol.errors import ConfigError, IdentityError
from protocol.keys import Keypair, decode_address
from protocol.ledger import events as ev
from protocol.ledger.builders import TxBuilder
from protocol.ledger.connect import open_ledger
from protocol.ledger.errors import (
    HyperparamError,
    NoSuchItemError,
    Reason,
    TxRejected,
    WaitTimeout,
)
from protocol.ledger.hyperparams import HYPERPARAM_SPECS, HyperparamValue, spec_of
from protocol.ledger.interface import Ledger
from protocol.ledger.machine import TxOutcome
from protocol.ledger.metagraph import Metagraph
from protocol.ledger.tx import Tx
from protocol.ledger.units import MAX_SUPPLY, UNITS_PER_TOKEN
from protocol.wallet import Wallet, default_wallet_root

CHAIN_ENV = "ENSEMBLE_CHAIN"
PASSWORD_ENV = "ENSEMBLE_PASSWORD"  # noqa: S105 - the variable's name, not a password
#: Seconds a command waits for its transaction's block: five 12 s blocks.
DEFAULT_WAIT = 60.0
#: Tokens the faucet command asks for when --amount is not given (dev chains cap one faucet
#: transaction at the genesis ``faucet_max``, 1000 tokens by default).
DEFAULT_FAUCET_TOKENS = "100"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]
_SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

#: What to do about each rejection reason (spec §6), printed under the reason.
ADVICE: dict[Reason, str] = {
    Reason.INSUFFICIENT_BALANCE: "fund the coldkey with 'ensemble faucet' on a dev chain or "
                                 "'ensemble transfer'",
    Reason.INSUFFICIENT_STAKE: "see what is staked with 'ensemble account'",
    Reason.UNKNOWN_SUBNET: "list the subnets with 'ensemble subnet list'",
    Reason.UNKNOWN_HOTKEY: "register the hotkey on the subnet first: "
                           "'ensemble register --netuid N'",
    Reason.ALREADY_REGISTERED: "this hotkey already holds a uid there: see "
                               "'ensemble metagraph --netuid N'",
    Reason.NOT_PERMITTED: "this key may not do that (only the subnet owner sets "
                          "hyperparameters, network-level ones are fixed, weights need a "
                          "validator permit, the faucet has a per-transaction maximum)",
    Reason.BURN_TOO_HIGH: "the registration burn rose above --max-burn; check it with "
                          "'ensemble subnet show' and retry",
    Reason.LOCK_TOO_HIGH: "the subnet lock cost is above --max-lock-cost; raise it",
    Reason.SUBNET_FULL: "every uid is still immune to pruning; retry later",
    Reason.TOO_MANY_SUBNETS: "the network's subnet limit is reached",
    Reason.INVALID_HYPERPARAMS: "see the bounds with 'ensemble subnet show --netuid N'",
    Reason.RATE_LIMITED: "wait weights_rate_limit blocks after the last weights",
    Reason.BAD_SEQUENCE: "another transaction of this key got in first; run the command again",
    Reason.MEMPOOL_FULL: "the node is busy; retry in a few seconds",
    Reason.UNKNOWN_SIGNER: "the key is unknown to the chain: send it funds first "
                           "('ensemble transfer'), or register the hotkey",
    Reason.NOT_DEV_CHAIN: "the faucet exists only on dev chains; use 'ensemble transfer'",
    Reason.BAD_CHAIN_ID: "the transaction was signed for another chain",
    Reason.SUPPLY_CAP: "the maximum supply is reached",
}


# --- amounts ----------------------------------------------------------------------------------


def parse_tokens(text: str, *, allow_zero: bool = False) -> int:
    """Base units of a decimal token amount (``"1.5"`` → 1 500 000 000), exactly.

    Raises:
        ConfigError: not a plain decimal number, negative (or zero unless ``allow_zero``),
            more than 9 decimal places, or above the maximum supply.
    """
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ConfigError(f"not an amount of tokens: {text!r} (write e.g. 1.5)") from None
    if not value.is_finite() or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"the amount must be {'0 or more' if allow_zero else 'positive'}, "
                          f"got {text!r}")
    units = value * UNITS_PER_TOKEN
    if units != units.to_integral_value():
        raise ConfigError(f"{text!r} has more than 9 decimal places (1 unit = 0.000000001)")
    if units > MAX_SUPPLY:
        raise ConfigError(f"{text!r} tokens is more than the maximum supply")
    return int(units)


def format_tokens(units: int) -> str:
    """``units`` as tokens without trailing zeros: 1 500 000 000 → ``"1.5"``."""
    whole, frac = divmod(units, UNITS_PER_TOKEN)
    return f"{whole}.{frac:09d}".rstrip("0").rstrip(".") if frac else str(whole)


def _tokens_arg(text: str) -> int:
    try:
        return parse_tokens(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tokens_or_zero_arg(text: str) -> int:
    try:
        return parse_tokens(text, allow_zero=True)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _netuid_arg(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"a netuid is 0..65535, got {text!r}")
    return int(text)


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 86400 seconds")
    return value


def address_arg(text: str) -> str:
    """argparse type: an address with a valid checksum (a usage error otherwise)."""
    try:
        decode_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _u16_arg(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected 0..65535, got {text!r}")
    return int(text)


def _port_arg(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, got {text!r}")
    return int(text)


# --- shared options ---------------------------------------------------------------------------


def _chain_options() -> argparse.ArgumentParser:
    opts = argparse.ArgumentParser(add_help=False)
    group = opts.add_argument_group("chain")
    group.add_argument("--chain", metavar="URL|PATH",
                       help=f"a chain node URL (http://HOST:PORT) or a chain file run "
                            f"in-process for this command (default ${CHAIN_ENV})")
    group.add_argument("--dev", action="store_true",
                       help="with a chain file: create a dev chain there if it does not exist")
    group.add_argument("--block-time", type=_seconds_arg, metavar="S",
                       help="with a chain file: seconds between blocks (default 1 on dev "
                            "chains, 12 otherwise)")
    group.add_argument("--timeout", type=_seconds_arg, default=DEFAULT_WAIT, metavar="S",
                       help=f"seconds to wait for inclusion (default {DEFAULT_WAIT:g})")
    return opts


def _wallet_options() -> argparse.ArgumentParser:
    opts = argparse.ArgumentParser(add_help=False)
    group = opts.add_argument_group("wallet")
    group.add_argument("--wallet", default="default", metavar="NAME",
                       help="wallet name (default 'default'; see 'ensemble wallet list')")
    group.add_argument("--hotkey", default="default", metavar="NAME",
                       help="hotkey name in the wallet (default 'default')")
    group.add_argument("--wallet-path", type=Path, metavar="PATH",
                       help="wallet root (default $ENSEMBLE_WALLET_PATH or ~/.ensemble/wallets)")
    return opts


def _command(sub: _SubParsers, name: str, parents: Sequence[argparse.ArgumentParser],
             run: Callable[[argparse.Namespace], Coroutine[Any, Any, int]], *, summary: str,
             examples: str, notes: str = "") -> argparse.ArgumentParser:
    brief = summary[0].lower() + summary[1:].rstrip(".")  # '--help' lists read like the others
    parser = sub.add_parser(name, help=brief, description=summary, parents=list(parents),
                            epilog=f"examples:\n{examples}{notes}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(handler=partial(_run, run))
    return parser


def _run(run: Callable[[argparse.Namespace], Coroutine[Any, Any, int]],
         args: argparse.Namespace) -> int:
    return asyncio.run(run(args))


def _print_help(parser: argparse.ArgumentParser, _args: argparse.Namespace) -> int:
    parser.print_help()
    return EXIT_USAGE


_CHAIN_NOTE = """
--chain takes a node URL (start one with 'ensemble chain serve') or a chain file, which this
command then runs in-process (add --dev to create a dev chain). Only one process may own a
chain file: while a node serves it, use the node's URL.
"""


# --- registration -----------------------------------------------------------------------------


def register(subparsers: _SubParsers) -> None:
    """Add the ledger commands to the ``ensemble`` parser."""
    chain, wallet = _chain_options(), _wallet_options()
    _add_subnet(subparsers, chain, wallet)
    reg = _command(subparsers, "register", [chain, wallet], _register,
                   summary="Register the wallet's hotkey on a subnet (the coldkey pays the "
                           "burn).",
                   examples="  ensemble register --netuid 1 --wallet alice --hotkey miner1\n"
                            "  ensemble register --netuid 1 --max-burn 0.5 --chain "
                            "http://127.0.0.1:8700\n",
                   notes=_CHAIN_NOTE)
    _add_netuid(reg)
    reg.add_argument("--max-burn", type=_tokens_or_zero_arg, metavar="TOKENS",
                     help="most tokens to burn (default: the subnet's current burn, so a "
                          "rise meanwhile is refused)")
    serve = _command(subparsers, "serve", [chain, wallet], _serve,
                     summary="Publish where the wallet's hotkey serves on a subnet.",
                     examples="  ensemble serve --netuid 1 --host 203.0.113.7 --port 8091 "
                              "--wallet alice --hotkey miner1\n", notes=_CHAIN_NOTE)
    _add_netuid(serve)
    serve.add_argument("--host", required=True, help="public host name or IP address")
    serve.add_argument("--port", type=_port_arg, required=True, help="public TCP port")
    serve.add_argument("--protocol", type=_u16_arg, default=1, metavar="N",
                       help="wire protocol version (default 1)")
    _add_stake(subparsers, chain, wallet)
    transfer = _command(subparsers, "transfer", [chain, wallet], _transfer,
                        summary="Send tokens from the wallet's coldkey to an address.",
                        examples="  ensemble transfer --dest ens1... --amount 1.5 "
                                 "--wallet alice\n", notes=_CHAIN_NOTE)
    transfer.add_argument("--dest", type=address_arg, required=True, metavar="ADDRESS",
                          help="the receiving address (ens1...)")
    transfer.add_argument("--amount", type=_tokens_arg, required=True, metavar="TOKENS",
                          help="tokens to send, e.g. 1.5")
    faucet = _command(subparsers, "faucet", [chain, wallet], _faucet,
                      summary="Mint tokens on a dev chain (to the wallet's coldkey by default).",
                      examples="  ensemble faucet --chain ./dev.db --dev --wallet alice\n"
                               "  ensemble faucet --amount 500 --dest ens1... --chain "
                               "http://127.0.0.1:8700\n",
                      notes="\nDev chains only; needs no password (a throwaway key signs)."
                            + _CHAIN_NOTE)
    faucet.add_argument("--amount", type=_tokens_arg, metavar="TOKENS",
                        default=parse_tokens(DEFAULT_FAUCET_TOKENS),
                        help=f"tokens to mint (default {DEFAULT_FAUCET_TOKENS})")
    faucet.add_argument("--dest", type=address_arg, metavar="ADDRESS",
                        help="receiving address (default: the wallet's coldkey)")
    metagraph = _command(subparsers, "metagraph", [chain, wallet], _metagraph,
                         summary="Show a subnet's neurons: stake, epoch outputs, endpoints.",
                         examples="  ensemble metagraph --netuid 1 --chain "
                                  "http://127.0.0.1:8700\n", notes=_CHAIN_NOTE)
    _add_netuid(metagraph)
    account = _command(subparsers, "account", [chain, wallet], _account,
                       summary="Show an account: balance, sequence number, stake.",
                       examples="  ensemble account --wallet alice\n"
                                "  ensemble account --address ens1...\n", notes=_CHAIN_NOTE)
    account.add_argument("--address", type=address_arg, metavar="ADDRESS",
                         help="any address (default: the wallet's coldkey)")


def _add_netuid(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--netuid", type=_netuid_arg, required=True, metavar="N",
                        help="the subnet")


def _add_subnet(sub: _SubParsers, chain: argparse.ArgumentParser,
                wallet: argparse.ArgumentParser) -> None:
    group = sub.add_parser("subnet", help="create, list, show and configure subnets",
                           description="Subnets: create one (burns the lock cost), list them, "
                                       "show one, change its hyperparameters.",
                           epilog="examples:\n  ensemble subnet create --wallet alice\n"
                                  "  ensemble subnet list\n  ensemble subnet show --netuid 1\n"
                                  "  ensemble subnet set --netuid 1 tempo=100 "
                                  "weights_rate_limit=0\n" + _CHAIN_NOTE,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    group.set_defaults(handler=partial(_print_help, group))
    inner = group.add_subparsers(dest="subnet_command", metavar="SUBCOMMAND")
    create = _command(inner, "create", [chain, wallet], _subnet_create,
                      summary="Create a subnet owned by the wallet's coldkey.",
                      examples="  ensemble subnet create --wallet alice\n"
                               "  ensemble subnet create --max-lock-cost 100\n",
                      notes="\nThe lock cost (a network parameter, 100 tokens by default) is "
                            "burned.\n")
    create.add_argument("--max-lock-cost", type=_tokens_or_zero_arg, metavar="TOKENS",
                        default=MAX_SUPPLY,
                        help="refuse if the lock cost is above this (default: no limit)")
    _command(inner, "list", [chain, wallet], _subnet_list, summary="List every subnet.",
             examples="  ensemble subnet list --chain http://127.0.0.1:8700\n")
    show = _command(inner, "show", [chain, wallet], _subnet_show,
                    summary="Show one subnet and its hyperparameters with their bounds.",
                    examples="  ensemble subnet show --netuid 1\n")
    _add_netuid(show)
    names = ", ".join(spec.name for spec in HYPERPARAM_SPECS if spec.owner_settable)
    setter = _command(inner, "set", [chain, wallet], _subnet_set,
                      summary="Change hyperparameters of a subnet the wallet's coldkey owns.",
                      examples="  ensemble subnet set --netuid 1 tempo=100\n"
                               "  ensemble subnet set --netuid 1 commit_reveal=true "
                               "reveal_period=2\n",
                      notes=f"\nowner-settable names: {names}.\nBooleans are true/false; "
                            "burns are in base units (1 token = 10^9).\n")
    _add_netuid(setter)
    setter.add_argument("changes", nargs="+", metavar="NAME=VALUE", help="changes to make")


def _add_stake(sub: _SubParsers, chain: argparse.ArgumentParser,
               wallet: argparse.ArgumentParser) -> None:
    group = sub.add_parser("stake", help="stake tokens on a hotkey, or take them back",
                           description="Move tokens between the coldkey's balance and its "
                                       "stake on a hotkey.",
                           epilog="examples:\n  ensemble stake add --amount 100 --wallet alice "
                                  "--hotkey validator\n"
                                  "  ensemble stake remove --amount 25.5 --wallet alice "
                                  "--hotkey validator\n" + _CHAIN_NOTE,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    group.set_defaults(handler=partial(_print_help, group))
    inner = group.add_subparsers(dest="stake_command", metavar="SUBCOMMAND")
    for name, run, summary in (
            ("add", _stake_add, "Stake tokens of the coldkey's balance on a hotkey."),
            ("remove", _stake_remove, "Return staked tokens to the coldkey's balance.")):
        parser = _command(inner, name, [chain, wallet], run, summary=summary,
                          examples=f"  ensemble stake {name} --amount 10 --wallet alice\n"
                                   f"  ensemble stake {name} --amount 10 --hotkey-address "
                                   "ens1...\n")
        parser.add_argument("--amount", type=_tokens_arg, required=True, metavar="TOKENS",
                            help="tokens, e.g. 10 or 0.25")
        parser.add_argument("--hotkey-address", type=address_arg, metavar="ADDRESS",
                            help="the hotkey (default: the wallet's --hotkey); another "
                                 "coldkey's registered hotkey delegates")


# --- keys -------------------------------------------------------------------------------------


def wallet_of(args: argparse.Namespace) -> Wallet:
    """The wallet named by --wallet (under --wallet-path or the default root); must exist."""
    root = args.wallet_path or default_wallet_root(os.environ)
    wallet = Wallet(root, args.wallet)
    if not wallet.exists():
        raise IdentityError(f"wallet '{wallet.name}' not found under {root}; create it with: "
                            f"ensemble wallet create {wallet.name}")
    return wallet


def read_password(what: str) -> str:
    """The password from $ENSEMBLE_PASSWORD, else asked on the terminal (ConfigError if none)."""
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    try:
        return getpass.getpass(f"Password for {what}: ")
    except EOFError:
        raise ConfigError(f"no password given; run in a terminal or set ${PASSWORD_ENV}") from None


def coldkey_of(args: argparse.Namespace) -> Keypair:
    """The wallet's coldkey, unlocked with $ENSEMBLE_PASSWORD or a prompt."""
    wallet = wallet_of(args)
    return wallet.coldkey(read_password(f"the coldkey of wallet '{wallet.name}'"))


def hotkey_of(args: argparse.Namespace) -> Keypair:
    """The wallet's --hotkey, asking for a password only if it is encrypted."""
    wallet = wallet_of(args)
    password = (read_password(f"hotkey '{args.hotkey}'") if wallet.hotkey_encrypted(args.hotkey)
                else None)
    return wallet.hotkey(args.hotkey, password)


# --- the chain --------------------------------------------------------------------------------


def chain_spec(args: argparse.Namespace) -> str:
    """The --chain value, else $ENSEMBLE_CHAIN (ConfigError if neither is set)."""
    spec: str = args.chain or os.environ.get(CHAIN_ENV, "")
    if not spec:
        raise ConfigError(f"no chain given: pass --chain http://HOST:PORT or --chain PATH, or "
                          f"set ${CHAIN_ENV}")
    return spec


@asynccontextmanager
async def _ledger(args: argparse.Namespace) -> AsyncIterator[Ledger]:
    async with open_ledger(chain_spec(args), dev=args.dev,
                           block_time=args.block_time) as ledger:
        yield ledger


async def _submit(ledger: Ledger, args: argparse.Namespace, signer: Keypair,
                  build: Callable[[TxBuilder, int], Tx]) -> int:
    """Sign with the signer's next sequence number, submit, wait, print the outcome."""
    builder = TxBuilder(signer, await ledger.chain_id())
    try:
        tx = build(builder, (await ledger.account(signer.address)).next_nonce)
        receipt = await ledger.submit(tx)
        outcome = await ledger.wait_for_tx(receipt.tx_hash, args.timeout)
    except TxRejected as exc:
        return _rejected(exc.reason, exc.message)
    except WaitTimeout:
        print(f"error: not included within {args.timeout:g} s; it may still be: check the "
              "account before retrying", file=sys.stderr)
        return EXIT_FAILURE
    return _report(outcome, tx)


def _rejected(reason: Reason | None, message: str) -> int:
    code = reason.value if reason is not None else "rejected"
    print(f"rejected: {code.replace('_', ' ')}: {message}", file=sys.stderr)
    advice = ADVICE.get(reason) if reason is not None else None
    if advice:
        print(f"  {advice}", file=sys.stderr)
    return EXIT_FAILURE


def _report(outcome: TxOutcome, tx: Tx) -> int:
    if not outcome.applied:
        return _rejected(outcome.reason, outcome.message)
    print(f"included in block {outcome.height} (tx {tx.hash.hex()})")
    for event in outcome.events:
        print(f"  {describe_event(event)}")
    return EXIT_OK


_tok = format_tokens
#: One human line per event kind; kinds without an entry print their fields.
_DESCRIBE: dict[type[ev.Event], Callable[[Any], str]] = {
    ev.Transferred: lambda e: f"transferred {_tok(e.amount)} tokens from {e.source} to {e.dest}",
    ev.FaucetPaid: lambda e: f"faucet paid {_tok(e.amount)} tokens to {e.dest}",
    ev.Staked: lambda e: f"staked {_tok(e.amount)} tokens on {e.hotkey}",
    ev.Unstaked: lambda e: f"unstaked {_tok(e.amount)} tokens from {e.hotkey}",
    ev.SubnetCreated: lambda e: (f"created subnet {e.netuid} owned by {e.owner} "
                                 f"(burned {_tok(e.lock_cost)} tokens)"),
    ev.HyperparamsSet: lambda e: f"subnet {e.netuid}: set {', '.join(e.names)}",
    ev.Registered: lambda e: (f"registered {e.hotkey} as uid {e.uid} on subnet {e.netuid} "
                              f"(burned {_tok(e.burn)} tokens)"),
    ev.Pruned: lambda e: f"pruned {e.hotkey} from uid {e.uid} of subnet {e.netuid}",
    ev.Served: lambda e: (f"uid {e.uid} of subnet {e.netuid} serves at {e.host}:{e.port} "
                          f"(protocol {e.protocol})"),
}


def describe_event(event: ev.Event) -> str:
    """One human line for an event; money in tokens."""
    describe = _DESCRIBE.get(type(event))
    if describe is not None:
        return describe(event)
    values = ", ".join(f"{f.name}={getattr(event, f.name)}"
                       for f in fields(event))  # type: ignore[arg-type]  # events are dataclasses
    return f"{event.KIND}: {values}"


async def _subnet_or_explain(ledger: Ledger, netuid: int) -> Any:
    try:
        return await ledger.subnet(netuid)
    except NoSuchItemError:
        raise NoSuchItemError(f"there is no subnet {netuid}; list the subnets with "
                              "'ensemble subnet list'") from None


# --- commands ---------------------------------------------------------------------------------


async def _subnet_create(args: argparse.Namespace) -> int:
    coldkey = coldkey_of(args)
    async with _ledger(args) as ledger:
        return await _submit(ledger, args, coldkey, lambda b, n: b.create_subnet(
            max_lock_cost=args.max_lock_cost, nonce=n))


async def _subnet_list(args: argparse.Namespace) -> int:
    async with _ledger(args) as ledger:
        subnets = await ledger.subnets()
    if not subnets:
        print("no subnets yet; create one with 'ensemble subnet create'")
        return EXIT_OK
    from rich.table import Table  # noqa: PLC0415 - rich only for table output

    table = Table(title="subnets")
    for header in ("netuid", "owner", "neurons", "burn", "tempo", "epochs", "next epoch",
                   "pending emission"):
        table.add_column(header, justify="left" if header == "owner" else "right")
    for s in subnets:
        table.add_row(str(s.netuid), s.owner, str(s.neurons), format_tokens(s.burn),
                      str(s.hyperparams.tempo), str(s.epochs_run), str(s.next_epoch_block),
                      format_tokens(s.pending_emission))
    _console().print(table)
    return EXIT_OK


async def _subnet_show(args: argparse.Namespace) -> int:
    async with _ledger(args) as ledger:
        info = await _subnet_or_explain(ledger, args.netuid)
    print(f"subnet {info.netuid}")
    for label, value in (
            ("owner", info.owner), ("created at block", info.created_at),
            ("neurons", info.neurons), ("registration burn", f"{format_tokens(info.burn)} tokens"),
            ("pending emission", f"{format_tokens(info.pending_emission)} tokens"),
            ("epochs run", info.epochs_run), ("last epoch block", info.last_epoch_block),
            ("next epoch block", info.next_epoch_block)):
        print(f"  {label:<18} {value}")
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"hyperparameters of subnet {info.netuid}")
    for header in ("name", "value", "bounds", "settable by owner"):
        table.add_column(header)
    for spec in HYPERPARAM_SPECS:
        table.add_row(spec.name, _show_value(getattr(info.hyperparams, spec.name)),
                      f"{spec.low} .. {spec.high}", "yes" if spec.owner_settable else "no")
    _console().print(table)
    return EXIT_OK


def _show_value(value: HyperparamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def parse_change(text: str) -> tuple[str, HyperparamValue]:
    """``NAME=VALUE`` typed per :data:`HYPERPARAM_SPECS` (bounds are checked later).

    Raises:
        ConfigError: no ``=``, an unknown or network-level name, or a value of another type.
    """
    name, sep, raw = text.partition("=")
    name, raw = name.strip(), raw.strip()
    if not sep or not name or not raw:
        raise ConfigError(f"write changes as NAME=VALUE, got {text!r}")
    try:
        spec = spec_of(name)
    except HyperparamError:
        known = ", ".join(s.name for s in HYPERPARAM_SPECS if s.owner_settable)
        raise ConfigError(f"unknown hyperparameter {name!r}; owner-settable ones: "
                          f"{known}") from None
    if not spec.owner_settable:
        raise ConfigError(f"{name} is a network-level parameter: no subnet owner can change it")
    if spec.kind is bool:
        lowered = raw.lower()
        if lowered not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            raise ConfigError(f"{name} is true or false, got {raw!r}")
        return name, lowered in ("true", "yes", "on", "1")
    try:
        return name, int(raw) if spec.kind is int else float(Decimal(raw))
    except (ValueError, InvalidOperation):
        raise ConfigError(f"{name} is {'an integer' if spec.kind is int else 'a number'}, "
                          f"got {raw!r}") from None


async def _subnet_set(args: argparse.Namespace) -> int:
    changes = dict(parse_change(text) for text in args.changes)
    coldkey = coldkey_of(args)
    async with _ledger(args) as ledger:
        info = await _subnet_or_explain(ledger, args.netuid)
        try:
            info.hyperparams.with_changes(changes)  # refuse out-of-bounds values before signing
        except HyperparamError as exc:
            raise ConfigError(f"invalid hyperparameters: {exc}") from None
        if info.owner != coldkey.address:
            print(f"note: subnet {args.netuid} is owned by {info.owner}, not this coldkey; "
                  "the chain will refuse the change", file=sys.stderr)
        return await _submit(ledger, args, coldkey, lambda b, n: b.set_hyperparams(
            args.netuid, changes, nonce=n))


async def _register(args: argparse.Namespace) -> int:
    coldkey, hotkey = coldkey_of(args), hotkey_of(args)
    async with _ledger(args) as ledger:
        info = await _subnet_or_explain(ledger, args.netuid)
        max_burn = info.burn if args.max_burn is None else args.max_burn
        return await _submit(ledger, args, coldkey, lambda b, n: b.register(
            args.netuid, hotkey, max_burn=max_burn, nonce=n))


async def _serve(args: argparse.Namespace) -> int:
    hotkey = hotkey_of(args)
    async with _ledger(args) as ledger:
        await _subnet_or_explain(ledger, args.netuid)
        return await _submit(ledger, args, hotkey, lambda b, n: b.serve(
            args.netuid, args.host, args.port, args.protocol, nonce=n))


def _stake_target(args: argparse.Namespace) -> str:
    if args.hotkey_address:
        return str(args.hotkey_address)
    return wallet_of(args).hotkey_address(args.hotkey)


async def _stake_add(args: argparse.Namespace) -> int:
    target, coldkey = _stake_target(args), coldkey_of(args)
    async with _ledger(args) as ledger:
        return await _submit(ledger, args, coldkey, lambda b, n: b.stake(
            target, args.amount, nonce=n))


async def _stake_remove(args: argparse.Namespace) -> int:
    target, coldkey = _stake_target(args), coldkey_of(args)
    async with _ledger(args) as ledger:
        return await _submit(ledger, args, coldkey, lambda b, n: b.unstake(
            target, args.amount, nonce=n))


async def _transfer(args: argparse.Namespace) -> int:
    coldkey = coldkey_of(args)
    async with _ledger(args) as ledger:
        return await _submit(ledger, args, coldkey, lambda b, n: b.transfer(
            args.dest, args.amount, nonce=n))


async def _faucet(args: argparse.Namespace) -> int:
    dest = args.dest or wallet_of(args).coldkey_address()
    # Any key may sign a faucet transaction; a fresh one needs no password and no nonce
    # bookkeeping (its sequence number is 0).
    signer = Keypair.generate()
    async with _ledger(args) as ledger:
        return await _submit(ledger, args, signer, lambda b, n: b.faucet(
            dest, args.amount, nonce=n))


async def _account(args: argparse.Namespace) -> int:
    address = args.address or wallet_of(args).coldkey_address()
    async with _ledger(args) as ledger:
        info = await ledger.account(address)
    print(f"account    {info.address}")
    print(f"balance    {format_tokens(info.balance)} tokens")
    print(f"sequence   {info.nonce} (next {info.next_nonce})")
    if info.owner is not None:
        print(f"hotkey of  {info.owner}")
    if info.staked_on:
        print(f"staked on it (all coldkeys)  {format_tokens(info.staked_on)} tokens")
    for hotkey, units in info.stakes:
        print(f"stake      {format_tokens(units)} tokens on {hotkey}")
    return EXIT_OK


async def _metagraph(args: argparse.Namespace) -> int:
    async with _ledger(args) as ledger:
        await _subnet_or_explain(ledger, args.netuid)
        mg = await ledger.metagraph(args.netuid)
    _console().print(metagraph_table(mg))
    return EXIT_OK


def short_address(address: str) -> str:
    """``ens1abcdef…wxyz``: enough to tell keys apart in a table."""
    return f"{address[:10]}…{address[-4:]}" if len(address) > 16 else address


def metagraph_table(mg: Metagraph) -> Any:
    """A :class:`rich.table.Table` of one metagraph, one row per uid."""
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"subnet {mg.netuid} at block {mg.block}: {mg.n} neurons")
    headers = ("uid", "hotkey", "stake", "incentive", "dividends", "trust", "consensus",
               "validator_trust", "permit", "emission", "last_update", "active", "endpoint")
    for header in headers:
        table.add_column(header, justify="left" if header in ("hotkey", "endpoint")
                         else "right", no_wrap=True)
    for i in range(mg.n):
        endpoint = mg.endpoints[i]
        table.add_row(
            str(int(mg.uids[i])), short_address(mg.hotkeys[i]),
            format_tokens(int(mg.stake[i])),
            *(f"{float(col[i]):.4f}" for col in (mg.incentive, mg.dividends, mg.trust,
                                                 mg.consensus, mg.validator_trust)),
            "yes" if mg.validator_permit[i] else "no", format_tokens(int(mg.emission[i])),
            str(int(mg.last_update[i])), "yes" if mg.active[i] else "no",
            "-" if endpoint is None else f"{endpoint.host}:{endpoint.port}")
    return table


def _console() -> Any:
    from rich.console import Console  # noqa: PLC0415

    # Off a terminal (pipes, tests), rich would wrap at 80 columns; a wide table stays readable.
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)
