"""The chaos state machine: reading probes, findings, and proof that its invariant can fail.

Pure parts (classifying dig/curl results, comparing them with the oracle) are tested on parsed
tool output. The rest runs against a lab of this module's own (clock x60 to keep it short):
findings come from observations the oracle predicts, and a lab deliberately broken by the
health pipeline's ``ignore-inverted`` hook is caught, the sequence shrunk to the inversion.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.aws.stacks import StackSetDeployer
from harness.chaos.ledger import Ledger
from harness.chaos.manager import FaultManager
from harness.chaos.model import (
    BLACKHOLE,
    FAIL_TARGETS,
    INVERT,
    THROTTLE,
    ApiOutcome,
    Change,
    Delay,
    Expected,
    FaultSpec,
    Hazard,
    Oracle,
    Timing,
)
from harness.chaos.state_machine import (
    UNMODELLED_FACTOR,
    ChaosDivergence,
    ChaosMachine,
    ChaosStats,
    ChaosWorld,
    Observation,
    ObservedApi,
    build_world,
    confirms,
    disagreements,
    latency_for,
    lookup_ate_the_budget,
    read_api,
    read_dns,
    run_chaos,
    timing_for,
)
from harness.config import load_config
from harness.errors import ConfigError
from harness.hosts.bastion import discover_bastions
from harness.lab.lab import Lab
from harness.probes.curl import DEFAULT_WRITE_OUT, parse_curl
from harness.probes.dig import parse_dig
from harness.report.recorder import RunRecord
from harness.targets import open_target

EAST, WEST = "us-east-1", "us-west-2"
REGIONS = (EAST, WEST)
NODES = {EAST: ("10.1.1.9", "10.1.2.9"), WEST: ("10.2.1.9", "10.2.2.9")}
REGION_OF = {a: r for r, addresses in NODES.items() for a in addresses}
SPEED = 60.0


def curl_output(
    *,
    code: str = "200",
    body: str = "",
    remote: str = "",
    connect: str = "0.002",
    lookup: str = "0.001",
    exit_code: int = 0,
) -> tuple[str, str, int]:
    """Return (stdout, stderr, rc) shaped like the harness's curl probe."""
    trailer = (
        f"__REGIONDRILL__ http_code={code} time_namelookup={lookup} time_connect={connect} "
        f"time_appconnect=0.01 time_starttransfer=0.02 time_total=0.03 remote_ip={remote} "
        f"remote_port=443 exitcode={exit_code} ssl_verify_result=0"
    )
    stderr = (
        ""
        if exit_code == 0
        else f"curl: ({exit_code}) Connection timed out after 1000 milliseconds"
    )
    return f"{body}\n{trailer}\n", stderr, exit_code  # fmt: skip


def curl(**kwargs: Any) -> Any:
    stdout, stderr, rc = curl_output(**kwargs)
    return parse_curl(stdout, stderr, rc, write_out=DEFAULT_WRITE_OUT)


def observation(client: str, dns: str | None, api: ObservedApi) -> Observation:
    return Observation("i-1", client, 0.0, 1.0, NODES.get(dns or "", ()), dns, None, api)


# --------------------------------------------------------------------------- reading probes


def test_dns_answers_name_one_region_or_say_why_not() -> None:
    east = parse_dig("10.1.2.9\n10.1.1.9\n", short=True, rc=0)
    assert read_dns(east, REGION_OF) == (EAST, None)
    mixed = parse_dig("10.1.2.9\n10.2.1.9\n", short=True, rc=0)
    assert read_dns(mixed, REGION_OF)[1] == "addresses of several regions: us-east-1, us-west-2"
    stranger = parse_dig("10.9.9.9\n", short=True, rc=0)
    assert read_dns(stranger, REGION_OF)[1] == "addresses 10.9.9.9 belong to no region's NLB"
    silent = parse_dig(";; connection timed out; no servers could be reached\n", short=True, rc=9)
    region, why = read_dns(silent, REGION_OF)
    assert region is None
    assert why is not None
    assert why.startswith("no address (TIMEOUT")


def test_curl_results_become_the_oracles_outcomes() -> None:
    ok = read_api(curl(body='{"region": "us-west-2"}', remote="10.2.1.9"), REGION_OF)
    assert ok == ObservedApi("ok", WEST, 200, "", "10.2.1.9")
    throttled = read_api(
        curl(code="500", body='{"message": "Internal server error"}', remote="10.1.1.9"), REGION_OF
    )
    assert (throttled.kind, throttled.region, throttled.status) == ("error", EAST, 500)
    dropped = read_api(curl(code="000", connect="0.000", exit_code=28), REGION_OF)
    assert (dropped.kind, dropped.region) == ("unreachable", None)
    # Anything else is never expected: a timeout after connecting, a 2xx without a region.
    late = read_api(curl(code="000", connect="0.004", remote="10.1.1.9", exit_code=28), REGION_OF)
    assert late.kind == "failed"
    assert "curl exit 28" in late.detail
    anonymous = read_api(curl(body="{}", remote="10.1.1.9"), REGION_OF)
    assert (anonymous.kind, anonymous.detail) == ("failed", "2xx without a region")


