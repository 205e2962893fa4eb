"""Benchmark the randomised chaos run on the lab: fault steps per minute, and shrinking time.

Usage: ``python benchmarks/chaos.py [--speed 20] [--examples 5] [--steps 6] [--seed 1]
[--planted-steps 4]``

Starts a lab, deploys the stack set (a few seconds), then:

1. runs the chaos state machine (``harness.chaos.state_machine``) for ``--examples`` sequences
   of up to ``--steps`` fault steps and prints fault steps per wall minute (target: at least
   ``--target`` = 20), probe polls, the slowest convergence and the findings;
2. plants a failure, the lab's ``ignore-inverted`` hook (inverting a health check no longer
   takes the region down), runs again with the same seed, up to 20 sequences of
   ``--planted-steps`` steps (default: the default ``--chaos-steps``), and prints the time to
   the first failure, the time hypothesis then spent shrinking it (every shrinking attempt
   replays real faults and waits for them, so this grows quickly with the sequence length;
   hypothesis gives up improving after five minutes) and the shrunk program.

Exits 1 if the step rate is below the target or the planted failure is not caught. Nothing
leaves loopback.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.aws.stacks import StackSetDeployer
from harness.chaos.ledger import Ledger
from harness.chaos.manager import FaultManager
from harness.chaos.state_machine import (
    ChaosDivergence,
    build_world,
    run_chaos,
    steps_per_minute,
)
from harness.config import DEFAULT_CHAOS_STEPS, load_config
from harness.hosts.bastion import discover_bastions
from harness.report.recorder import RunRecord
from harness.targets import open_target

REGIONS = ("us-east-1", "us-west-2")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speed", type=float, default=20.0)
    parser.add_argument("--examples", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--planted-steps", type=int, default=DEFAULT_CHAOS_STEPS)
    parser.add_argument("--target", type=float, default=20.0, help="steps per minute to reach")
    args = parser.parse_args()

    reports = Path(tempfile.mkdtemp(prefix="regiondrill-chaos-bench-"))
    config = load_config(
        {"regions": ",".join(REGIONS), "report_dir": str(reports), "lab_speed": str(args.speed)},
        environ={},
    )
    started = time.monotonic()
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
            ledger=Ledger.in_dir(reports),
            run_id=deployment.run_id,
            environment={"target": "lab", "endpoint": lab.endpoint},
        )
        record = RunRecord()
        world = build_world(
            config=config,
            target=target,
            deployment=deployment,
            bastions=bastions,
            manager=manager,
            record=record,
            scenario="benchmark",
        )
        print(f"lab ready in {time.monotonic() - started:.1f}s (clock x{args.speed:g})")

        stats = run_chaos(world, seed_value=args.seed, examples=args.examples, steps=args.steps)
        rate = steps_per_minute(stats)
        elapsed = time.monotonic() - stats.started
        print(
            f"healthy lab: {stats.steps} fault steps in {stats.examples} sequences, "
            f"{elapsed:.1f}s wall -> {rate:.1f} steps/min (target >= {args.target:g}); "
            f"{stats.polls} probe polls; slowest convergence {stats.slowest_step:.0f}s modelled"
        )
        for finding in record.findings:
            print(f"  finding [{finding.severity}] {finding.title}")

        lab.health.hooks.add("ignore-inverted")
        shrink: dict[str, object] = {"caught": False}
        try:
            run_chaos(world, seed_value=args.seed, examples=20, steps=args.planted_steps)
        except ChaosDivergence as exc:
            ended = time.monotonic()
            first = world.stats.first_failure or ended
            program = [n for n in getattr(exc, "__notes__", []) if n.startswith(("state", "Draw"))]
            shrink = {
                "caught": True,
                "to_first_failure_s": round(first - world.stats.started, 1),
                "shrinking_s": round(ended - first, 1),
                "examples_run": world.stats.examples,
                "program": program,
            }
        finally:
            lab.health.hooks.discard("ignore-inverted")
        if shrink["caught"]:
            print(
                f"planted failure (ignore-inverted): first failure after "
                f"{shrink['to_first_failure_s']}s, shrunk in {shrink['shrinking_s']}s "
                f"({shrink['examples_run']} sequences run in all); shrunk program:"
            )
            for line in shrink["program"]:  # type: ignore[attr-defined]
                print(f"  {line}")
        else:
            print("planted failure (ignore-inverted) was NOT caught")
        deployer.teardown()
    print(
        json.dumps(
            {
                "steps_per_minute": round(rate, 1),
                "steps": stats.steps,
                "sequences": stats.examples,
                "findings": [f.kind for f in record.findings],
                "planted_failure": {k: v for k, v in shrink.items() if k != "program"},
            }
        )
    )
    return 0 if rate >= args.target and shrink["caught"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
