"""IAM policies evaluated as AWS evaluates them, conditions included, for the contract tests.

The evaluator is the npm package @cloud-copilot/iam-simulate (every condition operator,
action, resource-ARN and context-key validation), pinned in tests/contract/iam_simulate/
(package.json, package-lock.json) and installed there by `make setup` (`npm ci`). One node
process evaluates a whole batch. Without node (or npm to install the package) the tests that
need it skip, saying so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "iam_simulate"
SCRIPT = HERE / "simulate.mjs"
PACKAGE = HERE / "node_modules" / "@cloud-copilot" / "iam-simulate"
INSTALL = f"npm ci --prefix {HERE.relative_to(HERE.parents[2])}"


@dataclass(frozen=True)
class Request:
    """One authorization AWS makes: an action on a resource, with the request's context keys."""

    action: str
    resource: str
    context: dict[str, str | list[str]] = field(default_factory=dict)
    why: str = ""  # the call that needs it, for the failure message

    def shown(self) -> str:
        context = f" with {self.context}" if self.context else " with no context keys"
        return f"{self.action} on {self.resource}{context} ({self.why})"


def node() -> str:
    """The node executable; skips the calling test when the machine has none."""
    found = shutil.which("node")
    if found is None or (not PACKAGE.is_dir() and shutil.which("npm") is None):
        pytest.skip(
            "node and npm are not installed: IAM is not evaluated with conditions "
            "(`make setup` installs them when run as root; otherwise `sudo apt-get install -y npm`, then `make setup`)"
        )
    if not PACKAGE.is_dir():
        pytest.fail(f"@cloud-copilot/iam-simulate is not installed in {HERE}: run `make setup` (or `{INSTALL}`)")
    return found


def evaluate(policy: dict, requests: list[Request], account: str, principal: str) -> list[str]:
    """Each request's decision under this identity policy: Allowed, ImplicitlyDenied or
    ExplicitlyDenied. An invalid action, ARN or context key fails the calling test."""
    payload = {
        "policies": {"policy": policy},
        "requests": [
            {
                "policy": "policy",
                "principal": principal,
                "action": r.action,
                "resource": r.resource,
                "accountId": account,
                "context": r.context,
            }
            for r in requests
        ],
    }
    done = subprocess.run(
        [node(), str(SCRIPT)], input=json.dumps(payload), capture_output=True, text=True, cwd=HERE, timeout=300, check=False
    )
    assert done.returncode == 0, f"{SCRIPT.name} failed: {done.stderr}"
    results = json.loads(done.stdout)
    errors = [f"{r.shown()}: {res['errors']}" for r, res in zip(requests, results, strict=True) if res["result"] == "Error"]
    assert not errors, "the evaluator refused requests:\n  " + "\n  ".join(errors)
    ignored = [
        f"{r.shown()}: {res['ignoredContextKeys']}" for r, res in zip(requests, results, strict=True) if res["ignoredContextKeys"]
    ]
    assert not ignored, "context keys that do not apply to the action:\n  " + "\n  ".join(ignored)
    return [res["result"] for res in results]
