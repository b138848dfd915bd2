"""Stop strings over growing text: where to cut, and how much is safe to stream already.

Pure logic shared by every backend. A streamed piece must never contain text that a later
token could turn into the start of a stop string (the caller would receive text that the final
answer no longer has), so the scanner holds back the longest tail that is a proper prefix of
some stop string until the next token settles it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scan:
    """The result of scanning the text so far.

    Attributes:
        end: text[:end] is final: either the text before the first stop string (``stopped``) or
            the part that no future text can pull into a stop string.
        stopped: a stop string occurs; generation should end with text[:end].
    """

    end: int
    stopped: bool


class StopScanner:
    """Finds the first occurrence of any stop string in text that only ever grows.

    Feed the whole text each time; earlier scans are remembered so each call only searches
    where a new match could start.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._searched = 0  # text[:_searched] held no complete stop string

    def scan(self, text: str) -> Scan:
        """Scan ``text``: the full text so far, an extension of what earlier calls saw."""
        if not self._stops:
            return Scan(len(text), stopped=False)
        start = max(0, self._searched - self._longest + 1)
        hits = [i for i in (text.find(s, start) for s in self._stops) if i >= 0]
        if hits:
            return Scan(min(hits), stopped=True)
        self._searched = len(text)
        return Scan(len(text) - self._pending_prefix(text), stopped=False)

    def _pending_prefix(self, text: str) -> int:
        """Length of the longest tail of ``text`` that is a proper prefix of a stop string."""
        for size in range(min(self._longest - 1, len(text)), 0, -1):
            tail = text[-size:]
            if any(s.startswith(tail) for s in self._stops):
                return size
        return 0


class Assembler:
    """Turns the decoded text so far into streamable pieces, honouring stop strings.

    ``text`` is everything handed out; the final answer is always exactly ``text`` once
    generation ends, so streamed pieces and the final response cannot disagree.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._scanner = StopScanner(stops)
        self.text = ""
        self.stopped = False

    def feed(self, decoded: str) -> str:
        """Take the full decoded text so far; return the new piece that is safe to stream.

        Sets ``stopped`` once a stop string appears; the piece then ends right before it.
        """
        scan = self._scanner.scan(decoded)
        self.stopped = scan.stopped
        end = scan.end
        if not scan.stopped:
            # A trailing U+FFFD is usually a multi-byte character whose bytes are still coming.
            end = len(decoded[:end].rstrip("\ufffd"))
        return self._advance(decoded, end)

    def close(self, decoded: str) -> str:
        """Generation ended without a stop string: return the rest of ``decoded``."""
        return self._advance(decoded, len(decoded))

    def _advance(self, decoded: str, end: int) -> str:
        # Tokenizers may re-decode earlier text differently; what was sent stays sent.
        piece = decoded[len(self.text):end]
        self.text += piece
        return piece
