"""Circuit breaking: consecutive failures eject, ejection escalates, one half-open probe."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.clock import ManualClock
from protocol.errors import ConfigError
from router.breaker import BreakerConfig, CircuitBreaker, Permit, State


def make() -> tuple[CircuitBreaker, ManualClock]:
    """A breaker with the default config on a manual clock."""
    clock = ManualClock()
    return CircuitBreaker(BreakerConfig(), clock), clock


def fail(breaker: CircuitBreaker, hotkey: str, times: int = 1) -> None:
    """``times`` admitted attempts to ``hotkey`` that fail."""
    for _ in range(times):
        permit = breaker.admit(hotkey)
        assert permit is not None
        breaker.failed(permit)


def probe_fails(breaker: CircuitBreaker, clock: ManualClock, hotkey: str) -> float:
    """Wait out the ejection, fail the probe; return the new ejection length."""
    clock.advance(breaker.ejection_remaining(hotkey))
    permit = breaker.admit(hotkey)
    assert permit is not None
    assert permit.probe
    breaker.failed(permit)
    return breaker.ejection_remaining(hotkey)


def test_config_validation() -> None:
    """Threshold at least one; base within (0, max]."""
    with pytest.raises(ConfigError):
        BreakerConfig(failure_threshold=0)
    with pytest.raises(ConfigError):
        BreakerConfig(base_ejection_s=10.0, max_ejection_s=5.0)


def test_unknown_miner_is_closed_and_admitted() -> None:
    """A miner with no history is closed and admitted without a probe."""
    breaker, _ = make()
    assert breaker.state("hk") is State.CLOSED
    assert breaker.admit("hk") == Permit("hk", probe=False, epoch=0)
    assert breaker.blocked() == frozenset()


def test_three_consecutive_failures_eject_for_base() -> None:
    """Two failures keep the miner closed; the third ejects it for 5 s, for every request."""
    breaker, _ = make()
    fail(breaker, "hk", 2)
    assert breaker.state("hk") is State.CLOSED
    fail(breaker, "hk")
    assert breaker.state("hk") is State.OPEN
    assert breaker.ejection_remaining("hk") == 5.0
    assert breaker.admit("hk") is None
    assert breaker.is_blocked("hk")
    assert breaker.blocked() == frozenset({"hk"})


def test_success_resets_consecutive_count() -> None:
    """Failures must be consecutive: a success in between starts the count again."""
    breaker, _ = make()
    fail(breaker, "hk", 2)
    permit = breaker.admit("hk")
    assert permit is not None
    breaker.succeeded(permit)
    fail(breaker, "hk", 2)
    assert breaker.state("hk") is State.CLOSED


def test_half_open_admits_exactly_one_probe() -> None:
    """After the ejection one probe goes; others are refused while it is out."""
    breaker, clock = make()
    fail(breaker, "hk", 3)
    clock.advance(4.999)
    assert breaker.admit("hk") is None
    clock.advance(0.001)
    assert breaker.state("hk") is State.HALF_OPEN
    assert not breaker.is_blocked("hk")
    probe = breaker.admit("hk")
    assert probe is not None
    assert probe.probe
    assert breaker.admit("hk") is None
    assert breaker.blocked() == frozenset({"hk"})


def test_probe_success_closes() -> None:
    """A successful probe closes the miner; it is admitted normally again."""
    breaker, clock = make()
    fail(breaker, "hk", 3)
    clock.advance(5.0)
    probe = breaker.admit("hk")
    assert probe is not None
    breaker.succeeded(probe)
    assert breaker.state("hk") is State.CLOSED
    permit = breaker.admit("hk")
    assert permit is not None
    assert not permit.probe
    assert breaker.blocked() == frozenset()


def test_escalation_doubles_and_caps() -> None:
    """Each failed probe doubles the ejection: 5, 10, 20, ... capped at 300 s."""
    breaker, clock = make()
    fail(breaker, "hk", 3)
    lengths = [breaker.ejection_remaining("hk")]
    lengths += [probe_fails(breaker, clock, "hk") for _ in range(8)]
    assert lengths == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]


def test_escalation_level_survives_a_close_then_is_forgotten() -> None:
    """A miner ejected again soon after closing escalates; after 10 quiet minutes it does not."""
    breaker, clock = make()
    fail(breaker, "hk", 3)
    clock.advance(5.0)
    probe = breaker.admit("hk")
    assert probe is not None
    breaker.succeeded(probe)
    fail(breaker, "hk", 3)
    assert breaker.ejection_remaining("hk") == 10.0
    clock.advance(10.0)
    probe = breaker.admit("hk")
    assert probe is not None
    breaker.succeeded(probe)
    clock.advance(600.5)
    fail(breaker, "hk", 3)
    assert breaker.ejection_remaining("hk") == 5.0
    assert breaker.ejections("hk") == 1


def test_stale_permits_are_ignored() -> None:
    """Outcomes of attempts admitted before an ejection neither extend it nor close it."""
    breaker, clock = make()
    early = [breaker.admit("hk") for _ in range(5)]
    for permit in early[:3]:
        assert permit is not None
        breaker.failed(permit)
    assert breaker.ejection_remaining("hk") == 5.0
    assert early[3] is not None
    assert early[4] is not None
    breaker.failed(early[3])
    breaker.succeeded(early[4])
    assert breaker.state("hk") is State.OPEN
    assert breaker.ejection_remaining("hk") == 5.0
    assert breaker.ejections("hk") == 1
    clock.advance(5.0)
    breaker.succeeded(early[4])
    assert breaker.state("hk") is State.HALF_OPEN


def test_lost_probe_times_out() -> None:
    """A probe that never reports lets another go after 30 s; its late answer is ignored."""
    breaker, clock = make()
    fail(breaker, "hk", 3)
    clock.advance(5.0)
    lost = breaker.admit("hk")
    assert lost is not None
    clock.advance(29.9)
    assert breaker.admit("hk") is None
    clock.advance(0.1)
    second = breaker.admit("hk")
    assert second is not None
    assert second.probe
    breaker.succeeded(lost)
    assert breaker.state("hk") is State.HALF_OPEN
    breaker.succeeded(second)
    assert breaker.state("hk") is State.CLOSED


def test_abandoned_probe_frees_the_slot() -> None:
    """A cancelled probe (no verdict) lets the next request probe at once."""
    breaker, clock = make()
    fail(breaker, "hk", 3)
    clock.advance(5.0)
    probe = breaker.admit("hk")
    assert probe is not None
    breaker.abandoned(probe)
    assert breaker.state("hk") is State.HALF_OPEN
    assert breaker.admit("hk") is not None


def test_abandoned_closed_attempt_changes_nothing() -> None:
    """Abandoning a normal attempt neither counts as failure nor success."""
    breaker, _ = make()
    fail(breaker, "hk", 2)
    permit = breaker.admit("hk")
    assert permit is not None
    breaker.abandoned(permit)
    fail(breaker, "hk")
    assert breaker.state("hk") is State.OPEN


def test_retry_after_ejects_at_once_without_escalating() -> None:
    """A 429/503 hint ejects for that long on the first failure; the level stays."""
    breaker, clock = make()
    permit = breaker.admit("hk")
    assert permit is not None
    breaker.failed(permit, retry_after_s=2.0)
    assert breaker.ejection_remaining("hk") == 2.0
    assert breaker.ejections("hk") == 0
    clock.advance(2.0)
    probe = breaker.admit("hk")
    assert probe is not None
    assert probe.probe
    breaker.failed(probe)
    assert breaker.ejection_remaining("hk") == 5.0


def test_retry_after_is_capped() -> None:
    """A miner cannot ask to be ejected for longer than ``max_ejection_s``."""
    breaker, _ = make()
    permit = breaker.admit("hk")
    assert permit is not None
    breaker.failed(permit, retry_after_s=86_400.0)
    assert breaker.ejection_remaining("hk") == 300.0


def test_ejection_is_per_miner() -> None:
    """One miner's ejection does not touch another's admission."""
    breaker, _ = make()
    fail(breaker, "a", 3)
    assert breaker.admit("b") is not None
    assert breaker.blocked() == frozenset({"a"})


def test_retain_drops_departed_miners() -> None:
    """A departed miner's state is dropped; if it returns it starts closed."""
    breaker, _ = make()
    fail(breaker, "a", 3)
    breaker.retain(["b"])
    assert breaker.blocked() == frozenset()
    assert breaker.state("a") is State.CLOSED


