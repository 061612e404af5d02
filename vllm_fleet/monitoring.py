"""Monitoring: which exporters each host runs, what Prometheus on the monitoring hosts scrapes,
the alert rules and where Alertmanager sends alerts. Every file is rendered with yaml.safe_dump
(values are quoted for YAML) and checked by promtool and amtool in the tests; tasks/monitoring.py
and tasks/exporters.py install them."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from vllm_fleet import cluster, images, paths
from vllm_fleet.gpus import vendor_from_name
from vllm_fleet.launch import exec_line
from vllm_fleet.repository import DATA
from vllm_fleet.settings import Settings

# The exporters' own default ports (Debian's prometheus-node-exporter, dcgm-exporter's -a :9400,
# the device metrics exporter's ServerPort) and the gateway's HAProxy metrics frontend.
NODE_EXPORTER_PORT = 9100
DCGM_EXPORTER_PORT = 9400
AMD_EXPORTER_PORT = 5000
HAPROXY_METRICS_PORT = 8405

# The DCGM exporter's collectors: its defaults, and the ECC and violation counters the alerts read.
DCGM_COUNTERS_FILE = str(DATA / "dcgm-counters.csv")

# Filesystems that hold no models, images or caches.
VIRTUAL_FILESYSTEMS = "tmpfs|ramfs|squashfs|nsfs|devtmpfs|fuse.lxcfs"


@dataclass(frozen=True)
class Exporter:
    job: str  # Prometheus' job name, and the value of its `job` label
    port: int
    what: str


NODE = Exporter("node", NODE_EXPORTER_PORT, "node metrics (prometheus-node-exporter)")
HAPROXY = Exporter("haproxy", HAPROXY_METRICS_PORT, "HAProxy's own metrics")
DCGM = Exporter("dcgm", DCGM_EXPORTER_PORT, "NVIDIA GPU metrics (DCGM exporter)")
AMD_GPU = Exporter("amd_gpu", AMD_EXPORTER_PORT, "AMD GPU metrics (device metrics exporter)")


def monitoring_hosts(fleet: Mapping[str, Settings]) -> list[Settings]:
    return [s for s in fleet.values() if s.role == "monitoring"]


def gpu_vendor(s: Settings) -> str | None:
    """The GPU exporter's vendor, known from the inventory alone (the monitoring host's config is
    written without the GPU host's facts): the accelerator, else gpu_name's vendor."""
    if s.role != "vllm":
        return None
    vendor = s.accelerator if s.accelerator != "auto" else vendor_from_name(s.gpu_name)
    return vendor if vendor in ("nvidia", "amd") else None


def gpu_exporter(s: Settings, fleet: Mapping[str, Settings]) -> Exporter | None:
    if not monitoring_hosts(fleet) or s.role != "vllm" or s.serving_method != "docker" or not s.gpu_exporter:
        return None
    return {"nvidia": DCGM, "amd": AMD_GPU}.get(gpu_vendor(s) or "")


def exporters(s: Settings, fleet: Mapping[str, Settings]) -> list[Exporter]:
    """What a host exports to the monitoring hosts: nothing in an inventory without one."""
    if not monitoring_hosts(fleet):
        return []
    found = [NODE]
    if s.role == "gateway":
        found.append(HAPROXY)
    gpu = gpu_exporter(s, fleet)
    if gpu:
        found.append(gpu)
    return found


def exporter_argv(exporter: Exporter, s: Settings) -> list[str]:
    """`docker run` of an exporter's container on the host's network (it listens on its own port
    there, behind the firewall table), named after the host for its hostname label."""
    node = exporter is NODE
    run = [
        "/usr/bin/docker",
        "run",
        "--rm",
        "--name",
        paths.NODE_EXPORTER_CONTAINER if node else paths.GPU_EXPORTER_CONTAINER,
        "--network",
        "host",
        "--env",
        f"NODE_NAME={s.host}",
    ]
    if exporter is DCGM:
        return [
            *run,
            "--gpus",
            "all",
            # Only the profiling fields (DCGM_FI_PROF_*) need it.
            "--cap-add",
            "SYS_ADMIN",
            "--volume",
            f"{paths.DCGM_COUNTERS}:{paths.DCGM_COUNTERS_IN_CONTAINER}:ro",
            s.dcgm_exporter_image,
            "-f",
            paths.DCGM_COUNTERS_IN_CONTAINER,
            "-a",
            f":{DCGM_EXPORTER_PORT}",
        ]
    if exporter is AMD_GPU:
        # docs/installation/docker.md: privileged, both device nodes, /sys for its RAS events.
        return [
            *run,
            "--privileged",
            "--device",
            "/dev/dri",
            "--device",
            "/dev/kfd",
            "--volume",
            "/sys:/sys:ro",
            s.amd_metrics_exporter_image,
        ]
    return [*run, "--pid", "host", "--volume", "/:/host:ro,rslave", images.NODE_EXPORTER_IMAGE, "--path.rootfs=/host"]


def exporter_unit(exporter: Exporter, s: Settings) -> dict[str, Any]:
    """The values templates/vllm-fleet-exporter.service.j2 renders a container exporter's unit with."""
    argv = exporter_argv(exporter, s)
    return {
        "what": exporter.what,
        "port": exporter.port,
        "container": argv[4],
        "exec_start": exec_line(argv, own_line=(argv[-1] if exporter is AMD_GPU else "",)),
    }


