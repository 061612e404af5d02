"""A rollout's report: the table printed at its end, the JUnit file (one test case per host),
and its exit status."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from vllm_fleet import paths
from vllm_fleet.rollout.state import FAILED, NOT_STARTED, ROLLED_BACK, UNREACHABLE, Rollout


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
