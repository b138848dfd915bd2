"""A whole local network, one process per service: supervision, wallets and subnet set-up.

Used by ``make demo`` (``examples/demo.py``, in the foreground) and ``ensemble localnet``
(``protocol/cli/localnet.py``, in the background). Three parts:

* :class:`Supervisor` starts each service (chain node, miners, validators, router gateway) as
  its own process in its own session (so a terminal's Ctrl-C reaches only the supervisor, which
  then stops them), with stdout and stderr in one log file per process, waits for the ready
  line, and stops them: SIGTERM to the process group, SIGKILL after a bounded wait.
* :func:`create_wallets` and :func:`setup_subnet` make the keys and put the subnet on a running
  chain node through the library (signed transactions), block by block.
* :class:`Manifest` is the JSON file naming every process (pid, URL, log), so another process
  can show or stop the network (:func:`stop_manifest`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from protocol.errors import ConfigError, EnsembleError
from protocol.keyfile import KdfParams
from protocol.keys import Keypair
from protocol.ledger import UNITS_PER_TOKEN
from protocol.ledger.builders import TxBuilder
from protocol.ledger.interface import Ledger, submit_and_wait
from protocol.ledger.tx import Tx
from protocol.wallet import Wallet

__all__ = ["MODELS_DIR", "Manifest", "NetworkPlan", "ProcessRecord", "Role", "ServiceSpec",
           "StartError", "Supervisor", "create_wallets", "graded_plan", "pid_alive", "running",
           "setup_subnet", "stop_manifest"]

T = UNITS_PER_TOKEN
#: The graded tiny models ship in the repository next to the packages (editable install).
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
#: A model miner imports torch and transformers: tens of seconds on two busy cores.
READY_TIMEOUT_S = 120.0
#: How long a process gets to exit after SIGTERM before it is killed.
STOP_GRACE_S = 10.0
#: Wallet passwords only protect throwaway dev keys; the cheapest scrypt the keyfile allows
#: keeps set-up fast (2^10, the test cost).
DEV_KDF = KdfParams(n=2**10)
#: Transactions of the set-up are included within a few blocks on a dev chain.
TX_TIMEOUT_S = 30.0

URL_RE = re.compile(r"https?://[^\s)]+")


class StartError(EnsembleError):
    """A service exited or stayed silent before printing its ready line."""


# --- the network plan ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Role:
    """One neuron of the plan: a wallet (coldkey + ``default`` hotkey) and what it runs.

    Attributes:
        name: wallet name, also the process name (``q99``, ``v1``...).
        kind: ``miner``, ``validator`` or ``router`` (a registered hotkey the gateway and
            the demo's clients sign with: miners answer registered callers only).
        model: for a miner, the ``--model`` value (``echo-math``, ``garbage``, a model dir).
        label: what tables show for it (``tiny-add-q99``).
        stake: units staked on the hotkey (validators).
        quality: the known quality of a graded miner in [0, 1], or None.
    """

    name: str
    kind: str
    model: str = ""
    label: str = ""
    stake: int = 0
    quality: float | None = None


@dataclass(frozen=True, slots=True)
class NetworkPlan:
    """Everything :func:`setup_subnet` and the launchers need to know about the network.

    The hyperparameters make a subnet that shows consensus within a minute: an epoch every
    ``tempo`` blocks, no weights rate limit or immunity, commit-reveal on with one epoch of
    delay, and exactly as many validator permits as validators.
    """

    roles: tuple[Role, ...]
    block_time: float = 0.5
    hyperparams: Mapping[str, int | float | bool] = field(default_factory=lambda: {
        "tempo": 5, "weights_rate_limit": 0, "immunity_period": 0, "activity_cutoff": 1000,
        "commit_reveal": True, "reveal_period": 1, "min_burn": T, "max_burn": 10 * T})
    netuid: int = 1
    # A slow score average: the graded miners are close (90 % vs 99 %) and each step asks a
    # miner only a few questions, so averaging over more steps keeps their order stable.
    validator_alpha: float = 0.03
    challenges_per_miner: int = 12

    @property
    def miners(self) -> tuple[Role, ...]:
        """The miner roles, in plan order."""
        return tuple(r for r in self.roles if r.kind == "miner")

    @property
    def validators(self) -> tuple[Role, ...]:
        """The validator roles, in plan order."""
        return tuple(r for r in self.roles if r.kind == "validator")

    @property
    def router(self) -> Role | None:
        """The role whose hotkey the gateway signs with (None: no gateway)."""
        return next((r for r in self.roles if r.kind == "router"), None)

    def subnet_params(self) -> dict[str, int | float | bool]:
        """The hyperparameters to set, with one validator permit per validator."""
        return {**self.hyperparams, "max_allowed_validators": max(1, len(self.validators))}


#: The gateway's identity: registered (miners serve registered callers), never staked.
ROUTER_ROLE = Role("router", "router", label="router gateway")

#: The four graded models, worst first, with their measured held-out exact match.
GRADED: tuple[tuple[str, float], ...] = (("q10", 0.10), ("q60", 0.61), ("q90", 0.905),
                                         ("q99", 0.993))


def graded_plan(*, validators: int = 2, garbage: bool = True, extra: Sequence[Role] = (),
                block_time: float = 0.5) -> NetworkPlan:
    """The demo network: the graded miners, a garbage miner, ``extra`` miners, validators."""
    roles = [Role(name, "miner", str(MODELS_DIR / f"tiny-add-{name}"), f"tiny-add-{name}",
                  quality=q) for name, q in GRADED]
    if garbage:
        roles.append(Role("garbage", "miner", "garbage", "garbage (faulty)", quality=0.0))
    roles.extend(extra)
    stakes = (100 * T, 60 * T, 40 * T, 20 * T)
    roles.extend(Role(f"v{i + 1}", "validator", stake=stakes[i % len(stakes)], label="validator")
                 for i in range(validators))
    roles.append(ROUTER_ROLE)
    return NetworkPlan(tuple(roles), block_time=block_time)


def echo_plan(miners: int, validators: int, block_time: float = 0.5, *,
              router: bool = False) -> NetworkPlan:
    """A light network of ``echo-math`` miners (no torch), for development and tests."""
    roles = [Role(f"m{i + 1}", "miner", "echo-math", "echo-math") for i in range(miners)]
    roles.extend(Role(f"v{i + 1}", "validator", stake=100 * T, label="validator")
                 for i in range(validators))
    if router:
        roles.append(ROUTER_ROLE)
    return NetworkPlan(tuple(roles), block_time=block_time)


# --- wallets and the subnet ---------------------------------------------------------------------


def create_wallets(root: Path, names: Iterable[str], password: str) -> dict[str, Keypair]:
    """Create wallet ``name`` (encrypted coldkey, plaintext ``default`` hotkey) for each name.

    Returns the coldkeys by name (the set-up signs with them in-process). Raises the wallet's
    errors (``KeyfileExistsError`` when a wallet exists already).
    """
    coldkeys = {}
    for name in names:
        wallet = Wallet(root, name)
        coldkeys[name] = wallet.create(password, DEV_KDF)
        wallet.new_hotkey("default", None)
    return coldkeys


async def _send_all(ledger: Ledger, txs: Sequence[Tx]) -> None:
    """Submit every transaction, then wait for each; raise StartError naming a failed one."""
    receipts = [await ledger.submit(tx) for tx in txs]
    for receipt in receipts:
        outcome = await ledger.wait_for_tx(receipt.tx_hash, TX_TIMEOUT_S)
        if not outcome.applied:
            raise StartError(f"set-up transaction rejected: {outcome.reason} {outcome.message}")


async def setup_subnet(ledger: Ledger, plan: NetworkPlan, wallet_root: Path,
                       coldkeys: Mapping[str, Keypair], owner: Keypair) -> None:
    """Fund every wallet, create and configure the subnet, register every hotkey, stake.

    Runs in four rounds of transactions (each waits for inclusion): faucet; subnet and
    hyperparameters; registrations; stakes. ``owner`` signs the faucet and owns the subnet.
    """
    chain_id = await ledger.chain_id()
    own = TxBuilder(owner, chain_id)
    nonce = (await ledger.account(owner.address)).next_nonce
    funded = [own.faucet(owner.address, 1000 * T, nonce=nonce)]
    funded += [own.faucet(key.address, 1000 * T, nonce=nonce + 1 + i)
               for i, key in enumerate(coldkeys.values())]
    await _send_all(ledger, funded)
    nonce += len(funded)
    await submit_and_wait(ledger, own.create_subnet(max_lock_cost=1000 * T, nonce=nonce),
                          TX_TIMEOUT_S)
    await _send_all(ledger, [own.set_hyperparams(plan.netuid, plan.subnet_params(),
                                                 nonce=nonce + 1)])
    registrations = []
    for role in plan.roles:
        hotkey = Wallet(wallet_root, role.name).hotkey("default")
        builder = TxBuilder(coldkeys[role.name], chain_id)
        registrations.append(builder.register(plan.netuid, hotkey, max_burn=100 * T, nonce=0))
    await _send_all(ledger, registrations)
    stakes = []
    for role in plan.roles:
        if role.stake:
            hot = Wallet(wallet_root, role.name).hotkey_address("default")
            stakes.append(TxBuilder(coldkeys[role.name], chain_id).stake(hot, role.stake,
                                                                         nonce=1))
    await _send_all(ledger, stakes)


# --- processes ----------------------------------------------------------------------------------


def ensemble_argv(*args: str) -> list[str]:
    """The command line running ``ensemble ARGS`` with this interpreter."""
    return [sys.executable, "-m", "protocol.cli.main", *args]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A service to start: its name, command line and the regex of its ready line."""

    name: str
    argv: tuple[str, ...]
    ready: str
    role: str = ""


@dataclass(slots=True)
class ProcessRecord:
    """A started service, as the manifest stores it."""

    name: str
    pid: int
    argv: list[str]
    log: str
    role: str = ""
    url: str | None = None
    ready_line: str = ""
    exit_code: int | None = None


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def running(record: ProcessRecord) -> bool:
    """Whether the process a manifest records still runs: its pid is alive *and* runs the
    recorded command (a pid freed by a process that ended may belong to anything now)."""
    return pid_alive(record.pid) and _is_ours(record.pid, record.argv)


def _is_ours(pid: int, argv: Sequence[str]) -> bool:
    """Whether ``pid`` still runs the command we started (pids are recycled)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid_alive(pid)  # no /proc: trust the pid
    return [part.decode(errors="replace") for part in cmdline if part] == list(argv)


def _signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid`` (each service leads its own)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


class Supervisor:
    """Starts services as processes in their own sessions and stops them all.

    ``stop_all`` is idempotent and safe to call from ``finally``, ``atexit`` or a signal path.
    """

    def __init__(self, log_dir: Path, env: Mapping[str, str]) -> None:
        self.log_dir = log_dir
        self.env = dict(env)
        self.records: list[ProcessRecord] = []
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def launch(self, spec: ServiceSpec) -> ProcessRecord:
        """Start ``spec`` (not waiting for it) with its output in ``log_dir/NAME.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{spec.name}.log"
        with log.open("wb") as out:
            # Our own interpreter and module with arguments we built: no untrusted input.
            proc = subprocess.Popen(list(spec.argv), stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                    stdin=subprocess.DEVNULL, env=self.env,
                                    start_new_session=True)
        record = ProcessRecord(spec.name, proc.pid, list(spec.argv), str(log), spec.role)
        self.records.append(record)
        self._procs[spec.name] = proc
        return record

    def wait_ready(self, spec: ServiceSpec, timeout: float = READY_TIMEOUT_S) -> ProcessRecord:
        """Wait until the log of ``spec`` has its ready line; fill in the URL from it.

        Raises:
            StartError: the process exited, or stayed silent for ``timeout`` seconds.
        """
        record = self.record(spec.name)
        proc = self._procs[spec.name]
        pattern = re.compile(spec.ready)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = Path(record.log).read_text(errors="replace")
            for line in text.splitlines():
                if pattern.search(line):
                    record.ready_line = line.strip()
                    url = URL_RE.search(line)
                    record.url = url.group(0) if url else None
                    return record
            if proc.poll() is not None:
                tail = "\n".join(text.splitlines()[-15:])
                raise StartError(f"{spec.name} exited with code {proc.returncode} before it "
                                 f"was ready; end of {record.log}:\n{tail}")
            time.sleep(0.1)
        raise StartError(f"{spec.name} printed no ready line within {timeout:.0f} s "
                         f"(see {record.log})")

    def start(self, specs: Sequence[ServiceSpec],
              timeout: float = READY_TIMEOUT_S) -> list[ProcessRecord]:
        """Launch every spec at once (they start in parallel), then wait for each."""
        for spec in specs:
            self.launch(spec)
        return [self.wait_ready(spec, timeout) for spec in specs]

    def record(self, name: str) -> ProcessRecord:
        """The record of service ``name`` (raises KeyError)."""
        return next(r for r in self.records if r.name == name)

    def stop(self, name: str, grace: float = STOP_GRACE_S) -> int:
        """Stop one service (SIGTERM, then SIGKILL after ``grace`` s); return its exit code."""
        proc = self._procs[name]
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        self.record(name).exit_code = proc.returncode
        return proc.returncode

    def alive(self) -> list[str]:
        """Names of the started services still running."""
        return [name for name, proc in self._procs.items() if proc.poll() is None]

    def stop_all(self, grace: float = STOP_GRACE_S) -> list[ProcessRecord]:
        """Stop every service: clients first, the chain node last (so none loses its chain
        mid-step). Each wave gets SIGTERM to its process groups, up to ``grace`` s to exit,
        then SIGKILL. Returns the records with their exit codes (negative: that signal).
        """
        chain = {r.name for r in self.records if r.role == "chain"}
        for wave in ([n for n in reversed(self._procs) if n not in chain], sorted(chain)):
            self._stop_wave([self._procs[n] for n in wave], grace)
        for name, proc in self._procs.items():
            self.record(name).exit_code = proc.returncode
        return self.records

    @staticmethod
    def _stop_wave(procs: Sequence[subprocess.Popen[bytes]], grace: float) -> None:
        running = [p for p in procs if p.poll() is None]
        for proc in running:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in running:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()


# --- the manifest -------------------------------------------------------------------------------


@dataclass(slots=True)
class Manifest:
    """What runs where: written as JSON next to the logs, read by ``status`` and ``stop``."""

    state_dir: str
    chain_url: str
    netuid: int
    wallet_path: str
    processes: list[ProcessRecord]
    gateway_url: str | None = None
    started_at: float = field(default_factory=time.time)

    def write(self, path: Path) -> None:
        """Write the manifest atomically."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """Read a manifest written by :meth:`write`.

        Raises:
            ConfigError: the file is missing or not a manifest.
        """
        try:
            data = json.loads(path.read_text())
            data["processes"] = [ProcessRecord(**p) for p in data["processes"]]
            return cls(**data)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"no local network manifest at {path} ({exc})") from None


def stop_manifest(manifest: Manifest, grace: float = STOP_GRACE_S) -> list[tuple[str, str]]:
    """Stop every process the manifest names that still runs our command (clients first,
    the chain node last), SIGKILL after ``grace`` s per wave.

    Returns ``(name, what happened)`` per process: ``not running``, ``stopped`` or ``killed``.
    """
    outcome = {p.name: "not running" for p in manifest.processes}
    alive = [p for p in reversed(manifest.processes) if running(p)]
    for wave in ([p for p in alive if p.role != "chain"],
                 [p for p in alive if p.role == "chain"]):
        for p in wave:
            _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in wave:
            outcome[p.name] = "stopped" if _wait_gone(p.pid, deadline) else "killed"
            if outcome[p.name] == "killed":
                _signal_group(p.pid, signal.SIGKILL)
                _wait_gone(p.pid, time.monotonic() + grace)
    return [(p.name, outcome[p.name]) for p in manifest.processes]


def _wait_gone(pid: int, deadline: float) -> bool:
    """Wait until ``pid`` has exited (reaping it if it is our child); False at ``deadline``."""
    while pid_alive(pid):
        _reap(pid)
        if time.monotonic() > deadline:
            return not pid_alive(pid)
        time.sleep(0.05)
    return True


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our own child (else it is reaped by init)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# --- the standard services ------------------------------------------------------------------------


def chain_spec(db: Path, block_time: float) -> ServiceSpec:
    """The dev chain node on a free port."""
    return ServiceSpec("chain", tuple(ensemble_argv(
        "chain", "serve", "--db", str(db), "--dev", "--block-time", str(block_time),
        "--port", "0")), r"chain node listening on http", "chain")


def miner_spec(role: Role, chain_url: str, wallet_root: Path, netuid: int) -> ServiceSpec:
    """A miner serving ``role.model`` (claims ``math``) on a free port."""
    return ServiceSpec(f"miner-{role.name}", tuple(ensemble_argv(
        "miner", "run", "--wallet", role.name, "--hotkey", "default", "--wallet-path",
        str(wallet_root), "--chain", chain_url, "--netuid", str(netuid), "--model", role.model,
        "--capabilities", "math", "--port", "0")), r"miner uid \d+ serving", "miner")


def validator_spec(role: Role, chain_url: str, wallet_root: Path, netuid: int, state: Path, *,
                   sample_size: int = 6, weights_interval: int = 3, timeout: float = 2.0,
                   alpha: float = 0.1, challenges: int | None = None) -> ServiceSpec:
    """A validator querying up to ``sample_size`` miners per block.

    ``challenges`` (per miner per step) is passed only where the validator CLI has the option.
    """
    extra = ("--challenges-per-miner", str(challenges)) if challenges else ()
    return ServiceSpec(f"validator-{role.name}", tuple(ensemble_argv(
        "validator", "run", "--wallet", role.name, "--hotkey", "default", "--wallet-path",
        str(wallet_root), "--chain", chain_url, "--netuid", str(netuid), "--state", str(state),
        "--sample-size", str(sample_size), "--weights-interval", str(weights_interval),
        "--timeout", str(timeout), "--alpha", str(alpha), *extra)),
        r"^validator \S+ on subnet", "validator")


def _has_option(env: Mapping[str, str], option: str, *command: str) -> bool:
    """Whether ``ensemble COMMAND --help`` lists ``option`` (the CLI grows over time)."""
    try:
        done = subprocess.run(ensemble_argv(*command, "--help"),  # noqa: S603
                              capture_output=True, text=True, env=dict(env), timeout=60,
                              check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and option in done.stdout


def gateway_available(env: Mapping[str, str]) -> bool:
    """Whether this checkout has ``ensemble router serve`` (the OpenAI-compatible gateway)."""
    try:
        done = subprocess.run(ensemble_argv("router", "serve", "--help"),  # noqa: S603
                              capture_output=True, env=dict(env), timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def gateway_spec(chain_url: str, wallet_root: Path, wallet: str, netuid: int) -> ServiceSpec:
    """The router gateway on a free port, signing with ``wallet``'s default hotkey."""
    return ServiceSpec("gateway", tuple(ensemble_argv(
        "router", "serve", "--chain", chain_url, "--netuid", str(netuid), "--wallet", wallet,
        "--hotkey", "default", "--wallet-path", str(wallet_root), "--port", "0")),
        r"https?://", "gateway")


def child_env(wallet_root: Path, password: str,
              base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every service: wallet root and password, offline models, 1 thread.

    One torch thread per process: five model miners on two cores would otherwise fight.
    """
    env = dict(os.environ if base is None else base)
    env.update({"ENSEMBLE_PASSWORD": password, "ENSEMBLE_WALLET_PATH": str(wallet_root),
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.pop("ENSEMBLE_CHAIN", None)
    return env


async def wait_for_node(url: str, timeout: float = 30.0) -> None:
    """Wait until the node at ``url`` answers (it prints its ready line once it listens)."""
    from protocol.ledger.remote import RemoteLedger  # noqa: PLC0415 - aiohttp only when used

    deadline = time.monotonic() + timeout
    async with RemoteLedger(url) as ledger:
        while True:
            try:
                await ledger.block_height()
                return
            except EnsembleError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


# --- the whole network --------------------------------------------------------------------------


@dataclass(slots=True)
class Network:
    """A started network: its supervisor, manifest and where it keeps its files."""

    plan: NetworkPlan
    state_dir: Path
    supervisor: Supervisor
    manifest: Manifest

    @property
    def manifest_path(self) -> Path:
        """Where the manifest is written."""
        return self.state_dir / "processes.json"

    def save(self) -> None:
        """Write the manifest (after every start, so a crash still leaves it behind)."""
        self.manifest.processes = self.supervisor.records
        self.manifest.write(self.manifest_path)


def start_network(plan: NetworkPlan, state_dir: Path, *, password: str, gateway: bool,
                  progress: object = None, work_dir: Path | None = None,
                  supervisor: Supervisor | None = None) -> Network:
    """Start the chain, set up the subnet, start miners, validators and (optionally) the gateway.

    ``state_dir`` receives the manifest (``processes.json``) and ``logs/``; ``work_dir``
    (default ``state_dir``) the chain file, the wallets and the validators' state. A given
    ``supervisor`` is used (and its records kept) instead of a new one.
    ``progress`` is called with one short text per stage (``print`` will do). The caller owns
    the returned network and must call ``network.supervisor.stop_all()`` (also when this
    raises: the supervisor is attached to the exception as ``exc.network``).

    Raises:
        StartError: a service did not start (its log's tail is in the message).
    """
    say = progress if callable(progress) else (lambda _text: None)
    work = work_dir or state_dir
    wallet_root = work / "wallets"
    env = child_env(wallet_root, password)
    if supervisor is None:
        supervisor = Supervisor(state_dir / "logs", env)
    else:
        supervisor.env = env
    manifest = Manifest(str(state_dir), "", plan.netuid, str(wallet_root), supervisor.records)
    network = Network(plan, state_dir, supervisor, manifest)
    try:
        _start(network, work, wallet_root, env, password, gateway, say)
    except BaseException as exc:
        exc.network = network  # type: ignore[attr-defined]
        network.save()
        raise
    return network


def _start(network: Network, work: Path, wallet_root: Path, env: Mapping[str, str],
           password: str, gateway: bool, say: object) -> None:
    plan, sup = network.plan, network.supervisor
    assert callable(say)
    say(f"starting the chain node ({plan.block_time} s blocks)")
    chain = sup.start([chain_spec(work / "chain.db", plan.block_time)], 60.0)[0]
    assert chain.url is not None
    network.manifest.chain_url = chain.url
    network.save()
    say(f"creating {len(plan.roles) + 1} wallets and setting up subnet {plan.netuid}")
    owner = create_wallets(wallet_root, ["owner"], password)["owner"]
    coldkeys = create_wallets(wallet_root, [r.name for r in plan.roles], password)
    asyncio.run(_setup(chain.url, plan, wallet_root, coldkeys, owner))
    say(f"starting {len(plan.miners)} miners")
    sup.start([miner_spec(r, chain.url, wallet_root, plan.netuid) for r in plan.miners])
    network.save()
    if plan.validators:
        say(f"starting {len(plan.validators)} validators")
        challenges = (plan.challenges_per_miner if _has_option(
            env, "--challenges-per-miner", "validator", "run") else None)
        sup.start([validator_spec(r, chain.url, wallet_root, plan.netuid,
                                  work / f"{r.name}.state", alpha=plan.validator_alpha,
                                  challenges=challenges) for r in plan.validators])
        network.save()
    if gateway and plan.router is not None and gateway_available(env):
        say("starting the router gateway")
        record = sup.start([gateway_spec(chain.url, wallet_root, plan.router.name,
                                         plan.netuid)])[0]
        network.manifest.gateway_url = record.url
        network.save()


async def _setup(url: str, plan: NetworkPlan, wallet_root: Path,
                 coldkeys: Mapping[str, Keypair], owner: Keypair) -> None:
    from protocol.ledger.remote import RemoteLedger  # noqa: PLC0415

    await wait_for_node(url)
    async with RemoteLedger(url) as ledger:
        await setup_subnet(ledger, plan, wallet_root, coldkeys, owner)