def test_a_lookup_that_used_the_connect_budget_is_not_a_dropped_connection() -> None:
    assert lookup_ate_the_budget(curl(code="000", connect="0", lookup="0.95", exit_code=28), 1.0)
    assert lookup_ate_the_budget(curl(code="000", connect="0", lookup="0", exit_code=28), 1.0)
    assert not lookup_ate_the_budget(
        curl(code="000", connect="0", lookup="0.01", exit_code=28), 1.0
    )
    assert not lookup_ate_the_budget(
        curl(code="000", connect="0.2", lookup="0.95", exit_code=28), 1.0
    )


def test_observations_are_compared_with_what_the_oracle_accepts() -> None:
    expected = Expected(
        EAST, frozenset({WEST}), frozenset({ApiOutcome("error", WEST, 500), ApiOutcome("ok", WEST, 200)})
    )  # fmt: skip
    good = observation(EAST, WEST, ObservedApi("error", None, 500))
    assert disagreements(good, expected) == []
    wrong = observation(EAST, EAST, ObservedApi("ok", EAST, 200))
    assert disagreements(wrong, expected) == [
        "DNS answered us-east-1, expected one of {us-west-2}",
        "API 200 from us-east-1, expected one of {HTTP 500 from us-west-2; 200 from us-west-2}",
    ]
    broken = dataclasses.replace(good, dns_region=None, dns_problem="no address (SERVFAIL)")
    assert disagreements(broken, expected)[0] == "DNS: no address (SERVFAIL)"


def test_a_hazard_is_confirmed_only_by_the_outcome_it_predicts() -> None:
    stranded = Hazard("stranded_clients", EAST, (EAST, WEST), WEST, ApiOutcome("unreachable", WEST))
    assert confirms(observation(EAST, WEST, ObservedApi("unreachable", None)), stranded)
    assert not confirms(observation(EAST, WEST, ObservedApi("ok", WEST, 200)), stranded)
    fail_open = Hazard("fail_open", EAST, REGIONS, EAST)
    assert confirms(observation(EAST, EAST, ObservedApi("ok", EAST, 200)), fail_open)
    assert not confirms(observation(EAST, WEST, ObservedApi("ok", WEST, 200)), fail_open)


def test_on_aws_the_oracle_waits_twice_the_objective() -> None:
    config = load_config({"target": "aws", "certificate_arns": [
        f"{r}=arn:aws:acm:{r}:111122223333:certificate/abc" for r in REGIONS
    ]}, environ={})  # fmt: skip
    deployment = types.SimpleNamespace(region_names=REGIONS)
    timing = timing_for(types.SimpleNamespace(lab_info=None), deployment, config)  # type: ignore[arg-type]
    delays = timing.health[(INVERT, EAST)]
    assert delays.down.latest == delays.up.latest == UNMODELLED_FACTOR * config.rto
    assert timing.ttl == 60.0
    assert not timing.modelled  # so a step ends after one TTL of agreeing answers
    assert latency_for(types.SimpleNamespace(), REGIONS) is None


# --------------------------------------------------------------------------- settling (scripted)


class ScriptedWorld:
    """Just enough of a ChaosWorld to drive ``_settle``: a fake clock and scripted answers.

    ``answer(client, now)`` gives the region a client's DNS (and API) shows at ``now``; every
    poll takes ``poll`` modelled seconds.
    """

    def __init__(self, answer: Any, *, modelled: bool = True, poll: float = 2.0) -> None:
        self.regions = REGIONS
        self.now = 1000.0
        self.poll = poll
        self.answer = answer
        # Modelled: the lab's invert window (exactly D = 10 s). Without a model: only an outer
        # bound (twice a 300 s objective), as on AWS.
        down = Delay(10.0, 10.0) if modelled else Delay(0.0, 600.0)
        timing = Timing.uniform(REGIONS, down=down, tolerance=5.0, modelled=modelled)
        self.oracle = Oracle(REGIONS, timing=timing)
        self.clock = types.SimpleNamespace(now=lambda: self.now, sleep=self._sleep)
        self.config = types.SimpleNamespace(probe_interval=1.0, rto=300.0)
        self.stats = ChaosStats()
        self.seed = 7
        self.scenario = "scripted"
        self.findings: list[Any] = []

    def _sleep(self, seconds: float) -> None:
        self.now += seconds

    def observe(self) -> list[Observation]:
        start = self.now
        self.now += self.poll
        seen = []
        for region in REGIONS:
            answer = self.answer(region, start)
            api = ObservedApi("ok", answer, 200)
            seen.append(
                Observation("i-1", region, start, self.now, NODES[answer], answer, None, api)
            )
        return seen

    def add_finding(self, finding: Any) -> bool:
        self.findings.append(finding)
        return True


