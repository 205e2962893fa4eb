"""The pytest plugin as users meet it: options, usage errors, fixtures, exit codes."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture
def run(pytester: pytest.Pytester):  # type: ignore[no-untyped-def]
    def runner(*args: str, subprocess: bool = False) -> pytest.RunResult:
        if subprocess:
            return pytester.runpytest_subprocess(
                "-p", "harness.plugin", "-p", "no:cacheprovider", *args
            )
        return pytester.runpytest("-p", "harness.plugin", "-p", "no:cacheprovider", *args)

    return runner


def test_help_shows_the_option_group(run) -> None:  # type: ignore[no-untyped-def]
    result = run("--help")
    result.stdout.fnmatch_lines(["regiondrill:*", "*--target*", "*--regions*", "*--lab-speed*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--regions", "us-east-1,us-esat-1"), "*unknown region 'us-esat-1'*"),
        (("--regions", "us-east-1"), "*1 region(s) given (us-east-1); need 2 to 5*"),
        (("--rto", "-5"), "*--rto*"),
        (("--target", "aws", "--regions", "us-east-1,us-west-2"), "*certificate*"),
    ],
)
def test_bad_input_is_a_usage_error_even_for_collect_only(run, args, message) -> None:  # type: ignore[no-untyped-def]
    result = run("--collect-only", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_marker_selecting_nothing_exits_zero_and_says_so(run, pytester: pytest.Pytester) -> None:  # type: ignore[no-untyped-def]
    pytester.makeini("[pytest]\nmarkers =\n    failover: x\n")
    pytester.makepyfile("def test_unrelated():\n    pass\n")
    result = run("-m", "failover")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*no tests match -m 'failover'*"])


def test_deployment_fixture_provisions_on_the_lab_and_tears_down(
    run, pytester: pytest.Pytester
) -> None:  # type: ignore[no-untyped-def]
    pytester.makepyfile(
        """
        def test_stack_set(deployment, target):
            assert [r.name for r in deployment.regions] == ["us-east-1", "us-west-2"]
            cfn = target.sessions.client("cloudformation", "us-east-1")
            names = {s["StackName"] for s in cfn.describe_stacks()["Stacks"]}
            assert "regiondrill-dns" in names
            assert deployment.created_stacks
        """
    )
    result = run("-s", subprocess=True)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*regiondrill: lab in-process at http://127.0.0.1:*",
            "*stack set ready in*",
            "*teardown complete*",
        ]
    )
