"""The ``regiondrill`` command line (also ``python -m harness``).

Subcommands:
  lab serve       run the lab in the foreground (optionally deploying the default stack)
  render          write the rendered CloudFormation stack set for the configured regions
  stacks list     list stacks tagged by regiondrill (find orphans)
  stacks delete   delete every stack of a run id
  restore         restore faults an interrupted run left injected (reads the fault ledger)
  config show     print the validated configuration as JSON
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except HarnessError as exc:
        print(f"regiondrill: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("regiondrill: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
