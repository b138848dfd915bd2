"""Task suite: exact checkers, built-in task types, the registry and per-miner challenge choice."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ConfigError, EnsembleError
from protocol.messages import GenerateRequest
from validators.checkers import (
    MAX_CHECK_CHARS,
    Problem,
    check_exact,
    check_key_facts,
    check_list,
    first_line,
    has_fact,
)
from validators.errors import TaskRegistryError, ValidatorError
from validators.facts import FACTS, make_facts_problem
from validators.seeding import derive_rng, seed_digest
from validators.tasks import (
    REGISTRY,
    Challenge,
    SelectionConfig,
    TaskRegistry,
    TaskType,
    builtin_tasks,
    challenges_for,
    default_registry,
    register_task,
    select_tasks,
)

SECRET = bytes(range(32))
ALL_CAPS = ["math", "math-hard", "reverse", "sort", "facts"]


def task(name: str) -> TaskType:
    """The built-in task type called ``name``."""
    return default_registry().get(name)


def draw(name: str, seed: int = 7) -> Problem:
    """One problem of the built-in task ``name`` from a fixed seed."""
    return task(name).make(np.random.default_rng(seed))


# --- checkers -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "line"), [
    ("46", "46"), ("  46  ", "46"), ("46\n12+34=46", "46"), ("\n\n 46\r\nmore", "46"),
    ("", ""), ("   \n  ", ""), ("a b\nc", "a b"),
])
def test_first_line(text: str, line: str) -> None:
    """first_line strips, cuts at the first line break and strips again."""
    assert first_line(text) == line


@pytest.mark.parametrize(("text", "score"), [
    ("46", 1.0), (" 46\n", 1.0), ("46\n99", 1.0), ("46 ", 1.0),
    ("48", 0.0), ("046", 0.0), ("4 6", 0.0), ("46.", 0.0), ("", 0.0), ("12+34=46", 0.0),
])
def test_check_exact(text: str, score: float) -> None:
    """The first line must equal the answer exactly."""
    assert check_exact(Problem("12+34=", "46"), text) == score


@pytest.mark.parametrize(("text", "score"), [
    ("3,5,9", 1.0), ("3, 5, 9", 1.0), (" 3 ,5 , 9\nsort:1=", 1.0), ("3,9,5", 0.0),
    ("3,5", 0.0), ("3;5;9", 0.0),
])
def test_check_list(text: str, score: float) -> None:
    """List answers ignore whitespace, nothing else."""
    assert check_list(Problem("sort:5,3,9=", "3,5,9"), text) == score


@pytest.mark.parametrize(("text", "found"), [
    ("Paris", True), ("it is paris.", True), ("PARIS!", True), ("(Paris)", True),
    ("Parisian", False), ("Par is", False), ("", False), ("xParis", False), ("Paris_", False),
])
def test_has_fact_word_boundaries(text: str, found: bool) -> None:
    """Facts match case-insensitively on whole words only."""
    assert has_fact(text, ("Paris",)) is found


def test_has_fact_non_word_edges_and_alternatives() -> None:
    """Spellings with digits or spaces match; any one accepted spelling suffices."""
    assert has_fact("Water is H2O.", ("H2O",))
    assert not has_fact("Water is H2O2.", ("H2O",))
    assert has_fact("painted by da Vinci", ("Leonardo", "da Vinci"))
    assert not has_fact("anything", ("",))


def test_check_key_facts() -> None:
    """All key facts must be present and no forbidden spelling; otherwise 0."""
    problem = Problem("Q", "ref", key_facts=(("Paris",), ("Au",)), forbidden=("Tokyo", "Fe"))
    assert check_key_facts(problem, "Paris; the symbol is Au.") == 1.0
    assert check_key_facts(problem, "Paris only") == 0.0
    assert check_key_facts(problem, "Paris, Tokyo, Au") == 0.0
    assert check_key_facts(Problem("Q", "ref"), "anything") == 0.0


def test_checkers_judge_only_the_first_max_check_chars() -> None:
    """A key fact past MAX_CHECK_CHARS does not count."""
    problem = Problem("Q", "ref", key_facts=(("Paris",),))
    assert check_key_facts(problem, "x" * (MAX_CHECK_CHARS - 6) + " Paris") == 1.0
    assert check_key_facts(problem, "x" * MAX_CHECK_CHARS + " Paris") == 0.0


# --- built-in task types --------------------------------------------------------------------


def test_builtin_task_types() -> None:
    """Six built-ins with their capability tags and token budgets."""
    assert [(t.name, t.capability, t.max_tokens, t.free_text) for t in builtin_tasks()] == [
        ("add", "math", 5, False), ("sub", "math-hard", 5, False), ("mul", "math-hard", 6, False),
        ("reverse", "reverse", 10, False), ("sort", "sort", 19, False),
        ("facts", "facts", 48, True)]


@pytest.mark.parametrize(("name", "pattern", "op"), [
    ("add", r"(\d\d)\+(\d\d)=", lambda a, b: a + b),
    ("sub", r"(\d\d)-(\d\d)=", lambda a, b: a - b),
    ("mul", r"(\d\d)\*(\d\d)=", lambda a, b: a * b),
])
def test_arithmetic_prompt_format(name: str, pattern: str,
                                  op: Callable[[int, int], int]) -> None:
    """Arithmetic prompts are exactly 'AB<op>CD=' with two-digit operands; the answer is exact."""
    for seed in range(50):
        problem = draw(name, seed)
        match = re.fullmatch(pattern, problem.prompt)
        assert match is not None
        a, b = int(match[1]), int(match[2])
        assert 10 <= a <= 99
        assert 10 <= b <= 99
        assert problem.answer == str(op(a, b))


def test_reverse_and_sort_problems() -> None:
    """reverse:<word>= answers the word reversed; sort:<list>= answers it sorted."""
    for seed in range(50):
        rev = draw("reverse", seed)
        word = re.fullmatch(r"reverse:([a-z]{4,8})=", rev.prompt)
        assert word is not None
        assert rev.answer == word[1][::-1]
        srt = draw("sort", seed)
        values = re.fullmatch(r"sort:(\d{1,2}(?:,\d{1,2}){2,5})=", srt.prompt)
        assert values is not None
        assert srt.answer == ",".join(map(str, sorted(int(v) for v in values[1].split(","))))


def test_builtin_answers_fit_max_tokens_as_characters() -> None:
    """Every answer fits max_tokens even for a character-level model (one token a character)."""
    for t in builtin_tasks():
        if not t.free_text:
            assert all(len(t.make(np.random.default_rng(s)).answer) < t.max_tokens
                       for s in range(200))


def test_fact_table() -> None:
    """About 30 facts, each with several phrasings and a reference holding the key fact."""
    assert 30 <= len(FACTS) <= 40
    for fact in FACTS:
        assert len(fact.phrasings) >= 3
        assert fact.spellings
        assert has_fact(fact.reference, fact.spellings)
    assert len({f.phrasings[0] for f in FACTS}) == len(FACTS)


def test_facts_problem_shape() -> None:
    """A facts problem asks 1-2 facts; forbidden spellings are the unasked ones of those kinds."""
    problem = make_facts_problem(np.random.default_rng(3))
    assert problem.prompt.startswith(("Answer briefly.\nQ: ", "Reply in a few words.\nQ: ",
                                      "Give a short answer.\nQ: "))
    assert problem.prompt.endswith("\nA:")
    assert 1 <= len(problem.key_facts) <= 2
    asked = {s for fact in problem.key_facts for s in fact}
    assert not asked & set(problem.forbidden)
    assert check_key_facts(problem, problem.answer) == 1.0


def test_facts_exact_draw() -> None:
    """A fixed seed gives a fixed facts problem."""
    problem = make_facts_problem(np.random.default_rng(0))
    assert problem == Problem(
        prompt="Answer briefly.\nQ: Who wrote War and Peace? Which planet is closest to the "
               "Sun?\nA:",
        answer="War and Peace was written by Tolstoy. Mercury is the planet closest to the Sun.",
        key_facts=(("Tolstoy",), ("Mercury",)),
        forbidden=("Shakespeare", "Orwell", "Austen", "Cervantes", "Jupiter", "Mars", "Saturn"))


def test_facts_phrasing_varies() -> None:
    """The same fact is asked in more than one phrasing across draws."""
    prompts = {make_facts_problem(np.random.default_rng(s), FACTS[:1]).prompt for s in range(30)}
    assert len(prompts) >= 5


def test_listing_every_candidate_fails_facts() -> None:
    """An answer naming every capital scores 0 on every capital question."""
    capitals = {f.spellings[0] for f in FACTS if f.kind == "capital"}
    listing = " ".join(sorted(capitals))
    asked = 0
    for seed in range(60):
        problem = make_facts_problem(np.random.default_rng(seed), max_questions=1)
        if problem.key_facts[0][0] in capitals:
            asked += 1
            assert check_key_facts(problem, listing) == 0.0
            assert check_key_facts(problem, problem.answer) == 1.0
    assert asked > 5


# --- challenges -----------------------------------------------------------------------------


def test_challenge_request_and_check() -> None:
    """A challenge becomes a greedy generate request and grades with its task's checker."""
    challenge = Challenge(task("add"), Problem("12+34=", "46"))
    assert challenge.prompt == "12+34="
    assert challenge.request() == GenerateRequest(prompt="12+34=", max_tokens=5,
                                                  temperature=0.0, stop=["\n"])
    assert challenge.request(max_tokens_cap=3).max_tokens == 3
    assert challenge.request(max_tokens_cap=4096).max_tokens == 5
    assert challenge.request(max_tokens_cap=0).max_tokens == 1
    assert challenge.check("46\n") == 1.0
    assert challenge.check("48") == 0.0


