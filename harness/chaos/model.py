"""The chaos oracle: what Route 53 and the network should do, given the faults and the config.

An independent, pure model of the AWS behaviour the randomised chaos run checks the target
against. It never imports the lab's resolver (``harness.lab.resolver``) or any other lab code:
the lab and this module implement the same published rules separately, so a bug in one is caught
by the other. Inputs are plain data: the regions, a ``Timing`` (how long each change takes to
show, from the lab's analytic model or, on AWS, from the objective) and optionally a latency
matrix.

Rules (each cited from the AWS documentation; the unit tests work examples of every one):

R1. **Latency routing in a private hosted zone** answers, for a query from a VPC, the record of
    the region with the lowest latency from *the VPC's region*; the VPC's own region has
    latency 0, so with everything healthy a VPC is answered its own region ("Latency-based
    routing in private hosted zones"). With a latency matrix the oracle names the nearest region
    (ties: every tied region is acceptable); without one the order of the other regions is
    unknown, so when a VPC's own region is unhealthy *any* healthy region is acceptable.
R2. **Health**: "if the record with the lowest latency is unhealthy, a healthy endpoint with the
    next lowest latency is returned" (same page). A record is unhealthy when its health check is
    unhealthy or, for an alias with EvaluateTargetHealth, when its load balancer has no healthy
    target ("How Amazon Route 53 chooses records when health checking is configured").
R3. **Fail open**: "if no record in a group is healthy, Route 53 considers all of them healthy"
    and answers by the routing policy (same page): every region unhealthy means each VPC is
    answered its own region again, although that region is known to be unhealthy.
R4. **Inverted** health checks: "Route 53 considers the health check to be unhealthy when the
    status is healthy and vice versa" ("Inverting health checks"): ``invert_health_check(r)``
    makes ``r`` unhealthy for DNS and touches nothing on the data path.
R5. **Failing targets**: ``fail_targets(r)`` turns r's NLB targets unhealthy, so its alias record
    (EvaluateTargetHealth) and its CloudWatch-alarm health check go unhealthy (R2). Requests
    still work: "if all targets fail health checks at the same time in all enabled Availability
    Zones, the load balancer fails open" ("Health checks for Network Load Balancer target
    groups"), and the endpoint behind them is fine.
R6. **Throttled Lambda**: reserved concurrency 0 throttles every invocation, and API Gateway
    answers a Lambda proxy integration the Lambda service refuses with ``500 Internal server
    error`` (AWS Knowledge Center, "API Gateway 500 internal server error"). Nothing in the health
    pipeline watches the Lambda, so DNS keeps answering the region: the health-check blind spot.
R7. **Blackholed TGW routes**: a blackhole route "drops traffic that matches the route"
    (``CreateTransitGatewayRoute``/``ReplaceTransitGatewayRoute``, ``Blackhole``).
    ``blackhole_peering(a, b)`` blackholes both directions, so clients in ``a`` cannot reach
    ``b``'s NLB and vice versa (their own region is unaffected): a failover across the pair
    strands them.
R8. **Caching**: alias records to a load balancer have a fixed 60 s TTL (Route 53 FAQ, DNS
    failover), and resolvers cache answers for the TTL (RFC 1035 section 3.2.1). So an answer
    observed at T was decided by Route 53 at some instant in ``[T - TTL, T]``.

Time. A change (an injection or a restore) made at ``t`` shows in Route 53's view of a region
somewhere in ``[t + earliest, t + latest]`` (``Timing.health``; for invert that is the
propagation delay, for failing targets the target-health and alarm pipeline), and on the data
path within ``Timing.data_plane``. ``Oracle.expected`` therefore answers "what is acceptable for
an observation taken during ``[start, end]`` given this history": the union of what every
possible Route 53 view in ``[start - TTL, end]`` answers, combined with every possible data-path
state in ``[start, end]``. Answers correct before a change stay acceptable until its latest
bound plus the TTL; new answers are acceptable from its earliest bound. After
``Oracle.settled_at`` only the new truth (``Oracle.truth``) is acceptable. Every bound is widened
by ``Timing.tolerance`` for clock and scheduling jitter.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from harness.errors import ConfigError, FaultError

INVERT = "invert_health_check"
FAIL_TARGETS = "fail_targets"
THROTTLE = "throttle_api"
BLACKHOLE = "blackhole_peering"
FAULT_KINDS = (INVERT, FAIL_TARGETS, THROTTLE, BLACKHOLE)
HEALTH_FAULTS = frozenset({INVERT, FAIL_TARGETS})  # change Route 53's view of a region
DATA_PLANE_FAULTS = frozenset({THROTTLE, BLACKHOLE})  # change what a request meets
ALIAS_TTL = 60.0  # R8: alias records to a load balancer
THROTTLED_STATUS = 500  # R6

OK, ERROR, UNREACHABLE = "ok", "error", "unreachable"
BLIND_SPOT, STRANDED, FAIL_OPEN = "blind_spot", "stranded_clients", "fail_open"


@dataclass(frozen=True, order=True)
class FaultSpec:
    """What the oracle needs to know of a fault: its kind and the region(s) it acts on.

    ``blackhole_peering`` takes two different regions (kept sorted: the fault is symmetric);
    every other kind takes one.

    Raises:
        FaultError: the kind is not modelled, or the regions do not fit it.
    """

    kind: str
    regions: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise FaultError(
                f"the chaos oracle does not model fault {self.kind!r}; known: "
                + ", ".join(FAULT_KINDS)
            )
        regions = tuple(self.regions)
        if self.kind == BLACKHOLE:
            if len(regions) != 2 or regions[0] == regions[1]:
                raise FaultError(f"{self.kind} needs two different regions, got {regions!r}")
            regions = tuple(sorted(regions))
        elif len(regions) != 1:
            raise FaultError(f"{self.kind} acts on one region, got {regions!r}")
        object.__setattr__(self, "regions", regions)

    @classmethod
    def of(cls, kind: str, *regions: str) -> FaultSpec:
        """Return the spec of ``kind`` on ``regions``."""
        return cls(kind, tuple(regions))

    @property
    def region(self) -> str:
        """Return the (first) region the fault acts on."""
        return self.regions[0]

    @property
    def affects_health(self) -> bool:
        """Return whether the fault changes Route 53's view of its region."""
        return self.kind in HEALTH_FAULTS

    def describe(self) -> str:
        return f"{self.kind}({', '.join(self.regions)})"


