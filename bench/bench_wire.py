"""Wire benchmark: signed round trips per second and latency, against a bare aiohttp + msgpack echo.

The issue's target, on a 2-core machine: at concurrency 64 the signed path (request signed by the
client, verified by the miner; receipt signed by the miner, verified by the client) reaches at
least 50 % of the bare echo's throughput (the Ed25519 cost puts the ceiling near 55 %) with a p99
of at most 60 ms.

Both servers run as subprocesses of this script (``bench/_bare_echo.py`` and
``bench/_signed_echo.py``); the client runs here, in one asyncio loop. Every request carries the
same ~1 KiB ``EchoRequest``: through :class:`protocol.client.Client` for the signed side, through a
plain ``aiohttp.ClientSession`` posting msgpack for the bare side. For each concurrency the runs
alternate (bare, signed, signed, bare, ...) so drift in machine load hits both sides alike; the
table reports medians over the rounds, the ratio being the median of each round's adjacent pair.
It also reports CPU time per request of the client and of each server (from /proc), which shows
where the cost lies and moves less than req/s when other work shares the machine.

The signed side runs on Ensemblenet's own HTTP/1.1 transports (the client's pool,
``protocol/http1.py``, and the miner's server, ``protocol/http1_server.py``), which are leaner
than aiohttp's, while the issue's baseline is bare aiohttp. So that no reader mistakes cheaper
transports for cheaper signing, each round also runs the same bare echo over those transports
("bare/http1", a third server process), and the report gives signed throughput against it too.
Nothing here asserts on timing: it prints.

    python bench/bench_wire.py                  # 2,000 requests per run, C = 1, 16, 64
    python bench/bench_wire.py --quick          # ~200 requests per run, C = 1, 16
    python bench/bench_wire.py --json out.json  # also write the results
    python bench/bench_wire.py --profile prof/  # cProfile the servers and the signed client

Exit status: 0 when every request succeeded, 1 when any failed (the figures would be meaningless).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import math
import os
import platform
import pstats
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgpack

from miners.echo import EchoRequest, EchoResponse
from protocol import http1
from protocol.client import Client, ClientConfig, Target
from protocol.errors import QueryError
from protocol.keys import Keypair, verify

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
BARE_SERVER = BENCH_DIR / "_bare_echo.py"
SIGNED_SERVER = BENCH_DIR / "_signed_echo.py"

CLIENT_SEED = bytes(range(32))
BODY_BYTES = 1024
POOL_SIZE = 100
STARTUP_TIMEOUT_S = 30.0

FULL_CONCURRENCY = (1, 16, 64)
QUICK_CONCURRENCY = (1, 16)
FULL_REQUESTS = 2000
QUICK_REQUESTS = 200

#: The issue's targets, checked at TARGET_CONCURRENCY (printed, never asserted).
TARGET_CONCURRENCY = 64
TARGET_RATIO = 0.50
TARGET_P99_MS = 60.0

_LOREM = ("Ensemblenet miners answer signed requests; validators score the answers and the "
          "ledger settles the weights. ")


def echo_request(body_bytes: int = BODY_BYTES) -> EchoRequest:
    """An EchoRequest whose msgpack encoding is ``body_bytes`` long (~1 KiB of mixed text)."""
    overhead = len(EchoRequest(text="x" * 300).encode()) - 300  # str16 header from 256 chars
    length = max(1, body_bytes - overhead)
    text = (_LOREM * (length // len(_LOREM) + 1))[:length]
    return EchoRequest(text=text)


# --- server subprocesses ------------------------------------------------------------------------


@contextmanager
def server_process(script: Path, args: list[str],
                   env: dict[str, str] | None = None) -> Iterator[tuple[int, list[str]]]:
    """Start ``script`` with this interpreter; yield its pid and the words of its first line.

    The process is terminated (then killed if it lingers) when the block exits, however it exits;
    it also watches its stdin, a pipe from us, so it stops even if this process is killed outright.
    """
    proc = subprocess.Popen([sys.executable, str(script), "--exit-on-stdin-eof", *args],
                            cwd=REPO, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    try:
        yield proc.pid, _first_line(proc, script).split()
    finally:
        _stop(proc)


def _first_line(proc: subprocess.Popen[str], script: Path) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT_S)
    line = proc.stdout.readline() if ready else ""
    if not line.strip():
        code = proc.poll()
        state = f"exited with status {code}" if code is not None else "printed nothing"
        raise RuntimeError(f"{script.name} {state} within {STARTUP_TIMEOUT_S:.0f} s")
    return line


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``; NaN where /proc is missing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = stat[stat.rindex(")") + 2:].split()  # fields from the third on (state first)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- load generation ----------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """One timed run: ``requests`` requests by ``concurrency`` workers."""

    kind: str
    concurrency: int
    requests: int
    wall_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    #: CPU time per request of this (client) process and of the server, in microseconds.
    client_cpu_us: float
    server_cpu_us: float
    first_error: str | None = None


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (``q`` in [0, 1])."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


Send = Callable[[], Awaitable[str | None]]  # returns None on success, else an error description


async def run_load(kind: str, send: Send, requests: int, concurrency: int,
                   server_pid: int) -> Run:
    """Send ``requests`` requests from ``concurrency`` workers; time each and the whole run."""
    latencies: list[float] = []
    errors: list[str] = []
    tickets = iter(range(requests))  # shared by the workers; next() is atomic on one loop

    async def worker() -> None:
        for _ in tickets:
            started = time.perf_counter()
            error = await send()
            latencies.append(time.perf_counter() - started)
            if error is not None:
                errors.append(error)

    gc.collect()
    server_cpu = process_cpu_s(server_pid)
    client_cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    server_cpu = process_cpu_s(server_pid) - server_cpu
    latencies.sort()
    return Run(kind, concurrency, requests, wall, requests / wall,
               percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000,
               len(errors), client_cpu / requests * 1e6, server_cpu / requests * 1e6,
               errors[0] if errors else None)


def bare_sender(session: aiohttp.ClientSession, url: str, request: EchoRequest) -> Send:
    """Post the request's msgpack map to the bare echo and decode the answer."""
    payload = request.to_wire()
    headers = {"Content-Type": "application/msgpack"}

    async def send() -> str | None:
        try:
            async with session.post(url, data=msgpack.packb(payload, use_bin_type=True),
                                    headers=headers) as resp:
                data = await resp.read()
                if resp.status != 200:
                    return f"HTTP {resp.status}"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"
        answer = msgpack.unpackb(data, raw=False)
        return None if answer.get("text") == payload["text"] else "echo mismatch"

    return send


