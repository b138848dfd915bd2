"""``ensemble wallet``: create and inspect wallets (one coldkey, named hotkeys).

This layer, and only this layer, reads the environment: ``ENSEMBLE_WALLET_PATH`` (wallet root,
below ``--wallet-path``) and ``ENSEMBLE_PASSWORD`` (used instead of prompting). Everything else
is done by :mod:`protocol.wallet`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

from protocol.errors import ConfigError, IdentityError, KeyfileExistsError
from protocol.keyfile import MAX_LOG2_N, MIN_LOG2_N, KdfParams
from protocol.keys import SEED_SIZE
from protocol.wallet import Wallet, default_wallet_root, list_wallets

PASSWORD_ENV = "ENSEMBLE_PASSWORD"  # noqa: S105 - the variable's name, not a password
#: log2 of scrypt's n. 15 (32 MiB, ~0.1 s) is the library default; tests pass 10 to stay fast.
DEFAULT_KDF_COST = 15
#: With r=8, 2^18 is where the key-file reader's memory limit (256 MiB) stops.
MAX_KDF_COST = min(MAX_LOG2_N, 18)
EXIT_OK = 0
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]

_GROUP_EPILOG = """\
examples:
  ensemble wallet create alice --hotkey           coldkey + encrypted hotkey 'default'
  ensemble wallet create alice --no-password-hotkey   same, hotkey stored unencrypted
  ensemble wallet new-hotkey alice miner2 --no-password
  ensemble wallet list
  ensemble wallet show alice --json

Wallets live in ~/.ensemble/wallets unless --wallet-path or $ENSEMBLE_WALLET_PATH says
otherwise. Passwords are prompted for, or taken from $ENSEMBLE_PASSWORD when it is set.
"""


# --- argument types (argparse turns ArgumentTypeError into a usage error, exit 2) -----------


def _kdf_cost(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not MIN_LOG2_N <= value <= MAX_KDF_COST:
        raise argparse.ArgumentTypeError(
            f"must be from {MIN_LOG2_N} to {MAX_KDF_COST}, got {value}")
    return value


def _seed_hex(text: str) -> bytes:
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not hexadecimal") from None
    if len(seed) != SEED_SIZE:
        raise argparse.ArgumentTypeError(
            f"a seed is {SEED_SIZE} bytes ({2 * SEED_SIZE} hex digits), got {len(seed)} bytes")
    return seed


# --- registration ---------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``wallet`` command group to the ``ensemble`` parser."""
    group = subparsers.add_parser(
        "wallet", help="create and inspect wallets (coldkey + hotkeys)",
        description="A wallet is one coldkey, which owns funds and stake and signs ledger\n"
                    "operations on them (always encrypted), and named hotkeys, which sign\n"
                    "network traffic and weights.",
        epilog=_GROUP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    group.set_defaults(handler=partial(_print_help, group))
    sub = group.add_subparsers(dest="wallet_command", metavar="SUBCOMMAND")
    common = _common_options()
    _add_create(sub, common)
    _add_list(sub, common)
    _add_show(sub, common)
    _add_new_hotkey(sub, common)


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--wallet-path", type=Path, metavar="PATH",
        help="wallet root directory (default: $ENSEMBLE_WALLET_PATH or ~/.ensemble/wallets)")
    return common


def _key_options(key: str) -> argparse.ArgumentParser:
    keys = argparse.ArgumentParser(add_help=False)
    keys.add_argument("--seed-hex", type=_seed_hex, metavar="HEX",
                      help=f"DEV ONLY: give the {key} a known 32-byte seed (64 hex digits) "
                           "instead of a random one; never use for real funds")
    # Hidden: lowering it weakens the file against password guessing. Tests use 10.
    keys.add_argument("--kdf-cost", type=_kdf_cost, default=DEFAULT_KDF_COST,
                      help=argparse.SUPPRESS)
    return keys


def _subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
                parents: Sequence[argparse.ArgumentParser], handler: Handler, *, summary: str,
                examples: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=summary, description=summary, parents=list(parents),
                            epilog=f"examples:\n{examples}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(handler=handler)
    return parser