def settle_after_invert(world: ScriptedWorld) -> ChaosMachine:
    machine = ChaosMachine(world)  # type: ignore[arg-type]
    machine._changed(Change(FaultSpec.of(INVERT, EAST), True, world.now, world.now))
    return machine


def test_a_step_ends_once_the_truth_is_seen_after_the_view_is_final() -> None:
    """Modelled: the east clients move at t+35 (within D..D+TTL); the step ends at the first
    agreeing poll, which is after the view can no longer change (t + D + tolerance)."""
    world = ScriptedWorld(lambda client, now: WEST if client == EAST and now >= 1035 else client)
    settle_after_invert(world)
    assert 1035.0 <= world.now <= 1035.0 + 3 + 2  # the first agreeing poll ends the step
    assert 35.0 <= world.stats.slowest_step <= 38.0


def test_agreeing_too_early_is_not_enough() -> None:
    """An answer that matches the end state before Route 53's view is final may be a
    coincidence (failing open looks like the steady state): keep watching until t + D + tol."""
    world = ScriptedWorld(lambda client, now: WEST if client == EAST else client, poll=1.0)
    machine = ChaosMachine(world)  # type: ignore[arg-type]
    # The new answer before t + D - tolerance is itself unacceptable...
    with pytest.raises(ChaosDivergence, match="saw what the oracle rejects"):
        machine._changed(Change(FaultSpec.of(INVERT, EAST), True, world.now, world.now))
    # ...and from t + D - tolerance on it is acceptable, but the step ends only at t + D + tol.
    world = ScriptedWorld(lambda client, now: WEST if client == EAST else client, poll=1.0)
    machine = ChaosMachine(world)  # type: ignore[arg-type]
    machine._changed(Change(FaultSpec.of(INVERT, EAST), True, world.now - 6.0, world.now - 6.0))
    assert world.now >= 1000.0 - 6.0 + 15.0


def test_a_change_that_never_shows_fails_with_the_whole_story() -> None:
    world = ScriptedWorld(lambda client, now: client)  # the inversion is ignored
    with pytest.raises(ChaosDivergence) as caught:
        settle_after_invert(world)
    message = str(caught.value)
    assert world.now == pytest.approx(1000.0 + 10.0 + 5.0 + 60.0 + 5.0, abs=3.1)
    assert "replay: --chaos-seed 7" in message
    assert "inject invert_health_check(us-east-1)" in message
    assert "DNS answered us-east-1, expected one of {us-west-2}" in message
    assert world.stats.first_failure is not None


def test_without_a_model_a_step_needs_one_ttl_of_agreement() -> None:
    world = ScriptedWorld(
        lambda client, now: WEST if client == EAST and now >= 1020 else client, modelled=False
    )
    settle_after_invert(world)
    assert 1020.0 + 60.0 + 5.0 <= world.now <= 1020.0 + 60.0 + 5.0 + 6.0  # far before 600 s


def test_slow_convergence_is_a_finding_not_a_failure() -> None:
    world = ScriptedWorld(lambda client, now: WEST if client == EAST and now >= 1050 else client)
    world.config.rto = 30.0
    settle_after_invert(world)
    (finding,) = world.findings
    assert (finding.kind, finding.regions) == ("slow_convergence", (EAST,))
    assert "over the 30s objective" in finding.explanation


# --------------------------------------------------------------------------- on a lab


@pytest.fixture(scope="module")
def lab_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, ChaosWorld]]:
    reports = tmp_path_factory.mktemp("chaos-reports")
    config = load_config(
        {"regions": ",".join(REGIONS), "report_dir": str(reports), "lab_speed": str(SPEED)},
        environ={},
    )
    with open_target(config) as target:
        lab = target.lab
        deployer = StackSetDeployer(config, target.sessions)
        deployment = deployer.deploy()
        bastions = discover_bastions(deployment, target.sessions, clock=lab.clock, wait=60)
        manager = FaultManager(
            sessions=target.sessions,
            deployment=deployment,
            config=config,
            clock=lab.clock,
            ledger=Ledger.in_dir(Path(reports)),
            run_id=deployment.run_id,
            environment={"target": "lab", "endpoint": lab.endpoint},
        )
        world = build_world(
            config=config,
            target=target,
            deployment=deployment,
            bastions=bastions,
            manager=manager,
            record=RunRecord(),
            scenario="tests/chaos",
        )
        try:
            yield lab, world
        finally:
            for bastion in bastions:
                bastion.executor.close()
            assert manager.restore_all() == []
            deployer.teardown()


