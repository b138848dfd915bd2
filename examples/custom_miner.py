"""Serve your own Hugging Face model as a miner, speaking the signed protocol.

What it shows: a miner is a :class:`miners.server.MinerServer` (signed requests in, signed
answers and receipts out, replay protection, rate limits, admission) plus the model routes
(``generate``, ``generate_stream``, ``info``) over a backend. ``load_backend`` turns a model
directory (a folder with ``config.json``, weights and tokenizer) into that backend.

Run it standalone (no chain needed; anyone may call it)::

    HF_HUB_OFFLINE=1 python -m examples.custom_miner --model models/tiny-add-q99 \\
        --port 8091 --dev-seed 0202...02

It prints ``listening on URL as ADDRESS``; query it with :class:`protocol.client.Client` and a
``Target(ADDRESS, URL)``. Ctrl-C or SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from miners.backends.registry import BackendOptions, load_backend
from miners.model_routes import add_model_routes
from miners.server import MinerServer, ServerConfig
from protocol.errors import ConfigError
from protocol.keys import Keypair


async def serve(model_dir: str, keypair: Keypair, *, host: str = "127.0.0.1", port: int = 0,
                netuid: int = 1, device: str = "cpu",
                stop: asyncio.Event | None = None) -> None:
    """Load ``model_dir`` and serve it until ``stop`` is set (or SIGINT/SIGTERM arrives)."""
    backend = load_backend(model_dir, BackendOptions(device=device))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with MinerServer(keypair, ServerConfig(host=host, port=port, netuid=netuid)) as server:
        add_model_routes(server, backend)
        print(f"listening on {server.url} as {server.address}", flush=True)
        await stop.wait()
    print("stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and serve; 1 on a bad seed or model directory."""
    parser = argparse.ArgumentParser(prog="python -m examples.custom_miner",
                                     description="Serve a Hugging Face model directory.")
    parser.add_argument("--model", required=True, metavar="DIR", help="model directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--netuid", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dev-seed", required=True, metavar="HEX",
                        help="32-byte hex seed of the miner's hotkey (development only)")
    args = parser.parse_args(argv)
    try:
        keypair = Keypair(bytes.fromhex(args.dev_seed))
        asyncio.run(serve(args.model, keypair, host=args.host, port=args.port,
                          netuid=args.netuid, device=args.device))
    except ValueError:
        print("--dev-seed must be 64 hex digits", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