def _add_create(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    parser = _subcommand(
        sub, "create", [common, _key_options("coldkey")], _cmd_create,
        summary="Create a wallet: an encrypted coldkey and, optionally, a first hotkey.",
        examples="  ensemble wallet create alice\n"
        "  ensemble wallet create alice --hotkey              also hotkey 'default'\n"
        "  ensemble wallet create alice --hotkey miner1 --no-password-hotkey\n")
    parser.add_argument("name", metavar="NAME", help="wallet name (letters, digits, _ . -)")
    parser.add_argument("--hotkey", nargs="?", const="default", metavar="HOTKEY",
                        help="also create a hotkey with this name (default name: 'default')")
    parser.add_argument("--no-password-hotkey", action="store_true",
                        help="store that hotkey unencrypted so a node can start unattended "
                             "(implies --hotkey); the coldkey is always encrypted")


def _add_list(sub: argparse._SubParsersAction[argparse.ArgumentParser],
              common: argparse.ArgumentParser) -> None:
    parser = _subcommand(
        sub, "list", [common], _cmd_list,
        summary="List wallets: name, coldkey address and number of hotkeys. Needs no password.",
        examples="  ensemble wallet list\n"
                 "  ensemble wallet list --json --wallet-path /srv/wallets\n")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def _add_show(sub: argparse._SubParsersAction[argparse.ArgumentParser],
              common: argparse.ArgumentParser) -> None:
    parser = _subcommand(
        sub, "show", [common], _cmd_show,
        summary="Show a wallet's coldkey address and its hotkeys. Needs no password.",
        examples="  ensemble wallet show alice\n  ensemble wallet show alice --json\n")
    parser.add_argument("name", metavar="NAME", help="wallet name")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def _add_new_hotkey(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                    common: argparse.ArgumentParser) -> None:
    parser = _subcommand(
        sub, "new-hotkey", [common, _key_options("hotkey")], _cmd_new_hotkey,
        summary="Add a hotkey to an existing wallet, encrypted unless --no-password is given.",
        examples="  ensemble wallet new-hotkey alice miner2\n"
        "  ensemble wallet new-hotkey alice validator --no-password\n")
    parser.add_argument("wallet", metavar="WALLET", help="wallet name")
    parser.add_argument("name", metavar="NAME", help="hotkey name (letters, digits, _ . -)")
    parser.add_argument("--no-password", action="store_true",
                        help="store the hotkey unencrypted (anyone who can read the file can "
                             "sign as it) so a node can start unattended")


# --- helpers --------------------------------------------------------------------------------


def _print_help(parser: argparse.ArgumentParser, _args: argparse.Namespace) -> int:
    parser.print_help()
    return EXIT_USAGE


def _root(args: argparse.Namespace, env: Mapping[str, str]) -> Path:
    path: Path | None = args.wallet_path
    return path if path is not None else default_wallet_root(env)


def _path_hint(args: argparse.Namespace) -> str:
    return f" --wallet-path {args.wallet_path}" if args.wallet_path is not None else ""


def _existing_wallet(args: argparse.Namespace, name: str) -> Wallet:
    wallet = Wallet(_root(args, os.environ), name)
    if not wallet.exists():
        raise IdentityError(
            f"wallet '{name}' not found under {wallet.root}; "
            f"create it with: ensemble wallet create {name}{_path_hint(args)}")
    return wallet


def _new_password(what: str, env: Mapping[str, str]) -> str:
    """Return a new password for ``what``: from $ENSEMBLE_PASSWORD, else prompted twice."""
    if PASSWORD_ENV in env:
        if not env[PASSWORD_ENV]:
            raise ConfigError(f"${PASSWORD_ENV} is set but empty; set a password or unset it")
        return env[PASSWORD_ENV]
    try:
        first = getpass.getpass(f"New password for {what}: ")
        if not first:
            raise ConfigError("the password must not be empty")
        if getpass.getpass("Repeat the password: ") != first:
            raise ConfigError("the passwords do not match; nothing was written")
    except EOFError:
        raise ConfigError(
            f"no password given; run in a terminal or set ${PASSWORD_ENV}") from None
    return first


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [headers, *rows]]
    return "\n".join(lines)


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


# --- commands -------------------------------------------------------------------------------


