"""The inter-region latency matrix: coverage, shape, sane nearest-region choices, overrides."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import known_regions
from harness.errors import LabError
from harness.lab.latency import (
    COORDINATES,
    LatencyMatrix,
    great_circle_km,
    matrix_from,
)

DEFAULT = LatencyMatrix.default()
REGIONS = sorted(COORDINATES)


def test_default_covers_every_region_botocore_knows() -> None:
    missing = known_regions() - DEFAULT.regions
    assert not missing, f"regions without coordinates: {sorted(missing)}"


def test_default_is_symmetric_with_zero_diagonal_and_positive_elsewhere() -> None:
    for a in REGIONS:
        assert DEFAULT.rtt(a, a) == 0
        for b in REGIONS:
            if a != b:
                assert DEFAULT.rtt(a, b) == DEFAULT.rtt(b, a) > 0


@pytest.mark.parametrize(
    ("a", "b", "low", "high"),
    [
        # Published RTTs (cloudping-style medians): ~12, ~65, ~70, ~250, ~175 ms.
        ("us-east-1", "us-east-2", 5, 25),
        ("us-east-1", "us-west-2", 40, 90),
        ("us-east-1", "eu-west-1", 55, 110),
        ("eu-west-1", "ap-southeast-2", 200, 330),
        ("us-west-2", "ap-southeast-2", 120, 230),
    ],
)
def test_default_magnitudes_are_realistic(a: str, b: str, low: float, high: float) -> None:
    assert low <= DEFAULT.rtt(a, b) <= high


@pytest.mark.parametrize(
    ("source", "candidates", "expected"),
    [
        ("us-east-1", {"us-west-2", "eu-west-1"}, "us-west-2"),
        ("eu-west-1", {"us-east-1", "ap-southeast-2"}, "us-east-1"),
        ("us-west-2", {"us-east-1", "ap-northeast-1"}, "us-east-1"),
        ("ap-northeast-1", {"us-west-2", "eu-west-1"}, "us-west-2"),
        ("ap-southeast-2", {"us-east-1", "ap-southeast-1"}, "ap-southeast-1"),
        ("eu-central-1", {"eu-west-1", "us-east-1"}, "eu-west-1"),
        ("sa-east-1", {"us-east-1", "eu-west-1"}, "us-east-1"),
        ("us-east-1", {"us-east-1", "us-east-2"}, "us-east-1"),
        ("us-east-1", {"us-east-2", "ca-central-1", "us-west-2"}, "us-east-2"),
    ],
)
def test_nearest_region_choices_are_sane(source: str, candidates: set[str], expected: str) -> None:
    assert DEFAULT.nearest(source, candidates) == expected


def test_great_circle_distance_of_a_known_pair() -> None:
    # London-Paris is about 344 km.
    assert great_circle_km((51.5074, -0.1278), (48.8566, 2.3522)) == pytest.approx(344, abs=5)


@settings(max_examples=50, deadline=None)
@given(
    source=st.sampled_from(REGIONS),
    candidates=st.lists(st.sampled_from(REGIONS), min_size=1, max_size=6),
)
def test_nearest_is_the_argmin_and_ranked_is_ordered(source: str, candidates: list[str]) -> None:
    best = DEFAULT.nearest(source, candidates)
    assert best in candidates
    assert all(DEFAULT.rtt(source, best) <= DEFAULT.rtt(source, c) for c in candidates)
    ranked = DEFAULT.ranked(source, candidates)
    assert [DEFAULT.rtt(source, r) for r in ranked] == sorted(
        DEFAULT.rtt(source, r) for r in ranked
    )


def test_from_mapping_overrides_both_directions_and_keeps_the_rest() -> None:
    matrix = LatencyMatrix.from_mapping({"us-east-1": {"us-west-2": 500}})
    assert matrix.rtt("us-east-1", "us-west-2") == matrix.rtt("us-west-2", "us-east-1") == 500
    assert matrix.rtt("us-east-1", "eu-west-1") == DEFAULT.rtt("us-east-1", "eu-west-1")
    # The override changes what latency routing picks.
    assert matrix.nearest("us-east-1", {"us-west-2", "eu-west-1"}) == "eu-west-1"


def test_from_mapping_can_add_an_unknown_region_pairwise() -> None:
    matrix = LatencyMatrix.from_mapping({"lab-north-1": {"us-east-1": 3.0}})
    assert matrix.rtt("us-east-1", "lab-north-1") == 3.0
    with pytest.raises(LabError, match=r"lab-north-1.*eu-west-1"):
        matrix.rtt("lab-north-1", "eu-west-1")


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"us-east-1": {"us-west-2": -1}}, "finite and >= 0"),
        ({"us-east-1": {"us-west-2": math.inf}}, "finite and >= 0"),
        ({"us-east-1": {"us-west-2": "fast"}}, "number of ms"),
        ({"us-east-1": {"us-west-2": True}}, "number of ms"),
        ({"us-east-1": {"us-east-1": 4}}, "to itself must be 0"),
        ({"us-east-1": {"us-west-2": 10}, "us-west-2": {"us-east-1": 11}}, "symmetric"),
        ({"us-east-1": 10}, "region -> milliseconds"),
    ],
)
def test_from_mapping_rejects_bad_values(mapping: dict, message: str) -> None:
    with pytest.raises(LabError, match=message):
        LatencyMatrix.from_mapping(mapping)


def test_unknown_pair_is_a_clear_error() -> None:
    with pytest.raises(LabError, match="mars-1"):
        DEFAULT.rtt("us-east-1", "mars-1")
    with pytest.raises(LabError, match="no candidate"):
        DEFAULT.nearest("us-east-1", [])


def test_load_json_and_toml(tmp_path) -> None:
    as_json = tmp_path / "latency.json"
    as_json.write_text(json.dumps({"eu-west-1": {"us-east-1": 1.5}}))
    as_toml = tmp_path / "latency.toml"
    as_toml.write_text('[eu-west-1]\n"us-east-1" = 2.5\n')
    assert LatencyMatrix.load(as_json).rtt("us-east-1", "eu-west-1") == 1.5
    assert LatencyMatrix.load(as_toml).rtt("us-east-1", "eu-west-1") == 2.5
    assert matrix_from(str(as_toml)).rtt("eu-west-1", "us-east-1") == 2.5


def test_load_rejects_unknown_suffix_and_bad_content(tmp_path) -> None:
    other = tmp_path / "latency.yaml"
    other.write_text("x: 1")
    with pytest.raises(LabError, match=r"\.json or \.toml"):
        LatencyMatrix.load(other)
    broken = tmp_path / "latency.json"
    broken.write_text("{not json")
    with pytest.raises(LabError, match="cannot read latency file"):
        LatencyMatrix.load(broken)
    with pytest.raises(LabError, match="cannot read latency file"):
        LatencyMatrix.load(tmp_path / "missing.json")


def test_matrix_from_accepts_what_a_lab_may_carry() -> None:
    assert matrix_from(None) is DEFAULT
    assert matrix_from(DEFAULT) is DEFAULT
    assert matrix_from({"us-east-1": {"us-west-2": 7}}).rtt("us-west-2", "us-east-1") == 7
    with pytest.raises(LabError, match="cannot build a latency matrix"):
        matrix_from(42)  # type: ignore[arg-type]
