"""The fleet's Grafana dashboard, built with Grafana's own SDK (grafana-foundation-sdk), and the
provisioning files a Grafana loads it with. Every metric a panel asks for is one the pinned vLLM or
the named exporter exports (vllm_fleet/data/metrics/, checked by the tests)."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping

import yaml

# The SDK prefers its dashboard v2 schema, which Grafana loads only with a feature flag on; the
# classic schema is the one every Grafana 10 to 12 provisions from files.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Prefer using dashboardv2", DeprecationWarning)
    from grafana_foundation_sdk.builders import common as common_builder
    from grafana_foundation_sdk.builders import dashboard, prometheus, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common
    from grafana_foundation_sdk.models.dashboard import (
        DashboardCursorSync,
        DataSourceRef,
        VariableOption,
        VariableRefresh,
    )

from vllm_fleet import paths
from vllm_fleet.monitoring.prometheus import target
from vllm_fleet.settings import Settings

DATASOURCE_UID = "vllm-fleet-prometheus"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
VLLM = 'host=~"$host", model_name=~"$model"'
HOSTS = 'host=~"$host"'
GATEWAY = f'proxy="{paths.HAPROXY_BACKEND}",{HOSTS}'


def _quantile(q: float, metric: str) -> str:
    return f"histogram_quantile({q}, sum by (host, le) (rate({metric}_bucket{{{VLLM}}}[5m])))"


# (row, [(title, unit, [(expr, legend)])]): the panels, in order.
PANELS: list[tuple[str, list[tuple[str, str, list[tuple[str, str]]]]]] = [
    (
        "Traffic",
        [
            (
                "Requests finished / s",
                "reqps",
                [
                    (
                        f"sum by (host, model_name) (rate(vllm:request_success_total{{{VLLM}}}[5m]))",
                        "{{host}} {{model_name}}",
                    )
                ],
            ),
            (
                "Tokens / s",
                "short",
                [
                    (f"sum by (host) (rate(vllm:generation_tokens_total{{{VLLM}}}[5m]))", "generated {{host}}"),
                    (f"sum by (host) (rate(vllm:prompt_tokens_total{{{VLLM}}}[5m]))", "prompt {{host}}"),
                ],
            ),
            (
                "Requests running and waiting",
                "short",
                [
                    (f"sum by (host) (vllm:num_requests_running{{{VLLM}}})", "running {{host}}"),
                    (f"sum by (host) (vllm:num_requests_waiting{{{VLLM}}})", "waiting {{host}}"),
                ],
            ),
            (
                "KV cache in use",
                "percentunit",
                [(f"max by (host, model_name) (vllm:kv_cache_usage_perc{{{VLLM}}})", "{{host}} {{model_name}}")],
            ),
        ],
    ),
    (
        "Latency",
        [
            (
                "Time to first token (p50, p95)",
                "s",
                [
                    (_quantile(0.5, "vllm:time_to_first_token_seconds"), "p50 {{host}}"),
                    (_quantile(0.95, "vllm:time_to_first_token_seconds"), "p95 {{host}}"),
                ],
            ),
            (
                "Inter-token latency (p50, p95)",
                "s",
                [
                    (_quantile(0.5, "vllm:inter_token_latency_seconds"), "p50 {{host}}"),
                    (_quantile(0.95, "vllm:inter_token_latency_seconds"), "p95 {{host}}"),
                ],
            ),
            (
                "Time in queue (p95)",
                "s",
                [(_quantile(0.95, "vllm:request_queue_time_seconds"), "p95 {{host}}")],
            ),
            (
                "Request latency end to end (p95)",
                "s",
                [(_quantile(0.95, "vllm:e2e_request_latency_seconds"), "p95 {{host}}")],
            ),
        ],
    ),
    (
        "GPUs",
        [
            (
                "GPU utilisation",
                "percent",
                [
                    (f"DCGM_FI_DEV_GPU_UTIL{{{HOSTS}}}", "{{host}} GPU {{gpu}}"),
                    (f"gpu_gfx_activity{{{HOSTS}}}", "{{host}} GPU {{gpu_id}}"),
                ],
            ),
            (
                "GPU memory used",
                "bytes",
                [
                    # DCGM reports MiB, AMD's exporter MB.
                    (f"DCGM_FI_DEV_FB_USED{{{HOSTS}}} * 1048576", "{{host}} GPU {{gpu}}"),
                    (f"gpu_used_vram{{{HOSTS}}} * 1000000", "{{host}} GPU {{gpu_id}}"),
                ],
            ),
            (
                "GPU temperature",
                "celsius",
                [
                    (f"DCGM_FI_DEV_GPU_TEMP{{{HOSTS}}}", "{{host}} GPU {{gpu}}"),
                    (f"gpu_junction_temperature{{{HOSTS}}}", "{{host}} GPU {{gpu_id}}"),
                ],
            ),
        ],
    ),
    (
        "Gateways",
        [
            (
                "vLLM hosts in rotation",
                "short",
                [(f"haproxy_backend_active_servers{{{GATEWAY}}}", "{{host}}")],
            ),
            (
                "Gateway answers / s",
                "reqps",
                [
                    (
                        f"sum by (host, code) (rate(haproxy_backend_http_responses_total{{{GATEWAY}}}[5m]))",
                        "{{host}} {{code}}",
                    )
                ],
            ),
        ],
    ),
    (
        "Hosts",
        [
            (
                "CPU busy",
                "percentunit",
                [(f'1 - avg by (host) (rate(node_cpu_seconds_total{{mode="idle",{HOSTS}}}[5m]))', "{{host}}")],
            ),
            (
                "Disk free",
                "percentunit",
                [
                    (
                        f'min by (host, mountpoint) (node_filesystem_avail_bytes{{fstype!~"tmpfs|ramfs|squashfs|nsfs",'
                        f'{HOSTS}}} / node_filesystem_size_bytes{{fstype!~"tmpfs|ramfs|squashfs|nsfs",{HOSTS}}})',
                        "{{host}} {{mountpoint}}",
                    )
                ],
            ),
        ],
    ),
]


def expressions() -> list[str]:
    """Every query the dashboard makes, for the tests that check its metric names."""
    return [expr for _row, panels in PANELS for _t, _u, targets in panels for expr, _legend in targets]


def _panel(title: str, unit: str, targets: list[tuple[str, str]]) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(12)
        .fill_opacity(10)
        .legend(
            common_builder.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(common_builder.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
    )
    for index, (expr, legend) in enumerate(targets):
        # The SDK sets no refId: each query of a panel needs its own.
        query = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + index))
        panel = panel.with_target(query.datasource(DATASOURCE).range())
    return panel


def _variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )


def uid(fleet: Mapping[str, Settings]) -> str:
    """One dashboard per fleet: its uid follows the fleet's monitoring hosts."""
    monitors = ",".join(sorted(s.host for s in fleet.values() if s.role == "monitoring"))
    return "vllm-fleet-" + hashlib.sha256(monitors.encode()).hexdigest()[:12]


