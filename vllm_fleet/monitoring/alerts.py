"""The alert rules: each alert once, its thresholds per host where a host's settings set them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from vllm_fleet.monitoring.exporters import gpu_exporter
from vllm_fleet.monitoring.managed_files import managed_yaml
from vllm_fleet.monitoring.prometheus import scrapes_vllm
from vllm_fleet.settings import Settings

# Seconds of the shortest range window the rules read ([5m]): a scrape interval of more than half
# of it leaves rate() one sample or none (tests/unit/test_monitoring.py reads the rules for it).
SHORTEST_WINDOW = 300
# Filesystems that hold no models, images or caches.
VIRTUAL_FILESYSTEMS = "tmpfs|ramfs|squashfs|nsfs|devtmpfs|fuse.lxcfs"


def _host_matcher(hosts: Iterable[str]) -> str:
    """A PromQL matcher for these hosts: a regular expression (RE2) inside a PromQL string, so
    the regex's backslashes are doubled for the string."""
    regex = "|".join(re.escape(h) for h in sorted(hosts))
    return 'host=~"' + regex.replace("\\", "\\\\") + '"'


def _by_threshold(hosts: Iterable[Settings], knob: str) -> list[tuple[Any, str]]:
    """(threshold, matcher) for each value of a per-host threshold knob."""
    groups: dict[Any, list[str]] = {}
    for s in hosts:
        groups.setdefault(getattr(s, knob), []).append(s.host)
    return [(value, _host_matcher(names)) for value, names in sorted(groups.items())]


@dataclass(frozen=True)
class Alert:
    """One alert rule. With a threshold knob (a setting of each host), one rule per value the hosts
    use, over those hosts: `expr` takes the hosts' matcher and the value, and "{threshold}" in the
    description is the value as `shown` writes it."""

    name: str
    group: str  # the rule group: serving, gpus or hosts
    for_: int | str  # seconds, or the monitoring host's knob that says
    severity: str
    summary: str
    description: str
    expr: Callable[[str, Any], str]
    threshold: str | None = None  # the knob
    hosts: str = "vllm"  # which hosts a threshold covers: vllm, gpu or every
    shown: Callable[[Any], str] = str


def _quantile(metric: str, matcher: str) -> str:
    return f"histogram_quantile(0.95, sum by (host, model_name, le) (rate({metric}_bucket{{{matcher}}}[5m])))"


def _disk_free(matcher: str, value: Any) -> str:
    selector = f'{{fstype!~"{VIRTUAL_FILESYSTEMS}",{matcher}}}'
    free = f"node_filesystem_avail_bytes{selector} / node_filesystem_size_bytes{selector}"
    return (
        f"{free} < {value} or (predict_linear(node_filesystem_avail_bytes{selector}[6h], 86400) < 0 and {free} < 0.5)"
    )


def _percent(value: Any) -> str:
    return f"{value:.0%}"


