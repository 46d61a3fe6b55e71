"""Schemathesis against a served project: every operation of its OpenAPI schema.

The checks: no 5xx, and every response documented by status code, content type, headers
and schema. Bounded by ``FUZZ_MAX_EXAMPLES`` cases per operation and phase (10 by
default, enough for CI) and a ``FUZZ_TIMEOUT_S`` for the whole run; the README's testing
section gives the long run. With ``auth=True`` every request carries a bearer token of a
user registered for it (``fuzz_auth.py``).
"""

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .e2e import Server
from .project import REPO_ROOT, tool

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "10"))
TIMEOUT_S = float(os.environ.get("FUZZ_TIMEOUT_S", "600"))


@dataclass
class FuzzRun:
    report: dict[str, Any]
    output: str

    @property
    def cases(self) -> int:
        return int(self.report["test_cases"]["generated"])

    @property
    def failures(self) -> list[dict[str, Any]]:
        return list(self.report["failures"]) + list(self.report["errors"])

    def summary(self) -> str:
        operations = self.report["operations"]
        return (
            f"{self.cases} cases over {operations['tested']}/{operations['total']} operations, "
            f"{len(self.failures)} kinds of failure"
        )


def fuzz(server: Server, report_dir: Path, *, auth: bool = False) -> FuzzRun:
    """Run schemathesis against ``server``'s ``/openapi.json`` and return its JSON report."""
    command = [
        tool("schemathesis"),
        "run",
        f"{server.base_url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--report",
        "json",
        "--report-dir",
        str(report_dir),
    ]
    # Run in the report folder: schemathesis keeps a cache of crashes in its working folder.
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if auth:
        env |= {"SCHEMATHESIS_HOOKS": "tests.fuzz_auth", "FUZZ_BASE_URL": server.base_url}
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        cwd=report_dir,
        env=env,
    )
    [path] = report_dir.glob("json-*.json")
    # The output quotes every failing request, bodies of megabytes included: keep the end.
    return FuzzRun(json.loads(path.read_text()), (result.stdout + result.stderr)[-20_000:])