@pytest.fixture
def world(lab_world: tuple[Lab, ChaosWorld]) -> Iterator[ChaosWorld]:
    _, shared = lab_world
    shared.record = RunRecord()
    shared.kinds = frozenset({INVERT, FAIL_TARGETS, THROTTLE, BLACKHOLE})
    yield shared
    assert shared.manager.ledger.outstanding() == []


def test_the_oracle_reads_the_labs_configuration_not_its_code(world: ChaosWorld) -> None:
    """The timing comes from the deployed parameters and harness.lab.model; the latency
    matrix is the lab's configuration, handed over as data."""
    timing = world.oracle.timing
    assert timing.health[(INVERT, EAST)].down.latest == 10.0  # the lab's propagation delay
    failed = timing.health[(FAIL_TARGETS, WEST)]
    assert (failed.down.earliest, failed.down.latest) == (30.0, 40.0)
    assert timing.tolerance == 15.0  # a quarter of a wall second at x60
    assert world.oracle.route(EAST, set()) == {EAST}
    assert world.allow_total_outage  # 40 + 60 + 100 + 4 x 15 < 300


def test_expected_hazards_become_findings_once(world: ChaosWorld) -> None:
    """Drive the rules by hand: each hazard the oracle predicts and a bastion confirms is one
    finding (deduplicated by kind and regions), and nothing fails."""
    machine = ChaosMachine(world)
    machine.every_bastion_agrees_with_the_oracle()
    machine.throttle_api(region=WEST)
    machine.every_bastion_agrees_with_the_oracle()
    machine.every_bastion_agrees_with_the_oracle()
    machine.blackhole_peering(regions=REGIONS)
    machine.invert_health_check(region=WEST)
    machine.every_bastion_agrees_with_the_oracle()
    machine.invert_health_check(region=EAST)  # every region down: Route 53 fails open
    machine.every_bastion_agrees_with_the_oracle()
    machine.teardown()
    kinds = sorted((f.kind, f.regions) for f in world.record.findings)
    assert kinds == [
        ("blind_spot", (WEST,)),
        ("fail_open", REGIONS),
        ("stranded_clients", (WEST, EAST)),
    ]
    stranded = next(f for f in world.record.findings if f.kind == "stranded_clients")
    assert "blackholed" in stranded.explanation
    assert stranded.evidence["faults"] == [
        "blackhole_peering(us-east-1, us-west-2)",
        "invert_health_check(us-west-2)",
        "throttle_api(us-west-2)",
    ]
    assert world.stats.slowest_step <= world.config.rto


def test_convergence_slower_than_the_objective_is_a_finding(world: ChaosWorld) -> None:
    strict = dataclasses.replace(world.config, rto=5.0)
    world.config, saved = strict, world.config
    try:
        machine = ChaosMachine(world)
        machine.every_bastion_agrees_with_the_oracle()
        machine.invert_health_check(region=EAST)  # Route 53 needs its propagation delay (10 s)
        machine.teardown()
    finally:
        world.config = saved
    (slow, *_) = [f for f in world.record.findings if f.kind == "slow_convergence"]
    assert slow.regions == (EAST,)
    assert "over the 5s objective" in slow.explanation


def test_a_lab_that_ignores_inverted_is_caught_and_shrunk(
    world: ChaosWorld, lab_world: tuple[Lab, ChaosWorld]
) -> None:
    """Prove the invariant can fail: with the health pipeline ignoring ``Inverted`` (a
    test-only hook), inverting a health check leaves its region in DNS past the oracle's
    window; the run fails and hypothesis shrinks the sequence to that one inversion."""
    lab, _ = lab_world
    world.kinds = frozenset({INVERT, THROTTLE})  # keep each shrinking attempt short
    lab.health.hooks.add("ignore-inverted")
    try:
        with pytest.raises(ChaosDivergence) as caught:
            run_chaos(world, seed_value=3, examples=10, steps=2)
    finally:
        lab.health.hooks.discard("ignore-inverted")
    program = [n for n in getattr(caught.value, "__notes__", []) if n.startswith("state.")]
    assert program[1:-1] == ["state.invert_health_check(region='us-east-1')"], program
    message = str(caught.value)
    assert "inject invert_health_check(us-east-1)" in message
    assert "replay: --chaos-seed 3" in message
    assert "DNS answered us-east-1, expected one of {us-west-2}" in message


def test_unknown_fault_kinds_are_refused(world: ChaosWorld) -> None:
    with pytest.raises(ConfigError, match=r"\['stop_bastion'\] are not in the catalogue"):
        dataclasses.replace(world, kinds=frozenset({"stop_bastion"}))
