"""Inter-region latency for the lab's latency-based routing: round-trip times between AWS regions.

Route 53 answers a latency record query with the record whose region has the lowest latency
from where the query comes from; for a VPC's Resolver that is the VPC's own region. The lab
needs a plausible *ordering* of regions from every region, so it uses a matrix of round-trip
times (RTT, milliseconds, symmetric, zero on the diagonal).

Default model (documented so the numbers can be checked and replaced):

    rtt_ms = OVERHEAD_MS + 2 * ROUTE_FACTOR * great_circle_km / FIBRE_KM_PER_MS

with light in fibre at about 2/3 c (200 km per ms), fibre paths ROUTE_FACTOR = 1.4 times
longer than the geodesic, and OVERHEAD_MS = 4 ms of switching and edge overhead. Region
coordinates are the metro areas AWS names for each commercial region (``COORDINATES``, every
region ``harness.config.known_regions()`` lists). For the well-known pairs the result is within
roughly 30 % of published inter-region RTT measurements (for example cloudping.co:
us-east-1/us-west-2 ~ 65 ms, us-east-1/eu-west-1 ~ 70 ms, eu-west-1/ap-southeast-2 ~ 250 ms),
which is all latency routing needs. Measured numbers can replace any pair through
``LatencyMatrix.from_mapping`` or a JSON/TOML file (``LatencyMatrix.load``).
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from harness.errors import LabError

FIBRE_KM_PER_MS = 200.0  # light in fibre travels at about 2/3 c
ROUTE_FACTOR = 1.4  # fibre routes are longer than the great circle
OVERHEAD_MS = 4.0  # switching, edge and host overhead per round trip
EARTH_RADIUS_KM = 6371.0

# (latitude, longitude) of the metro area each AWS commercial region is named after.
COORDINATES: Mapping[str, tuple[float, float]] = {
    "us-east-1": (39.04, -77.49),  # N. Virginia (Ashburn)
    "us-east-2": (39.96, -83.00),  # Ohio (Columbus)
    "us-west-1": (37.34, -121.89),  # N. California (San Jose)
    "us-west-2": (45.84, -119.70),  # Oregon (Boardman)
    "ca-central-1": (45.50, -73.57),  # Canada (Montreal)
    "ca-west-1": (51.05, -114.07),  # Canada West (Calgary)
    "mx-central-1": (20.59, -100.39),  # Mexico (Queretaro)
    "sa-east-1": (-23.55, -46.63),  # Sao Paulo
    "eu-west-1": (53.35, -6.26),  # Ireland (Dublin)
    "eu-west-2": (51.51, -0.13),  # London
    "eu-west-3": (48.86, 2.35),  # Paris
    "eu-central-1": (50.11, 8.68),  # Frankfurt
    "eu-central-2": (47.38, 8.54),  # Zurich
    "eu-north-1": (59.33, 18.07),  # Stockholm
    "eu-south-1": (45.46, 9.19),  # Milan
    "eu-south-2": (41.65, -0.88),  # Spain (Aragon)
    "il-central-1": (32.09, 34.78),  # Tel Aviv
    "me-south-1": (26.23, 50.59),  # Bahrain
    "me-central-1": (24.45, 54.38),  # UAE (Abu Dhabi)
    "af-south-1": (-33.92, 18.42),  # Cape Town
    "ap-east-1": (22.32, 114.17),  # Hong Kong
    "ap-east-2": (25.03, 121.57),  # Taipei
    "ap-south-1": (19.08, 72.88),  # Mumbai
    "ap-south-2": (17.39, 78.49),  # Hyderabad
    "ap-northeast-1": (35.68, 139.69),  # Tokyo
    "ap-northeast-2": (37.57, 126.98),  # Seoul
    "ap-northeast-3": (34.69, 135.50),  # Osaka
    "ap-southeast-1": (1.35, 103.82),  # Singapore
    "ap-southeast-2": (-33.87, 151.21),  # Sydney
    "ap-southeast-3": (-6.21, 106.85),  # Jakarta
    "ap-southeast-4": (-37.81, 144.96),  # Melbourne
    "ap-southeast-5": (3.14, 101.69),  # Malaysia (Kuala Lumpur)
    "ap-southeast-6": (-36.85, 174.76),  # New Zealand (Auckland)
    "ap-southeast-7": (13.76, 100.50),  # Thailand (Bangkok)
}


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Return the great-circle distance between two (latitude, longitude) points (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def modelled_rtt_ms(a: str, b: str) -> float:
    """Return the default model's RTT between two regions of ``COORDINATES``."""
    if a == b:
        return 0.0
    distance = great_circle_km(COORDINATES[a], COORDINATES[b])
    return round(OVERHEAD_MS + 2 * ROUTE_FACTOR * distance / FIBRE_KM_PER_MS, 1)