def lean_sender(pool: http1.Pool, url: str, request: EchoRequest) -> Send:
    """Post the same msgpack map through the signed client's HTTP/1.1 pool to the bare echo
    served by the miner's transport."""
    payload = request.to_wire()
    base, _, path = url.partition("/echo")
    headers = b"Content-Type: application/msgpack\r\n"

    async def send() -> str | None:
        body = msgpack.packb(payload, use_bin_type=True)
        try:
            async with await pool.request(base, "/echo" + path, headers, body, 10.0) as resp:
                data = await resp.read(1 << 20)
        except QueryError as exc:
            return f"{type(exc).__name__}: {exc}"
        if resp.status != 200:
            return f"HTTP {resp.status}"
        answer = msgpack.unpackb(data, raw=False)
        return None if answer.get("text") == payload["text"] else "echo mismatch"

    return send


def signed_sender(client: Client, target: Target, request: EchoRequest) -> Send:
    """Query the signed echo through the Client (request signed, receipt verified)."""

    async def send() -> str | None:
        result = await client.query(target, "echo", request, EchoResponse)
        if result.error is not None:
            return f"{type(result.error).__name__}: {result.error}"
        assert result.response is not None
        return None if result.response.text == request.text else "echo mismatch"

    return send


# --- the benchmark ------------------------------------------------------------------------------


@dataclass(slots=True)
class Options:
    concurrency: tuple[int, ...]
    requests: int
    rounds: int
    warmup: int
    profile_dir: Path | None


@dataclass(slots=True)
class Row:
    """Medians over the rounds for one concurrency (ratio: median of the per-round ratios)."""

    concurrency: int
    bare_rps: float
    signed_rps: float
    ratio: float
    bare_p50_ms: float
    bare_p99_ms: float
    signed_p50_ms: float
    signed_p99_ms: float
    bare_client_cpu_us: float
    bare_server_cpu_us: float
    signed_client_cpu_us: float
    signed_server_cpu_us: float
    #: The bare echo over the signed side's own transports, and signed against it.
    lean_rps: float
    lean_ratio: float
    lean_client_cpu_us: float
    lean_server_cpu_us: float
    runs: list[Run] = field(default_factory=list)


