"""Tests for harness.config: sources, precedence, every bad input, and valid plans as properties."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import pathlib
import tempfile
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import (
    DEFAULT_CHAOS_EXAMPLES,
    DEFAULT_CHAOS_STEPS,
    DEFAULT_LAB_SPEED,
    DEFAULT_REGIONS,
    ENV_VARS,
    MAX_REGIONS,
    MIN_REGIONS,
    HarnessConfig,
    RegionPlan,
    default_cidrs,
    known_regions,
    load_config,
)
from harness.errors import ConfigError

pytest_plugins = ("pytester",)

ACCOUNT = "123456789012"


def arn(region: str, cert_id: str = "0f6c3f36-1b2a-4f0e-9c1d-2a3b4c5d6e7f") -> str:
    return f"arn:aws:acm:{region}:{ACCOUNT}:certificate/{cert_id}"


def net(text: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(text)


def toml_value(value: object) -> str:
    """Render a value as TOML; inline tables keep every key = value on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string of ASCII text is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{json.dumps(key)} = {toml_value(item)}" for key, item in value.items())
        return "{" + items + "}"
    raise TypeError(f"cannot render {value!r} as TOML")


def toml_text(data: Mapping[str, object]) -> str:
    return "".join(f"{key} = {toml_value(value)}\n" for key, value in data.items())


def error_of(
    root: pathlib.Path,
    cli: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    toml: str | None = None,
) -> str:
    """Return the one-line ConfigError message load_config raises for these inputs."""
    if toml is not None:
        (root / "regiondrill.toml").write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(cli, environ=env or {}, rootdir=root)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- defaults


def test_defaults_give_the_documented_plan(tmp_path: pathlib.Path) -> None:
    config = load_config(environ={}, rootdir=tmp_path)

    assert config.target == "lab"
    assert config.is_lab
    assert config.region_names == DEFAULT_REGIONS == ("us-east-1", "us-west-2")
    assert config.regions == (
        RegionPlan("us-east-1", 1, net("10.1.0.0/16"), (net("10.1.1.0/24"), net("10.1.2.0/24"))),
        RegionPlan("us-west-2", 2, net("10.2.0.0/16"), (net("10.2.1.0/24"), net("10.2.2.0/24"))),
    )
    assert config.domain == "private.internal.example.com"
    assert config.zone == "internal.example.com"
    assert config.stage == "dev"
    assert config.stack_prefix == "regiondrill"
    assert (config.keep_stacks, config.reuse_stacks, config.allow_destructive) == (
        False,
        False,
        False,
    )
    assert config.rto == 300.0
    assert config.probe_interval == 1.0
    assert config.lab_speed == DEFAULT_LAB_SPEED
    assert config.lab_url is None
    assert config.report_dir == tmp_path / "reports"
    # No seed: the chaos run picks one and prints it; the size is sized for CI.
    assert (config.chaos_seed, config.chaos_examples, config.chaos_steps) == (None, 2, 4)
    assert (DEFAULT_CHAOS_EXAMPLES, DEFAULT_CHAOS_STEPS) == (2, 4)


def test_default_cidrs_follow_region_position() -> None:
    assert default_cidrs(5) == (net("10.5.0.0/16"), (net("10.5.1.0/24"), net("10.5.2.0/24")))
    with pytest.raises(ConfigError, match="index 0"):
        default_cidrs(0)


def test_known_regions_are_commercial_and_cached() -> None:
    regions = known_regions()
    assert {"us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"} <= regions
    assert not regions & {"cn-north-1", "us-gov-west-1"}
    assert known_regions() is regions


def test_region_order_sets_index_and_cidrs(tmp_path: pathlib.Path) -> None:
    config = load_config(
        {"regions": "eu-west-1, US-EAST-1 ,ap-south-1"}, environ={}, rootdir=tmp_path
    )

    assert config.region_names == ("eu-west-1", "us-east-1", "ap-south-1")
    assert [plan.index for plan in config.regions] == [1, 2, 3]
    assert config.region("ap-south-1").vpc_cidr == net("10.3.0.0/16")
    assert config.region("eu-west-1").subnet_cidrs == (net("10.1.1.0/24"), net("10.1.2.0/24"))


def test_region_lookup_names_missing_region(tmp_path: pathlib.Path) -> None:
    config = load_config(environ={}, rootdir=tmp_path)
    with pytest.raises(ConfigError, match=r"'eu-west-1' is not configured.*us-east-1, us-west-2"):
        config.region("eu-west-1")


def test_aws_target_with_certificates(tmp_path: pathlib.Path) -> None:
    config = load_config(
        {
            "target": "aws",
            "certificate_arns": [f"us-east-1={arn('us-east-1')}", f"us-west-2={arn('us-west-2')}"],
            "keep_stacks": True,
            "reuse_stacks": True,  # together with keep_stacks is allowed
        },
        environ={},
        rootdir=tmp_path,
    )

    assert not config.is_lab
    assert config.region("us-west-2").certificate_arn == arn("us-west-2")
    assert config.keep_stacks
    assert config.reuse_stacks
    assert config.lab_speed == DEFAULT_LAB_SPEED


def test_certificate_arns_accept_mapping_and_comma_string(tmp_path: pathlib.Path) -> None:
    pairs = {"us-east-1": arn("us-east-1"), "us-west-2": arn("us-west-2")}
    from_mapping = load_config({"certificate_arns": pairs}, environ={}, rootdir=tmp_path)
    from_env = load_config(
        environ={"REGIONDRILL_CERTIFICATE_ARNS": ",".join(f"{k}={v}" for k, v in pairs.items())},
        rootdir=tmp_path,
    )
    assert from_mapping == from_env
    assert [plan.certificate_arn for plan in from_env.regions] == list(pairs.values())


def test_domain_is_normalised(tmp_path: pathlib.Path) -> None:
    config = load_config(
        {"domain": "API.Corp.Example.", "zone": "corp.example."}, environ={}, rootdir=tmp_path
    )
    assert (config.domain, config.zone) == ("api.corp.example", "corp.example")


def test_domain_may_equal_zone(tmp_path: pathlib.Path) -> None:
    config = load_config(
        {"domain": "corp.example", "zone": "corp.example"}, environ={}, rootdir=tmp_path
    )
    assert config.domain == config.zone == "corp.example"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("out", "out"),
        ("~/drills", str(pathlib.Path("~/drills").expanduser())),
        ("/var/tmp/regiondrill", "/var/tmp/regiondrill"),
    ],
)
def test_report_dir_resolves_against_rootdir(
    tmp_path: pathlib.Path, given: str, expected: str
) -> None:
    config = load_config({"report_dir": given}, environ={}, rootdir=tmp_path)
    assert config.report_dir == tmp_path / expected  # joining an absolute path keeps it