@dataclass(frozen=True)
class LatencyMatrix:
    """Symmetric round-trip times in milliseconds between regions (0 on the diagonal)."""

    rtt_ms: Mapping[tuple[str, str], float]

    @property
    def regions(self) -> frozenset[str]:
        return frozenset(a for a, _ in self.rtt_ms)

    def rtt(self, a: str, b: str) -> float:
        """Return the RTT between two regions.

        Raises:
            LabError: the matrix has no figure for the pair (names both regions).
        """
        if a == b:
            return 0.0
        try:
            return self.rtt_ms[(a, b)]
        except KeyError:
            raise LabError(
                f"the latency matrix has no figure between {a!r} and {b!r}; add the pair "
                "with LatencyMatrix.from_mapping or a latency file"
            ) from None

    def ranked(self, source: str, candidates: Iterable[str]) -> list[str]:
        """Return ``candidates`` from nearest to farthest from ``source`` (ties by name)."""
        return sorted(set(candidates), key=lambda region: (self.rtt(source, region), region))

    def nearest(self, source: str, candidates: Iterable[str]) -> str:
        """Return the candidate region with the lowest RTT from ``source`` (ties by name).

        Raises:
            LabError: no candidates, or a pair is missing from the matrix.
        """
        ranked = self.ranked(source, candidates)
        if not ranked:
            raise LabError(f"no candidate regions to choose the nearest to {source!r} from")
        return ranked[0]

    # ------------------------------------------------------------------ construction

    @classmethod
    def default(cls) -> LatencyMatrix:
        """Return the modelled matrix for every region in ``COORDINATES``."""
        return _default()

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Mapping[str, Any]], *, base: LatencyMatrix | None = None
    ) -> LatencyMatrix:
        """Return ``base`` (default: the modelled matrix) with the given RTTs replaced.

        ``mapping`` is nested, ``{"us-east-1": {"us-west-2": 62.5}}``; one direction is enough
        (the matrix is symmetric). Regions unknown to ``base`` may be added, but then every
        pair a query needs must be given.

        Raises:
            LabError: a value is not a finite non-negative number, a diagonal entry is not 0,
                or the two directions of a pair disagree.
        """
        table: dict[tuple[str, str], float] = dict((base or cls.default()).rtt_ms)
        given: dict[tuple[str, str], float] = {}
        if not isinstance(mapping, Mapping):
            raise LabError(f"latency overrides must be a mapping of mappings, got {mapping!r}")
        for a, row in mapping.items():
            if not isinstance(row, Mapping):
                raise LabError(
                    f"latency overrides for {a!r} must map region -> milliseconds, got {row!r}"
                )
            for b, raw in row.items():
                value = _milliseconds(a, b, raw)
                if a == b:
                    if value != 0:
                        raise LabError(f"latency from {a!r} to itself must be 0, got {raw!r}")
                    continue
                other = given.get((b, a))
                if other is not None and other != value:
                    raise LabError(
                        f"latency between {a!r} and {b!r} is given as both {other} and {value} "
                        "ms; the matrix is symmetric"
                    )
                given[(a, b)] = value
                table[(a, b)] = table[(b, a)] = value
        return cls(rtt_ms=table)

    @classmethod
    def load(cls, path: str | Path, *, base: LatencyMatrix | None = None) -> LatencyMatrix:
        """Return the matrix with overrides read from a JSON or TOML file.

        Raises:
            LabError: the file cannot be read or parsed, or holds invalid values.
        """
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
            if file.suffix.lower() == ".toml":
                data: Any = tomllib.loads(text)
            elif file.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                raise LabError(f"latency file {file} must end in .json or .toml")
        except (OSError, ValueError) as exc:
            raise LabError(f"cannot read latency file {file}: {exc}") from exc
        return cls.from_mapping(data, base=base)


def matrix_from(value: LatencyMatrix | Mapping[str, Any] | str | Path | None) -> LatencyMatrix:
    """Return a matrix from what a lab may be given: a matrix, overrides, a file path or None.

    Raises:
        LabError: the overrides or the file are invalid, or ``value`` is none of those.
    """
    if value is None:
        return LatencyMatrix.default()
    if isinstance(value, LatencyMatrix):
        return value
    if isinstance(value, str | Path):
        return LatencyMatrix.load(value)
    if isinstance(value, Mapping):
        return LatencyMatrix.from_mapping(value)
    raise LabError(f"cannot build a latency matrix from {value!r}")


def _milliseconds(a: str, b: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise LabError(f"latency between {a!r} and {b!r} must be a number of ms, got {raw!r}")
    value = float(raw)
    if not math.isfinite(value) or value < 0:
        raise LabError(f"latency between {a!r} and {b!r} must be finite and >= 0, got {raw!r}")
    return value


@cache
def _default() -> LatencyMatrix:
    regions = sorted(COORDINATES)
    table = {(a, b): modelled_rtt_ms(a, b) for a in regions for b in regions}
    return LatencyMatrix(rtt_ms=table)
