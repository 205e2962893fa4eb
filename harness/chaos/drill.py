"""Failover drills: take a region down with a fault, measure failover and failback everywhere.

A drill phase starts one probe loop per bastion (one SSM command each: API calls are
O(bastions)), lets them record a baseline, performs the event (inject or restore), waits for the
loops to settle, and turns their output into a PhaseResult. Windows come from the objective and,
on the lab, from the analytic model: a loop keeps sampling at least as long as the slowest
expected convergence, so a bastion that is not supposed to move is watched for the whole phase.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from harness.aws.session import SessionFactory, aws_call
from harness.aws.stacks import Deployment
from harness.chaos.faults import Fault
from harness.chaos.manager import ActiveFault, FaultManager
from harness.chaos.timing import (
    Expectation,
    PhaseResult,
    ProbePlan,
    Timeline,
    analyse,
    build_probe_script,
    parse_probe_output,
    region_map,
)
from harness.clock import Clock
from harness.config import HarnessConfig
from harness.errors import CommandError, HarnessError
from harness.report import allure_support

Say = Callable[[str], None]


def load_balancer_nodes(
    sessions: SessionFactory, deployment: Deployment
) -> dict[str, tuple[str, ...]]:
    """Each region's NLB node addresses, from the ENIs AWS creates for the NLB."""
    nodes: dict[str, tuple[str, ...]] = {}
    for region in deployment.regions:
        description = f"ELB {region.load_balancer_full_name}"
        with aws_call(
            f"DescribeNetworkInterfaces of {region.load_balancer_full_name}", region.name
        ):
            enis = sessions.client("ec2", region.name).describe_network_interfaces(
                Filters=[{"Name": "description", "Values": [description]}]
            )["NetworkInterfaces"]
        if not enis:
            raise HarnessError(
                f"no network interfaces found for load balancer {region.load_balancer_full_name} in {region.name}"
            )
        nodes[region.name] = tuple(sorted(e["PrivateIpAddress"] for e in enis))
    return nodes


@dataclass(frozen=True)
class Windows:
    """How long a phase is watched (modelled seconds)."""

    max_window: float
    min_window: float
    settle: float
    lead: float  # baseline sampling before the event

    @classmethod
    def for_phase(cls, config: HarnessConfig, model_latest: float | None) -> Windows:
        expected = max(model_latest or 0.0, 0.0)
        interval = config.probe_interval
        settle = max(5 * interval, 5.0)
        # Watch at least as long as the slowest expected convergence (the objective when there
        # is no model), and never less than a few samples.
        horizon = max(expected, config.rto if model_latest is None else expected)
        min_window = max(horizon + settle, 10 * interval)
        return cls(
            max_window=max(config.rto, expected) * 1.5 + settle + 10 * interval,
            min_window=min_window,
            settle=settle,
            lead=3 * interval,
        )