def summarise(concurrency: int, runs: list[Run]) -> Row:
    bare = [r for r in runs if r.kind == "bare"]
    signed = [r for r in runs if r.kind == "signed"]
    lean = [r for r in runs if r.kind == "bare/http1"]

    def med(rs: list[Run], attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in rs))

    # Round i's bare and signed runs are adjacent in time: their ratio is the least disturbed by
    # drift in machine load, so the table's ratio is the median of the per-round ratios.
    def ratio_to(base: list[Run]) -> float:
        return float(statistics.median(s.rps / b.rps for b, s in zip(base, signed, strict=True)))

    return Row(concurrency, med(bare, "rps"), med(signed, "rps"), ratio_to(bare),
               med(bare, "p50_ms"), med(bare, "p99_ms"),
               med(signed, "p50_ms"), med(signed, "p99_ms"),
               med(bare, "client_cpu_us"), med(bare, "server_cpu_us"),
               med(signed, "client_cpu_us"), med(signed, "server_cpu_us"),
               med(lean, "rps"), ratio_to(lean), med(lean, "client_cpu_us"),
               med(lean, "server_cpu_us"), runs)


async def measure(opts: Options, bare_url: str, bare_pid: int, target: Target, signed_pid: int,
                  client_profiler: cProfile.Profile | None, lean: tuple[str, int]) -> list[Row]:
    """Run the rounds; ``lean`` is the (URL, pid) of the bare echo on our own transport."""
    request = echo_request()
    connector = aiohttp.TCPConnector(limit=POOL_SIZE)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session, \
            Client(Keypair(CLIENT_SEED), ClientConfig(pool_size=POOL_SIZE)) as client:
        pool = http1.Pool(http1.PoolConfig(max_connections=POOL_SIZE))
        sides = {"bare": (bare_sender(session, bare_url, request), bare_pid),
                 "signed": (signed_sender(client, target, request), signed_pid),
                 "bare/http1": (lean_sender(pool, lean[0], request), lean[1])}

        warm_c = max(opts.concurrency)
        for kind, (send, pid) in sides.items():
            run = await run_load(kind, send, opts.warmup, warm_c, pid)
            if run.errors:
                raise RuntimeError(f"warm-up of the {kind} echo failed: {run.first_error}")

        rows = []
        for c in opts.concurrency:
            runs: list[Run] = []
            for rnd in range(opts.rounds):
                order = (("bare", "signed", "bare/http1") if rnd % 2 == 0
                         else ("bare/http1", "signed", "bare"))
                for kind in order:
                    send, pid = sides[kind]
                    profiler = client_profiler if kind == "signed" else None
                    if profiler is not None:
                        profiler.enable()
                    try:
                        run = await run_load(kind, send, opts.requests, c, pid)
                    finally:
                        if profiler is not None:
                            profiler.disable()
                    runs.append(run)
                    _progress(run)
            rows.append(summarise(c, runs))
        await pool.aclose()
        return rows


def _progress(run: Run) -> None:
    err = f"  {run.errors} errors, first: {run.first_error}" if run.errors else ""
    print(f"  C={run.concurrency:<3} {run.kind:<10} {run.rps:>8,.0f} req/s  "
          f"p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  "
          f"CPU/req client {run.client_cpu_us:5.0f} us server {run.server_cpu_us:5.0f} us{err}",
          file=sys.stderr, flush=True)


def ed25519_cost_us(ops: int = 2000, repeats: int = 5) -> tuple[float, float]:
    """Microseconds per Ed25519 sign and per verify in this process (best of ``repeats``).

    Each signed round trip costs one of each on each side (request signature and receipt), so
    their sum is the least signing can add per side, whatever the rest of the pipeline does.
    """
    key = Keypair(bytes(range(1, 33)))
    message = os.urandom(200)
    signature = key.sign(message)
    raw = key.public_key.raw

    def best(op: Callable[[], object]) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(ops):
                op()
            times.append((time.perf_counter() - started) / ops * 1e6)
        return min(times)

    return best(lambda: key.sign(message)), best(lambda: verify(raw, message, signature))


