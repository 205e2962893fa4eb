"""Failover and failback timing, measured from inside every VPC.

One SSM command per bastion runs an on-bastion probe loop (bash, using bash 5's
``$EPOCHREALTIME`` and a fork-free ``read -t`` sleep): every ``--probe-interval`` it samples DNS
(``dig +short``) and HTTPS (``curl .../demo``, region taken from the JSON body). To stay far below
the SSM output limit (24,000 characters) it prints a line only when the observed state changes,
with the first and last timestamps of each state, so a long window costs a few lines. Timing
resolution is the probe interval, and API calls are O(bastions), not O(samples).

A loop stops by itself once it has seen the expected state (the surviving regions after a
failover, the original region after failback) stable for ``settle`` seconds and has run at least
``min_window``; ``max_window`` bounds it. Timestamps are the bastion's wall clock, converted
through the target's clock into modelled seconds, so lab and AWS numbers compare directly.

From the samples, per bastion: DNS flip time (first sample after which answers are stably the
expected regions), first and last failed request, API recovery time, flapping count; per phase
the maximum over bastions is the measured RTO.
"""

from __future__ import annotations

import itertools
import math
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from harness.clock import Clock


@dataclass(frozen=True)
class ProbePlan:
    """What one probe loop samples and when it may stop (all durations in wall seconds)."""

    domain: str
    url: str
    interval: float
    max_window: float
    min_window: float
    settle: float
    expected_addresses: frozenset[str]  # DNS answers that count as the expected state
    expected_regions: frozenset[str]  # API regions that count as the expected state
    dig_timeout: int = 1
    curl_timeout: float = 2.0
    connect_timeout: float = 1.0
    start_at: float | None = None  # wall epoch: wait until then, so every loop starts together

    def __post_init__(self) -> None:
        for name in ("interval", "max_window", "settle", "curl_timeout", "connect_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"probe {name} must be positive, got {value!r}")
        if self.min_window < 0 or self.min_window > self.max_window:
            raise ValueError(f"probe min_window {self.min_window!r} must be within 0..max_window")


def build_probe_script(plan: ProbePlan) -> str:
    """Return the bash probe loop for ``plan`` (runs unchanged on AWS bastions and in the lab)."""
    us = lambda seconds: round(seconds * 1_000_000)  # noqa: E731
    addresses = " " + " ".join(sorted(plan.expected_addresses)) + " "
    regions = " " + " ".join(sorted(plan.expected_regions)) + " "
    dig = f"dig +short +time={plan.dig_timeout} +tries=1 {shlex.quote(plan.domain)} A"
    curl = (
        f"curl -sS -m {plan.curl_timeout:g} --connect-timeout {plan.connect_timeout:g} "
        f"-w '\\n%{{http_code}}' {shlex.quote(plan.url)}"
    )
    return f"""#!/bin/bash
# regiondrill probe loop: prints a line only when the observed state changes.
set -u
if [ -z "${{EPOCHREALTIME:-}}" ]; then echo "X bash 5 with EPOCHREALTIME is required" >&2; exit 3; fi
exec 9<> <(:)
iv={us(plan.interval)}; max={us(plan.max_window)}; min={us(plan.min_window)}; settle={us(plan.settle)}
exp_ips={shlex.quote(addresses)}; exp_regions={shlex.quote(regions)}
{_start_at(plan)}start=${{EPOCHREALTIME/./}}; n=0; prev=""; last=""; stable=""
echo "B $EPOCHREALTIME"
while :; do
  ts=$EPOCHREALTIME
  d=$({dig} 2>/dev/null); d=${{d//$'\\n'/,}}
  body=$({curl} 2>/dev/null); rc=$?
  code=${{body##*$'\\n'}}; region=""
  if [[ $body =~ \\"region\\"[[:space:]]*:[[:space:]]*\\"([a-z0-9-]+)\\" ]]; then region=${{BASH_REMATCH[1]}}; fi
  key="$d|$region|$code|$rc"; n=$((n+1))
  if [[ "$key" != "$prev" ]]; then
    [ -n "$prev" ] && echo "L $last"
    echo "S $ts $n $key"; prev=$key
  fi
  last=$ts
  ok=0
  if [ -n "$d" ] && [ "$rc" = 0 ] && [ "$code" = 200 ] && [[ "$exp_regions" == *" $region "* ]]; then
    ok=1; for ip in ${{d//,/ }}; do [[ "$exp_ips" == *" $ip "* ]] || ok=0; done
  fi
  t=${{ts/./}}
  if [ "$ok" = 1 ]; then stable=${{stable:-$t}}; else stable=""; fi
  now=${{EPOCHREALTIME/./}}; elapsed=$((now - start))
  if [ "$elapsed" -ge "$max" ]; then break; fi
  if [ -n "$stable" ] && [ $((now - stable)) -ge "$settle" ] && [ "$elapsed" -ge "$min" ]; then break; fi
  wait=$((start + n * iv - now))
  if [ "$wait" -gt 0 ]; then printf -v w '%d.%06d' $((wait / 1000000)) $((wait % 1000000)); read -rt "$w" -u 9 || true; fi
done
echo "L $last"
echo "E $EPOCHREALTIME $n"
"""


def _start_at(plan: ProbePlan) -> str:
    if plan.start_at is None:
        return ""
    return (
        f"go={round(plan.start_at * 1_000_000)}; wait=$((go - ${{EPOCHREALTIME/./}}))\n"
        "if [ \"$wait\" -gt 0 ]; then printf -v w '%d.%06d' $((wait / 1000000)) $((wait % 1000000)); "
        'read -rt "$w" -u 9 || true; fi\n'
    )


@dataclass(frozen=True)
class Segment:
    """A run of consecutive samples that observed the same state."""

    start: float  # modelled time of the first sample
    end: float  # modelled time of the last sample
    first_sample: int
    samples: int
    addresses: tuple[str, ...]
    api_region: str
    http_code: str
    curl_exit: int

    @property
    def ok(self) -> bool:
        return self.curl_exit == 0 and self.http_code.startswith("2")


@dataclass(frozen=True)
class Timeline:
    """Everything one probe loop saw, in modelled time."""

    bastion: str
    region: str
    started: float
    ended: float
    samples: int
    segments: tuple[Segment, ...]
    complete: bool  # the loop printed its end line (not cut off by a timeout or truncation)


class ProbeOutputError(ValueError):
    """The probe loop's output could not be understood."""


def parse_probe_output(text: str, *, bastion: str, region: str, clock: Clock) -> Timeline:
    """Turn a probe loop's output into a Timeline (timestamps converted through ``clock``).

    Raises:
        ProbeOutputError: naming the bad line (nothing usable, or a malformed line).
    """
    started: float | None = None
    ended: float | None = None
    total = 0
    raw: list[tuple[float, int, str]] = []  # (start, first sample, key)
    lasts: list[float] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        tag, _, rest = line.partition(" ")
        try:
            if tag == "B":
                started = clock.to_model(float(rest))
            elif tag == "S":
                stamp, sample, key = rest.split(" ", 2)
                _split_key(key)  # validate now, so a bad line is reported with its number
                raw.append((clock.to_model(float(stamp)), int(sample), key))
            elif tag == "L":
                if rest.strip():
                    lasts.append(clock.to_model(float(rest)))
            elif tag == "E":
                stamp, count = rest.split()
                ended, total = clock.to_model(float(stamp)), int(count)
            elif tag == "X":
                raise ProbeOutputError(f"probe loop on {bastion} refused to run: {rest}")
            else:
                raise ProbeOutputError(
                    f"unexpected probe output line {number} on {bastion}: {line!r}"
                )
        except (ValueError, IndexError) as exc:
            if isinstance(exc, ProbeOutputError):
                raise
            raise ProbeOutputError(
                f"malformed probe output line {number} on {bastion}: {line!r}"
            ) from exc
    if started is None or not raw:
        raise ProbeOutputError(f"probe loop on {bastion} produced no samples: {text[:200]!r}")
    complete = ended is not None
    last_sample = total if complete else raw[-1][1]
    segments = []
    for index, (start, first, key) in enumerate(raw):
        next_first = raw[index + 1][1] if index + 1 < len(raw) else last_sample + 1
        end = lasts[index] if index < len(lasts) else start
        addresses, api_region, code, curl_exit = _split_key(key)
        segments.append(
            Segment(
                start,
                end,
                first,
                max(next_first - first, 1),
                addresses,
                api_region,
                code,
                curl_exit,
            )
        )
    return Timeline(
        bastion=bastion,
        region=region,
        started=started,
        ended=ended if ended is not None else segments[-1].end,
        samples=last_sample,
        segments=tuple(segments),
        complete=complete,
    )


def _split_key(key: str) -> tuple[tuple[str, ...], str, str, int]:
    parts = key.split("|")
    if len(parts) != 4:
        raise ValueError(f"bad state key {key!r}")
    addresses = tuple(sorted(a for a in parts[0].split(",") if a))
    return addresses, parts[1], parts[2], int(parts[3])


# ---------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class Expectation:
    """What counts as converged for one bastion: answers from these regions only."""

    regions: frozenset[str]
    addresses: frozenset[str]  # the NLB node addresses of those regions


@dataclass(frozen=True)
class BastionMeasurement:
    """Timing of one phase as seen from one bastion (seconds after the event, modelled)."""

    bastion: str
    region: str
    converged: bool
    dns_flip: float | None  # first sample after which DNS answers are stably expected
    api_recovery: (
        float | None
    )  # first sample after which requests stably succeed from expected regions
    first_failure: float | None
    last_failure: float | None
    failed_samples: int
    flaps: int  # changes of the answering region after the event
    regions_seen: tuple[str, ...]
    recovery: float | None  # max(dns_flip, api_recovery): this bastion's time to recover


def analyse(
    timeline: Timeline,
    *,
    event_time: float,
    expectation: Expectation,
    region_of_address: Mapping[str, str],
) -> BastionMeasurement:
    """Measure one phase from one bastion's timeline, relative to ``event_time``."""
    after = [s for s in timeline.segments if s.end >= event_time]

    def dns_ok(segment: Segment) -> bool:
        return bool(segment.addresses) and set(segment.addresses) <= expectation.addresses

    def api_ok(segment: Segment) -> bool:
        return segment.ok and segment.api_region in expectation.regions

    dns_flip = _stable_from(after, dns_ok, event_time)
    api_recovery = _stable_from(after, api_ok, event_time)
    failures = [s for s in after if not s.ok]
    answering = [_answer_region(s, region_of_address) for s in after]
    flaps = sum(1 for previous, current in itertools.pairwise(answering) if previous != current)
    converged = dns_flip is not None and api_recovery is not None
    return BastionMeasurement(
        bastion=timeline.bastion,
        region=timeline.region,
        converged=converged,
        dns_flip=dns_flip,
        api_recovery=api_recovery,
        first_failure=max(failures[0].start - event_time, 0.0) if failures else None,
        last_failure=max(failures[-1].end - event_time, 0.0) if failures else None,
        failed_samples=sum(s.samples for s in failures),
        flaps=flaps,
        regions_seen=tuple(dict.fromkeys(r for r in answering if r)),
        recovery=max(dns_flip, api_recovery) if converged else None,  # type: ignore[type-var]
    )


def _stable_from(segments: Sequence[Segment], good: object, event_time: float) -> float | None:
    """Time (after the event) of the first sample from which every later sample is good."""
    check = good  # a callable; typed loosely to keep the signature readable
    index = len(segments)
    while index > 0 and check(segments[index - 1]):  # type: ignore[operator]
        index -= 1
    if index == len(segments):
        return None  # the last state seen is not the expected one
    return max(segments[index].start - event_time, 0.0)


def _answer_region(segment: Segment, region_of_address: Mapping[str, str]) -> str:
    regions = {region_of_address.get(address, "?") for address in segment.addresses}
    return ",".join(sorted(regions))


@dataclass(frozen=True)
class PhaseResult:
    """One measured phase (a failover or a failback) across every bastion."""

    phase: str  # "failover" | "failback"
    fault: str
    region: str  # the region taken down (failover) or brought back (failback)
    event_time: float
    measurements: tuple[BastionMeasurement, ...]
    objective: float
    model_window: tuple[float, float] | None = None  # lab analytic prediction of the DNS flip
    notes: tuple[str, ...] = field(default=())
    # Evidence for the report's timeline charts: what each probe loop saw, which region each
    # DNS answer belongs to, and the fault ledger id of the fault whose inject/restore this is.
    timelines: tuple[Timeline, ...] = field(default=())
    address_regions: tuple[tuple[str, str], ...] = field(default=())  # (address, region)
    fault_id: str = ""

    @property
    def converged(self) -> bool:
        return all(m.converged for m in self.measurements)

    @property
    def rto(self) -> float | None:
        """The phase's measured recovery time: the slowest bastion (None if one never recovered)."""
        if not self.converged:
            return None
        return max((m.recovery or 0.0) for m in self.measurements)

    @property
    def dns_flip(self) -> float | None:
        flips = [m.dns_flip for m in self.measurements if m.dns_flip is not None]
        return max(flips) if flips and self.converged else None

    @property
    def within_objective(self) -> bool:
        return self.rto is not None and self.rto <= self.objective


def region_map(nodes_by_region: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """Invert {region: NLB node addresses} into {address: region}."""
    return {
        address: region for region, addresses in nodes_by_region.items() for address in addresses
    }
