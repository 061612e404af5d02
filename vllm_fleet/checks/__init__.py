"""Pre-flight checks: what goes wrong in the field, caught before anything is installed.

One fact (facts.probe.HostProbe) reads everything in a single round trip; each check is a pure
function of that probe, the host's settings and its sizing, so each is tested on
recorded outputs. A check applies to some accelerators and methods; a failed check
refuses the host unless its name is in preflight_warn_only (then it warns). The checks live by
what they look at (host, gpu, docker, nix) and run in the order the settings list them.
"""

from __future__ import annotations

from vllm_fleet.checks import docker, gpu, host, nix  # noqa: F401  (each registers its checks)
from vllm_fleet.checks.registry import APPLIES, CHECKS, METHODS, Context, Finding, check
from vllm_fleet.settings import PREFLIGHT_CHECKS

__all__ = ["CHECKS", "Context", "Finding", "check", "run_checks", "verdict"]


def run_checks(c: Context) -> list[Finding]:
    findings = []
    for name in PREFLIGHT_CHECKS:
        if c.accelerator not in APPLIES[name] or c.settings.serving_method not in METHODS[name]:
            continue
        problem = CHECKS[name](c)
        findings.append(Finding(name, problem is None, problem or "ok"))
    return findings


def verdict(findings: list[Finding], warn_only: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(failures, warnings): a failed check refuses the host unless warn_only names it."""
    failures: list[str] = []
    warnings: list[str] = []
    for finding in findings:
        if not finding.ok:
            (warnings if finding.check in warn_only else failures).append(f"{finding.check}: {finding.message}")
    return failures, warnings