def format_table(rows: list[Row], opts: Options,
                 crypto_us: tuple[float, float] | None = None) -> str:
    """The results table, with the issue's targets next to the C=64 figures.

    ``crypto_us`` (sign, verify) adds the ceiling that Ed25519 alone leaves for the ratio.
    """
    out = io.StringIO()
    cpus = os.cpu_count()
    print(f"Wire benchmark: {opts.requests:,} requests per run, median of {opts.rounds} "
          f"round(s), {len(echo_request().encode()):,}-byte EchoRequest, loopback, "
          f"client and servers in separate processes, {cpus} CPUs", file=out)
    header = (f"{'C':>4}  {'bare req/s':>10}  {'signed req/s':>12}  {'ratio':>6}  "
              f"{'target':<14}  {'bare p50/p99 ms':>15}  {'signed p50/p99 ms':>17}  target")
    print(header, file=out)
    print("-" * len(header), file=out)
    for r in rows:
        ratio_target = p99_target = ""
        if r.concurrency == TARGET_CONCURRENCY:
            ratio_ok = "ok" if r.ratio >= TARGET_RATIO else "MISS"
            p99_ok = "ok" if r.signed_p99_ms <= TARGET_P99_MS else "MISS"
            ratio_target = f">={TARGET_RATIO:.0%} {ratio_ok}"
            p99_target = f"p99<={TARGET_P99_MS:.0f} ms {p99_ok}"
        bare_lat = f"{r.bare_p50_ms:.2f} / {r.bare_p99_ms:.2f}"
        signed_lat = f"{r.signed_p50_ms:.2f} / {r.signed_p99_ms:.2f}"
        print(f"{r.concurrency:>4}  {r.bare_rps:>10,.0f}  {r.signed_rps:>12,.0f}  "
              f"{r.ratio:>6.1%}  {ratio_target:<14}  {bare_lat:>15}  {signed_lat:>17}  "
              f"{p99_target}".rstrip(), file=out)
    print("\nCPU per request in us, client process / server process. At high concurrency, with "
          "one core per\nside, the busier side sets the pace: 'CPU ratio' (bare / signed, busier "
          "side) is what the ratio\ntends to on an idle 2-core machine, and it moves less than "
          "req/s when other work shares it.", file=out)
    for r in rows:
        cpu_ratio = (max(r.bare_client_cpu_us, r.bare_server_cpu_us)
                     / max(r.signed_client_cpu_us, r.signed_server_cpu_us))
        print(f"{r.concurrency:>4}  bare {r.bare_client_cpu_us:5.0f} / {r.bare_server_cpu_us:5.0f}"
              f"   signed {r.signed_client_cpu_us:5.0f} / {r.signed_server_cpu_us:5.0f}"
              f"   signing adds {r.signed_client_cpu_us - r.bare_client_cpu_us:+5.0f} / "
              f"{r.signed_server_cpu_us - r.bare_server_cpu_us:+5.0f}"
              f"   CPU ratio {cpu_ratio:6.1%}", file=out)
    print("\nThe same bare echo over the signed side's own transports (client pool "
          "protocol/http1.py, server\nprotocol/http1_server.py): what signing costs over the "
          "transports it really uses.", file=out)
    for r in rows:
        print(f"{r.concurrency:>4}  bare/http1 {r.lean_rps:>8,.0f} req/s, CPU/req client "
              f"{r.lean_client_cpu_us:4.0f} us server {r.lean_server_cpu_us:4.0f} us   "
              f"signed / bare/http1 {r.lean_ratio:6.1%}", file=out)
    if crypto_us is not None:
        sign_us, verify_us = crypto_us
        floor = sign_us + verify_us
        print(f"\nEd25519 in this process (idle): sign {sign_us:.0f} us, verify {verify_us:.0f} "
              f"us, so signing adds at least {floor:.0f} us per side.\n'ceiling' is the CPU "
              "ratio if it added nothing else: bare busier side / (that + the Ed25519 floor).",
              file=out)
        for r in rows:
            busier = max(r.bare_client_cpu_us, r.bare_server_cpu_us)
            rest = (r.signed_client_cpu_us - r.bare_client_cpu_us - floor,
                    r.signed_server_cpu_us - r.bare_server_cpu_us - floor)
            print(f"{r.concurrency:>4}  ceiling {busier / (busier + floor):6.1%}   beyond Ed25519 "
                  f"signing adds {rest[0]:+5.0f} / {rest[1]:+5.0f} us (client / server)", file=out)
    if TARGET_CONCURRENCY not in [r.concurrency for r in rows]:
        print(f"(targets apply at C={TARGET_CONCURRENCY}, not measured in this run)", file=out)
    if opts.profile_dir is not None:
        print("(profiled run: cProfile slows both sides; do not compare these figures)", file=out)
    return out.getvalue()