ALERTS = [
    Alert(
        "VllmNotServing",
        "serving",
        "alert_not_serving_for",
        "critical",
        "vLLM on {{ $labels.host }} is not serving",
        "Prometheus has not reached vLLM's /metrics on {{ $labels.host }} ({{ $labels.instance }}) for {for} s: "
        "the service, its container or the host is down. Look at `systemctl status vllm.service` and "
        "`journalctl -u vllm.service` there.",
        lambda m, v: 'up{job="vllm"} == 0',
    ),
    Alert(
        "TargetNotScraped",
        "serving",
        300,
        "warning",
        "{{ $labels.job }} on {{ $labels.host }} is not scraped",
        "Prometheus has not reached the {{ $labels.job }} exporter on {{ $labels.host }} ({{ $labels.instance }}) "
        "for 5 minutes: the host, the exporter or the firewall between them.",
        lambda m, v: 'up{job!="vllm"} == 0',
    ),
    Alert(
        "RequestsWaitTooLong",
        "serving",
        300,
        "warning",
        "Requests wait in vLLM's queue on {{ $labels.host }}",
        "95% of {{ $labels.model_name }}'s requests waited up to {{ $value | humanize }} s in the queue over 5 "
        "minutes (threshold {threshold} s): the host is saturated; add hosts or lower the load.",
        lambda m, v: f"{_quantile('vllm:request_queue_time_seconds', m)} > {v}",
        "alert_queue_time_seconds",
    ),
    Alert(
        "KvCacheNearlyFull",
        "serving",
        600,
        "warning",
        "KV cache nearly full on {{ $labels.host }}",
        "{{ $value | humanizePercentage }} of the KV cache has been in use for 10 minutes (threshold {threshold}): "
        "requests are preempted or wait; give vLLM more cache or fewer sequences.",
        lambda m, v: f"max by (host, model_name) (vllm:kv_cache_usage_perc{{{m}}}) > {v}",
        "alert_kv_cache_usage",
        shown=_percent,
    ),
    Alert(
        "TimeToFirstTokenSlow",
        "serving",
        300,
        "warning",
        "Slow first tokens on {{ $labels.host }}",
        "The 95th percentile time to first token of {{ $labels.model_name }} is {{ $value | humanize }} s over 5 "
        "minutes (threshold {threshold} s).",
        lambda m, v: f"{_quantile('vllm:time_to_first_token_seconds', m)} > {v}",
        "alert_ttft_p95_seconds",
    ),
    Alert(
        "GpuXidError",
        "gpus",
        0,
        "critical",
        "GPU {{ $labels.gpu }} on {{ $labels.host }} reported Xid {{ $value }}",
        "The NVIDIA driver reported Xid error {{ $value }} on GPU {{ $labels.gpu }} ({{ $labels.modelName }}). "
        "Look it up in NVIDIA's Xid catalogue; 48, 63, 64, 74, 79, 94, 95 mean the GPU needs attention.",
        # The gauge keeps the last Xid until the exporter restarts: a new one is a change.
        lambda m, v: "DCGM_FI_DEV_XID_ERRORS > 0 and changes(DCGM_FI_DEV_XID_ERRORS[10m]) > 0",
    ),
    Alert(
        "GpuRasError",
        "gpus",
        0,
        "critical",
        "GPU {{ $labels.gpu_id }} on {{ $labels.host }} reported a {{ $labels.ras_severity }} RAS event",
        "AMD's driver reported a {{ $labels.ras_severity }} RAS event (AFID {{ $value }}) on GPU {{ $labels.gpu_id }}.",
        # The exporter's own severity label would be overwritten by the rule's: kept as ras_severity.
        lambda m, v: (
            'max without (severity) (label_replace(gpu_afid_errors{severity=~"fatal|non_fatal_uncorrected"}, '
            '"ras_severity", "$1", "severity", "(.*)")) > 0'
        ),
    ),
    Alert(
        "GpuEccErrors",
        "gpus",
        0,
        "critical",
        "Uncorrectable memory errors on a GPU of {{ $labels.host }}",
        "A GPU of {{ $labels.host }} had uncorrectable ECC errors in the last 10 minutes, or could not remap a "
        "failed memory row: drain the host and check the GPU.",
        lambda m, v: (
            "increase(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL[10m]) > 0 or DCGM_FI_DEV_ROW_REMAP_FAILURE > 0 "
            "or increase(gpu_ecc_uncorrect_total[10m]) > 0"
        ),
    ),
    Alert(
        "GpuTooHot",
        "gpus",
        300,
        "warning",
        "A GPU of {{ $labels.host }} runs hot",
        "A GPU of {{ $labels.host }} has been at {{ $value }} °C for 5 minutes (threshold {threshold} °C).",
        lambda m, v: (
            f"max by (host, gpu) (DCGM_FI_DEV_GPU_TEMP{{{m}}}) > {v} or max by (host, gpu_id) "
            f"(gpu_junction_temperature{{{m}}} or gpu_edge_temperature{{{m}}}) > {v}"
        ),
        "alert_gpu_temperature_celsius",
        hosts="gpu",
    ),
    Alert(
        "GpuThrottled",
        "gpus",
        900,
        "warning",
        "A GPU of {{ $labels.host }} is throttled",
        "A GPU of {{ $labels.host }} has been slowed for power or heat for 15 minutes: check cooling and power limits.",
        lambda m, v: (
            "rate(DCGM_FI_DEV_THERMAL_VIOLATION[5m]) > 0 or rate(DCGM_FI_DEV_POWER_VIOLATION[5m]) > 0 "
            "or gpu_violation_socket_thermal_residency_percentage > 10 or gpu_violation_ppt_residency_percentage > 10"
        ),
    ),
    Alert(
        "DiskFilling",
        "hosts",
        1800,
        "warning",
        "{{ $labels.mountpoint }} on {{ $labels.host }} is filling",
        "{{ $labels.mountpoint }} on {{ $labels.host }} has less than {threshold} free, or will be full within a "
        "day at its rate of the last 6 hours: models, images and caches live there.",
        _disk_free,
        "alert_disk_free_ratio",
        hosts="every",
        shown=_percent,
    ),
]


def _rules(alert: Alert, monitor: Settings, fleet: Mapping[str, Settings]) -> list[dict[str, Any]]:
    for_ = getattr(monitor, alert.for_) if isinstance(alert.for_, str) else alert.for_
    description = alert.description.replace("{for}", str(for_))

    def rule(expr: str, labels: dict[str, str], text: str) -> dict[str, Any]:
        return {
            "alert": alert.name,
            "expr": expr,
            "for": f"{for_}s",
            "labels": {"severity": alert.severity, **labels},
            "annotations": {"summary": alert.summary, "description": text},
        }

    if alert.threshold is None:
        return [rule(alert.expr("", None), {}, description)]
    hosts = {
        "vllm": [s for s in fleet.values() if scrapes_vllm(s)],
        "gpu": [s for s in fleet.values() if gpu_exporter(s, fleet)],
        "every": list(fleet.values()),
    }[alert.hosts]
    # One rule per threshold the hosts use; the threshold label tells them apart.
    return [
        rule(
            alert.expr(matcher, value),
            {"threshold": str(value)},
            description.replace("{threshold}", alert.shown(value)),
        )
        for value, matcher in _by_threshold(hosts, alert.threshold)
    ]


def alert_rules(monitor: Settings, fleet: Mapping[str, Settings]) -> str:
    groups = [
        {
            "name": f"vllm-fleet-{group}",
            "rules": [r for a in ALERTS if a.group == group for r in _rules(a, monitor, fleet)],
        }
        for group in ("serving", "gpus", "hosts")
    ]
    return managed_yaml("the alert rules", {"groups": groups})


def alert_names(monitor: Settings, fleet: Mapping[str, Settings]) -> set[str]:
    rules = yaml.safe_load(alert_rules(monitor, fleet))
    return {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