def test_lab_url_is_accepted_on_loopback(tmp_path: pathlib.Path) -> None:
    for url in (
        "http://127.0.0.1:5000/",
        "https://localhost:8443",
        "http://[::1]:80",
        "http://127.9.8.7:1",
    ):
        config = load_config({"lab_url": url}, environ={}, rootdir=tmp_path)
        assert config.lab_url == url.rstrip("/")


def test_environ_is_read_at_call_time(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ENV_VARS.values():
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("REGIONDRILL_STAGE", "nightly")
    assert load_config(rootdir=tmp_path).stage == "nightly"
    monkeypatch.setenv("REGIONDRILL_STAGE", "gameday")
    assert load_config(rootdir=tmp_path).stage == "gameday"


def test_unknown_and_empty_environment_variables_are_ignored(tmp_path: pathlib.Path) -> None:
    config = load_config(
        environ={
            "REGIONDRILL_LAB_TOKEN": "secret",
            "REGIONDRILL_RTO": "  ",
            "REGIONDRILL_LAB_URL": "",
        },
        rootdir=tmp_path,
    )
    assert config.rto == 300.0
    assert config.lab_url is None


@pytest.mark.parametrize(
    ("word", "value"),
    [
        ("1", True),
        ("TRUE", True),
        ("yes", True),
        ("On", True),
        ("0", False),
        ("false", False),
        ("NO", False),
        ("off", False),
    ],
)
def test_boolean_environment_words(tmp_path: pathlib.Path, word: str, value: bool) -> None:
    config = load_config(environ={"REGIONDRILL_ALLOW_DESTRUCTIVE": word}, rootdir=tmp_path)
    assert config.allow_destructive is value


def test_config_is_frozen(tmp_path: pathlib.Path) -> None:
    config = load_config(environ={}, rootdir=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rto = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.regions[0].name = "eu-west-1"  # type: ignore[misc]


def test_to_dict_is_json_and_keyed_like_the_file(tmp_path: pathlib.Path) -> None:
    config = load_config({"lab_url": "http://127.0.0.1:4566"}, environ={}, rootdir=tmp_path)
    data = json.loads(json.dumps(config.to_dict()))

    assert data["regions"] == ["us-east-1", "us-west-2"]
    assert data["cidrs"]["us-west-2"] == {
        "vpc": "10.2.0.0/16",
        "subnets": ["10.2.1.0/24", "10.2.2.0/24"],
    }
    assert data["lab_url"] == "http://127.0.0.1:4566"
    assert data["report_dir"] == str(tmp_path / "reports")
    assert config.regions[0].to_dict() == {
        "name": "us-east-1",
        "index": 1,
        "vpc_cidr": "10.1.0.0/16",
        "subnet_cidrs": ["10.1.1.0/24", "10.1.2.0/24"],
        "certificate_arn": None,
    }


# --------------------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    ("field", "cli", "env", "file", "default", "read"),
    [
        ("rto", "250", "200", 100, 300.0, float),
        (
            "regions",
            "eu-west-1,eu-west-2",
            "ap-south-1,sa-east-1",
            ["us-east-2", "ca-central-1"],
            DEFAULT_REGIONS,
            None,
        ),
        ("stage", "cli", "env", "file", "dev", str),
        ("keep_stacks", False, "yes", True, False, bool),
        ("chaos_seed", "42", "41", 40, None, int),
        ("chaos_examples", "9", "8", 7, DEFAULT_CHAOS_EXAMPLES, int),
        ("chaos_steps", " 12 ", "11", 10, DEFAULT_CHAOS_STEPS, int),
        (
            "domain",
            "a.internal.example.com",
            "b.internal.example.com",
            "c.internal.example.com",
            "private.internal.example.com",
            str,
        ),
    ],
)
def test_precedence_cli_env_file_default(
    tmp_path: pathlib.Path,
    field: str,
    cli: object,
    env: str,
    file: object,
    default: object,
    read: type | None,
) -> None:
    def value(config: HarnessConfig) -> object:
        return config.region_names if field == "regions" else getattr(config, field)

    def expect(raw: object) -> object:
        if field == "regions":
            return tuple(raw.split(",")) if isinstance(raw, str) else tuple(raw)  # type: ignore[arg-type]
        if read is bool and isinstance(raw, str):
            return raw == "yes"
        return read(raw) if read else raw

    environ = {ENV_VARS[field]: env}
    (tmp_path / "regiondrill.toml").write_text(toml_text({field: file}))

    assert value(load_config({field: cli}, environ=environ, rootdir=tmp_path)) == expect(cli)
    assert value(load_config({field: None}, environ=environ, rootdir=tmp_path)) == expect(env)
    assert value(load_config({}, environ={}, rootdir=tmp_path)) == expect(file)
    (tmp_path / "regiondrill.toml").unlink()
    assert value(load_config({}, environ={}, rootdir=tmp_path)) == default


def test_each_field_comes_from_its_own_highest_source(tmp_path: pathlib.Path) -> None:
    (tmp_path / "regiondrill.toml").write_text(
        toml_text(
            {"zone": "corp.example", "domain": "api.corp.example", "stage": "file", "rto": 90}
        )
    )
    config = load_config(
        {"stage": "cli", "probe_interval": "2.5"},
        environ={"REGIONDRILL_STAGE": "env", "REGIONDRILL_RTO": "60", "REGIONDRILL_TARGET": "lab"},
        rootdir=tmp_path,
    )
    assert (config.stage, config.rto, config.probe_interval) == ("cli", 60.0, 2.5)
    assert (config.zone, config.domain) == ("corp.example", "api.corp.example")


def test_cli_certificate_arns_replace_the_file_table(tmp_path: pathlib.Path) -> None:
    (tmp_path / "regiondrill.toml").write_text(
        toml_text(
            {
                "regions": ["us-east-1", "eu-west-1"],
                "certificate_arns": {"eu-west-1": arn("eu-west-1")},
            }
        )
    )
    config = load_config(
        {"regions": "us-east-1,us-west-2", "certificate_arns": [f"us-west-2={arn('us-west-2')}"]},
        environ={},
        rootdir=tmp_path,
    )
    assert [plan.certificate_arn for plan in config.regions] == [None, arn("us-west-2")]


def test_cli_false_flag_overrides_environment(tmp_path: pathlib.Path) -> None:
    config = load_config(
        {"keep_stacks": False}, environ={"REGIONDRILL_KEEP_STACKS": "1"}, rootdir=tmp_path
    )
    assert config.keep_stacks is False


# --------------------------------------------------------------------------- config files


def test_regiondrill_toml_with_cidr_overrides(tmp_path: pathlib.Path) -> None:
    (tmp_path / "regiondrill.toml").write_text(
        """
regions = "us-east-1,eu-west-1,ap-south-1"
rto = 120
probe_interval = 0.5
allow_destructive = true
report_dir = "out/reports"

[cidrs.eu-west-1]
vpc = "10.8.0.0/16"
subnets = ["10.8.1.0/24", "10.8.2.0/24"]

[cidrs.ap-south-1]
subnets = ["10.3.16.0/20", "10.3.32.0/20"]
"""
    )
    config = load_config(environ={}, rootdir=tmp_path)

    assert config.region("us-east-1").vpc_cidr == net("10.1.0.0/16")
    assert config.region("eu-west-1").vpc_cidr == net("10.8.0.0/16")
    assert config.region("eu-west-1").subnet_cidrs == (net("10.8.1.0/24"), net("10.8.2.0/24"))
    assert config.region("ap-south-1").vpc_cidr == net("10.3.0.0/16")  # default VPC kept
    assert config.region("ap-south-1").subnet_cidrs == (net("10.3.16.0/20"), net("10.3.32.0/20"))
    assert (config.rto, config.probe_interval, config.allow_destructive) == (120.0, 0.5, True)
    assert config.report_dir == tmp_path / "out" / "reports"


def test_pyproject_tool_table(tmp_path: pathlib.Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.regiondrill]\nregions = ["eu-west-1", "eu-west-2"]\n'
        '[tool.regiondrill.cidrs.eu-west-2]\nvpc = "10.20.0.0/16"\n'
        'subnets = ["10.20.1.0/24", "10.20.2.0/24"]\n'
    )
    config = load_config(environ={}, rootdir=tmp_path)
    assert config.region_names == ("eu-west-1", "eu-west-2")
    assert config.region("eu-west-2").vpc_cidr == net("10.20.0.0/16")


