"""Task types, their registry, and the challenges a validator asks each miner at each step.

A task type declares the capability a miner must claim for it (``info``'s ``capabilities``),
how many tokens an answer may take, how to draw a problem from a seeded generator and the exact
checker that grades answers. Challenges come from :func:`validators.seeding.derive_rng` over
(secret, step, hotkey), so a miner cannot precompute them and two miners get different ones.

New task types plug in with :func:`register_task` (or :meth:`TaskRegistry.register` on a
registry of one's own); nothing else needs to change.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from protocol.errors import ConfigError
from protocol.messages import MAX_STOP, MAX_STOP_LEN, MAX_TOKENS_LIMIT, GenerateRequest
from validators.checkers import Checker, Problem, check_exact, check_key_facts, check_list
from validators.errors import TaskRegistryError
from validators.facts import make_facts_problem
from validators.seeding import derive_rng

__all__ = [
    "REGISTRY",
    "Challenge",
    "SelectionConfig",
    "TaskRegistry",
    "TaskType",
    "builtin_tasks",
    "challenges_for",
    "default_registry",
    "register_task",
    "select_tasks",
]

#: Seeding purpose of challenge generators (see :mod:`validators.seeding`).
CHALLENGE_PURPOSE = "challenges"


@dataclass(frozen=True, slots=True)
class TaskType:
    """A kind of challenge with a checkable answer.

    Attributes:
        name: unique registry key, also the tag results are reported under (``"add"``).
        capability: the ``info`` capability a miner claims to be asked this task (``"math"``).
        max_tokens: the ``max_tokens`` of the request.
        make: draws one problem from a seeded generator; must use only that generator.
        check: grades an answer (see :data:`validators.checkers.Checker`).
        free_text: answers are prose; the relevance bonus may refine passing answers.
        stop: stop strings of the request (default: the first line break ends the answer).

    Raises:
        TaskRegistryError: an empty name or capability, or limits the wire would refuse.
    """

    name: str
    capability: str
    max_tokens: int
    make: Callable[[np.random.Generator], Problem]
    check: Checker
    free_text: bool = False
    stop: tuple[str, ...] = ("\n",)

    def __post_init__(self) -> None:
        if not self.name or not self.capability:
            raise TaskRegistryError("a task type needs a name and a capability")
        if not 1 <= self.max_tokens <= MAX_TOKENS_LIMIT:
            raise TaskRegistryError(f"{self.name}: max_tokens must be in [1, {MAX_TOKENS_LIMIT}]")
        if len(self.stop) > MAX_STOP or any(not 1 <= len(s) <= MAX_STOP_LEN for s in self.stop):
            raise TaskRegistryError(f"{self.name}: at most {MAX_STOP} stop strings of "
                                    f"1..{MAX_STOP_LEN} characters")


@dataclass(frozen=True, slots=True)
class Challenge:
    """One problem of one task type, ready to send and to grade."""

    task: TaskType
    problem: Problem

    @property
    def prompt(self) -> str:
        """The text sent to the miner."""
        return self.problem.prompt

    def request(self, max_tokens_cap: int | None = None) -> GenerateRequest:
        """The ``generate`` request that poses this challenge (greedy decoding).

        ``max_tokens_cap`` (the miner's ``info.max_tokens``) lowers ``max_tokens`` so a miner
        is not asked for more than it serves; it is never raised above the task's value.
        """
        limit = self.task.max_tokens if max_tokens_cap is None \
            else max(1, min(self.task.max_tokens, max_tokens_cap))
        return GenerateRequest(prompt=self.problem.prompt, max_tokens=limit, temperature=0.0,
                               stop=list(self.task.stop))

    def check(self, text: str) -> float:
        """Grade ``text`` with the task's checker, clamped to [0, 1] (NaN counts as 0)."""
        score = float(self.task.check(self.problem, text))
        return min(1.0, max(0.0, score)) if math.isfinite(score) else 0.0


class TaskRegistry:
    """Task types by name. Iterates in registration order."""

    def __init__(self, tasks: Iterable[TaskType] = ()) -> None:
        self._tasks: dict[str, TaskType] = {}
        for task in tasks:
            self.register(task)

    def register(self, task: TaskType) -> TaskType:
        """Add ``task`` and return it (so a module can write ``T = registry.register(...)``).

        Raises:
            TaskRegistryError: ``task`` is not a :class:`TaskType` or its name is taken.
        """
        if not isinstance(task, TaskType):
            raise TaskRegistryError(f"expected a TaskType, got {type(task).__name__}")
        if task.name in self._tasks:
            raise TaskRegistryError(f"a task named {task.name!r} is already registered")
        self._tasks[task.name] = task
        return task

    def get(self, name: str) -> TaskType:
        """The task type called ``name`` (raises :class:`TaskRegistryError` if unknown)."""
        try:
            return self._tasks[name]
        except KeyError:
            raise TaskRegistryError(f"no task named {name!r}") from None

    def capabilities(self) -> tuple[str, ...]:
        """The capabilities some registered task needs, sorted."""
        return tuple(sorted({t.capability for t in self._tasks.values()}))

    def by_capability(self, capability: str) -> tuple[TaskType, ...]:
        """The task types needing ``capability``, in registration order."""
        return tuple(t for t in self._tasks.values() if t.capability == capability)

    def __iter__(self) -> Iterator[TaskType]:
        return iter(tuple(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks


# --- built-in task types --------------------------------------------------------------------

_LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))
#: Tokens beyond the longest answer: one for the line break, one for a stray leading space.
_SLACK = 2


def _two_digits(rng: np.random.Generator) -> tuple[int, int]:
    a, b = rng.integers(10, 100, size=2)
    return int(a), int(b)


def _make_add(rng: np.random.Generator) -> Problem:
    a, b = _two_digits(rng)
    return Problem(prompt=f"{a}+{b}=", answer=str(a + b))


def _make_sub(rng: np.random.Generator) -> Problem:
    a, b = _two_digits(rng)
    return Problem(prompt=f"{a}-{b}=", answer=str(a - b))


def _make_mul(rng: np.random.Generator) -> Problem:
    a, b = _two_digits(rng)
    return Problem(prompt=f"{a}*{b}=", answer=str(a * b))


def _make_reverse(rng: np.random.Generator) -> Problem:
    word = "".join(rng.choice(_LETTERS, size=int(rng.integers(4, 9))))
    return Problem(prompt=f"reverse:{word}=", answer=word[::-1])


def _make_sort(rng: np.random.Generator) -> Problem:
    values = [int(v) for v in rng.integers(0, 100, size=int(rng.integers(3, 7)))]
    return Problem(prompt=f"sort:{','.join(map(str, values))}=",
                   answer=",".join(map(str, sorted(values))))


def builtin_tasks() -> tuple[TaskType, ...]:
    """The built-in task types: add, sub, mul, reverse, sort, facts.

    ``add`` is the graded format (``"12+34="`` -> ``"46"``, capability ``math``); ``sub`` and
    ``mul`` are harder and need the separate capability ``math-hard``, so a miner that only
    adds is not asked what it never claimed.
    """
    # max_tokens: the longest answer in characters plus slack, so even a character-level
    # model can finish; sub-word tokenisers need fewer.
    return (
        TaskType("add", "math", 3 + _SLACK, _make_add, check_exact),          # 99+99=198
        TaskType("sub", "math-hard", 3 + _SLACK, _make_sub, check_exact),     # 10-99=-89
        TaskType("mul", "math-hard", 4 + _SLACK, _make_mul, check_exact),     # 99*99=9801
        TaskType("reverse", "reverse", 8 + _SLACK, _make_reverse, check_exact),
        TaskType("sort", "sort", 17 + _SLACK, _make_sort, check_list),        # 6 values
        TaskType("facts", "facts", 48, make_facts_problem, check_key_facts, free_text=True),
    )


def default_registry() -> TaskRegistry:
    """A fresh registry holding :func:`builtin_tasks`."""
    return TaskRegistry(builtin_tasks())


#: The process-wide registry :func:`register_task` adds to and :func:`challenges_for` uses by
#: default. Tests and embedders that need isolation pass their own :class:`TaskRegistry`.
REGISTRY = default_registry()


def register_task(task: TaskType, registry: TaskRegistry | None = None) -> TaskType:
    """Register ``task`` in ``registry`` (default :data:`REGISTRY`) and return it.

    Raises:
        TaskRegistryError: the name is taken or ``task`` is not a :class:`TaskType`.
    """
    return (REGISTRY if registry is None else registry).register(task)


# --- which challenges a miner gets ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SelectionConfig:
    """How many challenges a miner gets per step and how many test unclaimed capabilities.

    Raises:
        ConfigError: ``challenges_per_miner < 1`` or ``explore_share`` outside [0, 1].
    """

    challenges_per_miner: int = 4
    # One challenge in ten tests a capability the miner did not claim, so claims stay honest
    # (a miner that claims nothing is not spared) without dominating its score.
    explore_share: float = 0.1

    def __post_init__(self) -> None:
        if self.challenges_per_miner < 1:
            raise ConfigError("challenges_per_miner must be at least 1")
        if not 0.0 <= self.explore_share <= 1.0:
            raise ConfigError("explore_share must be in [0, 1]")


def select_tasks(rng: np.random.Generator, capabilities: Sequence[str],
                 config: SelectionConfig, registry: TaskRegistry) -> list[TaskType]:
    """Choose ``config.challenges_per_miner`` task types for a miner claiming ``capabilities``.

    Each slot draws from the claimed capabilities the registry knows, or with probability
    ``explore_share`` from the others; a miner claiming none of them draws from all. The
    capability is drawn first (uniformly), then a task of it, so a capability with many task
    types is not asked more often.

    Raises:
        TaskRegistryError: the registry is empty.
    """
    known = registry.capabilities()
    if not known:
        raise TaskRegistryError("no task types are registered")
    claims = set(capabilities)
    claimed = tuple(c for c in known if c in claims)
    others = tuple(c for c in known if c not in claimed)
    chosen: list[TaskType] = []
    for _ in range(config.challenges_per_miner):
        explore = rng.random() < config.explore_share
        pool = others if (explore and others) or not claimed else claimed
        tasks = registry.by_capability(pool[int(rng.integers(len(pool)))])
        chosen.append(tasks[int(rng.integers(len(tasks)))])
    return chosen


def challenges_for(secret: bytes, step: int, hotkey: str, capabilities: Sequence[str], *,
                   config: SelectionConfig = SelectionConfig(),
                   registry: TaskRegistry | None = None) -> list[Challenge]:
    """The challenges for miner ``hotkey`` at ``step``, deterministic under ``secret``.

    Equal arguments (and registry contents) give equal challenges; another step, hotkey or
    secret gives independent ones.

    Raises:
        ValidatorError: ``secret`` is too short or ``step`` negative (see ``derive_rng``).
        TaskRegistryError: the registry is empty.
    """
    reg = REGISTRY if registry is None else registry
    rng = derive_rng(secret, CHALLENGE_PURPOSE, step, hotkey)
    tasks = select_tasks(rng, capabilities, config, reg)
    return [Challenge(task, task.make(rng)) for task in tasks]
