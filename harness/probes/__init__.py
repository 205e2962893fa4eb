"""Build ``dig``/``curl`` command lines for bastions and parse what the real tools print.

Builders return one shell-safe command string (every value validated, then ``shlex``-quoted)
because executors send a single command line over SSM or SSH. Parsers are pure functions over
(stdout, stderr, exit status) that never raise on arbitrary text: a failed probe is data for
the failover timeline, not an exception. The formats followed are those of real BIND ``dig``
9.16-9.18 and curl 7.68+/8.x, which the lab's shims imitate; ``tests/probes/fixtures`` holds
outputs captured from the real tools.
"""

from __future__ import annotations

from harness.probes.curl import (
    CURL_EXIT_CODES,
    DEFAULT_WRITE_OUT,
    CurlRequest,
    CurlResult,
    build_curl_command,
    exit_code_meaning,
    parse_curl,
)
from harness.probes.dig import (
    DIG_EXIT_CODES,
    NO_RESPONSE_STATUSES,
    DigQuery,
    DigRecord,
    DigResult,
    build_dig_command,
    dig_exit_code_meaning,
    parse_dig,
)

__all__ = [
    "CURL_EXIT_CODES",
    "DEFAULT_WRITE_OUT",
    "DIG_EXIT_CODES",
    "NO_RESPONSE_STATUSES",
    "CurlRequest",
    "CurlResult",
    "DigQuery",
    "DigRecord",
    "DigResult",
    "build_curl_command",
    "build_dig_command",
    "dig_exit_code_meaning",
    "exit_code_meaning",
    "parse_curl",
    "parse_dig",
]