def test_pyproject_without_tool_table_gives_defaults(tmp_path: pathlib.Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.other]\nregions = 1\n')
    defaults = load_config(environ={}, rootdir=tmp_path / "empty")
    assert load_config(environ={}, rootdir=tmp_path) == dataclasses.replace(
        defaults, report_dir=tmp_path / "reports"
    )


def test_regiondrill_toml_wins_over_pyproject(tmp_path: pathlib.Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.regiondrill]\nstage = "pyproject"\n')
    (tmp_path / "regiondrill.toml").write_text('stage = "standalone"\n')
    assert load_config(environ={}, rootdir=tmp_path).stage == "standalone"


def test_explicit_config_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "drill.toml").write_text('stage = "explicit"\n')
    (tmp_path / "regiondrill.toml").write_text('stage = "discovered"\n')
    config = load_config(environ={}, rootdir=tmp_path, config_file=pathlib.Path("drill.toml"))
    assert config.stage == "explicit"
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_config(environ={}, rootdir=tmp_path, config_file=tmp_path / "missing.toml")


# --------------------------------------------------------------------------- bad input


SIX_REGIONS = "us-east-1,us-west-2,eu-west-1,eu-west-2,eu-west-3,ap-south-1"
LONG_LABEL = "a" * 64


@pytest.mark.parametrize(
    ("cli", "fragments"),
    [
        pytest.param(
            {"regions": "us-east-1,us-esat-1"},
            ["--regions", "unknown region 'us-esat-1'", "did you mean 'us-east-1'"],
            id="unknown-region",
        ),
        pytest.param(
            {"regions": "us-east-1,nowhere-1"},
            ["--regions", "'nowhere-1'"],
            id="unknown-region-no-suggestion",
        ),
        pytest.param(
            {"regions": ["us-east-1", "cn-north-1"]}, ["'cn-north-1'"], id="non-commercial"
        ),
        pytest.param(
            {"regions": "us-east-1,us-east-1"},
            ["--regions", "duplicate region 'us-east-1'"],
            id="duplicate-region",
        ),
        pytest.param(
            {"regions": "us-east-1"},
            ["--regions", "1 region", "(us-east-1)", "2 to 5"],
            id="one-region",
        ),
        pytest.param(
            {"regions": SIX_REGIONS},
            ["--regions", "6 region", "ap-south-1", "2 to 5"],
            id="six-regions",
        ),
        pytest.param(
            {"regions": "us-east-1,,us-west-2"},
            ["--regions", "empty region name"],
            id="empty-region",
        ),
        pytest.param({"target": "azure"}, ["--target", "'azure'", "lab, aws"], id="bad-target"),
        pytest.param({"rto": "fast"}, ["--rto", "'fast'", "not a number"], id="rto-not-number"),
        pytest.param({"rto": "0"}, ["--rto", "RTO 0.0", "positive"], id="rto-zero"),
        pytest.param({"rto": "-5"}, ["--rto", "-5.0", "positive"], id="rto-negative"),
        pytest.param({"rto": "inf"}, ["--rto", "inf", "finite"], id="rto-infinite"),
        pytest.param({"rto": "nan"}, ["--rto", "nan", "finite"], id="rto-nan"),
        pytest.param(
            {"probe_interval": "0"}, ["--probe-interval", "0.0", "positive"], id="interval-zero"
        ),
        pytest.param(
            {"probe_interval": "-1"}, ["--probe-interval", "-1.0"], id="interval-negative"
        ),
        pytest.param(
            {"rto": "10", "probe_interval": "10"},
            ["--probe-interval", "10 s", "less than the RTO 10 s", "from --rto"],
            id="interval-equals-rto",
        ),
        pytest.param(
            {"probe_interval": "301"},
            ["301 s", "RTO 300 s", "from default rto"],
            id="interval-above-default-rto",
        ),
        pytest.param({"lab_speed": "0"}, ["--lab-speed", "0.0", "positive"], id="speed-zero"),
        pytest.param({"lab_speed": "-2"}, ["--lab-speed", "-2.0"], id="speed-negative"),
        pytest.param({"lab_speed": "x2"}, ["--lab-speed", "'x2'", "not a number"], id="speed-text"),
        pytest.param(
            {"domain": "api.other.example"},
            [
                "--domain",
                "'api.other.example'",
                "not inside zone 'internal.example.com'",
                "from default zone",
            ],
            id="domain-outside-zone",
        ),
        pytest.param(
            {"domain": "notinternal.example.com"},
            ["'notinternal.example.com'", "not inside"],
            id="domain-suffix-but-not-subdomain",
        ),
        pytest.param(
            {"zone": "corp.example"},
            ["default domain", "'private.internal.example.com'", "'corp.example'", "from --zone"],
            id="zone-excludes-default-domain",
        ),
        pytest.param(
            {"domain": "bad_name.internal.example.com"},
            ["--domain", "'bad_name.internal.example.com'", "label 'bad_name'"],
            id="domain-underscore",
        ),
        pytest.param(
            {"domain": "api..internal.example.com"},
            ["--domain", "'api..internal.example.com'"],
            id="domain-empty-label",
        ),
        pytest.param(
            {"zone": "-corp.example"},
            ["--zone", "'-corp.example'", "label '-corp'"],
            id="zone-leading-hyphen",
        ),
        pytest.param(
            {"zone": f"{LONG_LABEL}.example"}, ["--zone", LONG_LABEL], id="zone-long-label"
        ),
        pytest.param(
            {"zone": "10.0.0.1", "domain": "10.0.0.1"},
            ["--zone", "'10.0.0.1'", "non-numeric"],
            id="zone-is-address",
        ),
        pytest.param({"zone": "exa mple.com"}, ["--zone", "'exa mple.com'"], id="zone-space"),
        pytest.param(
            {"target": "aws"},
            ["--target", "certificate ARN for every region", "us-east-1, us-west-2"],
            id="aws-without-arns",
        ),
        pytest.param(
            {"target": "aws", "certificate_arns": [f"us-east-1={arn('us-east-1')}"]},
            ["--certificate-arn", "missing for us-west-2"],
            id="aws-missing-one-arn",
        ),
        pytest.param(
            {"certificate_arns": ["us-east-1=arn:aws:acm:us-east-1:12345:certificate/x"]},
            ["--certificate-arn", "'arn:aws:acm:us-east-1:12345:certificate/x'", "malformed"],
            id="arn-short-account",
        ),
        pytest.param(
            {"certificate_arns": ["us-east-1=arn:aws:iam::123456789012:role/x"]},
            ["'arn:aws:iam::123456789012:role/x'", "malformed"],
            id="arn-not-acm",
        ),
        pytest.param(
            {"certificate_arns": [f"us-east-1={arn('us-west-2')}"]},
            ["--certificate-arn", arn("us-west-2"), "region 'us-west-2', not 'us-east-1'"],
            id="arn-wrong-region",
        ),
        pytest.param(
            {"certificate_arns": [f"eu-west-1={arn('eu-west-1')}"]},
            ["--certificate-arn", "region 'eu-west-1'", "not configured"],
            id="arn-unconfigured-region",
        ),
        pytest.param(
            {
                "certificate_arns": [
                    f"us-east-1={arn('us-east-1')}",
                    f"us-east-1={arn('us-east-1', 'other')}",
                ]
            },
            ["--certificate-arn", "duplicate", "'us-east-1'"],
            id="arn-duplicate-region",
        ),
        pytest.param(
            {"certificate_arns": [arn("us-east-1")]},
            ["--certificate-arn", arn("us-east-1"), "not REGION=ARN"],
            id="arn-without-region",
        ),
        pytest.param(
            {"target": "aws", "lab_speed": "5"},
            ["--lab-speed", "'5'", "only applies to target lab", "from --target"],
            id="lab-speed-with-aws",
        ),
        pytest.param(
            {"target": "aws", "lab_url": "http://127.0.0.1:5000"},
            ["--lab-url", "'http://127.0.0.1:5000'", "only applies to target lab"],
            id="lab-url-with-aws",
        ),
        pytest.param(
            {"lab_url": "http://10.1.1.10:5000"},
            ["--lab-url", "'http://10.1.1.10:5000'", "not loopback"],
            id="lab-url-vpc-address",
        ),
        pytest.param(
            {"lab_url": "http://example.com:5000"},
            ["'http://example.com:5000'", "not loopback"],
            id="lab-url-public-name",
        ),
        pytest.param(
            {"lab_url": "http://127.0.0.1"}, ["'http://127.0.0.1'", "no port"], id="lab-url-no-port"
        ),
        pytest.param(
            {"lab_url": "ftp://127.0.0.1:21"},
            ["'ftp://127.0.0.1:21'", "http://"],
            id="lab-url-scheme",
        ),
        pytest.param(
            {"lab_url": "127.0.0.1:5000"}, ["'127.0.0.1:5000'", "http://"], id="lab-url-no-scheme"
        ),
        pytest.param(
            {"lab_url": "http://127.0.0.1:99999"},
            ["'http://127.0.0.1:99999'", "port"],
            id="lab-url-bad-port",
        ),
        pytest.param(
            {"lab_url": "http://127.0.0.1:5000/api"},
            ["'http://127.0.0.1:5000/api'", "path"],
            id="lab-url-path",
        ),
        pytest.param(
            {"lab_url": "http://u:p@127.0.0.1:5000"}, ["credentials"], id="lab-url-credentials"
        ),
        pytest.param(
            {"stack_prefix": "1drill"},
            ["--stack-prefix", "'1drill'", "start with a letter"],
            id="prefix-digit-first",
        ),
        pytest.param(
            {"stack_prefix": "drill_x"}, ["--stack-prefix", "'drill_x'"], id="prefix-underscore"
        ),
        pytest.param(
            {"stack_prefix": "d" * 65}, ["--stack-prefix", "d" * 65, "64"], id="prefix-too-long"
        ),
        pytest.param(
            {"stage": "pre-prod"}, ["--stage", "'pre-prod'", "underscores"], id="stage-hyphen"
        ),
        pytest.param({"stage": ""}, ["--stage", "''"], id="stage-empty"),
        pytest.param({"stage": "s" * 129}, ["--stage", "s" * 129], id="stage-too-long"),
        pytest.param(
            {"report_dir": ""}, ["--report-dir", "must not be empty"], id="report-dir-empty"
        ),
        pytest.param({"rto": True}, ["--rto", "True", "bool"], id="rto-bool"),
        pytest.param(
            {"chaos_seed": "-1"},
            ["--chaos-seed", "chaos seed -1", "at least 0"],
            id="seed-negative",
        ),
        pytest.param(
            {"chaos_seed": "0x1f"}, ["--chaos-seed", "'0x1f'", "not a whole number"], id="seed-hex"
        ),
        pytest.param(
            {"chaos_examples": "0"},
            ["--chaos-examples", "chaos examples 0", "at least 1"],
            id="examples-zero",
        ),
        pytest.param(
            {"chaos_examples": "2.5"},
            ["--chaos-examples", "'2.5'", "not a whole number"],
            id="examples-fraction",
        ),
        pytest.param(
            {"chaos_steps": "-3"}, ["--chaos-steps", "chaos steps -3", "at least 1"], id="steps-neg"
        ),
        pytest.param({"chaos_steps": True}, ["--chaos-steps", "True", "(bool)"], id="steps-bool"),
        pytest.param(
            {"target_region": "x"}, ["unknown option 'target_region'"], id="unknown-option"
        ),
    ],
)
def test_bad_option_names_value_and_option(
    tmp_path: pathlib.Path, cli: dict[str, object], fragments: list[str]
) -> None:
    message = error_of(tmp_path, cli=cli)
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        (
            {"REGIONDRILL_KEEP_STACKS": "maybe"},
            ["REGIONDRILL_KEEP_STACKS", "'maybe'", "not a boolean"],
        ),
        ({"REGIONDRILL_REUSE_STACKS": "2"}, ["REGIONDRILL_REUSE_STACKS", "'2'"]),
        ({"REGIONDRILL_ALLOW_DESTRUCTIVE": "sure"}, ["REGIONDRILL_ALLOW_DESTRUCTIVE", "'sure'"]),
        ({"REGIONDRILL_RTO": "5m"}, ["REGIONDRILL_RTO", "'5m'", "not a number"]),
        (
            {"REGIONDRILL_REGIONS": "us-east-1,eu-wset-1"},
            ["REGIONDRILL_REGIONS", "did you mean 'eu-west-1'"],
        ),
        (
            {"REGIONDRILL_TARGET": "aws", "REGIONDRILL_LAB_SPEED": "2"},
            ["REGIONDRILL_LAB_SPEED", "only applies to target lab", "from REGIONDRILL_TARGET"],
        ),
        (
            {"REGIONDRILL_TARGET": "aws", "REGIONDRILL_LAB_URL": "http://127.0.0.1:1"},
            ["REGIONDRILL_LAB_URL", "'http://127.0.0.1:1'"],
        ),
        (
            {"REGIONDRILL_CHAOS_SEED": "seven"},
            ["REGIONDRILL_CHAOS_SEED", "'seven'", "not a whole number"],
        ),
        (
            {"REGIONDRILL_CHAOS_STEPS": "0"},
            ["REGIONDRILL_CHAOS_STEPS", "chaos steps 0", "at least 1"],
        ),
        (
            {"REGIONDRILL_CERTIFICATE_ARNS": "us-east-1"},
            ["REGIONDRILL_CERTIFICATE_ARNS", "'us-east-1'", "not REGION=ARN"],
        ),
    ],
)
def test_bad_environment_names_variable(
    tmp_path: pathlib.Path, env: dict[str, str], fragments: list[str]
) -> None:
    message = error_of(tmp_path, env=env)
    for fragment in fragments:
        assert fragment in message


