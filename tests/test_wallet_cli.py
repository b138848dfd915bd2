"""Wallets (protocol/wallet.py) and the ``ensemble wallet`` commands (protocol/cli/wallet.py)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.cli.main import main
from protocol.errors import (
    AddressError,
    ConfigError,
    IdentityError,
    KeyfileCorruptError,
    KeyfileExistsError,
    WrongPasswordError,
)
from protocol.keyfile import KdfParams
from protocol.keys import Keypair
from protocol.wallet import Wallet, default_wallet_root, list_wallets

REPO = Path(__file__).resolve().parent.parent
CHEAP = KdfParams(n=2**10)
COLD_SEED = bytes(range(32))
HOT_SEED = bytes(range(32, 64))
COLD_ADDRESS = Keypair(COLD_SEED).address
HOT_ADDRESS = Keypair(HOT_SEED).address
FAST = ["--kdf-cost", "10"]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A wallet root in tmp_path; HOME also points into tmp_path so ~ is never touched."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ENSEMBLE_PASSWORD", "hunter2")
    monkeypatch.delenv("ENSEMBLE_WALLET_PATH", raising=False)
    return tmp_path / "wallets"


def run(capsys: pytest.CaptureFixture[str], root: Path, *argv: str) -> tuple[int, str, str]:
    """Run ``ensemble wallet ARGV --wallet-path ROOT`` in-process; return (code, out, err)."""
    code = main(["wallet", *argv, "--wallet-path", str(root)])
    out, err = capsys.readouterr()
    return code, out, err


# --- library --------------------------------------------------------------------------------


def test_constructor_does_no_io(tmp_path: Path) -> None:
    """Wallet(...) and path properties create nothing."""
    wallet = Wallet(tmp_path / "nowhere", "alice")
    assert wallet.coldkey_path == tmp_path / "nowhere" / "alice" / "coldkey"
    assert not wallet.exists()
    assert wallet.hotkey_names() == []
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("name", ["", ".hidden", "..", "a/b", "a b", "é", "x" * 65, "a\n"])
def test_invalid_names(tmp_path: Path, name: str) -> None:
    """Names outside [A-Za-z0-9_.-]{1,64} or with a leading dot are a ConfigError."""
    with pytest.raises(ConfigError, match="invalid wallet name"):
        Wallet(tmp_path, name)
    with pytest.raises(ConfigError, match="invalid hotkey name"):
        Wallet(tmp_path, "ok").hotkey_path(name)


@pytest.mark.parametrize("name", ["a", "A-1", "miner_2.v3", "x" * 64, "-dash", "_u"])
def test_valid_names(tmp_path: Path, name: str) -> None:
    """Letters, digits, '_', '.', '-' up to 64 characters are accepted."""
    assert Wallet(tmp_path, name).name == name


def test_hotkey_name_may_not_end_in_pub(tmp_path: Path) -> None:
    """'x.pub' would collide with hotkey x's public file."""
    with pytest.raises(ConfigError, match=r"must not end in '\.pub'"):
        Wallet(tmp_path, "w").hotkey_path("x.pub")


def test_default_wallet_root() -> None:
    """The env override wins; otherwise ~/.ensemble/wallets under the given HOME."""
    assert default_wallet_root({"HOME": "/h"}) == Path("/h/.ensemble/wallets")
    assert default_wallet_root({"HOME": "/h", "ENSEMBLE_WALLET_PATH": "/w"}) == Path("/w")
    assert default_wallet_root({"HOME": "/h", "ENSEMBLE_WALLET_PATH": ""}) == Path(
        "/h/.ensemble/wallets")


