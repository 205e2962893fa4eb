"""The chaos oracle (harness.chaos.model) on its own: hand-worked AWS cases, then properties.

Every hand-worked test cites the rule it checks (R1..R8 in harness.chaos.model's docstring and
the AWS page it comes from). The oracle must not depend on the lab's resolver: checked too.
"""

from __future__ import annotations

import ast
import itertools
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.chaos import model
from harness.chaos.model import (
    ApiOutcome,
    Change,
    Delay,
    Expected,
    FaultSpec,
    HealthDelays,
    Oracle,
    Timing,
)
from harness.errors import ConfigError, FaultError

EAST, WEST, OHIO, DUBLIN = "us-east-1", "us-west-2", "us-east-2", "eu-west-1"
TWO = (EAST, WEST)
# Round-trip times (ms) shaped like the real ones: Virginia-Ohio close, Oregon far, Dublin farther.
RTT = {
    (EAST, OHIO): 12.0,
    (EAST, WEST): 65.0,
    (OHIO, WEST): 50.0,
    (EAST, DUBLIN): 70.0,
    (OHIO, DUBLIN): 85.0,
    (WEST, DUBLIN): 120.0,
}
D = 10.0  # Route 53 propagation in the lab's model
TTL = 60.0

invert = lambda r: FaultSpec.of(model.INVERT, r)  # noqa: E731
targets = lambda r: FaultSpec.of(model.FAIL_TARGETS, r)  # noqa: E731
throttle = lambda r: FaultSpec.of(model.THROTTLE, r)  # noqa: E731
blackhole = lambda a, b: FaultSpec.of(model.BLACKHOLE, a, b)  # noqa: E731


def ok(region: str) -> ApiOutcome:
    return ApiOutcome(model.OK, region, 200)


def timing(regions=TWO, *, tolerance: float = 0.0) -> Timing:  # type: ignore[no-untyped-def]
    """The lab's default windows: invert shows after exactly D; failing targets [30, 40] in,
    [30, 100] out (harness.lab.model for the deployed template)."""
    health = {}
    for region in regions:
        health[(model.INVERT, region)] = HealthDelays(Delay(D, D), Delay(D, D))
        health[(model.FAIL_TARGETS, region)] = HealthDelays(Delay(30, 40), Delay(30, 100))
    return Timing(health=health, ttl=TTL, tolerance=tolerance)


def oracle(regions=TWO, latency=None, tolerance: float = 0.0) -> Oracle:  # type: ignore[no-untyped-def]
    return Oracle(regions, timing=timing(regions, tolerance=tolerance), latency=latency)


# --------------------------------------------------------------------------- routing (R1-R3)


def test_a_vpc_is_answered_its_own_region_when_everything_is_healthy() -> None:
    """R1, "Latency-based routing in private hosted zones": Route 53 answers with an endpoint
    in the same Region as the VPC the query came from (latency 0), matrix or not."""
    for latency in (None, RTT):
        o = oracle((EAST, OHIO, WEST), latency)
        for region in (EAST, OHIO, WEST):
            assert o.route(region, set()) == {region}


def test_an_unhealthy_nearest_region_gives_the_next_lowest_latency() -> None:
    """R2, same page: "if the record with the lowest latency to the query's origin is
    unhealthy, a healthy endpoint with the next lowest latency is returned" - Virginia's
    clients go to Ohio (12 ms), not Oregon (65 ms)."""
    o = oracle((EAST, OHIO, WEST), RTT)
    assert o.route(EAST, {EAST}) == {OHIO}
    assert o.route(EAST, {EAST, OHIO}) == {WEST}
    assert o.route(WEST, {WEST}) == {OHIO}


def test_without_a_latency_matrix_any_healthy_region_is_acceptable() -> None:
    """R1/R2 with the inter-region order unknown (AWS gives no matrix): the VPC's own region
    when healthy (latency 0 is known), otherwise any healthy region, never an unhealthy one."""
    o = oracle((EAST, OHIO, WEST))
    assert o.route(EAST, {EAST}) == {OHIO, WEST}
    assert o.route(EAST, {EAST, WEST}) == {OHIO}


def test_equal_latencies_accept_every_tied_region() -> None:
    """R1: Route 53 publishes no tie-break, so the oracle accepts every region tied nearest."""
    o = Oracle((EAST, OHIO, WEST), timing=timing((EAST, OHIO, WEST)), latency={
        (EAST, OHIO): 40.0, (EAST, WEST): 40.0, (OHIO, WEST): 10.0,
    })  # fmt: skip
    assert o.route(EAST, {EAST}) == {OHIO, WEST}