@dataclass(frozen=True)
class Delay:
    """Seconds after a change at which its effect shows, at the earliest and at the latest."""

    earliest: float
    latest: float

    def __post_init__(self) -> None:
        if not (
            math.isfinite(self.earliest)
            and math.isfinite(self.latest)
            and 0 <= self.earliest <= self.latest
        ):
            raise ConfigError(
                f"delay [{self.earliest!r}, {self.latest!r}] must be finite with "
                "0 <= earliest <= latest"
            )


@dataclass(frozen=True)
class HealthDelays:
    """How long Route 53 takes to see a fault (``down``) and its restore (``up``)."""

    down: Delay
    up: Delay


@dataclass(frozen=True)
class Timing:
    """When changes show: per (fault kind, region) for health faults, one delay for the data path.

    ``health`` must hold every (kind, region) of ``HEALTH_FAULTS`` the history uses; ``ttl`` is
    how long resolvers keep an answer (R8); ``tolerance`` widens every bound both ways.
    ``modelled`` says whether the delays are a model's predictions (the lab) or mere outer
    bounds (AWS publishes none), which callers may use to decide how long to watch.
    """

    health: Mapping[tuple[str, str], HealthDelays]
    data_plane: Delay = field(default_factory=lambda: Delay(0.0, 0.0))
    ttl: float = ALIAS_TTL
    tolerance: float = 0.0
    modelled: bool = True

    def __post_init__(self) -> None:
        for value, what in ((self.ttl, "ttl"), (self.tolerance, "tolerance")):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"timing {what} {value!r} must be a finite number >= 0")
        for kind, _region in self.health:
            if kind not in HEALTH_FAULTS:
                raise ConfigError(
                    f"timing.health is for {', '.join(sorted(HEALTH_FAULTS))}, not {kind!r}"
                )

    @classmethod
    def uniform(
        cls,
        regions: Iterable[str],
        *,
        down: Delay,
        up: Delay | None = None,
        data_plane: Delay | None = None,
        ttl: float = ALIAS_TTL,
        tolerance: float = 0.0,
        modelled: bool = True,
    ) -> Timing:
        """Return a timing with the same health delays for every health fault and region."""
        delays = HealthDelays(down, up or down)
        return cls(
            health={(kind, r): delays for kind in sorted(HEALTH_FAULTS) for r in regions},
            data_plane=data_plane or Delay(0.0, 0.0),
            ttl=ttl,
            tolerance=tolerance,
            modelled=modelled,
        )

    def delays(self, fault: FaultSpec) -> HealthDelays:
        """Return the (inject, restore) delays of ``fault``.

        Raises:
            ConfigError: the timing has no delays for this health fault's region.
        """
        if not fault.affects_health:
            return HealthDelays(self.data_plane, self.data_plane)
        try:
            return self.health[(fault.kind, fault.region)]
        except KeyError:
            raise ConfigError(
                f"the oracle's timing has no delays for {fault.kind} in {fault.region}"
            ) from None