@pytest.mark.parametrize(("raw", "clamped"), [(5.0, 1.0), (-1.0, 0.0), (math.nan, 0.0),
                                              (math.inf, 0.0), (0.25, 0.25)])
def test_challenge_check_clamps_custom_checkers(raw: float, clamped: float) -> None:
    """Whatever a custom checker returns, Challenge.check stays in [0, 1]."""
    odd = TaskType("odd", "odd", 4, lambda rng: Problem("p", "a"), lambda p, t: raw)
    assert Challenge(odd, Problem("p", "a")).check("x") == clamped


def test_challenges_exact_for_fixed_secret() -> None:
    """A fixed secret, step and hotkey give fixed challenges (golden values)."""
    got = [(c.task.name, c.prompt, c.problem.answer)
           for c in challenges_for(SECRET, 1, "miner-a", ["math"])]
    assert got == [("add", "41+95=", "136"), ("add", "38+58=", "96"), ("add", "58+35=", "93"),
                   ("facts", "Reply in a few words.\nQ: Which element symbol stands for copper?"
                             "\nA:", "The chemical symbol of copper is Cu.")]


def test_challenges_differ_across_steps_hotkeys_and_secrets() -> None:
    """Another step, hotkey or secret gives other prompts."""
    def prompts(secret: bytes, step: int, hotkey: str) -> list[str]:
        return [c.prompt for c in challenges_for(secret, step, hotkey, ALL_CAPS,
                                                 config=SelectionConfig(challenges_per_miner=8))]
    base = prompts(SECRET, 5, "miner-a")
    assert prompts(SECRET, 5, "miner-a") == base
    assert prompts(SECRET, 6, "miner-a") != base
    assert prompts(SECRET, 5, "miner-b") != base
    assert prompts(b"another-secret-16", 5, "miner-a") != base
    many = {tuple(prompts(SECRET, step, "miner-a")) for step in range(100)}
    assert len(many) == 100


