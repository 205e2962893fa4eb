"""Tests for harness/report/schema.json: it is a valid 2020-12 schema and describes real reports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import report_factory as f

from harness.report import model
from harness.report.model import SCHEMA_ID, SCHEMA_VERSION, build_report

SCHEMA_PATH = Path(model.__file__).with_name("schema.json")


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def problems(validator: jsonschema.Draft202012Validator, document: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


def rich_document() -> dict[str, Any]:
    """A NOT READY run with every part filled: compound drill, findings, unrestored fault."""
    record, entries = f.healthy_run(failover=250, failback=30)
    down, up = f.drill(
        "us-east-1",
        at=20_000.0,
        failover=None,
        failback=25.0,
        fault_id="f-h",
        model_window=(10.0, 70.0),
    )
    record.add_phase("scenarios/test_hazards.py::test_h", down)
    record.add_phase("scenarios/test_hazards.py::test_h", up)
    entries.append(f.entry("f-h", "us-east-1", 20_000.0, up.event_time))
    entries.append(
        f.entry(
            "f-bh",
            "us-east-1",
            19_000.0,
            None,
            kind="blackhole_peering",
            target={"region_a": "us-east-1", "region_b": "us-west-2"},
            state="restore_failed",
        )
    )
    record.add_finding(f.stranded_finding())
    record.add_outcome(
        f.outcome(
            "scenarios/test_api.py::test_x",
            "failed",
            markers=("api",),
            message="AssertionError: boom",
        )
    )
    record.samples["routing_matrix"] = {"us-east-1": {"i-1": "us-east-1"}, "set": {"b", "a"}}
    report = build_report(
        record, f.config(), ledger_entries=entries, invocation="pytest -m failover", exit_status=1
    )
    assert report.verdict.status == model.NOT_READY
    return report.to_dict()


def test_the_schema_is_a_valid_2020_12_schema_with_the_models_version(validator) -> None:  # type: ignore[no-untyped-def]
    schema = validator.schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID
    assert re.fullmatch(schema["properties"]["schema_version"]["pattern"], SCHEMA_VERSION)
    assert SCHEMA_ID.endswith(":" + SCHEMA_VERSION.split(".")[0])


def test_a_ready_report_validates(validator) -> None:  # type: ignore[no-untyped-def]
    record, entries = f.healthy_run()
    document = build_report(record, f.config(), ledger_entries=entries).to_dict()
    assert problems(validator, document) == []
    assert document["verdict"]["status"] == "READY"


def test_a_report_with_every_part_validates_and_survives_json(validator) -> None:  # type: ignore[no-untyped-def]
    document = json.loads(json.dumps(rich_document(), allow_nan=False))
    assert problems(validator, document) == []
    assert {r["code"] for r in document["verdict"]["reasons"]} >= {
        "scenario_failed",
        "fault_not_restored",
        "near_objective",
        "finding",
    }
    assert document["observations"]["routing_matrix"]["set"] == ["a", "b"]


def test_every_reason_code_the_model_emits_is_in_the_schema(validator) -> None:  # type: ignore[no-untyped-def]
    enum = set(
        validator.schema["properties"]["verdict"]["properties"]["reasons"]["items"]["properties"][
            "code"
        ]["enum"]
    )
    source = Path(model.__file__).read_text()
    emitted = set(re.findall(r'Reason\(\s*(?:NOT_READY|AT_RISK),\s*"([a-z_]+)"', source))
    assert emitted
    assert emitted <= enum, emitted - enum
    assert enum <= emitted, f"schema lists codes the model never emits: {enum - emitted}"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("verdict", "status"), "MAYBE"),
        (("run", "target"), "gcp"),
        (("run", "started"), "yesterday"),
        (("schema_version",), "2.0"),
        (("drills", 0, "phases", 0, "status"), "fine"),
        (("drills", 0, "timelines", 0, "segments", 0, "samples"), 0),
        (("stacks", 0, "template_sha256"), "abc"),
    ],
)
def test_the_schema_rejects_a_wrong_value(validator, path: tuple, value: object) -> None:  # type: ignore[no-untyped-def]
    document = rich_document()
    target: Any = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert problems(validator, document), f"{path} = {value!r} was accepted"


def test_the_schema_rejects_an_undocumented_field(validator) -> None:  # type: ignore[no-untyped-def]
    document = rich_document()
    document["drills"][0]["phases"][0]["surprise"] = 1
    assert any("surprise" in p for p in problems(validator, document))