# Weighted toward what reaches half-open: failures on two miners and waits past the ejection.
OPS = st.lists(st.sampled_from(
    [("admit", 0), ("admit", 1)] * 2 + [("admit_fail", 0), ("admit_fail", 1)] * 2
    + [("ok", 0), ("fail", 1), ("abandon", 2)]
    + [("advance", 1.0), ("advance", 2.0), ("advance", 12.0)]), min_size=10, max_size=80)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_half_open_never_admits_two_probes(ops: list[tuple[str, float]]) -> None:
    """Whatever happens, a probe is admitted only when no earlier probe is still out."""
    clock = ManualClock()
    config = BreakerConfig(failure_threshold=2, base_ejection_s=1.0, max_ejection_s=8.0,
                           probe_timeout_s=10.0)
    breaker = CircuitBreaker(config, clock)
    outstanding: list[tuple[Permit, float]] = []   # unresolved permits and when issued
    for op, arg in ops:
        if op == "advance":
            clock.advance(arg)
        elif op.startswith("admit"):
            permit = breaker.admit(f"hk{int(arg)}")
            if permit is None:
                continue
            if permit.probe:
                now = clock.monotonic()
                live = [p for p, t in outstanding
                        if p.probe and p.hotkey == permit.hotkey
                        and now < t + config.probe_timeout_s]
                assert live == []
            if op == "admit_fail":
                breaker.failed(permit)
            else:
                outstanding.append((permit, clock.monotonic()))
        elif outstanding:
            permit, _ = outstanding.pop(int(arg) % len(outstanding))
            {"ok": breaker.succeeded, "fail": breaker.failed,
             "abandon": breaker.abandoned}[op](permit)
        for hotkey in ("hk0", "hk1"):
            assert (breaker.state(hotkey) is State.OPEN) <= breaker.is_blocked(hotkey)
