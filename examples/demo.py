"""``make demo``: a miner in its own process, signed queries, and what was verified.

Stage 1 of the demo (the foundation): it starts ``ensemble miner echo`` as a subprocess with a
throwaway key, sends signed queries from a client, shows each verified receipt, then shows the
miner refusing a tampered request and a replay. It exits 0 when every claim held, 1 otherwise.
Ctrl-C at any moment stops the miner and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Sequence

import aiohttp
from rich.console import Console
from rich.table import Table

from miners.echo import EchoChunk, EchoRequest, EchoResponse
from protocol import envelope
from protocol.client import Client, Target
from protocol.keys import Keypair

console = Console(highlight=False)
READY_TIMEOUT_S = 30.0


def start_miner(seed: bytes) -> tuple[subprocess.Popen[str], str, str]:
    """Start the echo miner subprocess; return it with its URL and address once it listens."""
    cmd = [sys.executable, "-m", "protocol.cli.main", "miner", "echo", "--port", "0",
           "--dev-seed", seed.hex()]
    # Our own module with arguments we built: no untrusted input reaches the command line.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,  # noqa: S603
                            text=True)
    deadline = time.monotonic() + READY_TIMEOUT_S
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("listening on "):
            _, _, url, _, address = line.split()
            return proc, url, address
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("the miner did not start; run 'ensemble miner echo --dev-seed ...' "
                       "by hand to see why")


def stop(proc: subprocess.Popen[str]) -> None:
    """Terminate the miner and wait for it (bounded), killing it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def signed_queries(client: Client, target: Target) -> bool:
    """Send echo queries and a stream; print a table of verified receipts."""
    table = Table(title="signed queries (receipts verified against the miner's address)")
    for col in ("route", "answer", "caller seen by miner", "status", "receipt by", "latency"):
        table.add_column(col)
    ok = True
    for text in ("hello", "ensemble", "network"):
        result = await client.query(target, "echo", EchoRequest(text=text), EchoResponse)
        ok &= result.ok and result.response is not None and result.response.text == text
        table.add_row("echo", result.response.text if result.response else str(result.error),
                      _short(result.response.caller if result.response else "-"),
                      "200 ✓" if result.ok else "✗",
                      _short(result.receipt.miner_address) if result.receipt else "-",
                      f"{result.latency_s * 1000:.1f} ms")
    call = client.stream(target, "echo_stream", EchoRequest(text="tok", repeat=4), EchoChunk)
    chunks = [chunk.text async for chunk in call]
    ok &= call.receipt is not None and chunks == ["tok"] * 4
    table.add_row("echo_stream", " ".join(chunks), _short(client.address),
                  f"{call.receipt.status} ✓" if call.receipt else "✗",
                  _short(call.receipt.miner_address) if call.receipt else "-", "4 frames")
    console.print(table)
    return ok


async def attacks(caller: Keypair, target: Target) -> bool:
    """Show a tampered body and a replayed request being refused."""
    body = EchoRequest(text="pay me").encode()
    now = int(time.time() * 1000)
    header = envelope.RequestHeader("/v1/echo", caller.public_key.raw, target.public_key, 1, now,
                                    os.urandom(16), now + 10_000)
    headers = envelope.sign_request(caller, header, body)
    tampered = EchoRequest(text="pay ME").encode()
    table = Table(title="what the miner refuses")
    table.add_column("attempt")
    table.add_column("answer")
    ok = True
    async with aiohttp.ClientSession() as session:
        for name, data, want in (("body changed after signing", tampered, 401),
                                 ("original request", body, 200),
                                 ("the same request replayed", body, 401)):
            async with session.post(f"{target.url}/v1/echo", data=data, headers=headers) as resp:
                await resp.read()
                ok &= resp.status == want
                table.add_row(name, f"{resp.status} {'✓' if resp.status == want else '✗'}")
    console.print(table)
    return ok


def _short(address: str) -> str:
    return address[:10] + "…" + address[-4:] if len(address) > 16 else address


async def run() -> bool:
    """Run the demo; return whether every claim held."""
    miner_key, caller = Keypair(os.urandom(32)), Keypair(os.urandom(32))
    console.rule("Ensemblenet demo: the signed wire protocol")
    console.print("starting a miner in its own process …")
    proc, url, address = start_miner(miner_key.seed)
    try:
        console.print(f"miner {address} listening on {url}")
        target = Target(address, url)
        async with Client(caller) as client:
            console.print(f"client (caller) {client.address}")
            ok = await signed_queries(client, target)
        ok &= await attacks(caller, target)
    finally:
        stop(proc)
    console.print("miner stopped" + (f" (exit code {proc.returncode})"))
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``make demo``."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    try:
        ok = asyncio.run(run())
    except KeyboardInterrupt:
        console.print("interrupted: every process the demo started has been stopped")
        return 130
    console.print("[bold green]all checks passed[/]" if ok else "[bold red]a check failed[/]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