def _cmd_create(args: argparse.Namespace) -> int:
    root = _root(args, os.environ)
    wallet = Wallet(root, args.name)
    hotkey_name: str | None = args.hotkey or ("default" if args.no_password_hotkey else None)
    if wallet.exists():
        raise KeyfileExistsError(
            f"wallet '{wallet.name}' already exists at {wallet.path}; choose another name")
    if hotkey_name is not None:
        wallet.hotkey_path(hotkey_name)  # validate the name before asking for passwords
    # Ask for every password before writing anything, so a typo leaves no half-made wallet.
    cold_password = _new_password(f"coldkey of wallet '{wallet.name}'", os.environ)
    hot_password = (None if hotkey_name is None or args.no_password_hotkey
                    else _new_password(f"hotkey '{hotkey_name}'", os.environ))
    kdf = KdfParams(n=2**args.kdf_cost)
    coldkey = wallet.create(cold_password, kdf, seed=args.seed_hex)
    print(f"created wallet '{wallet.name}' in {wallet.path}")
    print(f"  coldkey  {coldkey.address}")
    if hotkey_name is not None:
        hotkey = wallet.new_hotkey(hotkey_name, hot_password, kdf)
        print(f"  hotkey   {hotkey_name}  {hotkey.address}"
              f"  ({'unencrypted' if hot_password is None else 'encrypted'})")
    print(f"Back up {wallet.coldkey_path} and remember its password: "
          "neither can be recovered if lost.")
    return EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    root = _root(args, os.environ)
    wallets = [Wallet(root, name) for name in list_wallets(root)]
    # One damaged wallet must not hide the others: its row says what is wrong instead.
    rows = [(w.name, _or_problem(w.coldkey_address), len(w.hotkey_names())) for w in wallets]
    if args.json:
        _print_json([{"name": name, "coldkey": address, "hotkeys": count}
                     for name, address, count in rows])
    elif not rows:
        print(f"no wallets under {root}; create one with: "
              f"ensemble wallet create NAME{_path_hint(args)}")
    else:
        print(_table(("WALLET", "COLDKEY", "HOTKEYS"),
                     [(name, address, str(count)) for name, address, count in rows]))
    return EXIT_OK


def _or_problem(read: Callable[[], str]) -> str:
    """An address read from a public file, or what is wrong with that file."""
    try:
        return read()
    except IdentityError as exc:
        return f"unreadable ({exc})"


def _cmd_show(args: argparse.Namespace) -> int:
    wallet = _existing_wallet(args, args.name)
    hotkeys = [(name, _or_problem(partial(wallet.hotkey_address, name)),
                wallet.hotkey_encrypted(name)) for name in wallet.hotkey_names()]
    if args.json:
        _print_json({
            "name": wallet.name, "path": str(wallet.path),
            "coldkey": _or_problem(wallet.coldkey_address),
            "hotkeys": [{"name": name, "address": address, "encrypted": encrypted}
                        for name, address, encrypted in hotkeys]})
        return EXIT_OK
    print(f"wallet   {wallet.name}  ({wallet.path})")
    print(f"coldkey  {_or_problem(wallet.coldkey_address)}")
    if not hotkeys:
        print(f"no hotkeys; add one with: ensemble wallet new-hotkey {wallet.name} NAME"
              f"{_path_hint(args)}")
        return EXIT_OK
    print()
    print(_table(("HOTKEY", "ADDRESS", "ENCRYPTED"),
                 [(name, address, "yes" if encrypted else "no")
                  for name, address, encrypted in hotkeys]))
    return EXIT_OK


def _cmd_new_hotkey(args: argparse.Namespace) -> int:
    wallet = _existing_wallet(args, args.wallet)
    if wallet.has_hotkey(args.name):  # fail before asking for a password
        raise KeyfileExistsError(
            f"hotkey '{args.name}' already exists in wallet '{wallet.name}' "
            f"({wallet.hotkey_path(args.name)})")
    password = None if args.no_password else _new_password(f"hotkey '{args.name}'", os.environ)
    pair = wallet.new_hotkey(args.name, password, KdfParams(n=2**args.kdf_cost),
                             seed=args.seed_hex)
    kind = "encrypted" if password is not None else "unencrypted"
    print(f"created hotkey '{args.name}' in wallet '{wallet.name}': {pair.address} ({kind})")
    if password is None:
        print(f"Anyone who can read {wallet.hotkey_path(args.name)} can sign as this hotkey.")
    return EXIT_OK

