"""Metric names: those the alert rules and the dashboard read (parsed out of their PromQL), those
vllm_fleet/data/metrics/ records each exporter exporting, and those a live /metrics page holds."""

from __future__ import annotations

import csv
import re

import yaml

from vllm_fleet import dashboard
from vllm_fleet.monitoring.alerts import alert_rules
from vllm_fleet.monitoring.exporters import DCGM_COUNTERS_FILE
from vllm_fleet.repository import DATA

RECORDED = {
    "vllm": DATA / "metrics" / "vllm.txt",
    "node": DATA / "metrics" / "node-exporter.txt",
    "haproxy": DATA / "metrics" / "haproxy.txt",
    "amd_gpu": DATA / "metrics" / "amd-device-metrics-exporter.txt",
}
# PromQL's own words: functions, aggregations, keywords (a name followed by "(" is a function anyway).
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
# Series Prometheus makes itself.
SYNTHETIC = {"up", "ALERTS", "ALERTS_FOR_STATE"}


def recorded(source: str) -> set[str]:
    if source == "dcgm":
        with open(DCGM_COUNTERS_FILE) as counters:
            rows = [r for r in csv.reader(line for line in counters if line.strip() and not line.startswith("#"))]
        return {r[0].strip() for r in rows if r[1].strip() != "label"}
    return {line for line in RECORDED[source].read_text().splitlines() if line and not line.startswith("#")}


def names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, regexes)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    found = set()
    for match in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        name, call = match.group(1), match.group(2)
        if call or name in KEYWORDS or re.fullmatch(r"[0-9.e]+", name):
            continue
        found.add(name)
    return found


def expressions() -> list[str]:
    """Every PromQL expression the rules (of a fleet with every kind of host) and the dashboard hold."""
    from tests.unit.monitored_fleet import fleet, monitor

    rules = yaml.safe_load(alert_rules(monitor(), fleet()))
    return [r["expr"] for group in rules["groups"] for r in group["rules"]] + dashboard.expressions()


def source_of(name: str) -> str:
    if name.startswith("vllm:"):
        return "vllm"
    if name.startswith("node_"):
        return "node"
    if name.startswith("haproxy_"):
        return "haproxy"
    if name.startswith("DCGM_"):
        return "dcgm"
    if name.startswith("gpu_"):
        return "amd_gpu"
    return "prometheus" if name in SYNTHETIC else "unknown"


def used() -> dict[str, set[str]]:
    """Metric names read by the rules and the dashboard, by the exporter that makes them."""
    found: dict[str, set[str]] = {}
    for expr in expressions():
        for name in names_in(expr):
            found.setdefault(source_of(name), set()).add(name)
    return found


def exported(page: str) -> set[str]:
    """The series names of a /metrics page (Prometheus' text format)."""
    return {re.split(r"[{\s]", line, maxsplit=1)[0] for line in page.splitlines() if line and not line.startswith("#")}