def test_wallet_lifecycle(tmp_path: Path) -> None:
    """create, coldkey, new_hotkey (both kinds), hotkey, listing: all agree on the keys."""
    wallet = Wallet(tmp_path, "alice")
    assert wallet.create("pw", CHEAP, seed=COLD_SEED).address == COLD_ADDRESS
    assert wallet.exists()
    assert wallet.coldkey("pw").seed == COLD_SEED
    assert wallet.coldkey_address() == COLD_ADDRESS
    wallet.new_hotkey("enc", "hotpw", CHEAP, seed=HOT_SEED)
    plain = wallet.new_hotkey("plain", None)
    assert wallet.hotkey_names() == ["enc", "plain"]
    assert wallet.hotkey("enc", "hotpw").address == HOT_ADDRESS
    assert wallet.hotkey("plain").address == plain.address
    assert wallet.hotkey_address("enc") == HOT_ADDRESS
    assert (wallet.hotkey_encrypted("enc"), wallet.hotkey_encrypted("plain")) == (True, False)
    assert list_wallets(tmp_path) == ["alice"]
    assert stat.S_IMODE(os.stat(wallet.path).st_mode) == 0o700
    with pytest.raises(WrongPasswordError):
        wallet.coldkey("wrong")
    with pytest.raises(WrongPasswordError, match="no password was given"):
        wallet.hotkey("enc")


def test_missing_parents_of_a_wallet_are_created_private(tmp_path: Path) -> None:
    """SPEC §2.2: directories are 0700, the wallet root included (it lists wallet names)."""
    root = tmp_path / "home" / "wallets"
    Wallet(root, "alice").create("pw", CHEAP, seed=COLD_SEED)
    modes = [stat.S_IMODE(os.stat(d).st_mode) for d in (tmp_path / "home", root, root / "alice")]
    assert modes == [0o700, 0o700, 0o700]


def test_create_twice_refuses(tmp_path: Path) -> None:
    """A second create of the same wallet raises and keeps the original coldkey."""
    wallet = Wallet(tmp_path, "alice")
    wallet.create("pw", CHEAP, seed=COLD_SEED)
    with pytest.raises(KeyfileExistsError, match="already exists"):
        wallet.create("pw", CHEAP)
    wallet.new_hotkey("h", None)
    with pytest.raises(KeyfileExistsError, match="hotkey 'h' already exists"):
        wallet.new_hotkey("h", None)
    assert wallet.coldkey("pw").seed == COLD_SEED


def test_swapped_public_file_is_detected(tmp_path: Path) -> None:
    """A coldkeypub.txt naming another key makes coldkey() refuse."""
    wallet = Wallet(tmp_path, "alice")
    wallet.create("pw", CHEAP, seed=COLD_SEED)
    wallet.coldkeypub_path.write_text(HOT_ADDRESS + "\n")
    with pytest.raises(KeyfileCorruptError, match="one of the two files was replaced"):
        wallet.coldkey("pw")


def test_garbled_public_file(tmp_path: Path) -> None:
    """A coldkeypub.txt with a typo is an AddressError naming the file."""
    wallet = Wallet(tmp_path, "alice")
    wallet.create("pw", CHEAP, seed=COLD_SEED)
    wallet.coldkeypub_path.write_text(COLD_ADDRESS[:-2] + "zz\n")
    with pytest.raises(AddressError, match=r"coldkeypub\.txt: address"):
        wallet.coldkey_address()


def test_hotkey_needs_wallet(tmp_path: Path) -> None:
    """Hotkeys cannot be added to, or read from, a wallet that does not exist."""
    wallet = Wallet(tmp_path, "ghost")
    with pytest.raises(IdentityError, match="wallet 'ghost' not found"):
        wallet.new_hotkey("h", None)
    wallet.create("pw", CHEAP)
    with pytest.raises(IdentityError, match="hotkey 'h' not found in wallet 'ghost'"):
        wallet.hotkey("h")


# --- command line ---------------------------------------------------------------------------


