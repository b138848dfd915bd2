"""Canonical encodings of the ledger: golden vectors, round trips, and the parser fuzz."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ConfigError
from protocol.keys import Keypair
from protocol.ledger.block import BlockHeader, tx_digest
from protocol.ledger.calls import (
    CALL_TYPES,
    CommitWeights,
    CreateSubnet,
    Faucet,
    Register,
    RevealWeights,
    Serve,
    SetHyperparams,
    SetWeights,
    Stake,
    Transfer,
    Unstake,
)
from protocol.ledger.errors import HyperparamError, Reason, TxRejected
from protocol.ledger.genesis import Genesis
from protocol.ledger.hyperparams import HYPERPARAM_SPECS, SubnetHyperparams
from protocol.ledger.state import genesis_state
from protocol.ledger.state_codec import encode_state, state_digest
from protocol.ledger.tx import Tx, check_signatures, decode_tx, sign_tx
from protocol.ledger.weights import commit_digest

SIGNER = Keypair(bytes(range(32)))
HOTKEY = Keypair(bytes(range(32, 64)))
CHAIN_ID = bytes([0x42]) * 32

# docs/spec-ledger.md §4.4 carries these exact values.
GOLDEN_TRANSFER_SIGNING = (
    "656e73656d626c656e65742f74782f76319601c42042424242424242424242424242424242424242424242"
    "42424242424242424242c42003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531"
    "b807a87472616e7366657292c4201111111111111111111111111111111111111111111111111111111111"
    "111111ce59682f00")
GOLDEN_TRANSFER = (
    "9801c4204242424242424242424242424242424242424242424242424242424242424242c42003a107bf"
    "f3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b807a87472616e7366657292c42011"
    "11111111111111111111111111111111111111111111111111111111111111ce59682f00c4405ac1799c"
    "1e858c6d44afd5731940103816b74144fbb1c8f30a8937f5142df4485e47c3c3f01829c117c52ab4e2cd"
    "01c80891d063f177e818347516ef8b2a600ac0")
GOLDEN_TRANSFER_HASH = "3542f4b631aadc4c786f79e8350e292eb253e31207df91892b157a5e54d5c1e6"
GOLDEN_REGISTER = (
    "9801c4204242424242424242424242424242424242424242424242424242424242424242c42003a107bf"
    "f3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b808a872656769737465729301c420"
    "29acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd7ce77359400c4407fb025"
    "6f31d9e8c5a7ac1850da8209d3dfba4c157ee45654f1ff7910fb613714e6748c827a935f87dea8a75300"
    "2e76394a081faf7ce722087c39ad2a8e93e40fc440335e25536a50349ce1a560116dbb3d3fd7eccabbb3"
    "f7f483aec20c8e5472cbfafb292e4b07b75e3b087151eddcb21264f82c9390013a576947812fe61d94ea"
    "0a")
GOLDEN_COMMIT_DIGEST = "e7a9ba0c0da2c2075ec1af9d8745c13c9ec618a4904f7db566c940da43367b59"


GOLDEN_CHAIN_ID = "98b34d7c0a6ab973043bc2105838a9f09edb6edb1932ff92b768decc4ece3d84"
GOLDEN_GENESIS_STATE_DIGEST = "5b1b4eab657b5e191b99390d1417b5a27bfbc519f561d43bfb16a676b24263d0"
GOLDEN_EMPTY_TX_DIGEST = "d2d3347e1d7cab1126fe07ad14581ead86ab41a1403780a55e8f4492294634b0"
GOLDEN_BLOCK_HASH = "55ad462c7c54cfdad02cbc9a5dc9f7f4a5aa00ad1223c7535300c39c3b5e30cd"
GOLDEN_BLOCK_SIGNATURE = (
    "b78dbe1e04dcf7315285d2724bb2b6c8e0c9a0bf2799dd5a2561c610d6064fa7fa0993fd1ffc7be3e7f2d054"
    "04162e4789b8f9a3a891237cd5ff390fc44f190d")


def golden_genesis() -> Genesis:
    return Genesis("ensemblenet-golden", (SIGNER.address,), dev=True,
                   timestamp_ms=1_790_000_000_000, balances=((SIGNER.address, 10**12),))


def test_golden_genesis_and_block_vectors() -> None:
    """Chain id, genesis state digest, empty tx digest and a block header hash match the spec."""
    genesis = golden_genesis()
    assert genesis.chain_id.hex() == GOLDEN_CHAIN_ID
    assert state_digest(genesis_state(genesis)).hex() == GOLDEN_GENESIS_STATE_DIGEST
    assert tx_digest([]).hex() == GOLDEN_EMPTY_TX_DIGEST
    header = BlockHeader(1, genesis.chain_id, 1_790_000_001_000, tx_digest([]), bytes(32),
                         SIGNER.public_key.raw)
    assert header.hash.hex() == GOLDEN_BLOCK_HASH
    assert header.sign(SIGNER).hex() == GOLDEN_BLOCK_SIGNATURE
    assert header.signature_valid(bytes.fromhex(GOLDEN_BLOCK_SIGNATURE))
    assert encode_state(genesis_state(genesis)).hex() == (
        "9901c42098b34d7c0a6ab973043bc2105838a9f09edb6edb1932ff92b768decc4ece3d8400cf000000e8d4"
        "a51000009193c42003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8cf0000"
        "00e8d4a5100000909090")


def golden_transfer() -> Tx:
    return sign_tx(Transfer(bytes([0x11]) * 32, 1_500_000_000), SIGNER, nonce=7,
                   chain_id=CHAIN_ID)


def test_golden_transfer_vector() -> None:
    """A transfer from the fixed seed encodes, signs and hashes to the spec's golden bytes."""
    tx = golden_transfer()
    assert tx.signing_bytes().hex() == GOLDEN_TRANSFER_SIGNING
    assert tx.encode().hex() == GOLDEN_TRANSFER
    assert tx.hash.hex() == GOLDEN_TRANSFER_HASH
    assert decode_tx(bytes.fromhex(GOLDEN_TRANSFER)) == tx


