"""The `aws` target, checked without an AWS account: what the harness would send and how it
behaves without credentials. No request ever leaves the machine (credentials are resolved —
and found missing — before botocore opens a connection)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.aws.stacks import find_stacks
from harness.clock import REAL_TIME
from harness.config import load_config
from harness.errors import CloudError
from harness.targets import open_target

ARNS = [
    "us-east-1=arn:aws:acm:us-east-1:111122223333:certificate/11111111-2222-3333-4444-555555555555",
    "us-west-2=arn:aws:acm:us-west-2:111122223333:certificate/66666666-7777-8888-9999-000000000000",
]

pytest_plugins = ["pytester"]


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_aws_target_uses_the_standard_chain_real_time_and_adaptive_retries(
    no_credentials: None,
) -> None:
    config = load_config(
        {"target": "aws", "regions": "us-east-1,us-west-2", "certificate_arns": ARNS}, environ={}
    )
    target = open_target(config)
    assert target.name == "aws"
    assert target.clock == REAL_TIME
    assert target.lab is None
    client = target.sessions.client("cloudformation", "us-west-2")
    assert client.meta.endpoint_url == "https://cloudformation.us-west-2.amazonaws.com"
    assert client.meta.config.retries["mode"] == "adaptive"
    assert "regiondrill/" in client.meta.config.user_agent_extra


def test_missing_credentials_give_one_clear_error_naming_the_call(no_credentials: None) -> None:
    config = load_config(
        {"target": "aws", "regions": "us-east-1,us-west-2", "certificate_arns": ARNS}, environ={}
    )
    target = open_target(config)
    with pytest.raises(
        CloudError, match=r"DescribeStacks in us-east-1 failed: Unable to locate credentials"
    ):
        find_stacks(target.sessions, config.region_names)


def test_destructive_scenarios_are_skipped_on_aws_without_the_flag(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    destructive: x\n    aws: x\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.destructive
        def test_fault():
            raise AssertionError("must not run")

        @pytest.mark.aws
        def test_account_only():
            pass

        def test_harmless():
            pass
        """
    )
    args = [
        "-p",
        "harness.plugin",
        "-p",
        "no:cacheprovider",
        "-rs",
        "--target",
        "aws",
        "--regions",
        "us-east-1,us-west-2",
    ]
    for arn in ARNS:
        args += ["--certificate-arn", arn]
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*--allow-destructive*"])
    lab = pytester.runpytest(
        "-p", "harness.plugin", "-p", "no:cacheprovider", "-rs", "-k", "account_only"
    )
    lab.assert_outcomes(skipped=1)
    lab.stdout.fnmatch_lines(["*needs a real AWS account*"])
