"""python -m vllm_fleet rollout: a fleet brought to its new settings in verified batches.

Plan every host first (one invalid host refuses the whole rollout), bring the gateways up
to date, then deploy the canary hosts and the rest in batches with pyinfra's own CLI
(`--limit`), each batch drained at the gateways before it restarts, verified with the
verify suite, and put back in rotation only once it verifies. A batch whose failures take
the count past --max-failures stops the rollout: later hosts are not touched. A host that
does not come up goes back to its previous release by itself (templates/vllm-activate.sh.j2).
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vllm_fleet import paths, releases
from vllm_fleet.ansible_inventory import pyinfra_inventory

REPO = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).parent / "pyinfra")

CHANGED, UNCHANGED, FAILED, ROLLED_BACK, UNREACHABLE, NOT_STARTED = (
    "changed",
    "unchanged",
    "failed",
    "rolled back",
    "unreachable",
    "not started",
)
SERVING = (CHANGED, UNCHANGED)


@dataclass
class HostResult:
    name: str
    batch: int
    state: str = NOT_STARTED
    reason: str = ""
    seconds: float = 0.0


@dataclass
class Rollout:
    inventory: str
    batches: list[list[str]]
    gateways: list[str]
    drain_timeout: int
    max_failures: int
    say: Callable[[str], None] = print
    results: dict[str, HostResult] = field(default_factory=dict)
    stopped: str = ""

    def __post_init__(self):
        for number, batch in enumerate(self.batches, 1):
            for name in batch:
                self.results[name] = HostResult(name, number)

    @property
    def failures(self) -> int:
        return sum(r.state in (FAILED, ROLLED_BACK) for r in self.results.values())

    @property
    def completed(self) -> bool:
        return all(r.state in SERVING for r in self.results.values())


# --- what to roll out, in which order ------------------------------------------------------


def parse_batch(text: str) -> tuple[int, bool]:
    """'3' (hosts) or '25%' (of the hosts rolled out); returns (number, is_percent)."""
    match = re.fullmatch(r"([1-9][0-9]*)(%?)", text.strip())
    if not match or (match[2] and int(match[1]) > 100):
        raise ValueError(f"--batch {text!r}: a number of hosts such as 2, or a percentage from 1% to 100%")
    return int(match[1]), bool(match[2])


def split_batches(hosts: list[str], canary: int, batch: tuple[int, bool]) -> list[list[str]]:
    """The canary batch (the first `canary` hosts), then batches of the rest."""
    number, percent = batch
    size = max(1, math.ceil(len(hosts) * number / 100)) if percent else number
    first, rest = hosts[:canary], hosts[canary:]
    return ([first] if first else []) + [rest[i : i + size] for i in range(0, len(rest), size)]


def select(names: list[str], limits: list[str]) -> list[str]:
    """Hosts matching any --limit (a name or a glob), in inventory order; all with no --limit."""
    if not limits:
        return names
    return [n for n in names if any(fnmatch.fnmatchcase(n, pattern) for pattern in limits)]


# --- running pyinfra and the verify suite ----------------------------------------------------


def _run(cmd: list[str], timeout: int = 7200) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def limit_args(names: list[str]) -> list[str]:
    """pyinfra's arguments selecting these hosts: it matches `--limit a,b` as one name, so one each."""
    return [arg for name in names for arg in ("--limit", name)]


def plan(inventory: str) -> dict[str, dict]:
    """Every host's plan, from `python -m vllm_fleet plan` (run apart: pyinfra's CLI patches the
    process it is imported into)."""
    done = _run([sys.executable, "-m", "vllm_fleet", "plan", inventory, "--format", "json"])
    try:
        return json.loads(done.stdout)["hosts"]
    except (json.JSONDecodeError, KeyError):
        raise SystemExit(f"vllm_fleet rollout: planning {inventory} failed:\n{done.stderr.strip()[-3000:]}") from None


