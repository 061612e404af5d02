"""The rollout's steps: planning (in this process), then its subprocesses, each under a time
limit: pyinfra's deploy, the verify suite and the gateways' helper; and what each host's outcome
was, read from their results."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from vllm_fleet import paths, releases
from vllm_fleet.ansible_inventory import pyinfra_inventory
from vllm_fleet.plan import plan_inventory
from vllm_fleet.pyinfra_log import failure, host_log, redact, tail
from vllm_fleet.repository import REPO, VERIFY_SUITE
from vllm_fleet.rollout.plans import FleetPlan, PlannedHost
from vllm_fleet.rollout.state import CHANGED, FAILED, ROLLED_BACK, UNCHANGED, UNREACHABLE

PYINFRA = str(Path(sys.executable).parent / "pyinfra")

# Time limits, in seconds. The verify suite runs on one host after another; SSH gives up after 15 s and each request
# after 30 s, so a host that hangs still ends within this.
VERIFY_START, VERIFY_PER_HOST = 120, 300
# The gateway helper waits at most the drain timeout itself; this is pyinfra connecting.
GATEWAY_MARGIN = 120


def _run(cmd: list[str], timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def limit_args(names: list[str]) -> list[str]:
    """pyinfra's arguments selecting these hosts: it matches `--limit a,b` as one name, so one each."""
    return [arg for name in names for arg in ("--limit", name)]


def plan(inventory: str) -> dict[str, PlannedHost]:
    """Every host's plan, as `vllm-fleet plan` shows it (host data only: no host is reached)."""
    return FleetPlan.model_validate({"hosts": plan_inventory(inventory)}).hosts


def deploy(inventory: str, names: list[str], timeout: int) -> dict[str, tuple[str, str]]:
    """pyinfra's deploy of these hosts; returns {host: (state, reason)}."""
    done = _run([PYINFRA, "-y", "--json", *limit_args(names), pyinfra_inventory(inventory), "deploy.py"], timeout)
    try:
        report = json.loads(done.stdout)["results"]
    except (json.JSONDecodeError, KeyError):
        # When every host failed, pyinfra stops ("No hosts remaining!") without its results.
        report = {"operations": [], "failed_hosts": list(names)}
    return classify(names, report, done.stderr)


def classify(names: list[str], report: dict, log: str) -> dict[str, tuple[str, str]]:
    """Each host's outcome from pyinfra's --json results and its log."""
    outcomes = {}
    activations = releases.outcomes_in(log)
    operations = report.get("operations", [])
    for name in names:
        entries = host_log(name, log, names)
        lines = [line for _, line in entries]
        # pyinfra lists a failed host in the error of every operation it did not finish: the
        # first is the one that failed.
        errors = [op["name"] for op in operations if name in op["error"]]
        changed = any(name in op["success"] for op in operations)
        seen = any(name in op[k] for op in operations for k in ("success", "error", "no_change"))
        activation = activations.get(name)
        connect = [line for line in lines if line.startswith("Could not connect")]
        if connect and not seen:
            outcomes[name] = (UNREACHABLE, redact(connect[0]))
        elif activation and activation.outcome == releases.ROLLED_BACK:
            outcomes[name] = (ROLLED_BACK, activation.message)
        elif errors or name in report.get("failed_hosts", []):
            failed_activation = activation.message if activation and activation.outcome == releases.FAILED else ""
            outcomes[name] = (FAILED, failure(errors[0] if errors else "", entries, failed_activation, log))
        else:
            outcomes[name] = (CHANGED if changed else UNCHANGED, "")
    return outcomes


def verify_command(inventory: str, names: list[str], *options: str) -> list[str]:
    """The verify suite on these hosts (all with no names), run from this repository."""
    suite = [sys.executable, "-m", "pytest", str(VERIFY_SUITE), "--inventory", inventory, *limit_args(names)]
    return [*suite, "-p", "no:cacheprovider", *options]


def verify_limit(names: list[str]) -> int:
    return VERIFY_START + VERIFY_PER_HOST * len(names)


def verify(inventory: str, names: list[str], timeout: int) -> dict[str, str]:
    """The verify suite on these hosts; returns {host: what failed} for the hosts that did not pass."""
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "verify.xml"
        done = _run(verify_command(inventory, names, "-q", "--junit-xml", str(junit)), timeout)
        if not junit.exists():
            return {name: f"the verify suite did not run: {tail(done.stdout + done.stderr)}" for name in names}
        failed: dict[str, list[str]] = {}
        # Our own pytest run's report, written just now: not untrusted input.
        for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314
            if case.find("failure") is None and case.find("error") is None:
                continue
            test, _, host = case.get("name", "").partition("[")
            failed.setdefault(host.rstrip("]"), []).append(test)
    return {name: "verify suite failed: " + ", ".join(failed[name]) for name in names if name in failed}


def gateway_helper(inventory: str, gateways: list[str], action: str, drain_timeout: int, servers: Sequence[str]) -> str:
    """The gateway helper's action (drain, ready or restore) on these vLLM hosts at these gateways,
    through pyinfra; returns what went wrong, or ''."""
    control = [paths.GATEWAY_SCRIPT, action, str(drain_timeout), *servers]
    command = [PYINFRA, "-y", *limit_args(gateways), pyinfra_inventory(inventory), "exec", "--", *control]
    done = _run(command, drain_timeout + GATEWAY_MARGIN)
    return f"{', '.join(gateways)}: {tail(done.stderr + done.stdout)}" if done.returncode != 0 else ""
