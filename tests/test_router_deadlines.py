"""Request and attempt deadlines: adaptive first token, inter-token, shared total."""

from __future__ import annotations

import pytest

from protocol.errors import ConfigError
from router.deadlines import (
    AttemptDeadlines,
    DeadlineConfig,
    request_deadlines,
    ttft_limit,
)
from router.errors import RouterInputError


@pytest.mark.parametrize(("p95", "expected"), [
    (None, 10.0), (0.5, 1.5), (0.1, 1.0), (5.0, 10.0),
])
def test_ttft_limit_adapts_to_p95(p95: float | None, expected: float) -> None:
    """Three times the miner's p95, within [1 s, 10 s]; 10 s when unknown."""
    assert ttft_limit(DeadlineConfig(), p95) == pytest.approx(expected)


def test_ttft_limit_fixed_without_multiplier() -> None:
    """With adaptation off the limit is always ``ttft_s``."""
    assert ttft_limit(DeadlineConfig(ttft_p95_multiplier=None), 0.2) == 10.0


def test_request_total_is_shortened_by_caller() -> None:
    """The caller's timeout can shorten the total, never lengthen it."""
    config = DeadlineConfig()
    assert request_deadlines(config, 100.0).total_at == 220.0
    assert request_deadlines(config, 100.0, requested_s=30.0).total_at == 130.0
    assert request_deadlines(config, 100.0, requested_s=999.0).total_at == 220.0
    with pytest.raises(RouterInputError):
        request_deadlines(config, 100.0, requested_s=0.0)


def test_attempts_share_the_total() -> None:
    """Each attempt has its own first-token deadline, cut by the shared total."""
    deadlines = request_deadlines(DeadlineConfig(), 0.0, requested_s=12.0)
    assert deadlines.attempt(0.0, p95_ttft_s=0.5) == AttemptDeadlines(1.5, 5.0, 12.0)
    late = deadlines.attempt(9.0)
    assert late == AttemptDeadlines(12.0, 5.0, 12.0)
    assert late.ttft_timeout(10.0) == 2.0
    assert late.next_token_timeout(10.0) == 2.0
    assert late.next_token_timeout(5.0) == 5.0
    assert late.total_timeout(13.0) == 0.0
    assert deadlines.attempt(11.6) is None
    assert deadlines.remaining(11.6) == pytest.approx(0.4)


def test_config_validation() -> None:
    """Lengths positive; the adaptive floor not above the ceiling."""
    with pytest.raises(ConfigError):
        DeadlineConfig(inter_token_s=0.0)
    with pytest.raises(ConfigError):
        DeadlineConfig(min_ttft_s=20.0)