def deploy(inventory: str, names: list[str]) -> dict[str, tuple[str, str]]:
    """pyinfra's deploy of these hosts; returns {host: (state, reason)}."""
    done = _run([PYINFRA, "-y", "--json", *limit_args(names), pyinfra_inventory(inventory), "deploy.py"])
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
    for name in names:
        # A failed command's output comes without pyinfra's [host] prefix; our scripts name the host.
        mentions = re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])")
        lines = [line.strip().removeprefix(f"[{name}]").strip() for line in log.splitlines() if mentions.search(line)]
        errors = [op["name"] for op in report.get("operations", []) if name in op["error"]]
        changed = any(name in op["success"] for op in report.get("operations", []))
        seen = any(name in op[k] for op in report.get("operations", []) for k in ("success", "error", "no_change"))
        activation = activations.get(name)
        connect = [line for line in lines if line.startswith("Could not connect")]
        if connect and not seen:
            outcomes[name] = (UNREACHABLE, connect[0])
        elif activation and activation.outcome == releases.ROLLED_BACK:
            outcomes[name] = (ROLLED_BACK, activation.message)
        elif errors or name in report.get("failed_hosts", []):
            detail = [line for line in lines if line.startswith(("stopped:", "pre-flight refused:"))]
            if activation and activation.outcome == releases.FAILED:
                detail.append(activation.message)
            reason = f"step '{errors[0]}' failed" if errors else f"failed: {_tail(log, 1)}"
            outcomes[name] = (FAILED, "; ".join([reason, *detail[-2:]]))
        else:
            outcomes[name] = (CHANGED if changed else UNCHANGED, "")
    return outcomes


def verify_command(inventory: str, names: list[str], *options: str) -> list[str]:
    """The verify suite on these hosts (all with no names), run from this repository."""
    suite = [sys.executable, "-m", "pytest", "tests/verify", "--inventory", inventory, *limit_args(names)]
    return [*suite, "-p", "no:cacheprovider", *options]


def verify(inventory: str, names: list[str]) -> dict[str, str]:
    """The verify suite on these hosts; returns {host: what failed} for the hosts that did not pass."""
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "verify.xml"
        done = _run(verify_command(inventory, names, "-q", "--junit-xml", str(junit)))
        if not junit.exists():
            return {name: f"the verify suite did not run: {_tail(done.stdout + done.stderr)}" for name in names}
        failed: dict[str, list[str]] = {}
        # Our own pytest run's report, written just now: not untrusted input.
        for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314
            if case.find("failure") is None and case.find("error") is None:
                continue
            test, _, host = case.get("name", "").partition("[")
            failed.setdefault(host.rstrip("]"), []).append(test)
    return {name: "verify suite failed: " + ", ".join(failed[name]) for name in names if name in failed}


def gateway_control(inventory: str, gateways: list[str], action: str, timeout: int, names: list[str]) -> str:
    """drain / ready / restore these vLLM hosts at every gateway; returns what went wrong, or ''."""
    if not gateways or not names:
        return ""
    control = [paths.GATEWAY_SCRIPT, action, str(timeout), *names]
    done = _run([PYINFRA, "-y", *limit_args(gateways), pyinfra_inventory(inventory), "exec", "--", *control])
    return "" if done.returncode == 0 else _tail(done.stderr + done.stdout)


def _tail(text: str, lines: int = 6) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


# --- the rollout -----------------------------------------------------------------------------


def run_batch(rollout: Rollout, number: int, batch: list[str]) -> None:
    say, inventory = rollout.say, rollout.inventory
    label = "canary" if number == 1 and len(rollout.batches) > 1 else f"{len(batch)} host(s)"
    say(f"batch {number} of {len(rollout.batches)} ({label}): {', '.join(batch)}")
    started = time.monotonic()
    problem = gateway_control(inventory, rollout.gateways, "drain", rollout.drain_timeout, batch)
    if problem:
        rollout.stopped = f"draining batch {number} at the gateways failed, so nothing of it was deployed: {problem}"
        gateway_control(inventory, rollout.gateways, "restore", rollout.drain_timeout, batch)
        return
    if rollout.gateways:
        say(f"  drained at {', '.join(rollout.gateways)}")
    outcomes = deploy(inventory, batch)
    serving = [name for name in batch if outcomes[name][0] in SERVING]
    verdicts = verify(inventory, serving) if serving else {}
    for name in batch:
        state, reason = outcomes[name]
        if name in verdicts:
            state, reason = FAILED, verdicts[name]
        result = rollout.results[name]
        result.state, result.reason, result.seconds = state, reason, time.monotonic() - started
        say(f"  {name}: {state}" + (f" ({reason})" if reason else ""))
    # Back in rotation: hosts that verified, and rolled-back hosts (their previous release
    # serves); unreachable ones are left to the health checks; failed ones stay drained.
    back = [n for n in batch if rollout.results[n].state in (*SERVING, ROLLED_BACK)]
    problem = gateway_control(inventory, rollout.gateways, "ready", rollout.drain_timeout, back)
    unreachable = [n for n in batch if rollout.results[n].state == UNREACHABLE]
    gateway_control(inventory, rollout.gateways, "restore", rollout.drain_timeout, unreachable)
    if problem:
        rollout.stopped = f"batch {number} did not come back into rotation at the gateways: {problem}"
    elif rollout.gateways and back:
        say(f"  back in rotation: {', '.join(back)}")


