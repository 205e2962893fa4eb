"""Benchmark the lab's probes: one dig/curl inside a bastion shell, and an SSM round trip.

Run it by hand (it starts a lab and deploys the stack set, about five seconds)::

    /tmp/venv/bin/python benchmarks/probes.py [--iterations 200] [--speed 20]

It prints, for ``dig +short <domain>`` and the harness's ``curl`` probe run inside one bastion's
shell: the median and 95th percentile wall time of one invocation (timed inside the shell, so
what a probe loop pays), and the CPU the lab process and the shell spent per invocation (the
failover suite runs four bastions probing every 50 ms on two cores, so CPU is the real budget).
Then the SSM round trip: SendCommand of ``true`` until GetCommandInvocation says Success, in
wall seconds and lab seconds. The target is a median shim cost of at most 30 ms.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from botocore.exceptions import ClientError

from harness.aws.stacks import StackSetDeployer
from harness.config import load_config
from harness.lab.lab import Lab
from harness.probes.curl import build_curl_command
from harness.probes.dig import build_dig_command
from harness.targets import lab_sessions

TARGET_MEDIAN_MS = 30.0
REGIONS = ("us-east-1", "us-west-2")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def cpu_seconds() -> float:
    """CPU of this process (the lab) and of its finished children (the bastion shells)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_in_shell(
    lab: Lab, instance_id: str, command: str, iterations: int
) -> tuple[list[float], float]:
    """Run ``command`` ``iterations`` times in one bastion shell; per-run wall ms, CPU ms per run."""
    script = (
        f"for i in $(seq {iterations}); do s=$(date +%s%N); {command} >/dev/null 2>&1 || "
        "echo FAIL; e=$(date +%s%N); echo $(( (e - s) / 1000 )); done"
    )
    before = cpu_seconds()
    result = lab.bastions.run(instance_id, script, timeout=lab.clock.model_duration(600))
    spent = cpu_seconds() - before
    if result.rc != 0 or "FAIL" in result.stdout:
        raise SystemExit(f"probe failed in the bastion shell:\n{result.stdout}\n{result.stderr}")
    # `date` itself costs a fork; measure it alone and take it off.
    return [int(line) / 1000 for line in result.stdout.split()], spent * 1000 / iterations


def report(name: str, samples: list[float], cpu_ms: float, baseline: float) -> float:
    cost = [max(s - baseline, 0.0) for s in samples]
    median, p95 = statistics.median(cost), percentile(cost, 0.95)
    print(f"  {name:<6} median {median:6.2f} ms   p95 {p95:6.2f} ms   CPU {cpu_ms:6.2f} ms/run")
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--ssm-iterations", type=int, default=20)
    parser.add_argument("--speed", type=float, default=20.0)
    args = parser.parse_args()

    config = load_config({"regions": ",".join(REGIONS)}, environ={})
    with Lab(REGIONS, speed=args.speed) as lab:
        sessions = lab_sessions(lab.info)
        started = time.monotonic()
        deployer = StackSetDeployer(config, sessions)
        deployer.deploy()
        while len(lab.bastions.all()) < 4:
            time.sleep(0.05)
        print(
            f"lab up and stack set deployed in {time.monotonic() - started:.1f}s (speed {args.speed:g})"
        )
        bastion = next(b for b in lab.bastions.all() if b.region == REGIONS[0])
        dig = build_dig_command(config.domain, short=True)
        curl = build_curl_command(f"https://{config.domain}/demo/", max_time=5)
        for warm in (dig, curl):
            lab.bastions.run(bastion.instance_id, warm, timeout=lab.clock.model_duration(30))

        print(f"one invocation inside bastion {bastion.instance_id} ({args.iterations} runs):")
        empty, empty_cpu = time_in_shell(lab, bastion.instance_id, "true", args.iterations)
        baseline = statistics.median(empty)
        dig_samples, dig_cpu = time_in_shell(lab, bastion.instance_id, dig, args.iterations)
        curl_samples, curl_cpu = time_in_shell(lab, bastion.instance_id, curl, args.iterations)
        print(f"  (timing overhead of the loop itself, subtracted: {baseline:.2f} ms)")
        dig_median = report("dig", dig_samples, dig_cpu - empty_cpu, baseline)
        curl_median = report("curl", curl_samples, curl_cpu - empty_cpu, baseline)

        client = sessions.client("ssm", bastion.region)
        rounds: list[float] = []
        for _ in range(args.ssm_iterations):
            sent = time.monotonic()
            command_id = client.send_command(
                InstanceIds=[bastion.instance_id],
                DocumentName="AWS-RunShellScript",
                Parameters={"commands": ["true"]},
            )["Command"]["CommandId"]
            while True:
                try:
                    status = client.get_command_invocation(
                        CommandId=command_id, InstanceId=bastion.instance_id
                    )["Status"]
                except ClientError as exc:
                    if exc.response["Error"]["Code"] != "InvocationDoesNotExist":
                        raise
                    status = "Pending"
                if status not in ("Pending", "InProgress"):
                    break
                time.sleep(0.005)
            if status != "Success":
                raise SystemExit(f"SSM command ended {status}")
            rounds.append(time.monotonic() - sent)
        median = statistics.median(rounds)
        print(
            f"SSM SendCommand -> Success ({args.ssm_iterations} runs): median {median * 1000:.0f} ms "
            f"({lab.clock.model_duration(median):.2f} lab s), p95 {percentile(rounds, 0.95) * 1000:.0f} ms"
        )
        deployer.teardown()
    ok = dig_median <= TARGET_MEDIAN_MS and curl_median <= TARGET_MEDIAN_MS
    print(f"target median shim cost <= {TARGET_MEDIAN_MS:g} ms: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
