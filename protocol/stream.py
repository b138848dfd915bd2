"""Signed streams of frames (SPEC.md §3.6), sans-IO: bytes in, frames out.

A streamed answer is a sequence of frames ``kind (u8) || length (u32 BE) || payload``:

- ``DATA`` (0x01): a msgpack chunk (e.g. generated tokens);
- ``ERROR`` (0x02): an error body (SPEC.md §3.7), after which only the trailer may follow;
- ``TRAILER`` (0xFF): ``status (u16) || timestamp_ms (u64) || signature (64)``, always last.

Every DATA and ERROR frame is folded into a running digest
``d0 = SHA-256(STREAM_DOMAIN || request_digest)``, ``d_i = SHA-256(d_{i-1} || frame bytes)``.
The trailer is a receipt (SPEC.md §3.5) whose ``body_digest`` is the final running digest, so
a frame dropped, altered, reordered or appended, or a stream cut before its trailer, is detected.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from protocol.envelope import Receipt
from protocol.errors import StreamIntegrityError
from protocol.keys import Keypair

STREAM_DOMAIN = b"ensemblenet:stream\x00"
DATA = 0x01
ERROR = 0x02
TRAILER = 0xFF
_HEAD = struct.Struct(">BI")
_TRAILER = struct.Struct(">HQ64s")
#: Largest frame payload a reader accepts (one chunk of tokens is far smaller).
DEFAULT_MAX_FRAME = 1 << 20


def initial_digest(request_digest: bytes) -> bytes:
    """Return ``d0`` of a stream answering ``request_digest``."""
    return hashlib.sha256(STREAM_DOMAIN + request_digest).digest()


def encode_frame(kind: int, payload: bytes) -> bytes:
    """Return the bytes of one frame."""
    return _HEAD.pack(kind, len(payload)) + payload


class StreamSigner:
    """Server side: turns payloads into frames, keeping the running digest, then signs."""

    def __init__(self, keypair: Keypair, request_digest: bytes) -> None:
        self._keypair = keypair
        self._request_digest = request_digest
        self._digest = initial_digest(request_digest)
        self._closed = False

    def frame(self, kind: int, payload: bytes) -> bytes:
        """Return the bytes of a DATA or ERROR frame and fold them into the digest."""
        if self._closed or kind not in (DATA, ERROR):
            raise ValueError("stream is closed or the frame kind is not DATA/ERROR")
        data = encode_frame(kind, payload)
        self._digest = hashlib.sha256(self._digest + data).digest()
        return data

    def trailer(self, status: int, timestamp_ms: int) -> tuple[bytes, Receipt]:
        """Return the signed trailer frame and the receipt it carries; closes the stream."""
        self._closed = True
        receipt = Receipt.issue(self._keypair, self._request_digest, status, self._digest,
                                timestamp_ms)
        payload = _TRAILER.pack(status, timestamp_ms, receipt.signature)
        return encode_frame(TRAILER, payload), receipt


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded DATA or ERROR frame."""

    kind: int
    payload: bytes


class StreamReader:
    """Client side: feed bytes as they arrive, take frames out, then check the trailer.

    Usage: ``reader.feed(chunk)`` returns the complete frames so far; after the transport
    ends call :meth:`finish`, which returns the verified receipt or raises.
    """

    def __init__(self, request_digest: bytes, miner: bytes,
                 max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._request_digest = request_digest
        self._miner = miner
        self._max_frame = max_frame
        self._digest = initial_digest(request_digest)
        self._buffer = bytearray()
        self._receipt: Receipt | None = None
        self._errored = False

    @property
    def receipt(self) -> Receipt | None:
        """The verified receipt once the trailer has arrived."""
        return self._receipt

    def feed(self, data: bytes) -> list[Frame]:
        """Consume bytes; return the DATA/ERROR frames they complete.

        Raises:
            StreamIntegrityError: bytes after the trailer, an unknown kind, an oversized frame,
                a frame other than the trailer after an ERROR frame (SPEC.md §3.6), or a trailer
                whose signature does not cover the frames received.
        """
        if self._receipt is not None and data:
            raise StreamIntegrityError("data after the stream trailer")
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= _HEAD.size and self._receipt is None:
            kind, length = _HEAD.unpack_from(self._buffer)
            if kind not in (DATA, ERROR, TRAILER) or length > self._max_frame:
                raise StreamIntegrityError(f"bad frame header (kind {kind}, length {length})")
            end = _HEAD.size + length
            if len(self._buffer) < end:
                break
            raw = bytes(self._buffer[:end])
            del self._buffer[:end]
            if kind == TRAILER:
                self._receipt = self._check_trailer(raw[_HEAD.size:])
            elif self._errored:
                raise StreamIntegrityError("only the trailer may follow an ERROR frame")
            else:
                self._errored = kind == ERROR
                self._digest = hashlib.sha256(self._digest + raw).digest()
                frames.append(Frame(kind, raw[_HEAD.size:]))
        if self._receipt is not None and self._buffer:
            raise StreamIntegrityError("data after the stream trailer")
        return frames

    def finish(self) -> Receipt:
        """Return the verified receipt; raise if the stream ended without a valid trailer."""
        if self._receipt is None:
            raise StreamIntegrityError("stream ended without its signed trailer (cut short)")
        return self._receipt

    def _check_trailer(self, payload: bytes) -> Receipt:
        if len(payload) != _TRAILER.size:
            raise StreamIntegrityError("malformed stream trailer")
        status, timestamp_ms, signature = _TRAILER.unpack(payload)
        receipt = Receipt(self._request_digest, status, self._digest, self._miner, timestamp_ms,
                          signature)
        if not receipt.is_valid():
            raise StreamIntegrityError("stream trailer signature does not cover the frames")
        return receipt