CIDRS_2 = '[cidrs.us-west-2]\nvpc = "{vpc}"\nsubnets = ["{a}", "{b}"]\n'


def cidrs(vpc: str, a: str, b: str) -> str:
    return CIDRS_2.format(vpc=vpc, a=a, b=b)


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        pytest.param(
            'rgions = ["us-east-1", "us-west-2"]\n',
            ["unknown key 'rgions'", "regiondrill.toml", "did you mean 'regions'"],
            id="unknown-top-key",
        ),
        pytest.param(
            '[cidrs.us-west-2]\nvcp = "10.2.0.0/16"\n',
            ["unknown key 'cidrs.us-west-2.vcp'", "regiondrill.toml", "did you mean 'vpc'"],
            id="unknown-cidr-key",
        ),
        pytest.param(
            cidrs("10.9.0.0/16", "10.9.1.0/24", "10.9.2.0/24").replace("us-west-2", "eu-west-1"),
            ["cidrs.eu-west-1", "regiondrill.toml", "'eu-west-1'", "not configured"],
            id="cidrs-unconfigured-region",
        ),
        pytest.param(
            'rto = "fast"\n',
            ["rto in", "regiondrill.toml", "expected a number", "'fast'", "(str)"],
            id="rto-string",
        ),
        pytest.param(
            "rto = true\n", ["rto in", "expected a number", "True", "(bool)"], id="rto-bool"
        ),
        pytest.param("rto = -3\n", ["rto in", "-3.0", "positive"], id="rto-negative"),
        pytest.param(
            'keep_stacks = "yes"\n',
            ["keep_stacks in", "expected a boolean", "'yes'", "(str)"],
            id="flag-string",
        ),
        pytest.param(
            "regions = 5\n", ["regions in", "expected a list", "5", "(int)"], id="regions-int"
        ),
        pytest.param(
            'regions = ["us-east-1", 2]\n', ["regions in", "['us-east-1', 2]"], id="regions-mixed"
        ),
        pytest.param(
            "stage = 7\n", ["stage in", "expected a string", "7", "(int)"], id="stage-int"
        ),
        pytest.param(
            "certificate_arns = 5\n",
            ["certificate_arns in", "REGION=ARN pairs", "5"],
            id="arns-int",
        ),
        pytest.param(
            "certificate_arns = { us-east-1 = 5 }\n",
            ["certificate_arns", "us-east-1", "5"],
            id="arn-int",
        ),
        pytest.param(
            f'certificate_arns = {{ us-east-1 = "{arn("us-west-2")}" }}\n',
            ["certificate_arns.us-east-1 in", "regiondrill.toml", arn("us-west-2")],
            id="arn-wrong-region",
        ),
        pytest.param(
            'cidrs = "10.0.0.0/8"\n', ["cidrs in", "'10.0.0.0/8'", "(str)"], id="cidrs-string"
        ),
        pytest.param(
            '[cidrs]\nus-west-2 = "10.2.0.0/16"\n',
            ["cidrs.us-west-2 in", "'10.2.0.0/16'"],
            id="cidr-entry-string",
        ),
        pytest.param(
            cidrs("10.2.0/16", "10.2.1.0/24", "10.2.2.0/24"),
            ["cidrs.us-west-2.vpc in", "malformed VPC CIDR '10.2.0/16'"],
            id="vpc-malformed",
        ),
        pytest.param(
            cidrs("10.2.0.0/33", "10.2.1.0/24", "10.2.2.0/24"),
            ["cidrs.us-west-2.vpc in", "'10.2.0.0/33'"],
            id="vpc-prefix-33",
        ),
        pytest.param(
            cidrs("10.2.0.1/16", "10.2.1.0/24", "10.2.2.0/24"),
            ["cidrs.us-west-2.vpc in", "'10.2.0.1/16'", "host bits"],
            id="vpc-host-bits",
        ),
        pytest.param(
            cidrs("10.16.0.0/12", "10.16.1.0/24", "10.16.2.0/24"),
            ["cidrs.us-west-2.vpc in", "10.16.0.0/12", "/16 and /28"],
            id="vpc-too-big",
        ),
        pytest.param(
            cidrs("10.2.0.0/29", "10.2.0.0/30", "10.2.0.4/30"),
            ["cidrs.us-west-2.vpc in", "10.2.0.0/29", "/16 and /28"],
            id="vpc-too-small",
        ),
        pytest.param(
            cidrs("10.2.0.0/16", "10.2.1.0/24", "10.2.2.0/29"),
            ["cidrs.us-west-2.subnets in", "10.2.2.0/29", "/16 and /28"],
            id="subnet-too-small",
        ),
        pytest.param(
            cidrs("10.2.0.0/16", "10.2.1.0/24", "not-a-cidr"),
            ["cidrs.us-west-2.subnets in", "'not-a-cidr'"],
            id="subnet-malformed",
        ),
        pytest.param(
            cidrs("10.2.0.0/16", "10.2.1.0/24", "10.3.2.0/24"),
            ["cidrs.us-west-2.subnets in", "10.3.2.0/24", "outside its VPC 10.2.0.0/16"],
            id="subnet-outside-vpc",
        ),
        pytest.param(
            cidrs("10.2.0.0/16", "10.2.0.0/15", "10.2.2.0/24"),
            ["cidrs.us-west-2.subnets in", "10.2.0.0/15"],
            id="subnet-larger-than-vpc",
        ),
        pytest.param(
            cidrs("10.2.0.0/16", "10.2.0.0/23", "10.2.1.0/24"),
            ["cidrs.us-west-2.subnets in", "10.2.0.0/23 and 10.2.1.0/24", "overlap"],
            id="subnets-overlap",
        ),
        pytest.param(
            '[cidrs.us-west-2]\nsubnets = ["10.2.1.0/24"]\n',
            ["cidrs.us-west-2.subnets in", "exactly two subnets", "['10.2.1.0/24']"],
            id="one-subnet",
        ),
        pytest.param(
            '[cidrs.us-west-2]\nsubnets = ["10.2.1.0/24", "10.2.2.0/24", "10.2.3.0/24"]\n',
            ["cidrs.us-west-2.subnets in", "exactly two subnets", "10.2.3.0/24"],
            id="three-subnets",
        ),
        pytest.param(
            '[cidrs.us-west-2]\nsubnets = "10.2.1.0/24"\n',
            ["cidrs.us-west-2.subnets in", "'10.2.1.0/24'", "(str)"],
            id="subnets-string",
        ),
        pytest.param(
            '[cidrs.us-west-2]\nvpc = "10.9.0.0/16"\n',
            ["cidrs.us-west-2.vpc in", "without 'subnets'"],
            id="vpc-without-subnets",
        ),
        pytest.param(
            cidrs("10.1.128.0/17", "10.1.128.0/24", "10.1.129.0/24"),
            [
                "cidrs.us-west-2.vpc in",
                "10.1.128.0/17 of us-west-2 overlaps VPC 10.1.0.0/16 of us-east-1",
                "default CIDR plan for us-east-1",
            ],
            id="vpcs-overlap",
        ),
        pytest.param(
            cidrs("172.16.0.0/16", "172.16.1.0/24", "172.16.2.0/24"),
            ["cidrs.us-west-2.vpc in", "172.16.0.0/16", "outside 10.0.0.0/8", "loopback 127.a.b.c"],
            id="lab-outside-10-8",
        ),
        pytest.param("rto = [\n", ["regiondrill.toml", "not valid TOML"], id="invalid-toml"),
        pytest.param(
            "chaos_examples = 2.0\n",
            ["chaos_examples in", "regiondrill.toml", "expected a whole number", "2.0", "(float)"],
            id="examples-float",
        ),
        pytest.param(
            'chaos_seed = "7"\n',
            ["chaos_seed in", "expected a whole number", "'7'", "(str)"],
            id="seed-string",
        ),
        pytest.param(
            "chaos_steps = 0\n", ["chaos_steps in", "chaos steps 0", "at least 1"], id="steps-zero"
        ),
    ],
)
def test_bad_config_file_names_key_value_and_file(
    tmp_path: pathlib.Path, toml: str, fragments: list[str]
) -> None:
    message = error_of(tmp_path, toml=toml)
    for fragment in fragments:
        assert fragment in message
    assert str(tmp_path / "regiondrill.toml") in message