def write_json(path: Path, rows: list[Row], opts: Options) -> None:
    data: dict[str, Any] = {
        "bench": "wire",
        "requests": opts.requests,
        "rounds": opts.rounds,
        "warmup": opts.warmup,
        "body_bytes": len(echo_request().encode()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "profiled": opts.profile_dir is not None,
        "targets": {"concurrency": TARGET_CONCURRENCY, "min_ratio": TARGET_RATIO,
                    "max_p99_ms": TARGET_P99_MS},
        "results": [
            {**{k: v for k, v in asdict(r).items() if k != "runs"},
             "runs": [asdict(run) for run in r.runs]}
            for r in rows
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def print_profile(title: str, path: Path, limit: int = 25) -> None:
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    print(f"\n=== {title}: top {limit} by own time ({path}) ===")
    # Drop pstats' preamble down to the column header.
    text = out.getvalue()
    start = text.find("   ncalls")
    print(text[start:] if start >= 0 else text)


def parse_args(argv: list[str] | None) -> tuple[Options, Path | None]:
    parser = argparse.ArgumentParser(
        description="Signed vs bare round trips per second and latency over loopback.")
    parser.add_argument("--quick", action="store_true",
                        help=f"~{QUICK_REQUESTS} requests per run, C = 1 and 16, one round")
    parser.add_argument("--requests", type=int, metavar="N",
                        help=f"requests per run (default {FULL_REQUESTS}; "
                             f"{QUICK_REQUESTS} with --quick)")
    parser.add_argument("--concurrency", metavar="C,C,...",
                        help="comma-separated concurrencies (default 1,16,64; 1,16 with --quick)")
    parser.add_argument("--rounds", type=int,
                        help="alternating bare/signed rounds per concurrency; the table shows "
                             "medians (default 4; 1 with --quick)")
    parser.add_argument("--warmup", type=int, metavar="N",
                        help="warm-up requests per server before timing (default 300; 50 with "
                             "--quick)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="cProfile both servers and the client during signed runs; write the "
                             "stats to DIR (bare_server, signed_server, signed_client .prof) and "
                             "print the top entries of the signed side")
    args = parser.parse_args(argv)
    if args.concurrency:
        try:
            concurrency = tuple(int(c) for c in args.concurrency.split(","))
        except ValueError:
            parser.error("--concurrency takes comma-separated integers")
    else:
        concurrency = QUICK_CONCURRENCY if args.quick else FULL_CONCURRENCY
    opts = Options(
        concurrency=concurrency,
        requests=args.requests or (QUICK_REQUESTS if args.quick else FULL_REQUESTS),
        rounds=args.rounds or (1 if args.quick else 4),
        warmup=args.warmup if args.warmup is not None else (50 if args.quick else 300),
        profile_dir=args.profile,
    )
    if min(opts.concurrency) < 1 or opts.requests < 1 or opts.rounds < 1 or opts.warmup < 1:
        parser.error("--requests, --concurrency, --rounds and --warmup must be positive")
    return opts, args.json


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


def main(argv: list[str] | None = None) -> int:
    opts, json_path = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    bare_args: list[str] = []
    signed_args: list[str] = []
    client_profiler = None
    if opts.profile_dir is not None:
        opts.profile_dir.mkdir(parents=True, exist_ok=True)
        bare_args = ["--profile", str(opts.profile_dir / "bare_server.prof")]
        signed_args = ["--profile", str(opts.profile_dir / "signed_server.prof")]
        client_profiler = cProfile.Profile()

    with ExitStack() as stack:
        bare_pid, bare_words = stack.enter_context(server_process(BARE_SERVER, bare_args))
        signed_pid, signed_words = stack.enter_context(server_process(SIGNED_SERVER, signed_args))
        lean_pid, lean_words = stack.enter_context(server_process(
            BARE_SERVER, [], env={"ENSEMBLE_BENCH_TRANSPORT": "http1"}))
        bare_url = f"http://127.0.0.1:{int(bare_words[0])}/echo"
        lean_url = f"http://127.0.0.1:{int(lean_words[0])}/echo"
        target = Target(address=signed_words[1], url=f"http://127.0.0.1:{int(signed_words[0])}")
        print(f"bare echo at {bare_url}; signed echo at {target.url} ({target.address})",
              file=sys.stderr, flush=True)
        rows = asyncio.run(measure(opts, bare_url, bare_pid, target, signed_pid,
                                   client_profiler, (lean_url, lean_pid)))
    # Servers are stopped here, so the server profile has been written.

    print(format_table(rows, opts, ed25519_cost_us()), end="", flush=True)
    if json_path is not None:
        write_json(json_path, rows, opts)
        print(f"results written to {json_path}")
    if opts.profile_dir is not None and client_profiler is not None:
        client_prof = opts.profile_dir / "signed_client.prof"
        client_profiler.dump_stats(str(client_prof))
        print_profile("signed server (whole run)", opts.profile_dir / "signed_server.prof")
        print_profile("client process, signed runs only", client_prof)

    failed = [run for row in rows for run in row.runs if run.errors]
    for run in failed:
        print(f"ERROR: {run.kind} C={run.concurrency}: {run.errors} of {run.requests} requests "
              f"failed; first: {run.first_error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
