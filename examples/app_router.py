"""An application built on the router library: one prompt in, a verified answer out.

What it shows: the whole of an application that asks a subnet's miners something is about a
dozen lines with :class:`router.Router`. The router reads the metagraph from the chain, picks
miners by consensus and live health, sends the prompt (``best``, ``weighted`` or ``ensemble``)
and returns a :class:`router.provenance.Completion` whose provenance names every miner that
answered, with signed receipts anyone can check later.

Miners answer registered callers only, so the signing hotkey must be registered on the subnet.
To use a dev seed as that hotkey, put it in a wallet and register it once::

    ensemble wallet create app
    ensemble wallet new-hotkey app router --no-password --seed-hex 0101...01
    ensemble faucet --chain ./chain.db --wallet app --amount 10        # dev chains only
    ensemble register --chain ./chain.db --netuid 1 --wallet app --hotkey router

Run it against a chain node or a dev chain file that has serving miners::

    python -m examples.app_router --chain ./chain.db --netuid 1 --dev-seed 0101...01 \\
        --prompt "12+34=" --strategy ensemble

(``--chain`` takes a node URL or a chain file path; a file is opened as an embedded chain, so
no other process may hold it.)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from protocol.errors import EnsembleError
from protocol.keys import Keypair
from protocol.ledger.interface import Ledger
from router import Router
from router.provenance import Completion


async def run(prompt: str, *, keypair: Keypair, netuid: int = 1, chain: str | None = None,
              ledger: Ledger | None = None, strategy: str = "best",
              max_tokens: int = 16) -> Completion:
    """Ask the subnet ``prompt`` and print the answer and who gave it.

    Give ``chain`` (a ``--chain`` value) or an open ``ledger`` (which stays open).
    """
    async with Router(chain=chain, ledger=ledger, netuid=netuid, keypair=keypair) as router:
        answer = await router.complete(prompt, strategy=strategy, max_tokens=max_tokens)
    print(f"answer: {answer.text!r}  (strategy {answer.provenance.strategy})")
    for miner in answer.provenance.answers:
        agreed = "" if miner.agreed is None else f"  agreed={miner.agreed}"
        print(f"  miner uid {miner.uid} {miner.hotkey}: {miner.text!r}{agreed}")
    return answer


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(prog="python -m examples.app_router",
                                     description="Ask a subnet's miners through the router.")
    parser.add_argument("--chain", required=True, help="chain node URL or chain file path")
    parser.add_argument("--netuid", type=int, default=1, help="the subnet (default 1)")
    parser.add_argument("--dev-seed", required=True, metavar="HEX",
                        help="32-byte hex seed of the (registered) signing hotkey")
    parser.add_argument("--prompt", default="12+34=", help="what to ask (default '12+34=')")
    parser.add_argument("--strategy", default="best", choices=("best", "weighted", "ensemble"))
    parser.add_argument("--max-tokens", type=int, default=16)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example; 0 on an answer, 1 on any error of ours (routing, configuration, an
    unreachable or busy chain), printed as one line."""
    args = parse_args(argv)
    try:
        keypair = Keypair(bytes.fromhex(args.dev_seed))
    except ValueError:
        print("--dev-seed must be 64 hex digits", file=sys.stderr)
        return 1
    try:
        asyncio.run(run(args.prompt, keypair=keypair, netuid=args.netuid, chain=args.chain,
                        strategy=args.strategy, max_tokens=args.max_tokens))
    except EnsembleError as exc:  # the root of every error Ensemblenet raises on purpose
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