def test_bad_pyproject_key_names_table_and_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.regiondrill]\nrto = 5\nprobe_intervall = 1\n")
    message = error_of(tmp_path)
    assert "unknown key 'tool.regiondrill.probe_intervall'" in message
    assert str(tmp_path / "pyproject.toml") in message


def test_pyproject_regiondrill_must_be_a_table(tmp_path: pathlib.Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool]\nregiondrill = "lab"\n')
    assert "tool.regiondrill in" in error_of(tmp_path)


def test_aws_cidrs_may_leave_10_8(tmp_path: pathlib.Path) -> None:
    (tmp_path / "regiondrill.toml").write_text(
        # Top-level keys first: after a [table] header every key belongs to that table.
        toml_text({"certificate_arns": {r: arn(r) for r in ("us-east-1", "us-west-2")}})
        + cidrs("172.16.0.0/16", "172.16.1.0/24", "172.16.2.0/24")
    )
    config = load_config({"target": "aws"}, environ={}, rootdir=tmp_path)
    assert config.region("us-west-2").vpc_cidr == net("172.16.0.0/16")


# --------------------------------------------------------------------------- direct construction


def plan(name: str, index: int, second_octet: int | None = None) -> RegionPlan:
    octet = index if second_octet is None else second_octet
    return RegionPlan(
        name,
        index,
        net(f"10.{octet}.0.0/16"),
        (net(f"10.{octet}.1.0/24"), net(f"10.{octet}.2.0/24")),
    )


