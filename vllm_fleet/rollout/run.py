"""The run: the gateways and monitoring hosts brought up to date, then each batch drained at the
gateways that front it, deployed, verified and put back in rotation; whatever stops it ends in
the report, with the hosts it left drained put back or named."""

from __future__ import annotations

import subprocess
import sys
import time

from vllm_fleet.pyinfra_log import last_operations, redact
from vllm_fleet.rollout.batches import parse_batch, select, split_batches, units_of
from vllm_fleet.rollout.report import report
from vllm_fleet.rollout.runner import deploy, gateway_helper, plan, verify, verify_limit
from vllm_fleet.rollout.state import FAILED, NOT_STARTED, ROLLED_BACK, SERVING, UNREACHABLE, Rollout


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
        problem = gateway_helper(rollout.inventory, gateways, action, rollout.drain_timeout, servers)
        if problem:
            problems.append(problem)
        elif action != "drain":
            for name in servers:
                rollout.drained[name].difference_update(gateways)
    return "; ".join(problems)


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
        stopped = why(exc, "plan")
        print(f"vllm_fleet rollout: {stopped}", file=sys.stderr)
        unplanned = Rollout(args.inventory, [], {}, 0, 0, stopped=stopped, interrupted=exc)
        return report(unplanned, args.junit_xml, time.monotonic() - started)
    refused = {name: p.refused for name, p in plans.items() if p.refused}
    if refused:
        print("vllm_fleet rollout: refused before touching any host:", file=sys.stderr)
        for name, reason in refused.items():
            print(f"  {name}: {reason}", file=sys.stderr)
        return 2
    gateways = {name: list(p.backends) for name, p in plans.items() if p.role == "gateway"}
    monitors = [name for name, p in plans.items() if p.role == "monitoring"]
    hosts = select([name for name in plans if name not in gateways and name not in monitors], args.limit)
    if not hosts:
        print(f"vllm_fleet rollout: no vLLM host of {args.inventory} matches --limit {args.limit}", file=sys.stderr)
        return 2
    drain_timeout = max((plans[g].drain_timeout for g in gateways), default=0)
    units = units_of(hosts, plans)
    rollout = Rollout(
        args.inventory,
        split_batches([name for unit in units for name in unit], args.canary, batch, units),
        gateways,
        drain_timeout,
        args.max_failures,
        say=lambda line: print(f"[rollout] {line}", flush=True),
        deploy_limits={name: p.deploy_limit for name, p in plans.items()},
        verify_timeout=getattr(args, "verify_timeout", None),
        monitors=monitors,
    )
    execute(rollout)
    return report(rollout, args.junit_xml, time.monotonic() - started)
