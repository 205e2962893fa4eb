"""Chaos: random sequences of faults, every step checked against an independent routing model.

Fixed scenarios test the faults somebody thought of; this one tests the sequences nobody wrote
down. A hypothesis state machine (``harness.chaos.state_machine``) injects and restores faults
from the catalogue (invert a health check, fail the NLB targets, blackhole a peering, throttle
the API) in any order and combination; after every step each bastion's ``dig`` and ``curl``
must show what the oracle (``harness.chaos.model``) accepts, within the analytic model's
windows on the lab clock (the objective on AWS).

Expected consequences of the faults are findings in the report, not failures: the
health-check blind spot, stranded clients, failing open, slow convergence. A divergence the
oracle does not expect fails the test with the shrunk fault sequence and every bastion's
observed and expected answers.

``--chaos-seed`` replays a run exactly (without it a seed is picked and printed);
``--chaos-examples`` and ``--chaos-steps`` size it. On AWS it only runs with
``--allow-destructive``.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from harness.chaos.state_machine import build_world, run_chaos, steps_per_minute
from harness.plugin import progress_writer

pytestmark = [pytest.mark.chaos, pytest.mark.destructive]


def test_random_fault_sequences_match_the_oracle(
    harness_config: Any,
    target: Any,
    deployment: Any,
    bastions: Any,
    chaos: Any,
    run_record: Any,
    request: pytest.FixtureRequest,
    pytestconfig: pytest.Config,
) -> None:
    say = progress_writer(pytestconfig)
    seed = harness_config.chaos_seed
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    examples, steps = harness_config.chaos_examples, harness_config.chaos_steps
    announce = (
        f"chaos: seed {seed}, {examples} sequence(s) of up to {steps} step(s) "
        f"(replay with --chaos-seed {seed})"
    )
    # The seed must be seen even when the run passes (to replay what produced a finding), so
    # this line bypasses output capture; it is also kept in the run record.
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            say(announce)
    else:
        say(announce)
    run_record.samples["chaos"] = {"seed": seed, "examples": examples, "steps": steps}
    world = build_world(
        config=harness_config,
        target=target,
        deployment=deployment,
        bastions=bastions,
        manager=chaos,
        record=run_record,
        scenario=request.node.nodeid,
        say=say,
    )
    stats = run_chaos(world, seed_value=seed, examples=examples, steps=steps)
    run_record.samples["chaos"].update(
        fault_steps=stats.steps,
        sequences=stats.examples,
        slowest_convergence=round(stats.slowest_step, 1),
    )
    found = sorted({f.kind for f in run_record.findings if f.scenario == request.node.nodeid})
    say(
        f"chaos: {stats.steps} fault step(s) in {stats.examples} sequence(s), "
        f"{steps_per_minute(stats):.0f} steps/min, slowest convergence "
        f"{stats.slowest_step:.0f}s; findings: {', '.join(found) or 'none'}"
    )
    assert chaos.ledger.outstanding() == [], "a chaos fault is still recorded as injected"
