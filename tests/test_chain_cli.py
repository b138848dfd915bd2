"""The ledger commands (protocol/cli/ledger_cmds.py, protocol/cli/chain.py) run in-process
against a chain file in tmp_path: every command's output, exact amounts, typed rejections with
advice, usage errors for bad input."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.cli.ledger_cmds import format_tokens, parse_change, parse_tokens
from protocol.cli.main import main
from protocol.errors import ConfigError
from protocol.keys import Keypair
from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger.chain import Chain, ChainConfig
from protocol.ledger.connect import dev_authority_key
from protocol.ledger.units import MAX_SUPPLY
from protocol.wallet import Wallet

SOMEONE = Keypair(bytes(32)).address


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Wallets alice and bob (cheap KDF) in tmp_path; the password in $ENSEMBLE_PASSWORD."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ENSEMBLE_PASSWORD", "hunter2")
    monkeypatch.delenv("ENSEMBLE_WALLET_PATH", raising=False)
    monkeypatch.delenv("ENSEMBLE_CHAIN", raising=False)
    for name in ("alice", "bob"):
        assert main(["wallet", "create", name, "--hotkey", "--kdf-cost", "10",
                     "--wallet-path", str(tmp_path / "wallets")]) == 0
    return tmp_path


class Cli:
    """Runs ``ensemble`` in-process against one dev chain file with 50 ms blocks."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.root = root
        self.db = root / "chain.db"
        self.capsys = capsys
        capsys.readouterr()

    def address(self, wallet: str, hotkey: bool = False) -> str:
        """A wallet's coldkey (or default hotkey) address."""
        w = Wallet(self.root / "wallets", wallet)
        return w.hotkey_address("default") if hotkey else w.coldkey_address()

    def __call__(self, *argv: str, wallet: str = "alice") -> tuple[int, str, str]:
        """Run one command with --chain, --dev, fast blocks and the wallet options."""
        code = main([*argv, "--chain", str(self.db), "--dev", "--block-time", "0.05",
                     "--wallet", wallet, "--wallet-path", str(self.root / "wallets")])
        out, err = self.capsys.readouterr()
        return code, out, err

    def balance(self, address: str) -> int:
        """The balance in units, read from the chain file directly."""
        chain = Chain.open(self.db, ChainConfig(node_key=dev_authority_key(), dev=True))
        try:
            return chain.account(address).balance
        finally:
            chain.close()


