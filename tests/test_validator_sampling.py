"""Per-step miner sampling: a seeded, reshuffled round-robin that spreads queries evenly."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codec import pack, unpack
from protocol.errors import ConfigError
from validators.errors import ValidatorStateError
from validators.metagraph import Identity
from validators.sampling import SAMPLING_PURPOSE, Sampler
from validators.seeding import derive_rng

SECRET = b"sampling-secret-0123456789abcdef"
MINERS = [Identity(f"miner-{i:02d}", 100 + i) for i in range(37)]


def run(steps: int, k: int, miners: list[Identity],
        secret: bytes = SECRET) -> list[list[Identity]]:
    """Sample ``steps`` steps of ``k`` from ``miners`` with the per-step generators."""
    sampler = Sampler()
    return [sampler.sample(miners, k, derive_rng(secret, SAMPLING_PURPOSE, step))
            for step in range(steps)]


def test_counts_even_over_100_steps() -> None:
    """37 miners, K=8, 100 steps: 800 queries, every miner 21 or 22 times."""
    picks = run(100, 8, MINERS)
    counts = Counter(i for step in picks for i in step)
    assert sum(counts.values()) == 800
    assert set(counts) == set(MINERS)
    assert sorted(set(counts.values())) == [21, 22]
    assert all(len(set(step)) == 8 for step in picks)


def test_each_epoch_covers_everyone_once() -> None:
    """The first 37 picks (4 full steps and 5 of the fifth) are 37 distinct miners."""
    seen = [i for step in run(5, 8, MINERS) for i in step]
    assert len(set(seen[:37])) == 37
    assert len(set(seen[37:])) == 3


def test_epochs_are_reshuffled() -> None:
    """Consecutive epochs visit the miners in different orders."""
    seen = [i for step in run(37, 8, MINERS) for i in step]  # 296 picks = 8 epochs
    epochs = [tuple(seen[e * 37:(e + 1) * 37]) for e in range(8)]
    assert len(set(epochs)) == 8


def test_sampling_is_seeded() -> None:
    """The same secret gives the same sequence; another secret another one."""
    assert run(10, 8, MINERS) == run(10, 8, MINERS)
    assert run(10, 8, MINERS) != run(10, 8, MINERS, secret=b"another-secret-0123456789abcdef")


def test_exact_small_sequence() -> None:
    """A fixed generator gives a fixed sequence; steps straddle epochs without repeats."""
    a, b, c = (Identity(x, 1) for x in "abc")
    sampler = Sampler()
    rng = np.random.default_rng(0)
    got = [sampler.sample([a, b, c], 2, rng) for _ in range(3)]
    assert got == [[c, a], [b, c], [b, a]]  # epoch 1: c a b; epoch 2: c b a
    assert all(len(set(step)) == 2 for step in got)


def test_newcomer_is_queried_next() -> None:
    """A miner that starts serving mid-epoch goes to the front of the queue."""
    sampler = Sampler()
    for step in range(2):
        sampler.sample(MINERS, 8, derive_rng(SECRET, SAMPLING_PURPOSE, step))
    newcomer = Identity("newcomer", 999)
    chosen = sampler.sample([*MINERS, newcomer], 8, derive_rng(SECRET, SAMPLING_PURPOSE, 2))
    assert chosen[0] == newcomer


def test_miners_that_stop_serving_leave_the_queue() -> None:
    """Absent miners are dropped from both the queue and the done set."""
    sampler = Sampler()
    sampler.sample(MINERS, 8, np.random.default_rng(1))
    chosen = sampler.sample(MINERS[:10], 20, np.random.default_rng(2))
    assert sorted(chosen) == MINERS[:10]
    assert set(sampler.queue) | sampler.done <= set(MINERS[:10])


def test_k_edge_cases() -> None:
    """K above the serving count samples everyone once; K=0 nothing; negative K is an error."""
    assert all(sorted(step) == MINERS[:5] for step in run(3, 50, MINERS[:5]))
    assert Sampler().sample(MINERS, 0, np.random.default_rng(0)) == []
    assert Sampler().sample([], 4, np.random.default_rng(0)) == []
    with pytest.raises(ConfigError):
        Sampler().sample(MINERS, -1, np.random.default_rng(0))


def test_round_trip() -> None:
    """to_dict/from_dict round-trips through msgpack and keeps the queue order."""
    sampler = Sampler()
    sampler.sample(MINERS[:4], 3, np.random.default_rng(1))
    data = sampler.to_dict()
    assert len(data["queue"]) == 1
    assert len(data["done"]) == 3
    restored = Sampler.from_dict(unpack(pack(data)))
    assert restored == sampler
    assert restored.sample(MINERS[:4], 2, np.random.default_rng(5)) == \
        sampler.sample(MINERS[:4], 2, np.random.default_rng(5))


@pytest.mark.parametrize("data", [
    None, {}, {"queue": []}, {"queue": [["a", 1]], "done": [["a", 1]]},
    {"queue": [["a", 1], ["a", 1]], "done": []}, {"queue": [["a"]], "done": []},
    {"queue": [["a", -1]], "done": []}, {"queue": [["a", True]], "done": []},
    {"queue": "a", "done": []},
])
def test_from_dict_rejects_bad_data(data: object) -> None:
    """Malformed sampler data is a ValidatorStateError."""
    with pytest.raises(ValidatorStateError):
        Sampler.from_dict(data)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), k=st.integers(1, 12), steps=st.integers(1, 60),
       seed=st.integers(0, 2**32 - 1))
def test_counts_never_differ_by_more_than_one(n: int, k: int, steps: int, seed: int) -> None:
    """For any fixed set, K and horizon, query counts differ by at most one after every step."""
    miners = [Identity(f"m{i}", i) for i in range(n)]
    sampler = Sampler()
    counts = Counter(dict.fromkeys(miners, 0))
    for step in range(steps):
        chosen = sampler.sample(miners, k, np.random.default_rng([seed, step]))
        assert len(chosen) == len(set(chosen)) == min(k, n)
        counts.update(chosen)
        assert max(counts.values()) - min(counts.values()) <= 1