def test_every_region_unhealthy_fails_open_to_the_vpcs_own_region() -> None:
    """R3, "How Amazon Route 53 chooses records when health checking is configured": if no
    record is healthy, Route 53 considers all of them healthy and routes by policy, so each VPC
    is answered its own region although that region is unhealthy."""
    o = oracle((EAST, OHIO, WEST), RTT)
    everything = {EAST, OHIO, WEST}
    for region in everything:
        assert o.route(region, everything) == {region}
    truth = o.truth(EAST, {invert(EAST), targets(OHIO), invert(WEST)})
    assert truth.dns == {EAST}
    assert [(h.kind, h.dns_region) for h in truth.hazards] == [(model.FAIL_OPEN, EAST)]


# --------------------------------------------------------------------------- faults (R4-R7)


def test_an_inverted_health_check_sends_the_regions_clients_elsewhere() -> None:
    """R4, "Inverting health checks": Route 53 considers an inverted healthy check unhealthy,
    so us-east-1's clients are answered us-west-2; the data path is untouched (200s)."""
    o = oracle()
    assert o.truth(EAST, {invert(EAST)}) == Expected(EAST, frozenset({WEST}), frozenset({ok(WEST)}))
    assert o.truth(WEST, {invert(EAST)}).dns == {WEST}


def test_failing_targets_move_dns_but_requests_still_succeed() -> None:
    """R5: the alias record (EvaluateTargetHealth) and the alarm health check go unhealthy, but
    "if all targets fail health checks at the same time ... the load balancer fails open"
    (NLB target group health checks), so a request that still reaches the region works."""
    o = oracle()
    assert o.truth(EAST, {targets(EAST)}).dns == {WEST}
    assert o.request(EAST, EAST) == ok(EAST)  # an old answer still in a cache: still served


def test_a_throttled_lambda_is_a_blind_spot() -> None:
    """R6: reserved concurrency 0 throttles every invoke and API Gateway answers 500 ("API
    Gateway 500 internal server error"); DNS still answers the region (nothing watches the
    Lambda), so its clients get 500s: the health-check blind spot."""
    o = oracle()
    truth = o.truth(EAST, {throttle(EAST)})
    assert truth.dns == {EAST}
    assert truth.api == {ApiOutcome(model.ERROR, EAST, 500)}
    assert [(h.kind, h.regions) for h in truth.hazards] == [(model.BLIND_SPOT, (EAST,))]
    assert o.truth(WEST, {throttle(EAST)}).api == {ok(WEST)}


def test_a_blackholed_peering_strands_clients_that_fail_over_across_it() -> None:
    """R7: a blackhole route "drops traffic that matches the route"
    (ReplaceTransitGatewayRoute Blackhole); alone it changes nothing (each VPC uses its own
    region), with us-east-1 down its clients are answered us-west-2 and cannot reach it."""
    o = oracle()
    assert o.truth(EAST, {blackhole(EAST, WEST)}).api == {ok(EAST)}
    stranded = o.truth(EAST, {blackhole(EAST, WEST), invert(EAST)})
    assert stranded.dns == {WEST}
    assert stranded.api == {ApiOutcome(model.UNREACHABLE, WEST)}
    assert [(h.kind, h.regions) for h in stranded.hazards] == [(model.STRANDED, (EAST, WEST))]
    # The blackhole is only between the pair: a third region's path is fine.
    three = oracle((EAST, OHIO, WEST), RTT)
    assert three.truth(EAST, {blackhole(EAST, WEST), invert(EAST)}).api == {ok(OHIO)}


def test_unreachable_wins_over_throttled_and_own_region_is_never_blackholed() -> None:
    """R6+R7: a dropped connection never reaches API Gateway; a VPC's own region needs no TGW."""
    o = oracle()
    assert (
        o.request(EAST, WEST, throttled={WEST}, blackholed={frozenset(TWO)}).kind == "unreachable"
    )
    assert o.request(EAST, EAST, throttled={EAST}, blackholed={frozenset(TWO)}).status == 500


# --------------------------------------------------------------------------- time (R8)


def test_after_an_invert_old_answers_last_until_propagation_plus_ttl() -> None:
    """R8 + R4: the view changes D after UpdateHealthCheck, and resolvers cache the alias
    answer for its fixed 60 s TTL (Route 53 FAQ): us-east-1 remains acceptable to its own
    clients until t + D + 60; from t + D the new answer is acceptable too; then only it."""
    o = oracle()
    history = [Change(invert(EAST), True, 100.0)]
    assert o.expected(EAST, history, 105.0).dns == {EAST}  # before D: only the old answer
    assert o.expected(EAST, history, 115.0).dns == {EAST, WEST}
    assert o.expected(EAST, history, 169.9).dns == {EAST, WEST}
    assert o.expected(EAST, history, 170.1).dns == {WEST}
    assert o.settled_at(history) == 170.0
    assert o.stable_from(history) == 110.0
    assert o.expected(EAST, history, 171.0) == o.truth(EAST, {invert(EAST)})