def test_direct_construction_is_validated() -> None:
    good = HarnessConfig(target="lab", regions=(plan("us-east-1", 1), plan("us-west-2", 2)))
    assert good.region_names == ("us-east-1", "us-west-2")

    with pytest.raises(ConfigError, match=r"regions: .*index 3 but is number 2"):
        HarnessConfig(target="lab", regions=(plan("us-east-1", 1), plan("us-west-2", 3)))
    with pytest.raises(ConfigError, match=r"overlaps VPC 10\.1\.0\.0/16 of us-east-1"):
        HarnessConfig(target="lab", regions=(plan("us-east-1", 1), plan("us-west-2", 2, 1)))
    with pytest.raises(ConfigError, match="tuple of RegionPlan"):
        HarnessConfig(target="lab", regions=["us-east-1", "us-west-2"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"rto: RTO 0 must be a positive"):
        HarnessConfig(target="lab", regions=good.regions, rto=0)
    with pytest.raises(
        ConfigError, match=r"domain: domain 'API.internal.example.com' must be lower-case"
    ):
        HarnessConfig(target="lab", regions=good.regions, domain="API.internal.example.com")
    with pytest.raises(ConfigError, match=r"keep_stacks must be true or false, got 'yes'"):
        HarnessConfig(target="lab", regions=good.regions, keep_stacks="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"chaos_steps: chaos steps 0 must be at least 1"):
        HarnessConfig(target="lab", regions=good.regions, chaos_steps=0)
    with pytest.raises(ConfigError, match=r"chaos_seed: chaos seed 1.5 must be a whole number"):
        HarnessConfig(target="lab", regions=good.regions, chaos_seed=1.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- properties


REGION_NAMES = sorted(known_regions())
LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
LAST_LABEL = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)


@st.composite
def network_plans(draw: st.DrawFn, count: int) -> list[tuple[str, list[str]]]:
    """Draw non-overlapping VPCs inside 10.0.0.0/8, each with two disjoint subnets inside it."""
    octets = draw(st.lists(st.integers(0, 255), min_size=count, max_size=count, unique=True))
    plans = []
    for octet in octets:
        vpc_prefix = draw(st.integers(16, 27))
        vpc = ipaddress.IPv4Network(f"10.{octet}.0.0/{vpc_prefix}")
        subnet_prefix = draw(st.integers(vpc_prefix + 1, 28))
        blocks = 2 ** (subnet_prefix - vpc_prefix)
        first, second = draw(
            st.lists(st.integers(0, min(blocks, 4096) - 1), min_size=2, max_size=2, unique=True)
        )
        size = 2 ** (32 - subnet_prefix)
        subnets = [
            str(ipaddress.IPv4Network((int(vpc.network_address) + i * size, subnet_prefix)))
            for i in (first, second)
        ]
        plans.append((str(vpc), subnets))
    return plans


@st.composite
def valid_settings(draw: st.DrawFn) -> dict[str, object]:
    """Draw a complete, valid config-file table."""
    regions = draw(
        st.lists(
            st.sampled_from(REGION_NAMES), min_size=MIN_REGIONS, max_size=MAX_REGIONS, unique=True
        )
    )
    target = draw(st.sampled_from(["lab", "aws"]))
    zone_labels = [*draw(st.lists(LABEL, max_size=2)), draw(LAST_LABEL)]
    domain_labels = [*draw(st.lists(LABEL, max_size=2)), *zone_labels]
    rto = draw(st.floats(0.01, 1e6, allow_nan=False, allow_infinity=False))
    interval = rto * draw(st.floats(0.001, 0.999))
    with_arns = (
        regions if target == "aws" else draw(st.lists(st.sampled_from(regions), unique=True))
    )
    account = draw(st.from_regex(r"[0-9]{12}", fullmatch=True))
    settings_: dict[str, object] = {
        "target": target,
        "regions": regions,
        "cidrs": {
            name: {"vpc": vpc, "subnets": subnets}
            for name, (vpc, subnets) in zip(regions, draw(network_plans(len(regions))), strict=True)
        },
        "certificate_arns": {
            name: f"arn:aws:acm:{name}:{account}:certificate/{draw(st.uuids())}"
            for name in with_arns
        },
        "domain": ".".join(domain_labels),
        "zone": ".".join(zone_labels),
        "stage": draw(st.from_regex(r"[A-Za-z0-9_]{1,128}", fullmatch=True)),
        "stack_prefix": draw(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,63}", fullmatch=True)),
        "keep_stacks": draw(st.booleans()),
        "reuse_stacks": draw(st.booleans()),
        "allow_destructive": draw(st.booleans()),
        "rto": rto,
        "probe_interval": interval,
        "report_dir": draw(st.sampled_from(["reports", "out/drill", "/tmp/regiondrill-reports"])),
        "chaos_examples": draw(st.integers(1, 1000)),
        "chaos_steps": draw(st.integers(1, 1000)),
    }
    if draw(st.booleans()):
        settings_["chaos_seed"] = draw(st.integers(0, 2**63 - 1))
    if target == "lab":
        settings_["lab_speed"] = draw(st.floats(0.01, 1000, allow_nan=False, allow_infinity=False))
        if draw(st.booleans()):
            host = ipaddress.IPv4Address(draw(st.integers(0x7F000001, 0x7FFFFFFE)))
            settings_["lab_url"] = f"http://{host}:{draw(st.integers(1, 65535))}"
    return settings_


@settings(max_examples=75, deadline=None)
@given(valid_settings())
def test_every_valid_plan_validates_and_round_trips(data: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = pathlib.Path(directory)
        (root / "regiondrill.toml").write_text(toml_text(data))
        config = load_config(environ={}, rootdir=root)

        assert config.target == data["target"]
        assert list(config.region_names) == data["regions"]
        for index, region in enumerate(config.regions, start=1):
            assert region.index == index
            assert str(region.vpc_cidr) == data["cidrs"][region.name]["vpc"]  # type: ignore[index]
            assert [str(s) for s in region.subnet_cidrs] == data["cidrs"][region.name]["subnets"]  # type: ignore[index]
            assert region.certificate_arn == data["certificate_arns"].get(region.name)  # type: ignore[attr-defined]
        assert (config.domain, config.zone, config.stage, config.stack_prefix) == (
            data["domain"],
            data["zone"],
            data["stage"],
            data["stack_prefix"],
        )
        assert (config.rto, config.probe_interval) == (data["rto"], data["probe_interval"])
        assert config.lab_speed == data.get("lab_speed", DEFAULT_LAB_SPEED)
        assert config.lab_url == data.get("lab_url")
        assert config.report_dir == root / str(data["report_dir"])

        dumped = config.to_dict()
        assert json.loads(json.dumps(dumped)) == dumped
        for key, value in data.items():
            if key != "report_dir":
                assert dumped[key] == value, key

        # The dict is a config file: writing it back (minus nulls and lab-only keys on aws)
        # yields the same configuration.
        again = {k: v for k, v in dumped.items() if v is not None}
        if config.target == "aws":
            again.pop("lab_speed")
        (root / "regiondrill.toml").write_text(toml_text(again))
        assert load_config(environ={}, rootdir=root) == config


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.sampled_from(REGION_NAMES), min_size=MIN_REGIONS, max_size=MAX_REGIONS, unique=True)
)
def test_default_plan_validates_for_any_regions(regions: list[str]) -> None:
    config = load_config(
        {"regions": ",".join(regions)}, environ={}, rootdir=pathlib.Path("/nonexistent")
    )
    assert [str(plan.vpc_cidr) for plan in config.regions] == [
        f"10.{i}.0.0/16" for i in range(1, len(regions) + 1)
    ]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.sampled_from(REGION_NAMES), min_size=MIN_REGIONS, max_size=MAX_REGIONS, unique=True
    ),
    st.integers(0, 4),
)
def test_any_repeated_region_is_rejected(regions: list[str], position: int) -> None:
    repeated = [
        *regions[: position + 1],
        regions[position % len(regions)],
        *regions[position + 1 :],
    ]
    with pytest.raises(ConfigError, match=f"duplicate region '{regions[position % len(regions)]}'"):
        load_config({"regions": repeated}, environ={}, rootdir=pathlib.Path("/nonexistent"))


