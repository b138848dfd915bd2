"""What a correct answer is: the problem a challenge poses and the exact checkers that grade it.

Checkers are pure, total functions ``(Problem, text) -> float in [0, 1]``: they never raise on
any text a miner sends, so a hostile answer can only score 0. They decide correctness alone;
similarity scores (:mod:`validators.relevance`) may only refine answers that already passed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "MAX_CHECK_CHARS",
    "Checker",
    "Problem",
    "check_exact",
    "check_key_facts",
    "check_list",
    "first_line",
    "has_fact",
]

#: Answers are judged on their first 4096 characters: far more than any built-in task needs,
#: and it bounds the regex work a hostile multi-megabyte answer can cause.
MAX_CHECK_CHARS = 4096


@dataclass(frozen=True, slots=True)
class Problem:
    """One concrete question and what makes an answer to it correct.

    Attributes:
        prompt: the exact text sent to the miner (e.g. ``"12+34="``).
        answer: the exact expected answer for exact tasks; a reference answer for free-text
            tasks (used only by the relevance bonus).
        key_facts: for free-text tasks, the facts an answer must all contain; each fact is a
            tuple of accepted spellings (any one suffices), matched case-insensitively on word
            boundaries.
        forbidden: spellings that must not appear (answers to questions not asked), so an
            answer that lists every candidate scores 0.
    """

    prompt: str
    answer: str
    key_facts: tuple[tuple[str, ...], ...] = ()
    forbidden: tuple[str, ...] = ()


#: A checker grades ``text`` against ``problem``: a score in [0, 1], never an exception.
Checker = Callable[[Problem, str], float]


def first_line(text: str) -> str:
    """Return ``text`` stripped, cut at its first line break, and stripped again.

    Models often continue past the answer on a new line; only the first line is the answer.
    """
    head = text[:MAX_CHECK_CHARS].strip()
    return head.splitlines()[0].strip() if head else ""


def check_exact(problem: Problem, text: str) -> float:
    """1.0 if the first line of ``text`` equals ``problem.answer`` exactly, else 0.0."""
    return 1.0 if first_line(text) == problem.answer else 0.0


def check_list(problem: Problem, text: str) -> float:
    """1.0 if the first line equals ``problem.answer`` once all whitespace is removed, else 0.0.

    For comma-separated answers, where ``"3, 5, 9"`` and ``"3,5,9"`` say the same thing.
    """
    return 1.0 if "".join(first_line(text).split()) == problem.answer else 0.0


def has_fact(text: str, spellings: tuple[str, ...]) -> bool:
    """Whether any of ``spellings`` occurs in ``text`` as whole words, ignoring case.

    Word boundaries are "no letter, digit or underscore on either side", so ``"Paris"`` is not
    found in ``"Parisian"`` and ``"H2O"`` is found in ``"(H2O)"``.
    """
    return any(_fact_pattern(s).search(text) is not None for s in spellings if s)


def check_key_facts(problem: Problem, text: str) -> float:
    """1.0 if ``text`` holds every key fact and no forbidden spelling, else 0.0.

    A problem without key facts never passes (nothing to check is not correct).
    """
    head = text[:MAX_CHECK_CHARS]
    if not problem.key_facts or has_fact(head, problem.forbidden):
        return 0.0
    return 1.0 if all(has_fact(head, fact) for fact in problem.key_facts) else 0.0


@lru_cache(maxsize=1024)  # the fact table is small; patterns repeat every step
def _fact_pattern(spelling: str) -> re.Pattern[str]:
    # Lookarounds rather than \b: \b fails next to a non-word first or last character.
    return re.compile(rf"(?<!\w){re.escape(spelling)}(?!\w)", re.IGNORECASE)
