"""The 2-digit addition task: problems, prompt format, train/held-out split and answer check.

Pure Python (no torch), so validators can pose and grade the task without a model. A problem is
an ordered pair ``(a, b)`` with ``0 <= a, b <= 99``; its prompt is ``"a+b="`` and its answer the
decimal sum without leading zeros (``"12+34="`` -> ``"46"``).

The split holds out whole *unordered* pairs: when ``12+34`` is held out so is ``34+12``, so a
model never saw the held-out problem in either order. It depends only on :data:`SPLIT_TAG`,
never on the training seed or on any random number generator (whose streams may change
between library versions): pairs are ranked by a SHA-256 digest, so the split is the same on
every machine, forever, and every model trained here is graded on the same problems.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MAX_OPERAND = 99
#: Fixed forever: changing it would silently move problems between the train and held-out sets.
SPLIT_TAG = b"ensemblenet/addition-split/v1:"
#: ~10 % of the 5,050 unordered pairs: ~1,000 ordered problems, enough to measure 1-point steps.
HELD_OUT_PAIRS = 505

_PROMPT = re.compile(r"^(\d{1,2})\+(\d{1,2})=$")


@dataclass(frozen=True, slots=True)
class Problem:
    """One addition problem."""

    a: int
    b: int

    @property
    def prompt(self) -> str:
        """The text the model sees, e.g. ``"12+34="``."""
        return f"{self.a}+{self.b}="

    @property
    def answer(self) -> str:
        """The exact expected completion, e.g. ``"46"``."""
        return str(self.a + self.b)


def all_problems() -> list[Problem]:
    """Every ordered problem, in (a, b) order: 10,000 of them."""
    return [Problem(a, b) for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1)]


def split() -> tuple[list[Problem], list[Problem]]:
    """Return ``(train, held_out)``: disjoint, covering :func:`all_problems`, deterministic.

    The held-out list is in a fixed shuffled order, so its first N problems are a fair sample.
    """
    pairs = [(a, b) for a in range(MAX_OPERAND + 1) for b in range(a, MAX_OPERAND + 1)]
    pairs.sort(key=lambda pair: hashlib.sha256(SPLIT_TAG + b"%d+%d" % pair).digest())
    held_pairs = pairs[:HELD_OUT_PAIRS]
    held_out: list[Problem] = []
    for a, b in held_pairs:
        held_out.append(Problem(a, b))
        if a != b:
            held_out.append(Problem(b, a))
    held = set(held_out)
    train = [p for p in all_problems() if p not in held]
    return train, held_out


def held_out_problems(n: int | None = None) -> list[Problem]:
    """The first ``n`` held-out problems (all of them when ``n`` is None)."""
    held = split()[1]
    return held if n is None else held[:n]


def parse_prompt(prompt: str) -> Problem | None:
    """Return the problem a prompt poses, or None if it is not an ``a+b=`` prompt."""
    match = _PROMPT.match(prompt.strip())
    return Problem(int(match[1]), int(match[2])) if match else None


def is_correct(problem: Problem, completion: str) -> bool:
    """Whether ``completion`` is exactly the answer (surrounding whitespace ignored)."""
    return completion.strip() == problem.answer
