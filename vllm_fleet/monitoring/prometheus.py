"""Prometheus on the monitoring hosts: what it scrapes (its targets and their labels), its
configuration and its flags."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from vllm_fleet import cluster, paths
from vllm_fleet.monitoring.exporters import exporters, monitoring_hosts
from vllm_fleet.monitoring.managed_files import managed_defaults, managed_yaml
from vllm_fleet.settings import Settings


def scrapes_vllm(s: Settings) -> bool:
    """vLLM bound to loopback is out of every other host's reach, and a cluster's members other than its
    leader serve no API: their node metrics are scraped, not vLLM's (the leader's hold the cluster's)."""
    return s.role == "vllm" and not s.is_loopback and not cluster.is_worker(s)


def monitoring_sources(fleet: Mapping[str, Settings]) -> list[str]:
    """The addresses the monitoring hosts scrape from (every host's firewall admits them)."""
    return sorted({s.fleet_address for s in monitoring_hosts(fleet)})


def target(address: str, port: int) -> str:
    try:
        if ipaddress.ip_address(address).version == 6:
            return f"[{address}]:{port}"
    except ValueError:
        pass
    return f"{address}:{port}"


def _labels(s: Settings) -> dict[str, str]:
    labels = {"host": s.host, "role": s.role}
    if s.phase:
        labels["phase"] = s.phase
    return labels


def local_address(address: str) -> str:
    """Where a service bound to address is reached from its own host."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)


def scrape_configs(monitor: Settings, fleet: Mapping[str, Settings]) -> list[dict[str, Any]]:
    jobs: dict[str, list[dict[str, Any]]] = {"vllm": []}
    for s in fleet.values():
        if scrapes_vllm(s):
            jobs["vllm"].append({"targets": [target(s.fleet_address, s.vllm_port)], "labels": _labels(s)})
        for exporter in exporters(s, fleet):
            static = {"targets": [target(s.fleet_address, exporter.port)], "labels": _labels(s)}
            jobs.setdefault(exporter.job, []).append(static)
    local = local_address(monitor.prometheus_bind_address)
    itself = _labels(monitor)
    jobs["prometheus"] = [{"targets": [target(local, monitor.prometheus_port)], "labels": itself}]
    jobs["alertmanager"] = [{"targets": [target(local, monitor.alertmanager_port)], "labels": itself}]
    return [{"job_name": job, "static_configs": static} for job, static in jobs.items() if static]


def prometheus_config(monitor: Settings, fleet: Mapping[str, Settings], rules: str = paths.PROMETHEUS_RULES) -> str:
    """rules: the rule file it reads (a staged copy is checked against the staged rules)."""
    interval = f"{monitor.prometheus_scrape_interval}s"
    config = {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            "external_labels": {"monitor": monitor.host},
        },
        "alerting": {
            "alertmanagers": [
                {
                    "static_configs": [
                        {"targets": [target(local_address(monitor.prometheus_bind_address), monitor.alertmanager_port)]}
                    ]
                }
            ]
        },
        "rule_files": [rules],
        "scrape_configs": scrape_configs(monitor, fleet),
    }
    return managed_yaml("Prometheus' configuration", config)


def prometheus_defaults(monitor: Settings) -> str:
    """paths.PROMETHEUS_DEFAULTS: the flags Debian's unit passes ($ARGS)."""
    return managed_defaults(
        "Prometheus",
        f"--web.listen-address={target(monitor.prometheus_bind_address, monitor.prometheus_port)}",
        f"--storage.tsdb.retention.time={monitor.prometheus_retention_days}d",
    )