# --------------------------------------------------------------------------- through pytest


CONFTEST = """
import pytest
from harness.config import add_pytest_options, from_pytest
from harness.errors import ConfigError

def pytest_addoption(parser):
    add_pytest_options(parser)

def pytest_configure(config):
    # What the plugin is expected to do: a bad value stops pytest before collection.
    try:
        config.regiondrill = from_pytest(config)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from exc
"""

SHOW = """
import json

def test_show(request):
    print("\\nCONFIG=" + json.dumps(request.config.regiondrill.to_dict()))
"""


@pytest.fixture
def drill(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for variable in ENV_VARS.values():
        monkeypatch.delenv(variable, raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_show=SHOW)
    return pytester


def shown(result: pytest.RunResult) -> dict[str, object]:
    lines = [line for line in result.outlines if line.startswith("CONFIG=")]
    assert len(lines) == 1, result.outlines
    return json.loads(lines[0].removeprefix("CONFIG="))


def test_pytest_options_reach_the_config(
    drill: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGIONDRILL_KEEP_STACKS", "1")
    monkeypatch.setenv("REGIONDRILL_STAGE", "fromenv")
    result = drill.runpytest(
        "-s", "-p", "no:cacheprovider",
        "--target", "aws",
        "--regions", "eu-west-1,us-east-1",
        "--certificate-arn", f"eu-west-1={arn('eu-west-1')}",
        "--certificate-arn", f"us-east-1={arn('us-east-1')}",
        "--rto", "90", "--probe-interval", "0.5",
        "--no-keep-stacks", "--allow-destructive",
        "--report-dir", "out",
        "--chaos-seed", "1234", "--chaos-examples", "5",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    data = shown(result)
    assert data["target"] == "aws"
    assert data["regions"] == ["eu-west-1", "us-east-1"]
    assert data["certificate_arns"] == {
        "eu-west-1": arn("eu-west-1"),
        "us-east-1": arn("us-east-1"),
    }
    assert (data["rto"], data["probe_interval"]) == (90.0, 0.5)
    assert (data["keep_stacks"], data["allow_destructive"], data["stage"]) == (
        False,
        True,
        "fromenv",
    )
    assert data["report_dir"] == str(drill.path / "out")
    assert (data["chaos_seed"], data["chaos_examples"], data["chaos_steps"]) == (1234, 5, 4)


def test_pytest_without_options_uses_rootdir_file(drill: pytest.Pytester) -> None:
    drill.makefile(".toml", regiondrill='regions = ["ap-south-1", "eu-west-2"]\nstage = "file"\n')
    result = drill.runpytest("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    data = shown(result)
    assert (data["regions"], data["stage"], data["target"]) == (
        ["ap-south-1", "eu-west-2"],
        "file",
        "lab",
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--rto", "abc"], "--rto: 'abc' is not a number"),
        (["--regions", "us-east-1,nowhere-1"], "--regions: unknown region 'nowhere-1'"),
        (["--target", "gcp"], "--target: target 'gcp' must be one of: lab, aws"),
    ],
)
def test_pytest_bad_option_is_one_line_usage_error(
    drill: pytest.Pytester, args: list[str], line: str
) -> None:
    result = drill.runpytest("-p", "no:cacheprovider", "--collect-only", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any(line in err for err in result.errlines), result.errlines


def test_pytest_help_states_defaults(drill: pytest.Pytester) -> None:
    result = drill.runpytest("--help")
    text = " ".join(" ".join(result.outlines).split())  # help is wrapped to the terminal width
    for expected in [
        "regiondrill:",
        "--target=",
        "default: lab",
        "default: us-east-1,us-west-2",
        "default: private.internal.example.com",
        "default: internal.example.com",
        "--certificate-arn=REGION=ARN",
        "--no-keep-stacks",
        "default: 300",
        "default: 20",
        "REGIONDRILL_PROBE_INTERVAL",
        "--chaos-seed=N",
        "default: random; env REGIONDRILL_CHAOS_SEED",
        "--chaos-steps=N",
        "default: 4; env REGIONDRILL_CHAOS_STEPS",
    ]:
        assert expected in text, expected