def test_failback_is_symmetric_and_an_observation_window_widens_the_answer() -> None:
    """R8: restoring is a change like any other; an observation taking [start, end] accepts
    what any instant in it accepts."""
    o = oracle()
    history = [Change(invert(EAST), True, 0.0), Change(invert(EAST), False, 500.0, 501.0)]
    assert o.expected(EAST, history, 505.0).dns == {WEST}
    assert o.expected(EAST, history, 505.0, 515.0).dns == {EAST, WEST}
    assert o.expected(EAST, history, 572.0).dns == {EAST}
    assert o.active(history) == frozenset()


def test_failing_targets_use_their_own_windows() -> None:
    """R5 + R8 with the model's target-health pipeline: down [30, 40], up [30, 100]."""
    o = oracle()
    history = [Change(targets(EAST), True, 0.0)]
    assert o.expected(EAST, history, 29.0).dns == {EAST}
    assert o.expected(EAST, history, 35.0).dns == {EAST, WEST}
    assert o.expected(EAST, history, 101.0).dns == {WEST}
    history.append(Change(targets(EAST), False, 200.0))
    assert o.expected(EAST, history, 260.0).dns == {EAST, WEST}
    assert o.settled_at(history) == 360.0


def test_data_path_changes_have_no_cache() -> None:
    """R6/R7 act on requests, not on DNS: no TTL; only the data-plane delay and tolerance."""
    o = Oracle(TWO, timing=Timing(health={}, data_plane=Delay(0.0, 2.0)))
    history = [Change(throttle(EAST), True, 10.0)]
    assert o.expected(EAST, history, 11.0).api == {ok(EAST), ApiOutcome(model.ERROR, EAST, 500)}
    assert o.expected(EAST, history, 12.5).api == {ApiOutcome(model.ERROR, EAST, 500)}
    assert o.settled_at(history) == 12.0


def test_tolerance_widens_both_bounds() -> None:
    o = oracle(tolerance=5.0)
    history = [Change(invert(EAST), True, 100.0)]
    assert o.expected(EAST, history, 106.0).dns == {EAST, WEST}
    assert o.expected(EAST, history, 179.0).dns == {EAST, WEST}
    assert o.settled_at(history) == 180.0


