"""Which serving miners a validator queries at each step: a shuffled round-robin.

An *epoch* is a fresh random permutation of the serving miners; each step takes the next ``k``
miners of it, and when it runs out mid-step the next epoch's permutation continues the step
(skipping miners already taken in this step). Every miner is therefore queried exactly once per
epoch, query counts of a fixed set differ by at most one at any time, and because each epoch is
reshuffled a miner cannot tell from its own history when its next query comes. Miners that
start serving mid-epoch go to the front of the queue (they have the least evidence); miners
that stop serving leave it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from protocol.errors import ConfigError
from validators.errors import ValidatorStateError
from validators.metagraph import Identity

__all__ = ["SAMPLING_PURPOSE", "Sampler"]

#: Seeding purpose of the per-step sampling generator (see :mod:`validators.seeding`).
SAMPLING_PURPOSE = "sampling"


class Sampler:
    """The current epoch: miners still to query (in order) and miners already queried."""

    def __init__(self, queue: Sequence[Identity] = (), done: Sequence[Identity] = ()) -> None:
        self._queue: list[Identity] = list(dict.fromkeys(queue))
        self._done: set[Identity] = set(done) - set(self._queue)

    @property
    def queue(self) -> tuple[Identity, ...]:
        """Miners not yet queried this epoch, next first."""
        return tuple(self._queue)

    @property
    def done(self) -> frozenset[Identity]:
        """Miners already queried this epoch."""
        return frozenset(self._done)

    def sample(self, serving: Sequence[Identity], k: int,
               rng: np.random.Generator) -> list[Identity]:
        """Take the next ``min(k, len(set(serving)))`` distinct miners of ``serving``.

        ``rng`` should come from ``derive_rng(secret, SAMPLING_PURPOSE, step)`` so the choice is
        reproducible for the validator and unpredictable for miners. It shuffles newcomers and
        each new epoch. Duplicates in ``serving`` are ignored.

        Raises:
            ConfigError: ``k`` is negative.
        """
        if k < 0:
            raise ConfigError("k must be >= 0")
        present = list(dict.fromkeys(serving))
        self._forget_absent(set(present))
        queued = set(self._queue)
        newcomers = [i for i in present if i not in self._done and i not in queued]
        self._queue[:0] = _shuffled(newcomers, rng)
        chosen: list[Identity] = []
        while len(chosen) < min(k, len(present)):
            if not any(i not in chosen for i in self._queue):
                self._done = set()
                self._queue += _shuffled([i for i in present if i not in self._queue], rng)
            pick = next(i for i in self._queue if i not in chosen)
            self._queue.remove(pick)
            self._done.add(pick)
            chosen.append(pick)
        return chosen

    def _forget_absent(self, present: set[Identity]) -> None:
        self._queue = [i for i in self._queue if i in present]
        self._done &= present

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sampler):
            return NotImplemented
        return self._queue == other._queue and self._done == other._done

    __hash__ = None  # type: ignore[assignment]  # mutable

    def to_dict(self) -> dict[str, Any]:
        """``{"queue": [[hotkey, block], ...] in order, "done": [[hotkey, block], ...] sorted}``."""
        return {"queue": [[i.hotkey, i.registered_at] for i in self._queue],
                "done": [[i.hotkey, i.registered_at] for i in sorted(self._done)]}

    @classmethod
    def from_dict(cls, data: Any) -> Sampler:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ValidatorStateError: a field is missing or malformed, or a miner appears twice.
        """
        if not isinstance(data, dict) or set(data) != {"queue", "done"}:
            raise ValidatorStateError("sampler: expected a map of queue and done")
        queue, done = _identities(data["queue"]), _identities(data["done"])
        if len(set(queue)) + len(set(done)) != len(set(queue) | set(done)) \
                or len(set(queue)) != len(queue) or len(set(done)) != len(done):
            raise ValidatorStateError("sampler: a miner appears twice")
        return cls(queue, done)


def _shuffled(items: list[Identity], rng: np.random.Generator) -> list[Identity]:
    return [items[int(i)] for i in rng.permutation(len(items))]


def _identities(rows: Any) -> list[Identity]:
    if not isinstance(rows, list):
        raise ValidatorStateError("sampler: expected a list of [hotkey, block] rows")
    out = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 2 and isinstance(row[0], str)
                and isinstance(row[1], int) and not isinstance(row[1], bool) and row[1] >= 0):
            raise ValidatorStateError(f"sampler: bad row {row!r:.80}")
        out.append(Identity(row[0], row[1]))
    return out