class Drill:
    """Run failover/failback phases against a deployment from every bastion."""

    def __init__(
        self,
        *,
        config: HarnessConfig,
        deployment: Deployment,
        sessions: SessionFactory,
        clock: Clock,
        bastions: Sequence[Any],  # harness.hosts.bastion.Bastion
        chaos: FaultManager,
        say: Say | None = None,
    ) -> None:
        self.config = config
        self.deployment = deployment
        self.sessions = sessions
        self.clock = clock
        self.bastions = list(bastions)
        self.chaos = chaos
        self._say = say or (lambda line: None)
        self.nodes = load_balancer_nodes(sessions, deployment)
        self.address_regions = region_map(self.nodes)
        self.url = f"https://{config.domain}/demo"

    # ------------------------------------------------------------------ phases

    def failover(
        self,
        fault: Fault,
        *,
        model_window: tuple[float, float] | None = None,
        failback_window: tuple[float, float] | None = None,
        allow_total_outage: bool = False,
        max_window: float | None = None,
    ) -> tuple[PhaseResult, PhaseResult]:
        """Inject ``fault``, measure failover, restore it, measure failback.

        ``max_window`` (modelled seconds) caps how long the failover is watched when the
        caller knows some clients will never converge (a hazard scenario), instead of waiting
        out the objective.
        """
        down = set(fault.takes_down)
        region = next(iter(sorted(down)), "")
        surviving = [r for r in self.deployment.region_names if r not in down]
        holder: dict[str, ActiveFault] = {}

        def inject() -> None:
            holder["active"] = self.chaos.inject(fault, allow_total_outage=allow_total_outage)

        expectations = {
            b.instance_id: self._expect(surviving if b.region in down else [b.region])
            for b in self.bastions
        }
        try:
            with allure_support.step(f"failover of {region} via {fault.KIND}"):
                failover = self._phase(
                    "failover",
                    fault,
                    region,
                    inject,
                    expectations,
                    model_window,
                    max_window=max_window,
                )
        except BaseException:
            if "active" in holder:
                holder["active"].restore()
            raise
        restore_expectations = {b.instance_id: self._expect([b.region]) for b in self.bastions}
        with allure_support.step(f"failback of {region} via {fault.KIND}"):
            failback = self._phase(
                "failback",
                fault,
                region,
                holder["active"].restore,
                restore_expectations,
                failback_window,
            )
        # The ledger id ties both phases to the fault's inject/restore record in the report.
        fault_id = holder["active"].id
        return (
            dataclasses.replace(failover, fault_id=fault_id),
            dataclasses.replace(failback, fault_id=fault_id),
        )

    def _expect(self, regions: Sequence[str]) -> Expectation:
        return Expectation(
            regions=frozenset(regions),
            addresses=frozenset(a for r in regions for a in self.nodes[r]),
        )

    def _phase(
        self,
        phase: str,
        fault: Fault,
        region: str,
        event: Callable[[], None],
        expectations: Mapping[str, Expectation],
        model_window: tuple[float, float] | None,
        *,
        max_window: float | None = None,
    ) -> PhaseResult:
        windows = Windows.for_phase(self.config, model_window[1] if model_window else None)
        if max_window is not None:
            windows = Windows(
                max_window=max_window,
                min_window=min(windows.min_window, max_window),
                settle=windows.settle,
                lead=windows.lead,
            )
        clock = self.clock
        # Every loop waits for a common start time far enough ahead for SSM to deliver the
        # command everywhere; the event happens after the loops have a baseline. A loop that
        # still starts late makes the phase fail loudly rather than measure from a wrong origin.
        start_wall = time.time() + (self._delivery_budget())
        plans = {
            bastion.instance_id: ProbePlan(
                domain=self.config.domain,
                url=self.url,
                interval=clock.wall_duration(self.config.probe_interval),
                max_window=clock.wall_duration(windows.max_window),
                min_window=clock.wall_duration(windows.min_window),
                settle=clock.wall_duration(windows.settle),
                expected_addresses=expectations[bastion.instance_id].addresses,
                expected_regions=expectations[bastion.instance_id].regions,
                curl_timeout=max(clock.wall_duration(2.0), 0.5),
                connect_timeout=max(clock.wall_duration(1.0), 0.25),
                start_at=start_wall,
            )
            for bastion in self.bastions
        }
        label = f"{phase} of {region} via {fault.KIND}"
        outputs: dict[str, str] = {}
        errors: dict[str, str] = {}
        timeout = windows.max_window + 120.0  # modelled: the loop's own bound plus SSM slack

        def probe(bastion: Any) -> None:
            try:
                result = bastion.run(
                    build_probe_script(plans[bastion.instance_id]),
                    timeout=timeout,
                    # The loop cannot end before its minimum window (after the common start).
                    expected_duration=windows.min_window
                    + clock.model_duration(self._delivery_budget()),
                )
            except CommandError as exc:
                errors[bastion.instance_id] = str(exc)
                return
            if result.rc != 0:
                errors[bastion.instance_id] = (
                    f"probe loop exited {result.rc}: {result.stderr.strip()[:300]}"
                )
            outputs[bastion.instance_id] = result.stdout

        done = threading.Event()
        ticker = threading.Thread(target=self._progress, args=(label, done, windows), daemon=True)
        with ThreadPoolExecutor(max_workers=len(self.bastions), thread_name_prefix="probe") as pool:
            futures = [pool.submit(probe, bastion) for bastion in self.bastions]
            time.sleep(max(start_wall - time.time(), 0.0))
            clock.sleep(windows.lead)
            event_time = clock.now()
            with allure_support.step(
                f"{'inject' if phase == 'failover' else 'restore'} {fault.describe()}"
            ):
                event()
            ticker.start()
            for future in futures:
                future.result()
        done.set()
        if errors:
            raise HarnessError(
                f"{label}: probing failed on " + "; ".join(f"{k}: {v}" for k, v in errors.items())
            )
        measurements = []
        timelines: list[Timeline] = []
        for bastion in self.bastions:
            timeline: Timeline = parse_probe_output(
                outputs[bastion.instance_id],
                bastion=bastion.instance_id,
                region=bastion.region,
                clock=clock,
            )
            timelines.append(timeline)
            measurements.append(
                analyse(
                    timeline,
                    event_time=event_time,
                    expectation=expectations[bastion.instance_id],
                    region_of_address=self.address_regions,
                )
            )
        result = PhaseResult(
            phase=phase,
            fault=fault.KIND,
            region=region,
            event_time=event_time,
            measurements=tuple(measurements),
            objective=self.config.rto,
            model_window=model_window,
            timelines=tuple(timelines),
            address_regions=tuple(sorted(self.address_regions.items())),
        )
        rto = "did not converge" if result.rto is None else f"{result.rto:.1f}s"
        self._say(f"{label}: {rto} (objective {self.config.rto:g}s)")
        return result

    def _delivery_budget(self) -> float:
        """Wall seconds allowed for SSM to start a command on every bastion."""
        # The lab's agents pick a command up one lab second after it is sent; allow a few.
        return self.clock.wall_duration(5.0) + 0.2 if self.sessions.is_lab else 20.0

    def _progress(self, label: str, done: threading.Event, windows: Windows) -> None:
        started = self.clock.now()
        while not done.wait(2.0):
            elapsed = self.clock.now() - started
            self._say(
                f"{label}: probing {len(self.bastions)} bastions, {elapsed:.0f}s elapsed "
                f"(expected to settle within {windows.min_window:.0f}s, at most {windows.max_window:.0f}s)"
            )