def test_create_show_list(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """create with a hotkey, then show and list report the same addresses."""
    code, out, _ = run(capsys, root, "create", "alice", "--hotkey", "--seed-hex",
                       COLD_SEED.hex(), *FAST)
    assert code == 0
    assert f"coldkey  {COLD_ADDRESS}" in out
    assert "hotkey   default" in out
    assert "(encrypted)" in out
    assert Wallet(root, "alice").coldkey("hunter2").address == COLD_ADDRESS
    assert Wallet(root, "alice").hotkey_encrypted("default")

    code, out, _ = run(capsys, root, "show", "alice")
    assert code == 0
    lines = out.splitlines()
    assert lines[1] == f"coldkey  {COLD_ADDRESS}"
    assert lines[3].split() == ["HOTKEY", "ADDRESS", "ENCRYPTED"]
    assert lines[4].split()[0::2] == ["default", "yes"]

    code, out, _ = run(capsys, root, "list")
    assert code == 0
    assert out.splitlines()[1].split() == ["alice", COLD_ADDRESS, "1"]


def test_json_output(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json on list and show prints exact machine-readable values."""
    run(capsys, root, "create", "alice", "--seed-hex", COLD_SEED.hex(), *FAST)
    run(capsys, root, "new-hotkey", "alice", "m1", "--no-password", "--seed-hex",
        HOT_SEED.hex())
    _, out, _ = run(capsys, root, "list", "--json")
    assert json.loads(out) == [{"name": "alice", "coldkey": COLD_ADDRESS, "hotkeys": 1}]
    _, out, _ = run(capsys, root, "show", "alice", "--json")
    assert json.loads(out) == {
        "name": "alice", "path": str(root / "alice"), "coldkey": COLD_ADDRESS,
        "hotkeys": [{"name": "m1", "address": HOT_ADDRESS, "encrypted": False}]}


def test_no_password_hotkey_on_create(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--no-password-hotkey alone makes an unencrypted hotkey "default"; the coldkey is sealed."""
    code, out, _ = run(capsys, root, "create", "bob", "--no-password-hotkey", *FAST)
    assert code == 0
    assert "(unencrypted)" in out
    wallet = Wallet(root, "bob")
    assert not wallet.hotkey_encrypted("default")
    assert wallet.hotkey("default").address == wallet.hotkey_address("default")
    with pytest.raises(WrongPasswordError):
        wallet.coldkey("not it")


def test_new_hotkey_encrypted_with_env_password(root: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """new-hotkey without --no-password encrypts with $ENSEMBLE_PASSWORD."""
    run(capsys, root, "create", "alice", *FAST)
    code, out, _ = run(capsys, root, "new-hotkey", "alice", "v", *FAST)
    assert code == 0
    assert "(encrypted)" in out
    assert Wallet(root, "alice").hotkey("v", "hunter2").address in out


def test_missing_wallet_says_how_to_create(root: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """show/new-hotkey on an unknown wallet exit 1 with the create command to run."""
    code, _, err = run(capsys, root, "show", "x")
    assert code == 1
    assert err == (f"error: wallet 'x' not found under {root}; create it with: "
                   f"ensemble wallet create x --wallet-path {root}\n")
    code, _, err = run(capsys, root, "new-hotkey", "x", "h")
    assert code == 1
    assert "ensemble wallet create x" in err


def test_existing_wallet_and_hotkey(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Creating what exists fails with exit 1 before any password is asked for."""
    run(capsys, root, "create", "alice", "--hotkey", "h", *FAST)
    code, _, err = run(capsys, root, "create", "alice", *FAST)
    assert code == 1
    assert "wallet 'alice' already exists" in err
    code, _, err = run(capsys, root, "new-hotkey", "alice", "h", *FAST)
    assert code == 1
    assert "hotkey 'h' already exists in wallet 'alice'" in err


def test_a_missing_public_file_does_not_hide_the_other_wallets(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, root, "create", "alice", "--seed-hex", COLD_SEED.hex(), *FAST)
    run(capsys, root, "create", "bob", *FAST)
    run(capsys, root, "new-hotkey", "alice", "m1", "--no-password", "--seed-hex", HOT_SEED.hex())
    (root / "bob" / "coldkeypub.txt").unlink()
    (root / "alice" / "hotkeys" / "m1.pub").unlink()
    code, out, _ = run(capsys, root, "list")
    assert code == 0
    rows = [line.split()[:2] for line in out.splitlines()[1:]]
    assert rows == [["alice", COLD_ADDRESS], ["bob", "unreadable"]]
    code, out, _ = run(capsys, root, "show", "alice")
    assert code == 0
    assert out.splitlines()[4].split()[:2] == ["m1", "unreadable"]


def test_list_empty(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty or missing root lists nothing and says how to start; JSON gives []."""
    code, out, _ = run(capsys, root, "list")
    assert code == 0
    assert out.startswith(f"no wallets under {root}; create one with:")
    assert run(capsys, root, "list", "--json")[1] == "[]\n"
    assert not root.exists()


def test_env_wallet_path_and_flag_precedence(root: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """$ENSEMBLE_WALLET_PATH is used without a flag; --wallet-path overrides it."""
    env_root = tmp_path / "env-root"
    monkeypatch.setenv("ENSEMBLE_WALLET_PATH", str(env_root))
    assert main(["wallet", "create", "e", *FAST]) == 0
    assert Wallet(env_root, "e").exists()
    capsys.readouterr()
    assert run(capsys, root, "list", "--json")[1] == "[]\n"
    assert not (tmp_path / "home").exists()


def test_prompted_password_must_match(root: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Without $ENSEMBLE_PASSWORD the password is prompted twice; a mismatch writes nothing."""
    monkeypatch.delenv("ENSEMBLE_PASSWORD")
    answers = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    code, _, err = run(capsys, root, "create", "alice", *FAST)
    assert code == 1
    assert "do not match; nothing was written" in err
    assert not Wallet(root, "alice").exists()

    answers = iter(["s3cret", "s3cret"])
    assert run(capsys, root, "create", "alice", *FAST)[0] == 0
    assert Wallet(root, "alice").coldkey("s3cret").seed


def test_empty_env_password_is_refused(root: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """An empty $ENSEMBLE_PASSWORD is an error, not an unencrypted coldkey."""
    monkeypatch.setenv("ENSEMBLE_PASSWORD", "")
    code, _, err = run(capsys, root, "create", "alice", *FAST)
    assert code == 1
    assert "ENSEMBLE_PASSWORD is set but empty" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["create", "a", "--kdf-cost", "9"], "must be from 10 to 18"),
    (["create", "a", "--seed-hex", "abcd"], "a seed is 32 bytes"),
    (["create", "a", "--seed-hex", "zz"], "not hexadecimal"),
])
def test_usage_errors(root: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                      message: str) -> None:
    """Bad option values are usage errors (exit 2) with a clear message."""
    with pytest.raises(SystemExit) as info:
        main(["wallet", *argv, "--wallet-path", str(root)])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_invalid_wallet_name_on_cli(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad name is reported as an error with the allowed characters."""
    code, _, err = run(capsys, root, "create", ".bad", *FAST)
    assert code == 1
    assert "invalid wallet name '.bad'" in err


def test_loose_mode_reported_by_show(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """show refuses a world-readable hotkey and prints the chmod fix."""
    run(capsys, root, "create", "alice", "--no-password-hotkey", *FAST)
    path = root / "alice" / "hotkeys" / "default"
    path.chmod(0o644)
    code, _, err = run(capsys, root, "show", "alice")
    assert code == 1
    assert f"chmod 600 {path}" in err


def test_wallet_group_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    """'ensemble wallet' alone prints the group help and exits 2."""
    assert main(["wallet"]) == 2
    assert "create" in capsys.readouterr().out


def test_help_in_a_real_subprocess(tmp_path: Path) -> None:
    """python -m protocol.cli.main wallet --help exits 0 and shows examples."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENSEMBLE_")}
    env["HOME"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "protocol.cli.main", "wallet", "--help"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "examples:" in result.stdout
    assert "new-hotkey" in result.stdout
    assert list(tmp_path.iterdir()) == []
