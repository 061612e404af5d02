"""python -m vllm_fleet rollout: a fleet brought to its new settings in verified batches.

Plan every host first (one invalid host refuses the whole rollout), bring the gateways and
monitoring hosts up to date, then deploy the canary hosts and the rest in batches with pyinfra's own CLI
(`--limit`), each batch drained before it restarts at the gateways that front its hosts,
verified with the verify suite, and put back in rotation only once it verifies. A batch whose
failures take the count past --max-failures stops the rollout: later hosts are not touched. A
host that does not come up goes back to its previous release by itself
(templates/vllm-activate.sh.j2).

Every step has a time limit. A step that passes it, Ctrl-C, or any other error stops the
rollout with the interrupted batch's hosts failed, saying which step; the hosts it left drained
are put back into rotation (or named in the report as left drained), and the table and the
JUnit report are written all the same.
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
from vllm_fleet.pyinfra_log import failure, host_log, last_operations, redact, tail
from vllm_fleet.repository import REPO, VERIFY_SUITE
from vllm_fleet.settings import Settings

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

# Time limits, in seconds. Planning reads host data only (no SSH), so it has a fixed one.
PLAN_TIMEOUT = 300
# No knob bounds installing packages, pulling an image or the GPU driver's reboot (900 s of
# its own): the deploy gets this on top of what its knobs allow.
DEPLOY_MARGIN = 1800
# The verify suite runs on one host after another; SSH gives up after 15 s and each request
# after 30 s, so a host that hangs still ends within this.
VERIFY_START, VERIFY_PER_HOST = 120, 300
# The gateway helper waits at most the drain timeout itself; this is pyinfra connecting.
GATEWAY_MARGIN = 120


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
    gateways: dict[str, list[str]]  # each gateway and the vLLM hosts it fronts
    drain_timeout: int
    max_failures: int
    say: Callable[[str], None] = print
    deploy_limits: dict[str, int] = field(default_factory=dict)  # host: seconds its deploy may take
    verify_timeout: int | None = None  # seconds the verify suite may take per batch; None: verify_limit
    monitors: list[str] = field(default_factory=list)  # monitoring hosts, brought up to date with the gateways
    results: dict[str, HostResult] = field(default_factory=dict)
    stopped: str = ""
    drained: dict[str, set[str]] = field(default_factory=dict)  # host: gateways it may be drained at
    batch: int = 0  # the batch under way, 0 between batches
    step: str = ""  # the step under way, for the reason when it does not end by itself
    interrupted: BaseException | None = None

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

    @property
    def left_drained(self) -> dict[str, list[str]]:
        return {name: sorted(at) for name, at in self.drained.items() if at}

    def deploy_limit(self, names: list[str]) -> int:
        # pyinfra deploys a batch's hosts side by side: the slowest one sets the limit.
        return max((self.deploy_limits.get(name, deploy_limit({})) for name in names), default=DEPLOY_MARGIN)


# --- what to roll out, in which order ------------------------------------------------------


def parse_batch(text: str) -> tuple[int, bool]:
    """'3' (hosts) or '25%' (of the hosts rolled out); returns (number, is_percent)."""
    match = re.fullmatch(r"([1-9][0-9]*)(%?)", text.strip())
    if not match or (match[2] and int(match[1]) > 100):
        raise ValueError(f"--batch {text!r}: a number of hosts such as 2, or a percentage from 1% to 100%")
    return int(match[1]), bool(match[2])


def split_batches(
    hosts: list[str], canary: int, batch: tuple[int, bool], units: list[list[str]] | None = None
) -> list[list[str]]:
    """The canary batch (the first `canary` hosts), then batches of the rest. units: the hosts that
    move together (a cluster's members, cluster.units): counted as one host each, never split."""
    units = units if units is not None else [[name] for name in hosts]
    number, percent = batch
    size = max(1, math.ceil(len(units) * number / 100)) if percent else number
    first, rest = units[:canary], units[canary:]
    grouped = ([first] if first else []) + [rest[i : i + size] for i in range(0, len(rest), size)]
    return [[name for unit in group for name in unit] for group in grouped]


def units_of(hosts: list[str], plans: dict[str, dict]) -> list[list[str]]:
    """The hosts as the rollout moves them: a cluster's members together (all of them, whichever
    --limit named), every other host alone."""
    units: list[list[str]] = []
    for name in hosts:
        members = (plans[name].get("cluster") or {}).get("members") or [name]
        if members not in units:
            units.append(list(members))
    return units


def select(names: list[str], limits: list[str]) -> list[str]:
    """Hosts matching any --limit (a name or a glob), in inventory order; all with no --limit."""
    if not limits:
        return names
    return [n for n in names if any(fnmatch.fnmatchcase(n, pattern) for pattern in limits)]


def deploy_limit(host_plan: dict) -> int:
    """The seconds a host's deploy may take by its plan's settings (their defaults where the plan
    has none, as a gateway's has not): the package lock, the download, a Nix build, the new
    release's start and, when it does not come up, the previous one's."""
    values = {name: knob["value"] for name, knob in host_plan.get("settings", {}).items()}

    def knob(name: str):
        return values.get(name, Settings.model_fields[name].default)

    limit = DEPLOY_MARGIN + knob("package_lock_timeout")
    if host_plan.get("role") in ("gateway", "monitoring"):
        return limit
    limit += 2 * knob("vllm_ready_timeout")
    if knob("serving_method") == "nix":
        limit += knob("nix_build_timeout")
    elif knob("vllm_download_weights"):
        limit += knob("vllm_download_timeout")
    return limit


def verify_limit(names: list[str]) -> int:
    return VERIFY_START + VERIFY_PER_HOST * len(names)


# --- running pyinfra and the verify suite ----------------------------------------------------


def _run(cmd: list[str], timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def limit_args(names: list[str]) -> list[str]:
    """pyinfra's arguments selecting these hosts: it matches `--limit a,b` as one name, so one each."""
    return [arg for name in names for arg in ("--limit", name)]


class PlanFailed(RuntimeError):
    pass


def plan(inventory: str) -> dict[str, dict]:
    """Every host's plan, from `python -m vllm_fleet plan` (run apart: pyinfra's CLI patches the
    process it is imported into)."""
    done = _run([sys.executable, "-m", "vllm_fleet", "plan", inventory, "--format", "json"], PLAN_TIMEOUT)
    try:
        return json.loads(done.stdout)["hosts"]
    except (json.JSONDecodeError, KeyError):
        raise PlanFailed(f"planning {inventory} failed:\n{redact(done.stderr.strip()[-3000:])}") from None


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


def gateway_control(rollout: Rollout, action: str, names: list[str]) -> str:
    """drain these vLLM hosts at the gateways that front them, or ready / restore them where they
    are drained; returns what went wrong, or ''. A gateway's helper fails on a host it does not
    front, so each gateway is given only its own."""
    at: dict[tuple[str, ...], list[str]] = {}
    for gateway, fronted in rollout.gateways.items():
        if action == "drain":
            servers = tuple(n for n in names if n in fronted)
        else:
            servers = tuple(n for n in names if gateway in rollout.drained.get(n, ()))
        if servers:
            at.setdefault(servers, []).append(gateway)
    problems = []
    for servers, gateways in at.items():
        if action == "drain":
            # Counted before the helper runs: one cut short may have drained some already.
            for name in servers:
                rollout.drained.setdefault(name, set()).update(gateways)
        rollout.step = f"{action} at {', '.join(gateways)}"
        control = [paths.GATEWAY_SCRIPT, action, str(rollout.drain_timeout), *servers]
        command = [PYINFRA, "-y", *limit_args(gateways), pyinfra_inventory(rollout.inventory), "exec", "--", *control]
        done = _run(command, rollout.drain_timeout + GATEWAY_MARGIN)
        if done.returncode != 0:
            problems.append(f"{', '.join(gateways)}: {tail(done.stderr + done.stdout)}")
        elif action != "drain":
            for name in servers:
                rollout.drained[name].difference_update(gateways)
    return "; ".join(problems)


# --- the rollout -----------------------------------------------------------------------------


def run_batch(rollout: Rollout, number: int, batch: list[str]) -> None:
    say, inventory = rollout.say, rollout.inventory
    rollout.batch = number
    label = "canary" if number == 1 and len(rollout.batches) > 1 else f"{len(batch)} host(s)"
    say(f"batch {number} of {len(rollout.batches)} ({label}): {', '.join(batch)}")
    started = time.monotonic()
    problem = gateway_control(rollout, "drain", batch)
    if problem:
        rollout.stopped = f"draining batch {number} at the gateways failed, so nothing of it was deployed: {problem}"
        gateway_control(rollout, "restore", batch)
        rollout.batch, rollout.step = 0, ""
        return
    drained = rollout.left_drained
    for name in batch:
        if name in drained:
            say(f"  {name}: drained at {', '.join(drained[name])}")
        elif rollout.gateways:
            say(f"  {name}: fronted by no gateway, deployed without draining")
    rollout.step = "deploy"
    outcomes = deploy(inventory, batch, rollout.deploy_limit(batch))
    serving = [name for name in batch if outcomes[name][0] in SERVING]
    rollout.step = "verify suite"
    verdicts = verify(inventory, serving, rollout.verify_timeout or verify_limit(serving)) if serving else {}
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
    problem = gateway_control(rollout, "ready", back)
    unreachable = [n for n in batch if rollout.results[n].state == UNREACHABLE]
    # Hosts a gateway did not see UP in time are left to its health checks, not drained.
    gateway_control(rollout, "restore", [*unreachable, *back])
    if problem:
        rollout.stopped = f"batch {number} did not come back into rotation at the gateways: {problem}"
    elif rollout.gateways and any(n in rollout.drained for n in back):
        say(f"  back in rotation: {', '.join(n for n in back if n in rollout.drained)}")
    rollout.batch, rollout.step = 0, ""


def execute(rollout: Rollout) -> None:
    """The rollout; whatever stops it (a step past its limit, Ctrl-C, any error) ends in
    rollout.stopped and the results, never in a traceback with hosts drained unsaid."""
    try:
        _execute(rollout)
    except (Exception, KeyboardInterrupt) as exc:
        interrupt(rollout, exc)


def _execute(rollout: Rollout) -> None:
    say = rollout.say
    # The gateways first, and the monitoring hosts, which then watch the batches roll out.
    if rollout.gateways or rollout.monitors:
        names = [*rollout.gateways, *rollout.monitors]
        say(f"gateways and monitoring hosts: {', '.join(names)}")
        rollout.step = "deploy of the gateways and monitoring hosts"
        outcomes = deploy(rollout.inventory, names, rollout.deploy_limit(names))
        rollout.step = ""
        bad = {n: o for n, o in outcomes.items() if o[0] not in SERVING}
        for name, (state, reason) in outcomes.items():
            say(f"  {name}: {state}" + (f" ({reason})" if reason else ""))
        if bad:
            rollout.stopped = (
                "a gateway or monitoring host could not be brought up to date, so no vLLM host was touched"
            )
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


def why(exc: BaseException, step: str) -> str:
    step = f"step '{step}'" if step else "between steps"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"{step} timed out after {exc.timeout:.0f}s"
    if isinstance(exc, KeyboardInterrupt):
        return f"interrupted (Ctrl-C) during {step}" if step != "between steps" else "interrupted (Ctrl-C)"
    return redact(f"{step} failed: {type(exc).__name__}: {exc}")


def interrupt(rollout: Rollout, exc: BaseException) -> None:
    """The interrupted batch's hosts failed, saying why; its hosts not known to be broken put
    back into rotation (the gateways' health checks decide, as for an unreachable host)."""
    rollout.interrupted = exc
    reason = why(exc, rollout.step)
    batch = rollout.batches[rollout.batch - 1] if rollout.batch else []
    where: dict[str, str] = {}
    if isinstance(exc, subprocess.TimeoutExpired) and rollout.step == "deploy":
        # What pyinfra printed before it was stopped (bytes, as subprocess leaves it on a timeout).
        log = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        where = last_operations(log, batch)
    broken = [name for name in batch if rollout.results[name].state == FAILED]
    for name in batch:
        result = rollout.results[name]
        before = result.state + (f" ({result.reason})" if result.reason else "")
        result.reason = reason + (f", pyinfra at '{redact(where[name])}'" if name in where else "")
        if result.state != NOT_STARTED:
            result.reason += f"; before that: {before}"
        result.state = FAILED
    if batch:
        rollout.stopped = f"batch {rollout.batch}: {reason}"
    elif all(r.state == NOT_STARTED for r in rollout.results.values()):
        rollout.stopped = f"{reason}, so no vLLM host was touched"
    else:
        rollout.stopped = reason
    rollout.say(f"stopped: {rollout.stopped}")
    rollout.batch = 0
    try:
        gateway_control(rollout, "restore", [name for name in batch if name not in broken])
    except (Exception, KeyboardInterrupt) as again:
        # Those it did not restore stay in rollout.drained: the report names them.
        rollout.say(f"putting batch hosts back into rotation: {why(again, rollout.step)}")
    rollout.step = ""


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
            message = f"not started: {rollout.stopped}" + (f"; {r.reason}" if r.reason else "")
            ET.SubElement(case, "skipped", message=message)
        else:
            ET.SubElement(case, "system-out").text = r.state + (f": {r.reason}" if r.reason else "")
    if not results and rollout.stopped:
        # Stopped before any host was known (planning): CI still sees a failed report, not an empty one.
        case = ET.SubElement(suite, "testcase", classname="rollout", name="plan", time="0.0")
        ET.SubElement(case, "failure", message=rollout.stopped, type="stopped")
        suite.set("tests", "1")
        suite.set("failures", "1")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def report(rollout: Rollout, junit_xml: str | None, took: float) -> int:
    """The table, the JUnit file and the verdict; the exit status."""
    drained = rollout.left_drained
    for name, gateways in drained.items():
        result = rollout.results[name]
        result.reason = "; ".join(filter(None, [result.reason, f"left drained at {', '.join(gateways)}"]))
    print()
    print(table(rollout))
    if junit_xml:
        Path(junit_xml).parent.mkdir(parents=True, exist_ok=True)
        Path(junit_xml).write_text(junit(rollout))
    if drained:
        print(
            f"\nleft drained at the gateways: {', '.join(drained)}; on the gateway, "
            f"`{paths.GATEWAY_SCRIPT} restore 0 HOST...` puts a host back into rotation"
        )
    if rollout.stopped:
        print(f"\nrollout STOPPED after {took:.0f}s: {rollout.stopped}")
    elif rollout.completed and not drained:
        print(f"\nrollout completed in {took:.0f}s: every host serves its new release")
    else:
        print(f"\nrollout went through every batch in {took:.0f}s, but not every host serves its new release")
    if isinstance(rollout.interrupted, KeyboardInterrupt):
        return 130
    return 0 if rollout.completed and not rollout.stopped and not drained else 1


def main(args) -> int:
    try:
        batch = parse_batch(args.batch)
    except ValueError as exc:
        print(f"vllm_fleet rollout: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        plans = plan(args.inventory)
    except (Exception, KeyboardInterrupt) as exc:
        stopped = str(exc) if isinstance(exc, PlanFailed) else why(exc, "plan")
        print(f"vllm_fleet rollout: {stopped}", file=sys.stderr)
        unplanned = Rollout(args.inventory, [], {}, 0, 0, stopped=stopped, interrupted=exc)
        return report(unplanned, args.junit_xml, time.monotonic() - started)
    refused = {name: p["refused"] for name, p in plans.items() if p.get("refused")}
    if refused:
        print("vllm_fleet rollout: refused before touching any host:", file=sys.stderr)
        for name, reason in refused.items():
            print(f"  {name}: {reason}", file=sys.stderr)
        return 2
    gateways = {name: list(p.get("backends", {})) for name, p in plans.items() if p.get("role") == "gateway"}
    monitors = [name for name, p in plans.items() if p.get("role") == "monitoring"]
    hosts = select([name for name in plans if name not in gateways and name not in monitors], args.limit)
    if not hosts:
        print(f"vllm_fleet rollout: no vLLM host of {args.inventory} matches --limit {args.limit}", file=sys.stderr)
        return 2
    drain_timeout = max((plans[g]["drain_timeout"] for g in gateways), default=0)
    units = units_of(hosts, plans)
    rollout = Rollout(
        args.inventory,
        split_batches([name for unit in units for name in unit], args.canary, batch, units),
        gateways,
        drain_timeout,
        args.max_failures,
        say=lambda line: print(f"[rollout] {line}", flush=True),
        deploy_limits={name: deploy_limit(p) for name, p in plans.items()},
        verify_timeout=getattr(args, "verify_timeout", None),
        monitors=monitors,
    )
    execute(rollout)
    return report(rollout, args.junit_xml, time.monotonic() - started)
