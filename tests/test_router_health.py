"""Per-miner live signals: latency EWMAs, error and wrong-answer rates, the TTFT p95."""

from __future__ import annotations

import math

import pytest

from protocol.errors import ConfigError
from router.errors import RouterInputError
from router.health import HealthConfig, HealthTracker, MinerHealth


def test_unknown_miner_reads_as_priors() -> None:
    """A miner never recorded has the prior latencies, zero rates and no p95."""
    health = HealthTracker()
    assert health.snapshot("hk") == MinerHealth("hk", 1.0, 5.0, 0.0, 0.0, None, 0, 0, 0, ())
    assert health.p95_ttft("hk") is None


def test_first_success_replaces_prior_then_ewma() -> None:
    """The first measurement is taken as is; later ones move the EWMA by alpha."""
    health = HealthTracker()
    health.record_success("hk", 2.0, 10.0)
    assert (health.snapshot("hk").ttft_s, health.snapshot("hk").total_s) == (2.0, 10.0)
    health.record_success("hk", 1.0, 5.0)
    snap = health.snapshot("hk")
    assert snap.ttft_s == pytest.approx(1.8, abs=1e-12)
    assert snap.total_s == pytest.approx(9.0, abs=1e-12)
    assert snap.successes == 2


def test_error_rate_ewma() -> None:
    """Failures move the error rate toward 1 by 0.1, successes toward 0."""
    health = HealthTracker()
    health.record_failure("hk", "timeout")
    assert health.snapshot("hk").error_rate == pytest.approx(0.1)
    health.record_failure("hk", "connect")
    assert health.snapshot("hk").error_rate == pytest.approx(0.19)
    health.record_success("hk", 0.5, 1.0)
    snap = health.snapshot("hk")
    assert snap.error_rate == pytest.approx(0.171)
    assert snap.failures == 2
    assert snap.failures_by_kind == (("connect", 1), ("timeout", 1))


def test_wrong_rate_ewma() -> None:
    """Wrong answers move the wrong rate toward 1 by 0.2; right answers heal it."""
    health = HealthTracker()
    health.record_wrong("hk")
    health.record_wrong("hk")
    assert health.snapshot("hk").wrong_rate == pytest.approx(0.36)
    health.record_right("hk")
    snap = health.snapshot("hk")
    assert snap.wrong_rate == pytest.approx(0.288)
    assert snap.wrongs == 2


def test_p95_needs_minimum_samples() -> None:
    """Fewer than ``min_quantile_samples`` TTFTs give no p95."""
    health = HealthTracker()
    for i in range(7):
        health.record_success("hk", float(i), 10.0)
    assert health.p95_ttft("hk") is None
    health.record_success("hk", 7.0, 10.0)
    assert health.p95_ttft("hk") == 7.0


def test_p95_nearest_rank() -> None:
    """p95 of TTFTs 1..20 is the 19th smallest (nearest rank); the median the 10th."""
    health = HealthTracker()
    for i in (7, 3, 20, 1, 15, 9, 12, 5, 18, 2, 11, 4, 19, 6, 14, 8, 16, 10, 13, 17):
        health.record_success("hk", float(i), 30.0)
    assert health.p95_ttft("hk") == 19.0
    assert health.ttft_quantile("hk", 0.5) == 10.0


def test_p95_uses_recent_window() -> None:
    """Only the last ``samples`` TTFTs count: of 1..100, the last 64 are 37..100."""
    health = HealthTracker()
    for i in range(1, 101):
        health.record_success("hk", float(i), 200.0)
    # ceil(0.95 * 64) = 61st smallest of 37..100
    assert health.p95_ttft("hk") == 97.0


@pytest.mark.parametrize(("ttft", "total"), [(-1.0, 1.0), (math.nan, 1.0), (1.0, math.inf)])
def test_record_success_rejects_bad_durations(ttft: float, total: float) -> None:
    """Durations are finite and non-negative."""
    with pytest.raises(RouterInputError):
        HealthTracker().record_success("hk", ttft, total)


def test_config_validation() -> None:
    """Smoothing factors in (0, 1]; the quantile minimum fits in the window."""
    with pytest.raises(ConfigError):
        HealthConfig(error_alpha=0.0)
    with pytest.raises(ConfigError):
        HealthConfig(samples=4, min_quantile_samples=8)


def test_slots_grow_and_keep_values() -> None:
    """Past the initial capacity the arrays grow without losing recorded values."""
    health = HealthTracker(capacity=2)
    for i in range(5):
        health.record_success(f"hk{i}", float(i), float(i) + 1)
    assert health.slots([f"hk{i}" for i in range(5)]).tolist() == [0, 1, 2, 3, 4]
    assert health.ttft[:5].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert len(health.ttft) == 8


def test_retain_forgets_departed_miners() -> None:
    """A departed hotkey's slot returns to the priors, may be reused, and bumps generation."""
    health = HealthTracker()
    health.record_success("a", 3.0, 4.0)
    health.record_wrong("b")
    health.retain(["a"])
    assert health.generation == 1
    assert health.snapshot("b") == MinerHealth("b", 1.0, 5.0, 0.0, 0.0, None, 0, 0, 0, ())
    slot_c = health.slot("c")
    assert slot_c == 1
    assert health.wrong[slot_c] == 0.0
    health.retain(["a", "c"])
    assert health.generation == 1
    assert health.snapshot("a").ttft_s == 3.0