@settings(max_examples=50, deadline=None)
@given(secret=st.binary(min_size=16, max_size=48), step=st.integers(0, 2**40),
       hotkey=st.text(max_size=60), caps=st.lists(st.sampled_from([*ALL_CAPS, "other"])))
def test_challenges_deterministic(secret: bytes, step: int, hotkey: str, caps: list[str]) -> None:
    """Equal (secret, step, hotkey, capabilities) always give equal challenges."""
    first = challenges_for(secret, step, hotkey, caps)
    assert first == challenges_for(secret, step, hotkey, caps)
    assert len(first) == SelectionConfig().challenges_per_miner


def test_seed_digest_frames_its_inputs() -> None:
    """Moving bytes between purpose and hotkey changes the seed; short secrets are refused."""
    assert seed_digest(SECRET, "ab", 1, "c") != seed_digest(SECRET, "a", 1, "bc")
    assert derive_rng(SECRET, "x", 3).integers(2**62) == derive_rng(SECRET, "x", 3).integers(2**62)
    with pytest.raises(ValidatorError):
        seed_digest(b"short", "x", 0)
    with pytest.raises(ValidatorError):
        seed_digest(SECRET, "x", -1)


# --- task selection -------------------------------------------------------------------------


def names(tasks: list[TaskType]) -> list[str]:
    """The names of ``tasks``."""
    return [t.name for t in tasks]


def test_selection_without_exploration_stays_within_claims() -> None:
    """With explore_share 0 a miner is asked only what it claims."""
    config = SelectionConfig(challenges_per_miner=200, explore_share=0.0)
    chosen = names(select_tasks(np.random.default_rng(1), ["math"], config, default_registry()))
    assert set(chosen) == {"add"}
    chosen = names(select_tasks(np.random.default_rng(1), ["math-hard", "unknown"], config,
                                default_registry()))
    assert set(chosen) == {"sub", "mul"}


