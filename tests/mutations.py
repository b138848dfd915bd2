"""A hypothesis strategy shared by the byte fuzzers: random bytes, or valid bytes damaged."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st


@st.composite
def random_or_mutated(draw: st.DrawFn, valid: Sequence[bytes]) -> bytes:
    """Random bytes, or one of ``valid`` with up to four bytes flipped, a cut or an insertion."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    data = bytearray(draw(st.sampled_from(list(valid))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)