def scrapes_vllm(s: Settings) -> bool:
    """vLLM bound to loopback is out of every other host's reach, and a cluster's members other than its
    leader serve no API: their node metrics are scraped, not vLLM's (the leader's hold the cluster's)."""
    return s.role == "vllm" and not s.is_loopback and not cluster.is_worker(s)


def monitoring_sources(fleet: Mapping[str, Settings]) -> list[str]:
    """The addresses the monitoring hosts scrape from (every host's firewall admits them)."""
    return sorted({s.fleet_address or s.host for s in monitoring_hosts(fleet)})


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
            jobs["vllm"].append({"targets": [target(s.fleet_address or s.host, s.vllm_port)], "labels": _labels(s)})
        for exporter in exporters(s, fleet):
            static = {"targets": [target(s.fleet_address or s.host, exporter.port)], "labels": _labels(s)}
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
    return _yaml("Prometheus' configuration", config)


def prometheus_defaults(monitor: Settings) -> str:
    """/etc/default/prometheus: the flags Debian's unit passes ($ARGS)."""
    return _defaults(
        "Prometheus",
        f"--web.listen-address={target(monitor.prometheus_bind_address, monitor.prometheus_port)}",
        f"--storage.tsdb.retention.time={monitor.prometheus_retention_days}d",
    )


def alertmanager_defaults(monitor: Settings) -> str:
    """/etc/default/prometheus-alertmanager. One Alertmanager per monitoring host, not a cluster:
    its gossip port (9094) stays closed."""
    return _defaults(
        "Alertmanager",
        f"--web.listen-address={target(monitor.prometheus_bind_address, monitor.alertmanager_port)}",
        "--cluster.listen-address=",
    )


def _defaults(what: str, *args: str) -> str:
    # Every argument is made of validated addresses, ports and numbers: nothing to quote inside.
    return f'# Managed by vllm-fleet: the flags of {what} (Debian\'s unit passes $ARGS).\nARGS="{" ".join(args)}"\n'


def _yaml(what: str, data: Any) -> str:
    return f"# Managed by vllm-fleet: {what}; local edits are overwritten on the next deploy.\n" + yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False, width=1000
    )


# --- alert rules ---


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
    return _yaml("the alert rules", {"groups": groups})


def alert_names(monitor: Settings, fleet: Mapping[str, Settings]) -> set[str]:
    rules = yaml.safe_load(alert_rules(monitor, fleet))
    return {rule["alert"] for group in rules["groups"] for rule in group["rules"]}


# --- Alertmanager ---

RECEIVER = "operator"


def alertmanager_config(monitor: Settings) -> str:
    """Alertmanager's configuration (root:prometheus 0640: it may hold the webhook token and the
    mail relay's password)."""
    receiver: dict[str, Any] = {"name": RECEIVER}
    config: dict[str, Any] = {}
    if monitor.alert_webhook_url:
        webhook: dict[str, Any] = {"url": monitor.alert_webhook_url, "send_resolved": True}
        if monitor.alert_webhook_token:
            webhook["http_config"] = {
                "authorization": {"type": "Bearer", "credentials": monitor.alert_webhook_token.get_secret_value()}
            }
        receiver["webhook_configs"] = [webhook]
    if monitor.alert_email_to:
        smtp: dict[str, Any] = {
            "smtp_smarthost": monitor.alert_smtp_smarthost,
            "smtp_from": monitor.alert_email_from,
            "smtp_require_tls": True,
        }
        if monitor.alert_smtp_username:
            smtp["smtp_auth_username"] = monitor.alert_smtp_username
        if monitor.alert_smtp_username and monitor.alert_smtp_password:
            smtp["smtp_auth_password"] = monitor.alert_smtp_password.get_secret_value()
        config["global"] = smtp
        receiver["email_configs"] = [{"to": monitor.alert_email_to, "send_resolved": True}]
    config["route"] = {
        "receiver": RECEIVER,
        "group_by": ["alertname", "host"],
        "group_wait": f"{monitor.alert_group_wait}s",
        "group_interval": f"{monitor.alert_group_interval}s",
        "repeat_interval": "4h",
    }
    config["receivers"] = [receiver]
    return _yaml("where Alertmanager sends alerts", config)