def test_selection_explores_the_configured_share() -> None:
    """About explore_share of the challenges test unclaimed capabilities."""
    config = SelectionConfig(challenges_per_miner=4000, explore_share=0.1)
    chosen = names(select_tasks(np.random.default_rng(2), ["math"], config, default_registry()))
    share = sum(n != "add" for n in chosen) / len(chosen)
    assert 0.08 < share < 0.12
    assert set(chosen) == {t.name for t in builtin_tasks()}


def test_selection_picks_capability_first() -> None:
    """Two task types of one capability share that capability's draws."""
    config = SelectionConfig(challenges_per_miner=4000, explore_share=0.0)
    chosen = names(select_tasks(np.random.default_rng(3), ["math", "math-hard"], config,
                                default_registry()))
    assert 0.46 < chosen.count("add") / len(chosen) < 0.54


def test_selection_for_a_miner_claiming_nothing_known() -> None:
    """A miner claiming no known capability is asked from all of them."""
    config = SelectionConfig(challenges_per_miner=600, explore_share=0.1)
    chosen = names(select_tasks(np.random.default_rng(4), [], config, default_registry()))
    assert set(chosen) == {t.name for t in builtin_tasks()}


def test_selection_config_validation() -> None:
    """Bad selection settings are configuration errors."""
    with pytest.raises(ConfigError):
        SelectionConfig(challenges_per_miner=0)
    with pytest.raises(ConfigError):
        SelectionConfig(explore_share=1.5)


# --- registry -------------------------------------------------------------------------------


def _make_echo(rng: np.random.Generator) -> Problem:
    word = str(int(rng.integers(1000, 10000)))
    return Problem(f"echo:{word}=", word)


ECHO = TaskType("echo", "echo", 6, _make_echo, check_exact)


def test_register_custom_task() -> None:
    """A registered task type is asked to miners that claim its capability, and graded."""
    registry = default_registry()
    assert register_task(ECHO, registry) is ECHO
    assert "echo" in registry
    assert registry.get("echo") is ECHO
    assert "echo" in registry.capabilities()
    [challenge] = challenges_for(SECRET, 0, "m", ["echo"], registry=registry,
                                 config=SelectionConfig(challenges_per_miner=1,
                                                        explore_share=0.0))
    assert challenge.task is ECHO
    assert challenge.check(challenge.problem.answer) == 1.0
    assert "echo" not in REGISTRY


def test_registry_refuses_duplicates_and_non_tasks() -> None:
    """A taken name or a non-TaskType is a TaskRegistryError (an EnsembleError)."""
    registry = TaskRegistry([ECHO])
    with pytest.raises(TaskRegistryError, match="already registered"):
        registry.register(ECHO)
    with pytest.raises(TaskRegistryError):
        registry.register("echo")  # type: ignore[arg-type]
    with pytest.raises(TaskRegistryError):
        registry.get("missing")
    assert issubclass(TaskRegistryError, EnsembleError)


def test_empty_registry_cannot_select() -> None:
    """Selecting from an empty registry is an error, not an empty list."""
    with pytest.raises(TaskRegistryError):
        select_tasks(np.random.default_rng(0), ["math"], SelectionConfig(), TaskRegistry())


@pytest.mark.parametrize("kwargs", [
    {"name": ""}, {"capability": ""}, {"max_tokens": 0}, {"max_tokens": 10**6},
    {"stop": ("",)}, {"stop": ("x" * 65,)}, {"stop": tuple("abcdefghi")},
])
def test_task_type_validation(kwargs: dict[str, object]) -> None:
    """Task types the wire would refuse are rejected when defined."""
    fields: dict[str, object] = {"name": "t", "capability": "c", "max_tokens": 4,
                                 "make": _make_echo, "check": check_exact}
    with pytest.raises(TaskRegistryError):
        TaskType(**(fields | kwargs))  # type: ignore[arg-type]


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), text=st.text(max_size=300))
def test_checkers_total_on_any_text(seed: int, text: str) -> None:
    """Every built-in checker returns a value in [0, 1] for any text, never raising."""
    for t in builtin_tasks():
        challenge = Challenge(t, t.make(np.random.default_rng(seed)))
        assert 0.0 <= challenge.check(text) <= 1.0
        assert 0.0 <= t.check(challenge.problem, text) <= 1.0


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), noise=st.text(alphabet=" \t", max_size=3),
       tail=st.text(max_size=20))
def test_correct_answers_pass(seed: int, noise: str, tail: str) -> None:
    """The expected answer passes with surrounding spaces and anything after a line break."""
    for t in builtin_tasks():
        if not t.free_text:
            problem = t.make(np.random.default_rng(seed))
            assert t.check(problem, f"{noise}{problem.answer}{noise}\n{tail}") == 1.0
