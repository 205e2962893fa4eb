"""The ``regiondrill`` command line (also ``python -m harness``).

Subcommands:
  lab serve       run the lab in the foreground (optionally deploying the default stack)
  render          write the rendered CloudFormation stack set for the configured regions
  stacks list     list stacks tagged by regiondrill (find orphans)
  stacks delete   delete every stack of a run id
  restore         restore faults an interrupted run left injected (reads the fault ledger)
  config show     print the validated configuration as JSON
  gate            run the CI gate (`pytest -m gate`) and print a one-screen DR-readiness summary
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness import __version__
from harness.config import HarnessConfig, load_config
from harness.errors import HarnessError


def _config_options(parser: argparse.ArgumentParser, *, lab: bool = True) -> None:
    group = parser.add_argument_group("configuration (same meaning as the pytest options)")
    group.add_argument("--target", help="lab (default) or aws")
    group.add_argument(
        "--regions", help="comma-separated regions, 2..5 (default us-east-1,us-west-2)"
    )
    group.add_argument("--stack-prefix", help="stack name prefix (default regiondrill)")
    group.add_argument("--domain", help="API domain name")
    group.add_argument("--zone", help="private hosted zone name")
    group.add_argument("--stage", help="API stage name")
    group.add_argument(
        "--certificate-arn",
        action="append",
        metavar="REGION=ARN",
        help="ACM certificate per region (aws)",
    )
    if lab:
        group.add_argument(
            "--lab-url", help="attach to a running lab (see `regiondrill lab serve`)"
        )
        group.add_argument("--lab-speed", help="lab clock speed factor")


def _config(args: argparse.Namespace) -> HarnessConfig:
    names = ("target", "regions", "stack_prefix", "domain", "zone", "stage", "lab_url", "lab_speed")
    cli: dict[str, Any] = {name: getattr(args, name, None) for name in names}
    arns = getattr(args, "certificate_arn", None)
    if arns:
        cli["certificate_arns"] = arns
    return load_config(cli, rootdir=Path.cwd())


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- lab serve


def cmd_lab_serve(args: argparse.Namespace) -> int:
    from harness.lab.lab import Lab

    config = _config(args)
    if config.target != "lab":
        raise HarnessError("`regiondrill lab serve` runs the lab; --target must be lab")
    if config.lab_url:
        raise HarnessError("`regiondrill lab serve` starts a lab; it cannot attach with --lab-url")
    lab = Lab(config.region_names, speed=config.lab_speed, port=args.port)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    lab.start()
    try:
        info = lab.info.to_dict()
        if args.deploy:
            from harness.aws.stacks import StackSetDeployer
            from harness.targets import lab_sessions

            deployer = StackSetDeployer(config, lab_sessions(lab.info), progress=_say)
            deployment = deployer.deploy()
            info["run_id"] = deployment.run_id
            info["stack_set"] = deployment.stack_set
        text = json.dumps(info, indent=2)
        if args.state_file:
            path = Path(args.state_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n")
            path.chmod(0o600)  # it holds the lab's secret key
        print(text, flush=True)
        _say(
            f"lab running at {lab.endpoint}; point boto3 or the AWS CLI at it with "
            f"--endpoint-url {lab.endpoint} and the credentials above. Ctrl-C stops it."
        )
        stop.wait()
    finally:
        _say("stopping the lab")
        lab.stop()
        if args.state_file:
            Path(args.state_file).unlink(missing_ok=True)
    return 0


# ---------------------------------------------------------------------- render


def cmd_render(args: argparse.Namespace) -> int:
    from harness.aws import templates

    config = _config(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for filename, template in templates.render_stack_set(config.region_names).items():
        (out / filename).write_text(template.body)
        print(out / filename)
    return 0


# ---------------------------------------------------------------------- stacks


def _target(config: HarnessConfig) -> Any:
    from harness.targets import open_target

    if config.target == "lab" and not config.lab_url:
        raise HarnessError(
            "stacks live in a running lab: pass --lab-url (see `regiondrill lab serve`) or "
            "--target aws"
        )
    return open_target(config)


def cmd_stacks_list(args: argparse.Namespace) -> int:
    from harness.aws.stacks import find_stacks

    config = _config(args)
    with _target(config) as target:
        stacks = find_stacks(target.sessions, config.region_names, run_id=args.run_id)
    if args.json:
        print(json.dumps([s.__dict__ for s in stacks], indent=2))
        return 0
    if not stacks:
        print("no regiondrill stacks found in " + ", ".join(config.region_names))
        return 0
    width = max(len(s.name) for s in stacks)
    for s in stacks:
        print(f"{s.name:<{width}}  {s.region:<15} {s.status:<20} run {s.run_id}  ({s.kind})")
    return 0


def cmd_stacks_delete(args: argparse.Namespace) -> int:
    from harness.aws.stacks import delete_run

    config = _config(args)
    with _target(config) as target:
        deleted = delete_run(config, target.sessions, args.run_id, progress=_say)
    print(f"deleted {len(deleted)} stack(s) of run {args.run_id}")
    return 0


# ---------------------------------------------------------------------- restore


def cmd_restore(args: argparse.Namespace) -> int:
    from harness.chaos.fixtures import lab_is_alive
    from harness.chaos.ledger import Ledger
    from harness.chaos.manager import describe_entries, environment_of, recover

    config = _config(args)
    report_dir = Path(args.report_dir) if args.report_dir else config.report_dir
    ledger = Ledger.in_dir(report_dir)
    outstanding = ledger.outstanding()
    if not outstanding:
        print(f"nothing to restore: {ledger.path} has no outstanding faults")
        return 0
    print(f"outstanding faults: {describe_entries(outstanding)}")
    with _target(config) as target:
        environment = environment_of(
            target.sessions, target.name, target.lab_info.endpoint if target.is_lab else None
        )
        recovery = recover(ledger, target.sessions, environment, is_alive=lab_is_alive, say=_say)
    for entry in recovery.restored:
        print(f"restored: {entry.describe()} (run {entry.run_id}); state verified")
    for entry, note in recovery.abandoned:
        print(f"abandoned: {entry.describe()}: {note}")
    for entry in recovery.foreign:
        print(f"left alone (another target: {dict(entry.environment)}): {entry.describe()}")
    for entry, why in recovery.failed:
        print(f"FAILED: {entry.describe()}: {why}", file=sys.stderr)
    return 1 if recovery.failed else 0


# ---------------------------------------------------------------------- config


def cmd_config_show(args: argparse.Namespace) -> int:
    print(json.dumps(_config(args).to_dict(), indent=2, default=str))
    return 0


# ---------------------------------------------------------------------- gate

GATE_MARKER = "gate"
_RULE = "=" * 78


def _report_dir_from(pytest_args: Sequence[str]) -> Path:
    """The report directory the pytest run will use (its --report-dir, else env/file/default)."""
    value = None
    for index, arg in enumerate(pytest_args):
        if arg == "--report-dir" and index + 1 < len(pytest_args):
            value = pytest_args[index + 1]
        elif arg.startswith("--report-dir="):
            value = arg.partition("=")[2]
    cli: dict[str, Any] = {"report_dir": value} if value is not None else {}
    return Path(load_config(cli, rootdir=Path.cwd()).report_dir)


def cmd_gate(pytest_args: Sequence[str]) -> int:
    """Run `pytest -m gate` with ``pytest_args`` and summarise the DR-readiness report.

    Exit code: pytest's when non-zero; otherwise 1 for a NOT READY verdict, 2 when the run
    wrote no report (it selected no DR scenario: a gate that checks nothing must not pass).
    """
    from harness.report.model import NOT_READY

    report_dir = _report_dir_from(pytest_args)
    report_json = report_dir / "dr-readiness.json"
    command = [sys.executable, "-m", "pytest", "-m", GATE_MARKER, *pytest_args]
    print(f"regiondrill gate: {shlex.join(command)}", flush=True)
    started = time.time()
    completed = subprocess.run(command, check=False)
    elapsed = time.time() - started
    fresh = report_json.exists() and report_json.stat().st_mtime >= started - 1.0
    if not fresh:
        print(_RULE)
        print(
            f"regiondrill gate: no DR-readiness report was written to {report_json} "
            f"(pytest exit {completed.returncode}, {elapsed:.0f} s): the run selected no DR "
            "scenario, or stopped before the end"
        )
        return completed.returncode or 2
    data = json.loads(report_json.read_text())
    summary = gate_summary(
        data,
        returncode=completed.returncode,
        elapsed=elapsed,
        report_html=(report_dir / "dr-readiness.html").resolve(),
    )
    for line in summary:
        print(line)
    if completed.returncode:
        return completed.returncode
    return 1 if data["verdict"]["status"] == NOT_READY else 0


def gate_summary(
    data: dict[str, Any], *, returncode: int, elapsed: float, report_html: Path
) -> list[str]:
    """Return the one-screen summary of a DR-readiness report (``dr-readiness.json``)."""

    def rto(summary: dict[str, Any] | None) -> str:
        if summary is None:
            return "not measured"
        if summary["rto_s"] is None:
            return "did not converge"
        return f"{summary['rto_s']:.0f} s / {summary['objective_s']:g} s"

    verdict = data["verdict"]
    run = data["run"]
    lines = [
        _RULE,
        f" regiondrill gate: {verdict['status']}   (pytest exit {returncode}, {elapsed:.0f} s, "
        f"target {run['target']})",
        _RULE,
        f" {verdict['headline']}",
    ]
    reasons = verdict["reasons"]
    for reason in reasons[:8]:
        mark = "x" if reason["status"] == "NOT READY" else "!"
        lines.append(f"  {mark} [{reason['status']}] {_clip(reason['message'], 100)}")
    if len(reasons) > 8:
        lines.append(f"    ... and {len(reasons) - 8} more reason(s) in the report")
    lines.append("")
    lines.append(f" {'region':<16}{'failover':<22}{'failback':<22}status")
    for region in data["regions"]:
        lines.append(
            f" {region['name']:<16}{rto(region['worst_failover']):<22}"
            f"{rto(region['worst_failback']):<22}{region['status']}"
        )
    counts: dict[str, int] = {}
    for scenario in data["scenarios"]:
        counts[scenario["outcome"]] = counts.get(scenario["outcome"], 0) + 1
    lines.append("")
    lines.append(
        " scenarios: "
        + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("passed", "failed", "error", "skipped"))
    )
    broken = [s for s in data["scenarios"] if s["outcome"] in ("failed", "error")]
    for scenario in broken[:5]:
        lines.append(f"  x {_clip(scenario['nodeid'], 100)}")
    if len(broken) > 5:
        lines.append(f"    ... and {len(broken) - 5} more")
    lines.append(f" report: {report_html}")
    lines.append(_RULE)
    return lines


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "\u2026"


# ---------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regiondrill", description="Chaos and DR validation for multi-region private APIs."
    )
    parser.add_argument("--version", action="version", version=f"regiondrill {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    lab = commands.add_parser("lab", help="run the offline lab twin").add_subparsers(
        dest="lab_command", required=True, metavar="LAB_COMMAND"
    )
    serve = lab.add_parser("serve", help="run the lab in the foreground until interrupted")
    _config_options(serve)
    serve.add_argument(
        "--deploy", action="store_true", help="provision the default stack set first"
    )
    serve.add_argument("--state-file", help="write the lab's connection JSON here (mode 0600)")
    serve.add_argument("--port", type=int, default=0, help="API port (default: any free port)")
    serve.set_defaults(func=cmd_lab_serve)

    render = commands.add_parser("render", help="write the rendered CloudFormation templates")
    _config_options(render, lab=False)
    render.add_argument("--out", required=True, help="output directory")
    render.set_defaults(func=cmd_render)

    stacks = commands.add_parser("stacks", help="find or delete regiondrill stacks").add_subparsers(
        dest="stacks_command", required=True, metavar="STACKS_COMMAND"
    )
    listing = stacks.add_parser("list", help="list regiondrill-tagged stacks")
    _config_options(listing)
    listing.add_argument("--run-id", help="only this run's stacks")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_stacks_list)
    delete = stacks.add_parser("delete", help="delete every stack of a run")
    _config_options(delete)
    delete.add_argument("--run-id", required=True, help="the run whose stacks to delete")
    delete.set_defaults(func=cmd_stacks_delete)

    restore = commands.add_parser(
        "restore", help="restore faults left injected by an interrupted run (from the fault ledger)"
    )
    _config_options(restore)
    restore.add_argument("--report-dir", help="where the fault ledger is (default: reports/)")
    restore.set_defaults(func=cmd_restore)

    config = commands.add_parser("config", help="inspect the configuration").add_subparsers(
        dest="config_command", required=True, metavar="CONFIG_COMMAND"
    )
    show = config.add_parser("show", help="print the validated configuration as JSON")
    _config_options(show)
    show.set_defaults(func=cmd_config_show)

    gate = commands.add_parser(
        "gate",
        help="run the CI gate (pytest -m gate) and print a one-screen DR-readiness summary",
        description=(
            "Run `pytest -m gate` (template lint, routing, API, one failover per region) with "
            "every following argument passed to pytest unchanged (e.g. --target aws, --rto 120, "
            "--report-dir DIR), then summarise reports/dr-readiness.json. Exit code: pytest's if "
            "non-zero, 1 if the verdict is NOT READY, 2 if no report was written."
        ),
    )
    gate.add_argument("pytest_args", nargs=argparse.REMAINDER, help="arguments for pytest")
    gate.set_defaults(func=lambda args: cmd_gate(args.pytest_args))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    run: Callable[[], int]
    if given[:1] == ["gate"] and given[1:2] not in (["-h"], ["--help"]):
        # Everything after `gate` belongs to pytest, options included, which argparse would
        # otherwise try to interpret.
        def run() -> int:
            return cmd_gate(given[1:])
    else:
        args = parser.parse_args(given)
        func: Callable[[argparse.Namespace], int] = args.func

        def run() -> int:
            return func(args)

    try:
        return run()
    except HarnessError as exc:
        print(f"regiondrill: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("regiondrill: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