@dataclass(frozen=True)
class Change:
    """One event of a fault history: ``fault`` injected (or restored) during [started, finished]."""

    fault: FaultSpec
    injected: bool
    started: float
    finished: float | None = None

    def __post_init__(self) -> None:
        finished = self.started if self.finished is None else self.finished
        if not (math.isfinite(self.started) and math.isfinite(finished)) or finished < self.started:
            raise FaultError(
                f"change of {self.fault.describe()} has bad times {self.started!r}..{finished!r}"
            )
        object.__setattr__(self, "finished", finished)

    @property
    def done(self) -> float:
        """Return when the API call returned (``finished``, always set after construction)."""
        assert self.finished is not None
        return self.finished

    def describe(self) -> str:
        return f"{'inject' if self.injected else 'restore'} {self.fault.describe()}"


@dataclass(frozen=True, order=True)
class ApiOutcome:
    """What a request to the API from a client meets, and at which region's NLB.

    ``kind`` is ``ok`` (2xx from ``region``), ``error`` (HTTP ``status`` from ``region``) or
    ``unreachable`` (the connection to ``region``'s NLB is dropped on the way).
    """

    kind: str
    region: str
    status: int | None = None

    def describe(self) -> str:
        if self.kind == OK:
            return f"200 from {self.region}"
        if self.kind == ERROR:
            return f"HTTP {self.status} from {self.region}"
        return f"{self.region} unreachable"


@dataclass(frozen=True)
class Hazard:
    """An expected consequence of the faults that hurts clients: a finding, not a failure.

    ``dns_region`` is the region the client is answered; ``outcome`` is the request outcome that
    shows the hazard (None for ``fail_open``, which shows in DNS alone).
    """

    kind: str  # blind_spot | stranded_clients | fail_open
    client: str
    regions: tuple[str, ...]
    dns_region: str
    outcome: ApiOutcome | None = None


@dataclass(frozen=True)
class Expected:
    """What is acceptable from one client VPC: DNS answer regions and request outcomes."""

    client: str
    dns: frozenset[str]
    api: frozenset[ApiOutcome]
    hazards: tuple[Hazard, ...] = ()

    def describe(self) -> str:
        dns = ", ".join(sorted(self.dns))
        api = "; ".join(o.describe() for o in sorted(self.api))
        return f"DNS -> {{{dns}}}; API -> {{{api}}}"


@dataclass(frozen=True)
class _Span:
    """One fault's life in a history: its injection and (if any) its restore."""

    fault: FaultSpec
    injected: Change
    restored: Change | None

    def bounds(self, timing: Timing) -> tuple[float, float, float, float]:
        """Return (possibly on, surely on, possibly off, surely off) instants."""
        delays, tol = timing.delays(self.fault), timing.tolerance
        on_lo = self.injected.started + delays.down.earliest - tol
        on_hi = self.injected.done + delays.down.latest + tol
        if self.restored is None:
            return on_lo, on_hi, math.inf, math.inf
        off_lo = self.restored.started + delays.up.earliest - tol
        off_hi = self.restored.done + delays.up.latest + tol
        return on_lo, on_hi, off_lo, off_hi

    def status(self, timing: Timing, at: float) -> frozenset[bool]:
        """Return whether the fault's effect may be on (True) / off (False) at ``at``."""
        on_lo, on_hi, off_lo, off_hi = self.bounds(timing)
        surely = on_hi <= at < off_lo
        possibly = on_lo <= at < off_hi
        if surely:
            return frozenset({True})
        return frozenset({True, False}) if possibly else frozenset({False})


def _any_on(statuses: Iterable[frozenset[bool]]) -> frozenset[bool]:
    """Return whether an effect several spans cause may be on/off: on as soon as one span is.

    Surely on if one span surely is; possibly on if one possibly is; off only if all may be.
    """
    statuses = list(statuses)
    if any(s == {True} for s in statuses):
        return frozenset({True})
    if any(True in s for s in statuses):
        return frozenset({True, False})
    return frozenset({False})