@pytest.fixture
def cli(env: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    """The command runner."""
    return Cli(env, capsys)


def test_ledger_commands_end_to_end(cli: Cli) -> None:
    """faucet, subnet create/list/set/show, register, stake, transfer, serve, metagraph, verify."""
    alice, bob = cli.address("alice"), cli.address("bob")
    hot = cli.address("alice", hotkey=True)

    code, out, _ = cli("faucet", "--amount", "1000")
    assert code == 0
    assert f"faucet paid 1000 tokens to {alice}" in out
    code, out, _ = cli("subnet", "create")
    assert code == 0
    assert f"created subnet 1 owned by {alice} (burned 100 tokens)" in out

    code, out, _ = cli("subnet", "list")
    assert code == 0
    assert alice in out
    # a long tempo: no epoch pays the owner during the test, so balances stay exact
    code, out, _ = cli("subnet", "set", "--netuid", "1", "tempo=5000", "weights_rate_limit=0",
                       "commit_reveal=false", "kappa=0.5")
    assert (code, out.splitlines()[1]) == (
        0, "  subnet 1: set commit_reveal, kappa, tempo, weights_rate_limit")
    code, out, _ = cli("subnet", "show", "--netuid", "1")
    assert code == 0
    assert f"owner              {alice}" in out
    assert "│ tempo " in out
    assert " 5000 " in out

    code, out, _ = cli("register", "--netuid", "1")
    assert code == 0
    assert f"registered {hot} as uid 0 on subnet 1 (burned 0.0005 tokens)" in out
    code, out, _ = cli("stake", "add", "--amount", "10.5")
    assert (code, out.splitlines()[1]) == (0, f"  staked 10.5 tokens on {hot}")
    code, out, _ = cli("stake", "remove", "--amount", "0.000000001")
    assert (code, out.splitlines()[1]) == (0, f"  unstaked 0.000000001 tokens from {hot}")
    code, out, _ = cli("transfer", "--dest", bob, "--amount", "1.25")
    assert (code, out.splitlines()[1]) == (0, f"  transferred 1.25 tokens from {alice} to {bob}")
    code, out, _ = cli("serve", "--netuid", "1", "--host", "127.0.0.1", "--port", "9000")
    assert (code, out.splitlines()[1]) == (
        0, "  uid 0 of subnet 1 serves at 127.0.0.1:9000 (protocol 1)")

    code, out, _ = cli("metagraph", "--netuid", "1")
    assert code == 0
    assert "subnet 1 at block" in out
    assert f"{hot[:10]}…{hot[-4:]}" in out
    assert "127.0.0.1:9000" in out
    for header in ("uid", "stake", "incentive", "dividends", "trust", "consensus",
                   "validator_trust", "permit", "emission", "last_update", "active"):
        assert header in out

    code, out, _ = cli("account", wallet="bob")
    assert (code, out.splitlines()[1]) == (0, "balance    1.25 tokens")
    assert cli.balance(bob) == 1_250_000_000
    # 1000 minted − 100 lock − 0.0005 burn − 10.5 staked + 1 unit back − 1.25 sent
    assert cli.balance(alice) == 1000 * T - 100 * T - 500_000 - 10_500_000_000 + 1 - 1_250_000_000

    code = main(["chain", "verify", "--db", str(cli.db)])
    out = cli.capsys.readouterr().out
    assert code == 0
    assert "verified:" in out


def test_rejections_print_the_reason_and_advice(cli: Cli) -> None:
    """An unknown key, insufficient balance and an unknown subnet: exit 1 with a readable
    reason and advice."""
    code, _, err = cli("subnet", "create", wallet="bob")
    assert code == 1
    assert "rejected: unknown signer:" in err
    assert "send it funds first ('ensemble transfer'), or register the hotkey" in err
    assert cli("faucet", "--amount", "0.000000001", wallet="bob")[0] == 0
    code, _, err = cli("subnet", "create", wallet="bob")
    assert code == 1
    assert "rejected: insufficient balance:" in err
    assert "fund the coldkey with 'ensemble faucet' on a dev chain or 'ensemble transfer'" in err
    for argv in (("register", "--netuid", "7"), ("metagraph", "--netuid", "7"),
                 ("subnet", "show", "--netuid", "7")):
        code, _, err = cli(*argv)
        assert (code, err.strip()) == (1, "error: there is no subnet 7; list the subnets with "
                                          "'ensemble subnet list'")
    assert cli("faucet", "--amount", "1")[0] == 0
    code, _, err = cli("stake", "remove", "--amount", "5")
    assert code == 1
    assert "rejected: insufficient stake:" in err


@pytest.mark.parametrize(("argv", "message"), [
    (("transfer", "--dest", "ens1nope", "--amount", "1"), "argument --dest"),
    (("transfer", "--dest", SOMEONE, "--amount", "1.0000000001"), "more than 9 decimal places"),
    (("stake", "add", "--amount", "-1"), "must be positive"),
    (("stake", "add", "--amount", "abc"), "not an amount of tokens"),
    (("faucet", "--amount", "0"), "must be positive"),
    (("metagraph", "--netuid", "70000"), "a netuid is 0..65535"),
    (("serve", "--netuid", "1", "--host", "h", "--port", "0"), "a port is 1..65535"),
])
def test_bad_arguments_are_usage_errors(cli: Cli, argv: tuple[str, ...], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Malformed amounts, addresses and numbers exit 2 with a message naming the problem."""
    with pytest.raises(SystemExit) as info:
        cli(*argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not cli.db.exists()  # nothing ran


def test_subnet_set_refuses_bad_changes_before_signing(cli: Cli) -> None:
    """Unknown, network-level and out-of-bounds hyperparameters fail before any transaction."""
    assert cli("faucet", "--amount", "200")[0] == 0
    assert cli("subnet", "create")[0] == 0
    for change, message in (("nosuch=1", "unknown hyperparameter 'nosuch'"),
                            ("emission_per_block=5", "network-level parameter"),
                            ("tempo=0", "invalid hyperparameters: tempo must lie in"),
                            ("tempo=abc", "tempo is an integer"),
                            ("yuma3=maybe", "yuma3 is true or false"),
                            ("tempo", "write changes as NAME=VALUE")):
        code, _, err = cli("subnet", "set", "--netuid", "1", change)
        assert code == 1, change
        assert message in err, (change, err)
    assert cli("faucet", "--amount", "1", wallet="bob")[0] == 0
    code, _, err = cli("subnet", "set", "--netuid", "1", "tempo=10", wallet="bob")
    assert code == 1
    assert "rejected: not permitted:" in err


def test_chain_option_sources(env: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """--chain is required unless $ENSEMBLE_CHAIN is set; a new file needs --dev."""
    wallets = ["--wallet", "alice", "--wallet-path", str(env / "wallets")]
    assert main(["subnet", "list", *wallets]) == 1
    assert "no chain given" in capsys.readouterr().err
    assert main(["subnet", "list", "--chain", str(env / "new.db"), *wallets]) == 1
    assert "pass --dev to create a dev chain" in capsys.readouterr().err
    monkeypatch.setenv("ENSEMBLE_CHAIN", str(env / "env.db"))
    assert main(["subnet", "list", "--dev", "--block-time", "0.05", *wallets]) == 0
    assert "no subnets yet" in capsys.readouterr().out
    assert (env / "env.db").exists()
    assert main(["account", "--block-time", "0.05", "--wallet", "carol",
                 "--wallet-path", str(env / "wallets")]) == 1
    assert "wallet 'carol' not found" in capsys.readouterr().err


def test_verify_reports_a_corrupt_chain(cli: Cli) -> None:
    """chain verify exits 1 naming the block when a stored block was altered."""
    assert cli("faucet", "--amount", "1")[0] == 0
    import sqlite3  # noqa: PLC0415 - only this test edits the file behind the ledger's back

    with sqlite3.connect(cli.db) as db:
        db.execute("UPDATE blocks SET timestamp_ms = timestamp_ms + 1 WHERE height = 1")
    db.close()
    assert main(["chain", "verify", "--db", str(cli.db)]) == 1
    assert "is CORRUPT at block 1" in cli.capsys.readouterr().err
    assert main(["chain", "verify", "--db", str(cli.root / "none.db")]) == 1


# --- chain init: a production chain ------------------------------------------------------------

AUTHORITY = Keypair(bytes(range(32)))
REPO = Path(__file__).resolve().parent.parent
READY = re.compile(r"chain node listening on (http://\S+) \(height \d+, chain id ([0-9a-f]{64})\)")


def init_chain(db: Path, *extra: str) -> int:
    """``ensemble chain init`` of a chain named testnet whose one authority is AUTHORITY."""
    return main(["chain", "init", "--db", str(db), "--name", "testnet",
                 "--authority", AUTHORITY.address, *extra])


def test_init_creates_a_non_dev_chain_with_exact_balances(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The file holds the genesis given: name, authority, balances to the unit, no faucet."""
    alice = Wallet(env / "wallets", "alice").coldkey_address()
    bob = Wallet(env / "wallets", "bob").coldkey_address()
    db = env / "prod.db"
    capsys.readouterr()
    assert init_chain(db, "--balance", f"{alice}=1000", "--balance", f"{bob}=0.000000001",
                      "--timestamp-ms", "1790000000000") == 0
    out = capsys.readouterr().out
    chain = Chain.open(db, ChainConfig(node_key=AUTHORITY))
    try:
        assert not chain.genesis.dev
        assert chain.genesis.chain_name == "testnet"
        assert chain.genesis.authorities == (AUTHORITY.address,)
        assert chain.genesis.timestamp_ms == 1_790_000_000_000
        assert chain.account(alice).balance == 1000 * T
        assert chain.account(bob).balance == 1
        assert f"chain id      {chain.chain_id.hex()}" in out
    finally:
        chain.close()
    assert "2 accounts, 1000.000000001 tokens in all" in out
    assert "next: ensemble chain serve" in out


@pytest.mark.parametrize(("extra", "message"), [
    (["--balance", "nonsense"], "write ADDRESS=TOKENS"),
    (["--balance", f"{SOMEONE[:-1]}x=5"], "checksum"),
    (["--balance", f"{SOMEONE}=0"], "must be positive"),
    (["--balance", f"{SOMEONE}=1.0000000001"], "more than 9 decimal places"),
    (["--name", "x" * 65], "1 to 64 characters"),
    (["--timestamp-ms", "-5"], "Unix milliseconds"),
])
def test_init_refuses_bad_arguments_before_creating_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
        message: str) -> None:
    """Bad genesis input is a usage error (exit 2) that says what is wrong; no file appears."""
    db = tmp_path / "prod.db"
    with pytest.raises(SystemExit) as info:
        init_chain(db, *extra)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not db.exists()


def test_init_refuses_duplicates_and_never_overwrites(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A repeated address is refused; an existing file is left byte for byte as it was."""
    db = tmp_path / "prod.db"
    assert init_chain(db, "--balance", f"{SOMEONE}=1", "--balance", f"{SOMEONE}=2") == 1
    assert "genesis balances name an address twice" in capsys.readouterr().err
    assert init_chain(db, "--authority", AUTHORITY.address) == 1
    assert "authorities must be unique" in capsys.readouterr().err
    assert not db.exists()
    assert init_chain(db) == 0
    before = db.read_bytes()
    assert init_chain(db, "--balance", f"{SOMEONE}=1") == 1
    assert "already exists" in capsys.readouterr().err
    assert db.read_bytes() == before


def test_a_production_chain_runs_as_a_node_from_its_genesis(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """init, then a real node process signing blocks with the authority's key: transfers
    between genesis accounts go through, the faucet does not exist, the file verifies."""
    wallets = ["--wallet-path", str(env / "wallets")]
    alice = Wallet(env / "wallets", "alice").coldkey_address()
    bob = Wallet(env / "wallets", "bob").coldkey_address()
    db = env / "prod.db"
    assert init_chain(db, "--balance", f"{alice}=50") == 0
    node = subprocess.Popen(
        [sys.executable, "-m", "protocol.cli.main", "chain", "serve", "--db", str(db),
         "--block-time", "0.1", "--port", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "ENSEMBLE_NODE_KEY_SEED": bytes(range(32)).hex()})
    try:
        assert node.stdout is not None
        ready, _, _ = select.select([node.stdout], [], [], 60)
        match = READY.fullmatch(node.stdout.readline().strip()) if ready else None
        assert match, "the node did not print its ready line"
        url = match.group(1)
        capsys.readouterr()
        assert main(["transfer", "--dest", bob, "--amount", "12.5", "--chain", url,
                     "--wallet", "alice", *wallets]) == 0
        assert f"transferred 12.5 tokens from {alice} to {bob}" in capsys.readouterr().out
        assert main(["account", "--chain", url, "--wallet", "bob", *wallets]) == 0
        assert "balance    12.5 tokens" in capsys.readouterr().out
        assert main(["faucet", "--amount", "1", "--chain", url, "--wallet", "bob",
                     *wallets]) == 1
        assert "exists only on dev chains" in capsys.readouterr().err
    finally:
        node.terminate()
        node.wait(timeout=30)
        if node.stdout is not None:
            node.stdout.close()
    assert node.returncode == 0
    assert main(["chain", "verify", "--db", str(db)]) == 0
    assert "verified:" in capsys.readouterr().out


@pytest.mark.parametrize("command", [
    ["chain", "init"], ["chain", "serve"], ["chain", "verify"], ["subnet", "create"],
    ["subnet", "list"], ["subnet", "show"], ["subnet", "set"], ["register"], ["serve"],
    ["stake", "add"], ["stake", "remove"], ["transfer"], ["faucet"], ["metagraph"], ["account"]])
def test_every_command_has_help_with_examples(command: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--help of each command exits 0 and shows examples."""
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_parse_tokens_is_exact() -> None:
    """Decimal token amounts convert to units exactly; bad ones are refused."""
    assert parse_tokens("1.5") == 1_500_000_000
    assert parse_tokens("0.000000001") == 1
    assert parse_tokens("0.1") == 100_000_000  # no float rounding
    assert parse_tokens("9223372036.854775807") == MAX_SUPPLY
    assert parse_tokens("0", allow_zero=True) == 0
    for bad in ("0", "-1", "1.0000000001", "nan", "inf", "", "1,5", "9223372036.854775808"):
        with pytest.raises(ConfigError):
            parse_tokens(bad)
    assert parse_change("kappa=0.5") == ("kappa", 0.5)
    assert parse_change("yuma3=on") == ("yuma3", True)


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(1, MAX_SUPPLY))
def test_format_then_parse_is_identity(units: int) -> None:
    """format_tokens prints every amount so that parse_tokens gives back the same units."""
    assert parse_tokens(format_tokens(units)) == units


@pytest.mark.parametrize("value", ["-1", "fast", "nan", "2000000"])
def test_serve_refuses_a_bad_rate_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        value: str) -> None:
    """--rate-limit takes 0 (off) to 1e6 requests/s; anything else is a usage error."""
    with pytest.raises(SystemExit) as info:
        main(["chain", "serve", "--db", str(tmp_path / "c.db"), "--dev", "--rate-limit", value])
    assert info.value.code == 2
    assert "--rate-limit" in capsys.readouterr().err
    assert not (tmp_path / "c.db").exists()


def test_a_port_in_use_is_a_plain_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Binding a taken port ends with an 'error:' line that says what to do, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["miner", "echo", "--port", str(port), "--dev-seed", "11" * 32]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "the port is taken" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("argv", "seed_env", "message"), [
    (["--node-key-seed", "00" * 32], "11" * 32, "one of --node-key-seed or $ENSEMBLE_NODE_KEY"),
    (["--wallet", "node"], "11" * 32, "$ENSEMBLE_NODE_KEY_SEED or --wallet, not both"),
    ([], "11" * 31, "$ENSEMBLE_NODE_KEY_SEED: a seed is 64 hex digits"),
    ([], "zz" * 32, "$ENSEMBLE_NODE_KEY_SEED: not hexadecimal"),
])
def test_the_block_key_comes_from_exactly_one_source(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        argv: list[str], seed_env: str, message: str) -> None:
    monkeypatch.setenv("ENSEMBLE_NODE_KEY_SEED", seed_env)
    assert main(["chain", "serve", "--db", str(tmp_path / "c.db"), "--dev", "--port", "0",
                 *argv]) != 0
    assert message in capsys.readouterr().err