def dashboard_json(fleet: Mapping[str, Settings]) -> str:
    board = (
        dashboard.Dashboard("vLLM fleet")
        .uid(uid(fleet))
        .tags(["vllm", "vllm-fleet"])
        .description("Made by vllm-fleet (vllm_fleet/dashboard.py): edits in Grafana are lost on the next deploy.")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-1h", "now")
        .timezone(common.TimeZoneBrowser)
        .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(_variable("host", "Host", 'label_values(up{job=~"vllm|node"}, host)'))
        .with_variable(_variable("model", "Model", "label_values(vllm:num_requests_running, model_name)"))
    )
    for row, panels in PANELS:
        board = board.with_row(dashboard.Row(row))
        for title, unit, targets in panels:
            board = board.with_panel(_panel(title, unit, targets))
    model = board.build()
    # Stable ids keep a panel's link (?viewPanel=N) across deploys.
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    return JSONEncoder(sort_keys=True, indent=2).encode(model) + "\n"


def dashboard_provider() -> str:
    """Grafana's dashboard provisioning file (provisioning/dashboards/): load the dashboard's directory."""
    provider = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "vllm-fleet",
                "folder": "vLLM fleet",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": paths.GRAFANA_DASHBOARD.rsplit("/", 1)[0]},
            }
        ],
    }
    return "# Managed by vllm-fleet.\n" + yaml.safe_dump(provider, sort_keys=False)


def datasource(monitor: Settings) -> str:
    """Grafana's datasource provisioning file (provisioning/datasources/): this host's Prometheus."""
    address = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(
        monitor.prometheus_bind_address, monitor.prometheus_bind_address
    )
    source = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": f"vllm-fleet {monitor.host}",
                "type": "prometheus",
                "uid": DATASOURCE_UID,
                "access": "proxy",
                "url": f"http://{target(address, monitor.prometheus_port)}",
            }
        ],
    }
    return "# Managed by vllm-fleet.\n" + yaml.safe_dump(source, sort_keys=False)


def as_dict(fleet: Mapping[str, Settings]) -> dict:
    return json.loads(dashboard_json(fleet))
