"""SPEC.md's golden vectors are what the implementation produces, byte for byte."""

from __future__ import annotations

import json
import pathlib

from miners.echo import EchoChunk, EchoRequest
from protocol import envelope, stream
from protocol.errorbody import ErrorBody
from protocol.keys import Keypair, decode_address
from tests.vectors import make_wire_vectors as gen

ROOT = pathlib.Path(__file__).parents[1]
VECTORS = json.loads((ROOT / "tests/vectors/wire_vectors.json").read_text())


def test_vectors_file_matches_implementation() -> None:
    """Recomputing every vector from the fixed seeds gives the stored JSON exactly."""
    assert gen.build() == VECTORS


def test_spec_quotes_the_vectors() -> None:
    """SPEC.md §3.10 contains exactly the rendered vectors."""
    spec = (ROOT / "SPEC.md").read_text()
    assert gen.spec_block(spec) == gen.render(VECTORS)


def test_vector_request_verifies_from_headers_alone() -> None:
    """A receiver rebuilding the request from the vector headers and body accepts it."""
    req = VECTORS["request"]
    header, signature = envelope.parse_request_headers(req["route"], req["headers"])
    signed = envelope.verify_request(header, signature, bytes.fromhex(req["body"]),
                                     bytes.fromhex(VECTORS["miner_public_key"]))
    assert signed.digest.hex() == req["request_digest"]
    assert EchoRequest.decode(bytes.fromhex(req["body"])) == EchoRequest(text="hello")


def test_vector_receipt_and_stream_verify() -> None:
    """The stored receipt re-verifies, and the stream frames verify against their trailer."""
    rec = envelope.Receipt.from_bytes(bytes.fromhex(VECTORS["receipt"]["stored"]))
    assert rec.is_valid()
    assert rec.miner == decode_address(VECTORS["miner_address"])
    reader = stream.StreamReader(bytes.fromhex(VECTORS["request"]["request_digest"]), rec.miner)
    data = b"".join(bytes.fromhex(f) for f in VECTORS["stream"]["frames"])
    frames = reader.feed(data + bytes.fromhex(VECTORS["stream"]["trailer"]))
    assert [EchoChunk.decode(f.payload).text for f in frames] == ["h", "e"]
    assert reader.finish().body_digest.hex() == VECTORS["stream"]["final_digest"]
    assert ErrorBody.decode(bytes.fromhex(VECTORS["error_body"])).code == "replay"


def test_vector_keys_come_from_the_seeds() -> None:
    """The published public keys are those of the published seeds."""
    assert Keypair(bytes.fromhex(VECTORS["caller_seed"])).address == VECTORS["caller_address"]
    assert Keypair(bytes.fromhex(VECTORS["miner_seed"])).address == VECTORS["miner_address"]