def execute(rollout: Rollout, gateway_hosts: list[str]) -> None:
    say = rollout.say
    if gateway_hosts:
        say(f"gateways: {', '.join(gateway_hosts)}")
        outcomes = deploy(rollout.inventory, gateway_hosts)
        bad = {n: o for n, o in outcomes.items() if o[0] not in SERVING}
        for name, (state, reason) in outcomes.items():
            say(f"  {name}: {state}" + (f" ({reason})" if reason else ""))
        if bad:
            rollout.stopped = "a gateway could not be brought up to date, so no vLLM host was touched"
            return
    for number, batch in enumerate(rollout.batches, 1):
        run_batch(rollout, number, batch)
        if rollout.stopped:
            break
        if rollout.failures > rollout.max_failures:
            rollout.stopped = (
                f"{rollout.failures} host(s) failed or rolled back, more than --max-failures {rollout.max_failures}"
            )
            break


# --- the report --------------------------------------------------------------------------------


def table(rollout: Rollout) -> str:
    rows = [("host", "batch", "state", "reason")]
    rows += [(r.name, str(r.batch), r.state, r.reason) for r in rollout.results.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in rows
    )


def junit(rollout: Rollout) -> str:
    results = list(rollout.results.values())
    suite = ET.Element(
        "testsuite",
        name="vllm-fleet rollout",
        tests=str(len(results)),
        failures=str(sum(r.state in (FAILED, ROLLED_BACK, UNREACHABLE) for r in results)),
        skipped=str(sum(r.state == NOT_STARTED for r in results)),
        time=f"{sum(r.seconds for r in results):.1f}",
    )
    for r in results:
        case = ET.SubElement(
            suite, "testcase", classname=f"rollout.batch{r.batch}", name=r.name, time=f"{r.seconds:.1f}"
        )
        if r.state in (FAILED, ROLLED_BACK, UNREACHABLE):
            ET.SubElement(case, "failure", message=f"{r.state}: {r.reason}", type=r.state.replace(" ", "_"))
        elif r.state == NOT_STARTED:
            ET.SubElement(case, "skipped", message=f"not started: {rollout.stopped}")
        else:
            ET.SubElement(case, "system-out").text = r.state
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def main(args) -> int:
    try:
        batch = parse_batch(args.batch)
    except ValueError as exc:
        print(f"vllm_fleet rollout: {exc}", file=sys.stderr)
        return 2
    plans = plan(args.inventory)
    refused = {name: p["refused"] for name, p in plans.items() if p.get("refused")}
    if refused:
        print("vllm_fleet rollout: refused before touching any host:", file=sys.stderr)
        for name, reason in refused.items():
            print(f"  {name}: {reason}", file=sys.stderr)
        return 2
    gateways = [name for name, p in plans.items() if p.get("role") == "gateway"]
    hosts = select([name for name in plans if name not in gateways], args.limit)
    if not hosts:
        print(f"vllm_fleet rollout: no vLLM host of {args.inventory} matches --limit {args.limit}", file=sys.stderr)
        return 2
    drain_timeout = max((plans[g]["drain_timeout"] for g in gateways), default=0)
    rollout = Rollout(
        args.inventory,
        split_batches(hosts, args.canary, batch),
        gateways,
        drain_timeout,
        args.max_failures,
        say=lambda line: print(f"[rollout] {line}", flush=True),
    )
    started = time.monotonic()
    execute(rollout, gateways)
    print()
    print(table(rollout))
    if args.junit_xml:
        Path(args.junit_xml).parent.mkdir(parents=True, exist_ok=True)
        Path(args.junit_xml).write_text(junit(rollout))
    took = time.monotonic() - started
    if rollout.stopped:
        print(f"\nrollout STOPPED after {took:.0f}s: {rollout.stopped}")
    elif rollout.completed:
        print(f"\nrollout completed in {took:.0f}s: every host serves its new release")
    else:
        print(f"\nrollout went through every batch in {took:.0f}s, but not every host serves its new release")
    return 0 if rollout.completed else 1
