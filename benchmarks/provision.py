"""Lab provisioning wall time for 2, 3 and 5 regions, and the ratio to the 2-region time.

Targets (issue 3): 2 regions <= 5 s; 5 regions <= 2.5x the 2-region time. All sizes are
measured in one run, side by side, on one lab (stacks torn down between sizes), so machine
noise affects them alike.

The process CPU time of each deploy is printed too: the lab and the deployer share one Python
process, so when wall time equals CPU time provisioning is bound by the work itself (moto, the
gateway, botocore), and its ratio is the ratio of work: 5 regions are 2.5x the stacks of 2, plus
10 peering pairs instead of one.

    python benchmarks/provision.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness.aws.stacks import StackSetDeployer
from harness.config import load_config
from harness.lab.lab import Lab
from harness.targets import lab_sessions

REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2", "eu-central-1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=3, help="measurements per size (median reported)"
    )
    args = parser.parse_args()
    results: dict[int, list[float]] = {2: [], 3: [], 5: []}
    teardown: dict[int, list[float]] = {2: [], 3: [], 5: []}
    cpu: dict[int, list[float]] = {2: [], 3: [], 5: []}
    with Lab(REGIONS) as lab:
        sessions = lab_sessions(lab.info)
        for _ in range(args.repeat):
            for count in results:
                config = load_config({"regions": ",".join(REGIONS[:count])}, environ={})
                deployer = StackSetDeployer(config, sessions)
                started, cpu_started = time.perf_counter(), time.process_time()
                deployer.deploy()
                results[count].append(time.perf_counter() - started)
                cpu[count].append(time.process_time() - cpu_started)
                started = time.perf_counter()
                deployer.teardown()
                teardown[count].append(time.perf_counter() - started)
    base = statistics.median(results[2])
    cpu_base = statistics.median(cpu[2])
    print(
        f"{'regions':>7}  {'deploy (median s)':>18}  {'ratio to 2':>10}  {'CPU (median s)':>15}"
        f"  {'CPU ratio':>9}  {'teardown (median s)':>20}"
    )
    for count, times in results.items():
        median, cpu_median = statistics.median(times), statistics.median(cpu[count])
        print(
            f"{count:>7}  {median:>18.2f}  {median / base:>10.2f}  {cpu_median:>15.2f}"
            f"  {cpu_median / cpu_base:>9.2f}  {statistics.median(teardown[count]):>20.2f}"
        )
    print(
        f"targets: 2 regions <= 5 s -> {'met' if base <= 5 else 'MISSED'}; "
        f"5 regions <= 2.5x -> {'met' if statistics.median(results[5]) / base <= 2.5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
