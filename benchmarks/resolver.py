"""Measure one lab VPC resolver: queries per second and latency percentiles over loopback UDP.

Usage: ``python benchmarks/resolver.py [--seconds 3] [--clients 2] [--target 2000]``

Starts a lab, deploys the real stack set, then runs client processes (each a clean interpreter,
so the clients never share the lab's GIL) that send queries from a bastion's address in the
first region's VPC to that VPC's resolver, one outstanding query per client:

- ``hit``: the API name, answered from the resolver's cache (what probes mostly do);
- ``miss``: a fresh name in the private zone each time (full resolution, NXDOMAIN).

Prints one line per mode and a JSON summary; exits 1 if the ``hit`` rate is below ``--target``
(probing must never wait on the lab). Nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NOERROR, NXDOMAIN = 0, 3


def _wire(query_id: int, name: str) -> bytes:
    """Return a recursive A query for ``name`` (built by hand: the client must stay cheap)."""
    labels = b"".join(
        len(label).to_bytes(1, "big") + label.encode() for label in name.strip(".").split(".")
    )
    return struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\0\0\x01\0\x01"


def client(args: argparse.Namespace) -> None:
    """Send queries until the deadline; print a JSON line with counts and latencies (µs)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.source, 0))
    sock.connect((args.host, args.port))
    sock.settimeout(1.0)
    expected = NOERROR if args.mode == "hit" else NXDOMAIN
    rng = random.Random(os.getpid())
    latencies: list[int] = []
    errors = timeouts = 0
    time.sleep(max(0.0, args.start_at - time.time()))
    deadline = time.perf_counter() + args.seconds
    sequence = 0
    while True:
        sequence += 1
        query_id = rng.randrange(65536)
        name = args.name if args.mode == "hit" else f"m{os.getpid()}-{sequence}.{args.name}"
        wire = _wire(query_id, name)
        started = time.perf_counter_ns()
        if started / 1e9 >= deadline:
            break
        sock.send(wire)
        try:
            while True:
                reply = sock.recv(4096)
                if len(reply) >= 4 and struct.unpack("!H", reply[:2])[0] == query_id:
                    break
        except TimeoutError:
            timeouts += 1
            continue
        latencies.append((time.perf_counter_ns() - started) // 1000)
        if reply[3] & 0x0F != expected:
            errors += 1
    print(json.dumps({"latencies": latencies, "errors": errors, "timeouts": timeouts}))


def _percentile(values: list[int], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))])


def run_mode(
    mode: str, *, host: str, port: int, source: str, name: str, seconds: float, clients: int
) -> dict[str, Any]:
    start_at = time.time() + 1.5  # let every client interpreter start first
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--client",
        f"--mode={mode}",
        f"--host={host}",
        f"--port={port}",
        f"--source={source}",
        f"--name={name}",
        f"--seconds={seconds}",
        f"--start-at={start_at}",
    ]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(clients)
    ]
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=seconds + 60)
        if process.returncode != 0:
            raise SystemExit(f"benchmark client failed with exit code {process.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    latencies = [v for r in results for v in r["latencies"]]
    return {
        "mode": mode,
        "clients": clients,
        "queries": len(latencies),
        "qps": round(len(latencies) / seconds, 1),
        "p50_us": _percentile(latencies, 0.50),
        "p99_us": _percentile(latencies, 0.99),
        "errors": sum(r["errors"] for r in results),
        "timeouts": sum(r["timeouts"] for r in results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", default="us-east-1,us-west-2")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--target", type=float, default=2000.0, help="minimum hit q/s")
    parser.add_argument("--modes", default="hit,miss")
    # Client mode (internal): run one client process.
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--host", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        client(args)
        return 0

    from harness.aws.stacks import StackSetDeployer
    from harness.config import load_config
    from harness.lab.addresses import to_loopback
    from harness.lab.lab import Lab
    from harness.targets import lab_sessions

    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    with Lab(regions) as lab:
        config = load_config({"regions": ",".join(regions)}, environ={})
        deployment = StackSetDeployer(config, lab_sessions(lab.info)).deploy()
        first = deployment.regions[0]
        host, port = lab.resolvers.address(first.vpc_id)
        bastion = lab.topology().instances[first.bastion_ids[0]]
        source = to_loopback(bastion.address)
        warm = lab.resolvers.resolve(first.vpc_id, deployment.domain)
        if warm.rcode != "NOERROR":
            raise SystemExit(f"the API name does not resolve before the benchmark: {warm}")
        summary = []
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            name = deployment.domain if mode == "hit" else deployment.zone
            result = run_mode(
                mode,
                host=host,
                port=port,
                source=source,
                name=name,
                seconds=args.seconds,
                clients=args.clients,
            )
            summary.append(result)
            print(
                f"{mode:5s} {result['qps']:9.1f} q/s  p50 {result['p50_us'] / 1000:.2f} ms  "
                f"p99 {result['p99_us'] / 1000:.2f} ms  errors {result['errors']}  "
                f"timeouts {result['timeouts']}  ({args.clients} clients, {args.seconds:g} s)"
            )
    print(json.dumps({"resolver": summary, "target_qps": args.target}))
    hit = next((r for r in summary if r["mode"] == "hit"), None)
    if hit is not None and (hit["qps"] < args.target or hit["errors"]):
        print(f"FAIL: hit rate {hit['qps']} q/s is below the target {args.target:g} q/s")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
