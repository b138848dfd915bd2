"""``ensemble localnet start | status | stop``: a whole local network in the background.

``start`` runs the chain node, the miners, the validators and (where this checkout has it) the
router gateway, each as its own process that outlives the command, and writes
``STATE_DIR/processes.json`` (pids, URLs, logs); ``status`` shows what runs and where; ``stop``
stops everything the manifest names. The orchestration is :mod:`protocol.localnet`; this layer
reads the environment and prints.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from protocol.errors import ConfigError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
#: The coldkeys of a local network are throwaway dev keys; $ENSEMBLE_PASSWORD overrides this.
DEFAULT_PASSWORD = "ensemblenet-localnet"  # noqa: S105 - a documented dev-only password

_EPILOG = """\
examples:
  ensemble localnet start                        graded tiny models, a garbage miner, 2 validators
  ensemble localnet start --echo-miners 3 --validators 1     no torch: starts in seconds
  ensemble localnet status
  ensemble localnet stop

State (chain file, wallets, validator state, logs/, processes.json) lives in --state-dir
(default ~/.ensemble/localnet). Other programs connect with --chain URL (see 'status').
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``localnet`` command group to the ``ensemble`` parser."""
    group = subparsers.add_parser(
        "localnet", help="run a whole local network in the background",
        description="Run a local network (chain, miners, validators, gateway) in the "
        "background, show it, stop it.", epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    group.set_defaults(handler=partial(_print_help, group))
    sub = group.add_subparsers(dest="localnet_command", metavar="SUBCOMMAND")
    start = sub.add_parser("start", help="start the network in the background",
                           description="Start the network; return once every service is ready.")
    _state_dir_option(start)
    start.add_argument("--echo-miners", type=int, default=0, metavar="N",
                       help="N echo-math miners instead of the graded models (no torch)")
    start.add_argument("--validators", type=int, default=2, help="validators (default 2)")
    start.add_argument("--block-time", type=float, default=0.5,
                       help="seconds between blocks (default 0.5)")
    start.add_argument("--no-gateway", action="store_true", help="do not start the gateway")
    start.set_defaults(handler=_cmd_start)
    status = sub.add_parser("status", help="show what runs and where")
    _state_dir_option(status)
    status.set_defaults(handler=_cmd_status)
    stop = sub.add_parser("stop", help="stop every process of the network")
    _state_dir_option(stop)
    stop.set_defaults(handler=_cmd_stop)


def _print_help(parser: argparse.ArgumentParser, _args: argparse.Namespace) -> int:
    parser.print_help()
    return EXIT_USAGE


def _state_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="where the network keeps its files "
                        "(default $ENSEMBLE_LOCALNET or ~/.ensemble/localnet)")


def _state_dir(args: argparse.Namespace) -> Path:
    chosen = args.state_dir or os.environ.get("ENSEMBLE_LOCALNET")
    return Path(chosen) if chosen else Path.home() / ".ensemble" / "localnet"


def _cmd_start(args: argparse.Namespace) -> int:
    from protocol.localnet import Manifest, echo_plan, graded_plan, running, start_network  # noqa: PLC0415

    state = _state_dir(args).resolve()
    manifest_path = state / "processes.json"
    if manifest_path.is_file():
        old = Manifest.read(manifest_path)
        if any(running(p) for p in old.processes):
            raise ConfigError(f"a local network already runs from {state}: "
                              "'ensemble localnet stop' first (or pick another --state-dir)")
    if args.validators < 0 or args.echo_miners < 0:
        raise ConfigError("--validators and --echo-miners must not be negative")
    # A fresh network each time: the old chain, wallets and state would not match new keys.
    # Only a directory a localnet made is ever deleted: --state-dir may name anything.
    if state.exists() and any(state.iterdir()) and not (
            (state / _MARKER).is_file() or manifest_path.is_file()):
        raise ConfigError(f"{state} is not empty and holds no local network; it is left "
                          "alone: pick an empty or new --state-dir")
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    (state / _MARKER).write_text("made by 'ensemble localnet start'; deleted by the next one\n")
    plan = (echo_plan(args.echo_miners, args.validators, args.block_time, router=True)
            if args.echo_miners else
            graded_plan(validators=args.validators, block_time=args.block_time))
    password = os.environ.get("ENSEMBLE_PASSWORD") or DEFAULT_PASSWORD
    # SIGTERM would otherwise end this process on the spot and orphan what it started: turn it
    # into an exception, so the clean-up below runs as it does for Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        network = start_network(plan, state, password=password, gateway=not args.no_gateway,
                                progress=lambda text: print(f"· {text}", flush=True))
    except BaseException as exc:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up
        failed = getattr(exc, "network", None)
        if failed is not None:
            failed.supervisor.stop_all()
            failed.save()
        if isinstance(exc, KeyboardInterrupt | _Terminated):
            print("interrupted: every process started has been stopped", file=sys.stderr)
            return 130 if isinstance(exc, KeyboardInterrupt) else 128 + signal.SIGTERM
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"local network running from {state}")
    print(f"  chain   {network.manifest.chain_url}   (--chain {network.manifest.chain_url} "
          f"--netuid {plan.netuid})")
    if network.manifest.gateway_url:
        print(f"  gateway {network.manifest.gateway_url}/v1")
    # The built-in password is shown so the wallets can be used; a user's own is never printed.
    shown = password if password == DEFAULT_PASSWORD else "your $ENSEMBLE_PASSWORD"
    print(f"  wallets {network.manifest.wallet_path}   (ENSEMBLE_PASSWORD={shown})")
    print(f"  logs    {state / 'logs'}")
    print("'ensemble localnet status' shows every process; 'ensemble localnet stop' stops them")
    return EXIT_OK


class _Terminated(BaseException):
    """SIGTERM arrived while the network was starting."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


#: The file that marks a state directory as a localnet's own (so the next start may delete it).
_MARKER = ".ensemble-localnet"


def _cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from protocol.localnet import Manifest, running  # noqa: PLC0415

    state = _state_dir(args)
    manifest = Manifest.read(state / "processes.json")
    table = Table(title=f"local network in {state} (chain {manifest.chain_url or '-'})")
    for col in ("process", "pid", "alive"):
        table.add_column(col)
    for col in ("URL", "log file"):  # never cut: people copy these
        table.add_column(col, overflow="fold")
    alive = 0
    for p in manifest.processes:
        up = running(p)
        alive += up
        table.add_row(p.name, str(p.pid), "[green]yes[/]" if up else "[red]no[/]", p.url or "-",
                      p.log)
    # Into a pipe or file, rich would assume 80 columns and fold the paths: print them whole.
    Console(highlight=False, width=None if sys.stdout.isatty() else 1000).print(table)
    print(f"{alive} of {len(manifest.processes)} processes alive")
    return EXIT_OK if alive == len(manifest.processes) else EXIT_FAILURE


def _cmd_stop(args: argparse.Namespace) -> int:
    from protocol.localnet import Manifest, running, stop_manifest  # noqa: PLC0415

    state = _state_dir(args)
    manifest = Manifest.read(state / "processes.json")
    for name, outcome in stop_manifest(manifest):
        print(f"{name:<20} {outcome}")
    left = [p.name for p in manifest.processes if running(p)]
    if left:
        print(f"still running: {', '.join(left)}", file=sys.stderr)
        return EXIT_FAILURE
    print("local network stopped; nothing left running")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``localnet`` alone (``python -m protocol.cli.localnet``), as ``ensemble`` would."""
    from protocol.errors import EnsembleError  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="ensemble")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(["localnet", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.handler(args))
    except EnsembleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
