"""Add a validator task of your own, with its own exact checker.

What it shows: a task type (:class:`validators.tasks.TaskType`) is a name, the capability a
miner claims in ``info`` to be asked it, a token budget, a problem generator that uses only the
seeded generator it is given, and a checker ``(Problem, text) -> score in [0, 1]`` that never
raises. Here: "count the vowels in WORD" (capability ``count``), graded exactly. It is
registered in a fresh :class:`validators.tasks.TaskRegistry` (``register_task(task)`` without a
registry would add it to the validators' process-wide one), challenges are drawn for a miner
claiming ``count`` with :func:`validators.tasks.challenges_for` (deterministic under the
validator's secret, step and miner hotkey), and sample answers are graded.

Run it::

    python -m examples.custom_task --secret 00112233445566778899aabbccddeeff --step 3
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from validators.checkers import Problem, first_line
from validators.tasks import Challenge, TaskRegistry, TaskType, challenges_for, register_task

VOWELS = frozenset("aeiou")
_LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))
#: A miner hotkey to draw challenges for (any address string works).
DEFAULT_HOTKEY = "example-miner-hotkey"


def make_count_vowels(rng: np.random.Generator) -> Problem:
    """A random 5-10 letter word and its vowel count, drawn only from ``rng``."""
    word = "".join(rng.choice(_LETTERS, size=int(rng.integers(5, 11))))
    return Problem(prompt=f"vowels:{word}=", answer=str(sum(c in VOWELS for c in word)))


def check_count(problem: Problem, text: str) -> float:
    """1.0 if the first line is exactly the count (leading zeros or a sign are wrong)."""
    return 1.0 if first_line(text) == problem.answer else 0.0


#: Answers are at most two digits; two tokens of slack for a line break and a stray space.
COUNT_VOWELS = TaskType("count-vowels", "count", 4, make_count_vowels, check_count)


def build_registry() -> TaskRegistry:
    """A fresh registry holding only the vowel-counting task."""
    registry = TaskRegistry()
    register_task(COUNT_VOWELS, registry)
    return registry


@dataclass(frozen=True, slots=True)
class Graded:
    """One sample answer to one challenge and its score."""

    challenge: Challenge
    answer: str
    score: float


def grade_samples(challenges: Sequence[Challenge]) -> list[Graded]:
    """Grade a right answer and two wrong ones for each challenge."""
    rows = []
    for challenge in challenges:
        right = challenge.problem.answer
        for answer in (right + "\n", str(int(right) + 1), "many"):
            rows.append(Graded(challenge, answer, challenge.check(answer)))
    return rows


def run(secret: bytes, step: int, hotkey: str = DEFAULT_HOTKEY) -> list[Graded]:
    """Draw this step's challenges for a miner claiming ``count``, grade samples, print a table."""
    registry = build_registry()
    challenges = challenges_for(secret, step, hotkey, ["count"], registry=registry)
    rows = grade_samples(challenges)
    print(f"{'task':<14} {'prompt':<20} {'expected':>8} {'answer':>8} {'score':>5}")
    for row in rows:
        print(f"{row.challenge.task.name:<14} {row.challenge.prompt:<20} "
              f"{row.challenge.problem.answer:>8} {row.answer.strip()!r:>8} {row.score:>5.1f}")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run the example."""
    parser = argparse.ArgumentParser(prog="python -m examples.custom_task",
                                     description="A custom validator task with its checker.")
    parser.add_argument("--secret", default="00112233445566778899aabbccddeeff",
                        help="the validator's secret, hex (at least 16 bytes)")
    parser.add_argument("--step", type=int, default=0, help="the validation step")
    parser.add_argument("--hotkey", default=DEFAULT_HOTKEY, help="the miner's hotkey")
    args = parser.parse_args(argv)
    run(bytes.fromhex(args.secret), args.step, args.hotkey)
    return 0


if __name__ == "__main__":
    sys.exit(main())