class Oracle:
    """Expected DNS answers and API outcomes per client VPC, from the faults and the timing.

    Raises:
        ConfigError: fewer than two regions, duplicates, or a latency matrix missing a pair.
    """

    def __init__(
        self,
        regions: Sequence[str],
        *,
        timing: Timing,
        latency: Mapping[tuple[str, str], float] | None = None,
    ) -> None:
        self.regions = tuple(regions)
        if len(self.regions) < 2 or len(set(self.regions)) != len(self.regions):
            raise ConfigError(f"the oracle needs two or more distinct regions, got {regions!r}")
        self.timing = timing
        self._rtt: dict[tuple[str, str], float] | None = None
        if latency is not None:
            self._rtt = {}
            for a, b in itertools.product(self.regions, repeat=2):
                value = 0.0 if a == b else latency.get((a, b), latency.get((b, a)))
                if value is None or not math.isfinite(value) or value < 0:
                    raise ConfigError(
                        f"latency matrix has no usable figure between {a!r} and {b!r} ({value!r})"
                    )
                self._rtt[(a, b)] = float(value)

    # ------------------------------------------------------------------ the rules

    def route(self, client: str, unhealthy: Collection[str]) -> frozenset[str]:
        """Return the regions Route 53 may answer a query from ``client``'s VPC (R1-R3)."""
        self._check_region(client)
        candidates = [r for r in self.regions if r not in unhealthy] or list(self.regions)
        if self._rtt is None:
            return frozenset({client}) if client in candidates else frozenset(candidates)
        best = min(self._rtt[(client, r)] for r in candidates)
        return frozenset(r for r in candidates if self._rtt[(client, r)] == best)

    def request(
        self,
        client: str,
        region: str,
        *,
        throttled: Collection[str] = (),
        blackholed: Collection[frozenset[str]] = (),
    ) -> ApiOutcome:
        """Return what a request from ``client``'s VPC to ``region``'s NLB meets (R5-R7)."""
        self._check_region(client)
        self._check_region(region)
        if region != client and frozenset({client, region}) in blackholed:
            return ApiOutcome(UNREACHABLE, region)
        if region in throttled:
            return ApiOutcome(ERROR, region, THROTTLED_STATUS)
        return ApiOutcome(OK, region, 200)

    def truth(self, client: str, active: Collection[FaultSpec]) -> Expected:
        """Return the settled answer for ``client`` with exactly ``active`` faults in place."""
        unhealthy = {r for f in active if f.affects_health for r in f.regions}
        throttled = {f.region for f in active if f.kind == THROTTLE}
        blackholed = {frozenset(f.regions) for f in active if f.kind == BLACKHOLE}
        dns = self.route(client, unhealthy)
        outcomes = frozenset(
            self.request(client, a, throttled=throttled, blackholed=blackholed) for a in dns
        )
        total = set(self.regions) <= unhealthy
        return Expected(client, dns, outcomes, self._hazards(client, dns, outcomes, total))

    # ------------------------------------------------------------------ time

    def expected(
        self, client: str, history: Sequence[Change], start: float, end: float | None = None
    ) -> Expected:
        """Return what is acceptable for an observation made during [``start``, ``end``].

        Raises:
            FaultError: the history injects an active fault or restores one that is not.
        """
        end = start if end is None else end
        if end < start:
            raise FaultError(f"observation window {start!r}..{end!r} ends before it starts")
        spans = self._spans(history)
        health = [s for s in spans if s.fault.affects_health]
        dns: set[str] = set()
        total_outage = False
        for at in self._instants(health, start - self.timing.ttl - self.timing.tolerance, end):
            for unhealthy in self._health_views(health, at):
                dns |= self.route(client, unhealthy)
                total_outage |= set(self.regions) <= unhealthy
        outcomes: set[ApiOutcome] = set()
        plane = [s for s in spans if not s.fault.affects_health]
        for at in self._instants(plane, start, end):
            for region in dns:
                outcomes |= self._possible_requests(client, region, plane, at)
        api = frozenset(outcomes)
        return Expected(
            client, frozenset(dns), api, self._hazards(client, frozenset(dns), api, total_outage)
        )

    def stable_from(self, history: Sequence[Change]) -> float:
        """Return the instant after which neither Route 53's view nor the data path can change.

        Only resolver caches may still hold answers decided earlier. So once every client VPC
        has been *observed* showing ``truth`` at or after this instant, nothing can change any
        more: a cached answer that is the truth stays it, and one that expires is decided again
        from the final view. (Observing the truth earlier proves nothing: an intermediate view
        can give the same answer, e.g. failing open, and a later one a different answer.)
        ``-inf`` for an empty history.
        """
        latest = -math.inf
        for span in self._spans(history):
            latest = max(latest, *(b for b in span.bounds(self.timing) if math.isfinite(b)))
        return latest

    def settled_at(self, history: Sequence[Change]) -> float:
        """Return the instant after which only ``truth(active(history))`` is acceptable.

        ``-inf`` for an empty history. Health changes add the TTL (R8): an answer decided just
        before a change's latest bound may be served from a cache for one more TTL (plus the
        tolerance).
        """
        latest = -math.inf
        for span in self._spans(history):
            bounds = [b for b in span.bounds(self.timing) if math.isfinite(b)]
            # The same look-back as ``expected`` (TTL plus tolerance), so that after this
            # instant ``expected`` is exactly ``truth``.
            extra = self.timing.ttl + self.timing.tolerance if span.fault.affects_health else 0.0
            latest = max(latest, max(bounds) + extra)
        return latest

    @staticmethod
    def active(history: Sequence[Change]) -> frozenset[FaultSpec]:
        """Return the faults still injected at the end of ``history``.

        Raises:
            FaultError: the history injects an active fault or restores one that is not.
        """
        return frozenset(s.fault for s in Oracle._spans(history) if s.restored is None)

    # ------------------------------------------------------------------ internals

    def _check_region(self, region: str) -> None:
        if region not in self.regions:
            raise ConfigError(
                f"region {region!r} is not one of the oracle's ({', '.join(self.regions)})"
            )

    @staticmethod
    def _spans(history: Sequence[Change]) -> list[_Span]:
        open_: dict[FaultSpec, Change] = {}
        spans: list[_Span] = []
        previous = -math.inf
        for change in history:
            if change.started < previous:
                raise FaultError(
                    f"history is not in time order: {change.describe()} at {change.started!r} "
                    f"after a change at {previous!r}"
                )
            previous = change.started
            if change.injected:
                if change.fault in open_:
                    raise FaultError(f"{change.fault.describe()} is injected twice")
                open_[change.fault] = change
            else:
                injected = open_.pop(change.fault, None)
                if injected is None:
                    raise FaultError(f"{change.fault.describe()} is restored but not injected")
                spans.append(_Span(change.fault, injected, change))
        spans.extend(_Span(fault, change, None) for fault, change in open_.items())
        return spans

    def _instants(self, spans: Sequence[_Span], start: float, end: float) -> Iterator[float]:
        """Yield ``start`` and every instant in (start, end] where some span's status changes."""
        yield start
        edges = {b for s in spans for b in s.bounds(self.timing) if start < b <= end}
        yield from sorted(edges)

    def _health_views(self, spans: Sequence[_Span], at: float) -> Iterator[frozenset[str]]:
        """Yield every set of unhealthy regions Route 53 may see at ``at``."""
        status = {
            r: _any_on(s.status(self.timing, at) for s in spans if s.fault.region == r)
            for r in self.regions
        }
        sure = {r for r, s in status.items() if s == {True}}
        maybe = sorted(r for r, s in status.items() if len(s) == 2)
        for chosen in itertools.product((False, True), repeat=len(maybe)):
            yield frozenset(sure | {r for r, on in zip(maybe, chosen, strict=True) if on})

    def _possible_requests(
        self, client: str, region: str, spans: Sequence[_Span], at: float
    ) -> set[ApiOutcome]:
        pair = frozenset({client, region})
        throttle = _any_on(
            s.status(self.timing, at)
            for s in spans
            if s.fault.kind == THROTTLE and s.fault.region == region
        )
        blackhole = _any_on(
            s.status(self.timing, at)
            for s in spans
            if s.fault.kind == BLACKHOLE and frozenset(s.fault.regions) == pair
        )
        outcomes = set()
        for throttled, blackholed in itertools.product(throttle, blackhole):
            outcomes.add(
                self.request(
                    client,
                    region,
                    throttled={region} if throttled else set(),
                    blackholed={pair} if blackholed else set(),
                )
            )
        return outcomes

    def _hazards(
        self, client: str, dns: frozenset[str], api: frozenset[ApiOutcome], total_outage: bool
    ) -> tuple[Hazard, ...]:
        hazards: list[Hazard] = []
        if total_outage:
            hazards.extend(
                Hazard(FAIL_OPEN, client, self.regions, region) for region in sorted(dns)
            )
        for outcome in sorted(api):
            if outcome.kind == ERROR:
                hazards.append(
                    Hazard(BLIND_SPOT, client, (outcome.region,), outcome.region, outcome)
                )
            elif outcome.kind == UNREACHABLE:
                hazards.append(
                    Hazard(STRANDED, client, (client, outcome.region), outcome.region, outcome)
                )
        return tuple(hazards)