def test_golden_register_vector_with_cosignature() -> None:
    """A register transaction carries the hotkey's cosignature over the same signing bytes."""
    tx = sign_tx(Register(1, HOTKEY.public_key.raw, 2_000_000_000), SIGNER, nonce=8,
                 chain_id=CHAIN_ID, cosigner=HOTKEY)
    assert tx.encode().hex() == GOLDEN_REGISTER
    check_signatures(decode_tx(bytes.fromhex(GOLDEN_REGISTER)))


def test_golden_commit_digest() -> None:
    """The commit digest binds hotkey, netuid, uids, weights and salt as the spec says."""
    digest = commit_digest(HOTKEY.public_key.raw, 1, [0, 2], [65535, 32768], bytes(range(16)))
    assert digest.hex() == GOLDEN_COMMIT_DIGEST


ALL_CALLS = [
    Transfer(bytes(32), 1),
    Stake(bytes(32), 5),
    Unstake(bytes(32), 5),
    CreateSubnet(0),
    SetHyperparams(3, (("kappa", 0.5), ("tempo", 10), ("yuma3", True))),
    Serve(1, "10.0.0.1", 8091, 3),
    SetWeights(1, (0, 1, 2), (1, 2, 65535)),
    CommitWeights(1, bytes(32)),
    RevealWeights(1, (0,), (7,), b"saltsalt"),
    Faucet(bytes(32), 10),
]


@pytest.mark.parametrize("call", ALL_CALLS, ids=lambda c: c.KIND)
def test_every_call_round_trips(call: object) -> None:
    """Every call kind encodes and decodes to an equal, signature-valid transaction."""
    tx = sign_tx(call, SIGNER, nonce=3, chain_id=CHAIN_ID)  # type: ignore[arg-type]
    decoded = decode_tx(tx.encode())
    assert decoded == tx
    check_signatures(decoded)


def test_call_table_covers_every_kind() -> None:
    """The round-trip list names every call kind the wire knows (register is tested above)."""
    assert {c.KIND for c in ALL_CALLS} | {"register"} == set(CALL_TYPES)


def _reencode(tx: Tx, **changes: object) -> bytes:
    fields = msgpack.unpackb(tx.encode(), raw=False)
    for index, value in changes.items():
        fields[int(index[1:])] = value
    return msgpack.packb(fields, use_bin_type=True)


@pytest.mark.parametrize(("name", "data"), [
    ("empty", b""),
    ("not an array", msgpack.packb({"a": 1})),
    ("trailing byte", bytes.fromhex(GOLDEN_TRANSFER) + b"\x00"),
    ("version 2", _reencode(golden_transfer(), f0=2)),
    ("unknown kind", _reencode(golden_transfer(), f4="mint")),
    ("short signer", _reencode(golden_transfer(), f2=b"\x01" * 31)),
    ("negative nonce", _reencode(golden_transfer(), f3=-1)),
    ("zero amount", _reencode(golden_transfer(), f5=[b"\x11" * 32, 0])),
    ("bool amount", _reencode(golden_transfer(), f5=[b"\x11" * 32, True])),
    ("stray cosignature", _reencode(golden_transfer(), f7=b"\x00" * 64)),
    ("str chain id", _reencode(golden_transfer(), f1="B" * 32)),
])
def test_malformed_bytes_are_rejected_as_malformed(name: str, data: bytes) -> None:
    """Structurally wrong transactions raise TxRejected with reason malformed."""
    with pytest.raises(TxRejected) as info:
        decode_tx(data)
    assert info.value.reason is Reason.MALFORMED