def test_fail_open_during_overlapping_windows_is_acceptable() -> None:
    """R3 + R8: while a second region goes down, Route 53 may already see both down (fail open:
    own region) or only the first (the other region)."""
    o = oracle()
    history = [Change(invert(EAST), True, 0.0), Change(invert(WEST), True, 100.0)]
    assert o.expected(EAST, history, 95.0).dns == {WEST}
    assert o.expected(EAST, history, 120.0).dns == {EAST, WEST}
    settled = o.expected(EAST, history, 200.0)
    assert settled.dns == {EAST}
    assert [h.kind for h in settled.hazards] == [model.FAIL_OPEN]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: FaultSpec.of("stop_bastion", EAST), "does not model fault 'stop_bastion'"),
        (lambda: FaultSpec.of(model.BLACKHOLE, EAST, EAST), "two different regions"),
        (lambda: FaultSpec.of(model.INVERT, EAST, WEST), "acts on one region"),
        (lambda: Delay(5.0, 1.0), r"delay \[5.0, 1.0\]"),
        (lambda: Delay(0.0, math.inf), "finite"),
        (lambda: Timing(health={}, ttl=-1.0), "ttl -1.0"),
        (lambda: Oracle((EAST,), timing=timing()), "two or more distinct regions"),
        (lambda: Oracle(TWO, timing=timing(), latency={}), "between 'us-east-1' and 'us-west-2'"),
        (lambda: oracle().route("eu-west-3", set()), "'eu-west-3' is not one of"),
        (
            lambda: oracle().expected(EAST, [Change(invert(EAST), False, 1.0)], 2.0),
            "restored but not injected",
        ),
        (
            lambda: oracle().active([Change(invert(EAST), True, 1.0)] * 2),
            "injected twice",
        ),
        (
            lambda: oracle().expected(
                EAST, [Change(invert(EAST), True, 5.0), Change(invert(WEST), True, 1.0)], 9.0
            ),
            "not in time order",
        ),
        (lambda: Change(invert(EAST), True, 5.0, 4.0), "bad times"),
        (
            lambda: Oracle(TWO, timing=Timing(health={})).expected(
                EAST, [Change(invert(EAST), True, 0.0)], 1.0
            ),
            "no delays for invert_health_check in us-east-1",
        ),
    ],
)
def test_bad_input_is_a_clear_error(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises((ConfigError, FaultError), match=message):
        build()


def test_the_oracle_does_not_import_the_labs_code() -> None:
    """Same spec, separate implementation: the oracle reads no lab module (STYLE.md)."""
    tree = ast.parse(Path(model.__file__).read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {name for name in imported if name and name.startswith("harness.lab")}


# --------------------------------------------------------------------------- properties


REGIONS = (EAST, OHIO, WEST, DUBLIN)
FAULTS = [
    *(FaultSpec.of(kind, r) for kind in (model.INVERT, model.FAIL_TARGETS, model.THROTTLE) for r in REGIONS),
    *(blackhole(a, b) for a, b in itertools.combinations(REGIONS, 2)),
]  # fmt: skip


@st.composite
def histories(draw: st.DrawFn) -> list[Change]:
    """Draw a valid history: toggles of random faults at increasing times."""
    active: set[FaultSpec] = set()
    history = []
    now = 0.0
    for fault in draw(st.lists(st.sampled_from(FAULTS), max_size=8)):
        now += draw(st.floats(0.0, 200.0))
        duration = draw(st.floats(0.0, 3.0))
        history.append(Change(fault, fault not in active, now, now + duration))
        active ^= {fault}
    return history


@settings(max_examples=150, deadline=None)
@given(histories(), st.sampled_from(REGIONS), st.booleans())
def test_after_settlement_only_the_truth_is_acceptable(
    history: list[Change], client: str, with_latency: bool
) -> None:
    o = oracle(REGIONS, RTT if with_latency else None, tolerance=5.0)
    after = max(o.settled_at(history), 0.0) + 1.0
    assert o.expected(client, history, after, after + 10.0) == o.truth(client, o.active(history))


@settings(max_examples=150, deadline=None)
@given(histories(), st.sampled_from(REGIONS), st.floats(0.0, 2000.0), st.floats(0.0, 50.0))
def test_acceptable_sets_are_never_empty_and_grow_with_the_window(
    history: list[Change], client: str, start: float, length: float
) -> None:
    o = oracle(REGIONS, RTT)
    point = o.expected(client, history, start)
    window = o.expected(client, history, start, start + length)
    assert point.dns
    assert point.api
    assert point.dns <= window.dns
    assert point.api <= window.api
    # Every acceptable request goes to a region DNS may answer.
    assert {outcome.region for outcome in window.api} <= window.dns


@settings(max_examples=200, deadline=None)
@given(st.sets(st.sampled_from(FAULTS), max_size=6), st.sampled_from(REGIONS), st.booleans())
def test_truth_follows_the_published_rules(
    active: set[FaultSpec], client: str, with_latency: bool
) -> None:
    o = oracle(REGIONS, RTT if with_latency else None)
    truth = o.truth(client, active)
    unhealthy = {r for f in active if f.affects_health for r in f.regions}
    healthy = set(REGIONS) - unhealthy
    if healthy:
        assert truth.dns <= healthy  # R2: never an unhealthy region while a healthy one exists
        if client in healthy:
            assert truth.dns == {client}  # R1: latency 0 to itself
        elif with_latency:
            best = min(RTT.get((client, r), RTT.get((r, client))) for r in healthy)  # type: ignore[type-var]
            assert all(RTT.get((client, r), RTT.get((r, client))) == best for r in truth.dns)
    else:
        assert truth.dns == {client}  # R3: fail open to the nearest, its own region
        assert any(h.kind == model.FAIL_OPEN for h in truth.hazards)
    for outcome in truth.api:
        pair = frozenset({client, outcome.region})
        cut = outcome.region != client and blackhole(*sorted(pair)) in active
        throttled = throttle(outcome.region) in active
        expected_kind = "unreachable" if cut else ("error" if throttled else "ok")
        assert outcome.kind == expected_kind


@settings(max_examples=100, deadline=None)
@given(st.sets(st.sampled_from(FAULTS), max_size=6), st.sampled_from(REGIONS))
def test_faults_elsewhere_do_not_move_a_healthy_answer(active: set[FaultSpec], client: str) -> None:
    """Metamorphic: taking down regions other than the answered one changes nothing (the
    nearest healthy region stays the nearest healthy region)."""
    o = oracle(REGIONS, RTT)
    (answer,) = o.truth(client, active).dns
    unhealthy = {r for f in active if f.affects_health for r in f.regions}
    if answer in unhealthy:
        return  # failing open: not this property
    more = set(active) | {invert(r) for r in REGIONS if r != answer}
    assert o.truth(client, more).dns == {answer}