def test_non_canonical_integer_is_malformed() -> None:
    """An amount written as uint64 instead of its minimal form is refused (one encoding only)."""
    raw = bytes.fromhex(GOLDEN_TRANSFER)
    minimal = bytes.fromhex("ce59682f00")
    assert raw.count(minimal) == 1
    padded = raw.replace(minimal, bytes.fromhex("cf0000000059682f00"))
    with pytest.raises(TxRejected) as info:
        decode_tx(padded)
    assert info.value.reason is Reason.MALFORMED


def test_hyperparam_names_must_be_sorted_and_typed() -> None:
    """set_hyperparams needs ascending unique names and the declared value types."""
    good = sign_tx(SetHyperparams(1, (("kappa", 0.5), ("tempo", 9))), SIGNER, nonce=0,
                   chain_id=CHAIN_ID)
    fields = msgpack.unpackb(good.encode(), raw=False)
    for changes in ([["tempo", 9], ["kappa", 0.5]], [["kappa", 1], ["tempo", 9]],
                    [["nope", 1]], []):
        fields[5] = [1, changes]
        with pytest.raises(TxRejected) as info:
            decode_tx(msgpack.packb(fields, use_bin_type=True))
        assert info.value.reason is Reason.MALFORMED


def parse_or_reason(data: bytes) -> Tx | Reason:
    """The parsed transaction, or the reason it was rejected (any other exception escapes)."""
    try:
        return decode_tx(data)
    except TxRejected as exc:
        return exc.reason


def assert_parses_or_malformed(data: bytes) -> None:
    result = parse_or_reason(data)
    if isinstance(result, Reason):
        assert result is Reason.MALFORMED
    else:
        assert result.encode() == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes_parse_or_reject_malformed(data: bytes) -> None:
    """Arbitrary bytes either decode to a Tx that re-encodes identically, or raise malformed."""
    assert_parses_or_malformed(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_transactions(data: st.DataObject) -> None:
    """Byte flips, truncations and insertions in a valid transaction never escape the parser."""
    raw = bytearray(bytes.fromhex(GOLDEN_REGISTER))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[pos:]
            if not raw:
                break
        else:
            raw.insert(pos, data.draw(st.integers(0, 255)))
    assert_parses_or_malformed(bytes(raw))


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.binary(max_size=70) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=9),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(msgpack_values)
def test_fuzz_structured_msgpack(value: object) -> None:
    """Well-formed msgpack of any shape either is a transaction or is rejected as malformed."""
    assert_parses_or_malformed(msgpack.packb(value, use_bin_type=True))


def test_hyperparams_defaults_round_trip_and_bounds() -> None:
    """Defaults are valid, encode in spec order, and out-of-bound values are refused."""
    hyper = SubnetHyperparams()
    assert SubnetHyperparams.from_wire(hyper.to_wire()) == hyper
    assert [s.name for s in HYPERPARAM_SPECS] == list(SubnetHyperparams.__dataclass_fields__)
    with pytest.raises(HyperparamError):
        SubnetHyperparams(tempo=0)
    with pytest.raises(HyperparamError):
        SubnetHyperparams(alpha_low=0.9, alpha_high=0.8)
    with pytest.raises(HyperparamError):
        SubnetHyperparams(min_burn=10, max_burn=5)
    with pytest.raises(HyperparamError):
        SubnetHyperparams(yuma3=1)  # type: ignore[arg-type]
    assert SubnetHyperparams(kappa=0.5).with_changes({"tempo": 7}).tempo == 7


def test_genesis_chain_id_is_order_independent_and_validated() -> None:
    """Genesis sorts balances, so the chain id does not depend on input order."""
    a, b = SIGNER.address, HOTKEY.address
    one = Genesis("net", (a,), balances=((a, 5), (b, 6)))
    two = Genesis("net", (a,), balances=((b, 6), (a, 5)))
    assert one.chain_id == two.chain_id
    assert one.chain_id != Genesis("net", (a,), dev=True, balances=((a, 5), (b, 6))).chain_id
    with pytest.raises(ConfigError):
        Genesis("net", (a,), balances=((a, 5), (a, 6)))
    with pytest.raises(ConfigError):
        Genesis("net", ())
