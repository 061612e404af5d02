"""Monitoring's files, checked by their own tools: the alert rules by `promtool test rules` (every
alert fires on what it is meant for and not on its control), Prometheus' configuration by
`promtool check config`, Alertmanager's by `amtool check-config`, the dashboard against Grafana's
schema; every metric they read is one its exporter exports; and the inventory rules around them."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests import metric_names
from tests.unit.monitored_fleet import KEY, WEBHOOK_TOKEN, fleet, monitor
from vllm_fleet import dashboard, firewall, paths
from vllm_fleet.monitoring.alertmanager import alertmanager_config, alertmanager_defaults
from vllm_fleet.monitoring.alerts import alert_rules
from vllm_fleet.monitoring.exporters import AMD_GPU, DCGM, NODE, exporter_argv, exporter_unit, exporters, gpu_exporter
from vllm_fleet.monitoring.prometheus import prometheus_config, prometheus_defaults, scrape_configs, target
from vllm_fleet.rules import validate
from vllm_fleet.settings import SettingsError

DATA = Path(__file__).resolve().parent / "data"
# Debian's, installed by `make checkers`.
PROMTOOL, AMTOOL = "promtool", "amtool"


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def write_rules(tmp_path: Path, rules: str) -> Path:
    (tmp_path / "rules.yml").write_text(rules)
    test = tmp_path / "alert-rules.test.yml"
    test.write_text(f"rule_files: [{tmp_path / 'rules.yml'}]\n" + (DATA / "alert-rules.test.yml").read_text())
    return test


def test_every_alert_fires_on_its_case_and_not_on_its_control(tmp_path):
    test = write_rules(tmp_path, alert_rules(monitor(), fleet()))
    done = run(PROMTOOL, "test", "rules", str(test))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_test_fails_when_a_threshold_is_not_the_hosts_own(tmp_path):
    """Control: gpu-b's own TTFT threshold (2 s) is what fires its alert; at the default (5 s) the
    same data does not, and promtool's test fails."""
    hosts = fleet(**{"gpu-b": {"alert_ttft_p95_seconds": 5.0}})
    test = write_rules(tmp_path, alert_rules(hosts["mon"], hosts))
    done = run(PROMTOOL, "test", "rules", str(test))
    assert done.returncode != 0 and "TimeToFirstTokenSlow" in done.stdout + done.stderr


def test_prometheus_configuration_passes_promtool(tmp_path):
    hosts = fleet()
    rules = tmp_path / "rules.yml"
    rules.write_text(alert_rules(hosts["mon"], hosts))
    config = tmp_path / "prometheus.yml"
    config.write_text(prometheus_config(hosts["mon"], hosts).replace(paths.PROMETHEUS_RULES, str(rules)))
    done = run(PROMTOOL, "check", "config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout


def test_every_host_is_scraped_where_it_exports():
    hosts = fleet()
    jobs = {
        job["job_name"]: {t: static["labels"]["host"] for static in job["static_configs"] for t in static["targets"]}
        for job in scrape_configs(hosts["mon"], hosts)
    }
    assert jobs["vllm"] == {"10.0.0.11:8000": "gpu-a", "10.0.0.12:8000": "gpu-b", "10.0.0.13:8000": "cpu.c"}
    assert set(jobs["node"].values()) == set(hosts)
    assert jobs["haproxy"] == {"10.0.0.2:8405": "gw"}
    assert jobs["dcgm"] == {"10.0.0.11:9400": "gpu-a"}
    assert jobs["amd_gpu"] == {"10.0.0.12:5000": "gpu-b"}
    assert jobs["prometheus"] == {"127.0.0.1:9090": "mon"} and jobs["alertmanager"] == {"127.0.0.1:9093": "mon"}


def test_a_loopback_vllm_is_not_scraped_but_its_node_is():
    hosts = fleet(**{"cpu.c": {"vllm_bind_address": "127.0.0.1"}})
    jobs = {j["job_name"]: j for j in scrape_configs(hosts["mon"], hosts)}
    vllm = [t for s in jobs["vllm"]["static_configs"] for t in s["targets"]]
    assert "10.0.0.13:8000" not in vllm
    assert "10.0.0.13:9100" in [t for s in jobs["node"]["static_configs"] for t in s["targets"]]


def test_ipv6_targets_are_bracketed():
    assert target("2001:db8::5", 9100) == "[2001:db8::5]:9100"
    assert target("gpu-01.example", 9100) == "gpu-01.example:9100"


def test_nothing_is_exported_in_an_inventory_without_a_monitoring_host():
    hosts = fleet()
    del hosts["mon"]
    assert all(exporters(s, hosts) == [] for s in hosts.values())
    assert "frontend metrics" not in _haproxy(hosts)


def _haproxy(hosts) -> str:
    from vllm_fleet import haproxy

    return haproxy.haproxy_config(hosts["gw"], hosts)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {
            "alert_email_to": "oncall@example.com",
            "alert_email_from": "alerts@example.com",
            "alert_smtp_smarthost": "smtp.example.com:587",
            "alert_smtp_username": "alerts",
            "alert_smtp_password": "smtp-password-" + "p" * 10,
        },
    ],
    ids=["webhook", "webhook-and-mail"],
)
def test_alertmanager_configuration_passes_amtool(tmp_path, changes):
    s = monitor(**changes)
    config = tmp_path / "alertmanager.yml"
    config.write_text(alertmanager_config(s))
    done = run(AMTOOL, "check-config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    loaded = yaml.safe_load(config.read_text())
    receiver = loaded["receivers"][0]
    assert receiver["webhook_configs"][0]["http_config"]["authorization"]["credentials"] == WEBHOOK_TOKEN
    assert receiver["webhook_configs"][0]["send_resolved"] is True
    if changes:
        assert receiver["email_configs"] == [{"to": "oncall@example.com", "send_resolved": True}]


def test_alertmanager_configuration_whole():
    """Mail over TLS with the relay's login, the webhook with its bearer token; one notification per
    alert and host, resent every 4 hours."""
    mon = monitor(
        alert_email_to="oncall@example.com",
        alert_email_from="alerts@example.com",
        alert_smtp_smarthost="smtp.example.com:587",
        alert_smtp_username="alerts",
        alert_smtp_password="smtp-password-" + "p" * 10,
    )
    assert alertmanager_config(mon) == (
        "# Managed by vllm-fleet: where Alertmanager sends alerts; local edits are overwritten on the next deploy.\n"
        "global:\n"
        "  smtp_smarthost: smtp.example.com:587\n"
        "  smtp_from: alerts@example.com\n"
        "  smtp_require_tls: true\n"
        "  smtp_auth_username: alerts\n"
        "  smtp_auth_password: smtp-password-pppppppppp\n"
        "route:\n"
        "  receiver: operator\n"
        "  group_by:\n"
        "  - alertname\n"
        "  - host\n"
        "  group_wait: 30s\n"
        "  group_interval: 300s\n"
        "  repeat_interval: 4h\n"
        "receivers:\n"
        "- name: operator\n"
        "  webhook_configs:\n"
        "  - url: https://10.0.0.9:9999/hook\n"
        "    send_resolved: true\n"
        "    http_config:\n"
        "      authorization:\n"
        "        type: Bearer\n"
        f"        credentials: {WEBHOOK_TOKEN}\n"
        "  email_configs:\n"
        "  - to: oncall@example.com\n"
        "    send_resolved: true\n"
    )


def test_prometheus_configuration_head():
    """Scrapes and rules evaluated at the monitoring host's interval, its name on what it sends,
    and its own Alertmanager reached where it listens."""
    hosts = fleet(mon={"prometheus_bind_address": "10.0.0.3", "prometheus_scrape_interval": 20})
    assert prometheus_config(hosts["mon"], hosts).startswith(
        "# Managed by vllm-fleet: Prometheus' configuration; local edits are overwritten on the next deploy.\n"
        "global:\n"
        "  scrape_interval: 20s\n"
        "  evaluation_interval: 20s\n"
        "  external_labels:\n"
        "    monitor: mon\n"
        "alerting:\n"
        "  alertmanagers:\n"
        "  - static_configs:\n"
        "    - targets:\n"
        "      - 10.0.0.3:9093\n"
        "rule_files:\n"
        "- /etc/prometheus/vllm-fleet-rules.yml\n"
        "scrape_configs:\n"
    )


def test_every_target_is_labelled_with_its_host_role_and_phase():
    hosts = fleet()
    jobs = {
        job["job_name"]: [c["labels"] for c in job["static_configs"]]
        for job in yaml.safe_load(prometheus_config(hosts["mon"], hosts))["scrape_configs"]
    }
    assert jobs["node"] == [
        {"host": "gpu-a", "role": "vllm", "phase": "enterprise"},
        {"host": "gpu-b", "role": "vllm", "phase": "enterprise"},
        {"host": "cpu.c", "role": "vllm", "phase": "single_gpu"},
        {"host": "gw", "role": "gateway"},
        {"host": "mon", "role": "monitoring"},
    ]


@pytest.mark.parametrize(
    ("bind", "alertmanager"), [("0.0.0.0", "127.0.0.1:9093"), ("::", "[::1]:9093"), ("10.0.0.3", "10.0.0.3:9093")]
)
def test_prometheus_reaches_its_alertmanager_on_its_own_host(bind, alertmanager):
    hosts = fleet(mon={"prometheus_bind_address": bind})
    alerting = yaml.safe_load(prometheus_config(hosts["mon"], hosts))["alerting"]
    assert alerting == {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (
            "gpu-a",
            [
                "# vLLM's port (8000); the exporters' ports (9100, 9400), SSH included.",
                "# vLLM's port: its gateways, monitoring hosts and vllm_allowed_sources",
                "# the exporters' ports: the monitoring hosts",
                "tcp dport 8000 fib daddr type local ip saddr @vllm_ipv4 accept",
                "tcp dport 8000 fib daddr type local ip6 saddr @vllm_ipv6 accept",
                "tcp dport 8000 fib daddr type local counter drop",
                "tcp dport { 9100, 9400 } fib daddr type local ip saddr @metrics_ipv4 accept",
                "tcp dport { 9100, 9400 } fib daddr type local ip6 saddr @metrics_ipv6 accept",
                "tcp dport { 9100, 9400 } fib daddr type local counter drop",
                'iifname != "docker0" fib daddr oifname "docker0" tcp dport 8000 counter drop',
            ],
        ),
        (
            # No vLLM container here: nothing but its own ports.
            "mon",
            [
                "# the exporters' ports (9100); Prometheus' and Alertmanager's ports (9090, 9093, 9094), SSH included.",
                "# the exporters' ports: the monitoring hosts",
                "# Prometheus' and Alertmanager's ports: monitoring_allowed_sources",
                "tcp dport 9100 fib daddr type local ip saddr @metrics_ipv4 accept",
                "tcp dport 9100 fib daddr type local ip6 saddr @metrics_ipv6 accept",
                "tcp dport 9100 fib daddr type local counter drop",
                "tcp dport { 9090, 9093, 9094 } fib daddr type local ip saddr @monitoring_ipv4 accept",
                "tcp dport { 9090, 9093, 9094 } fib daddr type local ip6 saddr @monitoring_ipv6 accept",
                "tcp dport { 9090, 9093, 9094 } fib daddr type local counter drop",
            ],
        ),
    ],
)
def test_each_hosts_table_names_and_guards_its_own_ports(host, expected):
    hosts = fleet()
    table = firewall.rules(hosts[host], hosts).splitlines()
    # The comments every table has, word for word, left out.
    same = ("# Managed", "# Only this", "# Loading", "# Before", "# reaches", "# Only what", "# Docker", "# the same")
    kept = [line.strip() for line in table if line.strip().startswith("#") or " dport " in line]
    assert [line for line in kept if not line.startswith(same)] == expected


def test_each_exporters_unit_runs_its_container_on_the_hosts_network():
    """The node exporter reads the host's root, DCGM's its counters file, AMD's the devices; each
    named for the host (its hostname label). An image's own arguments go on lines after it."""
    hosts = fleet()
    head = "/usr/bin/docker run \\\n    --rm \\\n    --name {} \\\n    --network host \\\n    --env NODE_NAME={} \\\n"
    node = exporter_unit(NODE, hosts["gpu-a"])
    assert node == {
        "what": "node metrics (prometheus-node-exporter)",
        "port": 9100,
        "container": "vllm-fleet-node-exporter",
        "exec_start": head.format("vllm-fleet-node-exporter", "gpu-a")
        + "    --pid host \\\n    --volume /:/host:ro,rslave quay.io/prometheus/node-exporter:v1.9.1 \\\n"
        "    --path.rootfs=/host",
    }
    dcgm = exporter_unit(DCGM, hosts["gpu-a"])
    assert (dcgm["what"], dcgm["port"], dcgm["container"]) == (
        "NVIDIA GPU metrics (DCGM exporter)",
        9400,
        "vllm-fleet-gpu-exporter",
    )
    assert dcgm["exec_start"] == head.format("vllm-fleet-gpu-exporter", "gpu-a") + (
        "    --gpus all \\\n    --cap-add SYS_ADMIN \\\n"
        "    --volume /etc/vllm-fleet/dcgm-counters.csv:/etc/dcgm-exporter/vllm-fleet-counters.csv:ro "
        "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-ubuntu22.04 \\\n"
        "    -f /etc/dcgm-exporter/vllm-fleet-counters.csv \\\n    -a :9400"
    )
    amd = exporter_unit(AMD_GPU, hosts["gpu-b"])
    assert (amd["what"], amd["port"], amd["container"]) == (
        "AMD GPU metrics (device metrics exporter)",
        5000,
        "vllm-fleet-gpu-exporter",
    )
    assert amd["exec_start"] == head.format("vllm-fleet-gpu-exporter", "gpu-b") + (
        "    --privileged \\\n    --device /dev/dri \\\n    --device /dev/kfd \\\n    --volume /sys:/sys:ro \\\n"
        "    docker.io/rocm/device-metrics-exporter:v1.5.1"
    )


def test_a_gpu_exporter_runs_only_on_docker_served_vllm_hosts_watched_by_a_monitoring_host():
    hosts = fleet()
    assert (gpu_exporter(hosts["gpu-a"], hosts), gpu_exporter(hosts["gpu-b"], hosts)) == (DCGM, AMD_GPU)
    assert gpu_exporter(hosts["gpu-a"], {"gpu-a": hosts["gpu-a"]}) is None  # nobody scrapes it
    for changes in ({"serving_method": "nix"}, {"gpu_exporter": False}):
        changed = fleet(**{"gpu-a": changes})
        assert gpu_exporter(changed["gpu-a"], changed) is None, changes
    assert gpu_exporter(hosts["mon"], hosts) is None and gpu_exporter(hosts["cpu.c"], hosts) is None


def test_our_yaml_files_are_block_style_in_our_order_and_never_wrapped():
    from vllm_fleet.monitoring.managed_files import managed_yaml

    long = "x " * 300
    assert managed_yaml("a test", {"b": [1, 2], "a": long}) == (
        f"# Managed by vllm-fleet: a test; local edits are overwritten on the next deploy.\nb:\n- 1\n- 2\na: '{long}'\n"
    )
    assert alert_rules(monitor(), fleet()).startswith(
        "# Managed by vllm-fleet: the alert rules; local edits are overwritten on the next deploy.\ngroups:\n"
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"mon": {"alertmanager_port": 9100}},
            "host mon: alertmanager_port = 9100 is not allowed: a port other than 9100, where the host exports "
            "node metrics (prometheus-node-exporter) to the monitoring hosts",
        ),
        (
            {"mon": {"prometheus_port": 9100}},
            "host mon: prometheus_port = 9100 is not allowed: a port other than 9100, where the host exports "
            "node metrics (prometheus-node-exporter) to the monitoring hosts",
        ),
        (
            {"gpu-a": {"vllm_port": 9400}},
            "host gpu-a: vllm_port = 9400 is not allowed: a port other than 9400, where the host exports "
            "NVIDIA GPU metrics (DCGM exporter) to the monitoring hosts",
        ),
    ],
)
def test_a_service_port_may_not_be_an_exporters(changes, expected):
    with pytest.raises(SettingsError) as caught:
        fleet(**changes)
    assert str(caught.value) == expected


def test_a_vllm_bound_to_loopback_admits_no_monitoring_host():
    """Prometheus cannot reach it there, so its firewall has no reason to let it in."""
    hosts = fleet(**{"cpu.c": {"vllm_bind_address": "127.0.0.1"}})
    assert firewall.allowed_sources(hosts["cpu.c"], hosts) == []
    assert firewall.allowed_sources(hosts["gpu-a"], hosts) == ["10.0.0.2/32", "10.0.0.3/32"]


def test_values_are_quoted_for_yaml_whatever_they_hold():
    url = "https://hooks.example/a?b=1&c=#frag:{x}"
    loaded = yaml.safe_load(alertmanager_config(monitor(alert_webhook_url=url)))
    assert loaded["receivers"][0]["webhook_configs"][0]["url"] == url


def test_every_metric_read_is_one_its_exporter_exports():
    used = metric_names.used()
    assert set(used) <= {"vllm", "node", "haproxy", "dcgm", "amd_gpu", "prometheus"}, used.get("unknown")
    for source, names in used.items():
        if source != "prometheus":
            assert names <= metric_names.recorded(source), (source, names - metric_names.recorded(source))
    assert used["vllm"] and used["dcgm"] and used["amd_gpu"] and used["node"]


def test_a_misspelt_metric_is_caught():
    assert metric_names.names_in('sum by (host) (rate(vllm:request_sucess_total{host=~"a|b"}[5m])) > 0') == {
        "vllm:request_sucess_total"
    }
    assert "vllm:request_sucess_total" not in metric_names.recorded("vllm")
    assert metric_names.names_in('label_replace(gpu_afid_errors{a="b"}, "x", "$1", "y", "(.*)") > 0') == {
        "gpu_afid_errors"
    }


def test_each_alert_waits_its_own_time_before_it_fires():
    """Each rule's `for`, severity and threshold label: a warning that fired at once (for: 0s) would
    page on every blip; only a GPU's Xid, RAS and ECC errors are news the moment they happen."""
    rules = yaml.safe_load(alert_rules(monitor(), fleet()))
    assert [
        (group["name"], r["alert"], r["for"], r["labels"]) for group in rules["groups"] for r in group["rules"]
    ] == [
        ("vllm-fleet-serving", "VllmNotServing", "120s", {"severity": "critical"}),
        ("vllm-fleet-serving", "TargetNotScraped", "300s", {"severity": "warning"}),
        ("vllm-fleet-serving", "RequestsWaitTooLong", "300s", {"severity": "warning", "threshold": "10.0"}),
        ("vllm-fleet-serving", "KvCacheNearlyFull", "600s", {"severity": "warning", "threshold": "0.95"}),
        ("vllm-fleet-serving", "TimeToFirstTokenSlow", "300s", {"severity": "warning", "threshold": "2.0"}),
        ("vllm-fleet-serving", "TimeToFirstTokenSlow", "300s", {"severity": "warning", "threshold": "5.0"}),
        ("vllm-fleet-gpus", "GpuXidError", "0s", {"severity": "critical"}),
        ("vllm-fleet-gpus", "GpuRasError", "0s", {"severity": "critical"}),
        ("vllm-fleet-gpus", "GpuEccErrors", "0s", {"severity": "critical"}),
        ("vllm-fleet-gpus", "GpuTooHot", "300s", {"severity": "warning", "threshold": "85"}),
        ("vllm-fleet-gpus", "GpuThrottled", "900s", {"severity": "warning"}),
        ("vllm-fleet-hosts", "DiskFilling", "1800s", {"severity": "warning", "threshold": "0.1"}),
    ]
    # Each description says how long the condition has lasted: the rule's own `for`.
    for r in (r for group in rules["groups"] for r in group["rules"]):
        said = re.search(r"for (\d+) minutes", r["annotations"]["description"])
        if said:
            assert r["for"] == f"{int(said[1]) * 60}s", r["alert"]


def test_not_serving_waits_the_monitoring_hosts_own_time_and_says_so():
    rules = yaml.safe_load(alert_rules(monitor(alert_not_serving_for=45), fleet()))
    rule = rules["groups"][0]["rules"][0]
    assert rule["alert"] == "VllmNotServing" and rule["for"] == "45s"
    assert rule["annotations"]["description"].startswith(
        "Prometheus has not reached vLLM's /metrics on {{ $labels.host }} ({{ $labels.instance }}) for 45 s: "
    )


@pytest.mark.parametrize(
    ("changes", "prometheus", "alertmanager"),
    [
        ({"prometheus_bind_address": "10.0.0.3"}, "10.0.0.3:9090", "10.0.0.3:9093"),
        (
            {"prometheus_bind_address": "2001:db8::3", "prometheus_port": 9191, "alertmanager_port": 9193},
            "[2001:db8::3]:9191",
            "[2001:db8::3]:9193",
        ),
    ],
)
def test_the_debian_units_flags_listen_where_the_settings_say(changes, prometheus, alertmanager):
    """/etc/default/prometheus and /etc/default/prometheus-alertmanager, whole: Alertmanager's
    gossip (cluster) listener is turned off with an empty address."""
    mon = monitor(**changes, prometheus_retention_days=30)
    assert prometheus_defaults(mon) == (
        "# Managed by vllm-fleet: the flags of Prometheus (Debian's unit passes $ARGS).\n"
        f'ARGS="--web.listen-address={prometheus} --storage.tsdb.retention.time=30d"\n'
    )
    assert alertmanager_defaults(mon) == (
        "# Managed by vllm-fleet: the flags of Alertmanager (Debian's unit passes $ARGS).\n"
        f'ARGS="--web.listen-address={alertmanager} --cluster.listen-address="\n'
    )


def test_host_names_are_escaped_in_the_rules_regular_expressions():
    rules = yaml.safe_load(alert_rules(monitor(), fleet()))
    queue = next(r["expr"] for r in rules["groups"][0]["rules"] if r["alert"] == "RequestsWaitTooLong")
    # RE2's escapes, each backslash doubled for the PromQL string (promtool's tests show it matches cpu.c).
    assert 'host=~"cpu\\\\.c|gpu\\\\-a|gpu\\\\-b"' in queue, queue


def test_the_dashboard_follows_grafanas_schema_and_queries_its_datasource():
    board = dashboard.as_dict(fleet())
    schema = json.loads((DATA / "grafana-dashboard.schema.json").read_text())
    jsonschema.validate(board, schema)
    panels = [p for p in board["panels"] if p["type"] == "timeseries"]
    assert len(panels) >= 12
    for panel in panels:
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    titles = {p["title"] for p in panels}
    assert {
        "Tokens / s",
        "Time to first token (p50, p95)",
        "Inter-token latency (p50, p95)",
        "GPU utilisation",
    } <= titles
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "host", "model"]


def test_a_dashboard_that_breaks_the_schema_is_caught():
    board = dashboard.as_dict(fleet())
    board["panels"][1]["gridPos"] = {"h": "tall"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(board, json.loads((DATA / "grafana-dashboard.schema.json").read_text()))


def test_the_provisioning_files_load_the_dashboard_and_this_hosts_prometheus():
    provider = yaml.safe_load(dashboard.dashboard_provider())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == str(Path(paths.GRAFANA_DASHBOARD).parent)
    source = yaml.safe_load(dashboard.datasource(monitor(prometheus_bind_address="10.0.0.3")))["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://10.0.0.3:9090"


# --- the firewall ---


def test_every_host_admits_the_monitoring_host_to_its_exporters_and_vllm():
    hosts = fleet()
    gpu = {g.name: g for g in firewall.guards(hosts["gpu-a"], hosts)}
    # gpu-a, an enterprise host, is fronted by the gateway; cpu.c is not.
    assert gpu["vllm"].sources == ("10.0.0.2/32", "10.0.0.3/32") and gpu["vllm"].ports == (8000,)
    assert {g.name: g for g in firewall.guards(hosts["cpu.c"], hosts)}["vllm"].sources == ("10.0.0.3/32",)
    assert gpu["metrics"].ports == (9100, 9400) and gpu["metrics"].sources == ("10.0.0.3/32",)
    gateway = {g.name: g for g in firewall.guards(hosts["gw"], hosts)}
    assert set(gateway) == {"metrics"} and gateway["metrics"].ports == (9100, 8405)
    assert firewall.wanted(hosts["gw"], hosts)
    mon = {g.name: g for g in firewall.guards(hosts["mon"], hosts)}
    assert mon["monitoring"].ports == (9090, 9093, 9094) and mon["monitoring"].sources == ()
    table = firewall.rules(hosts["mon"], hosts)
    assert "tcp dport { 9090, 9093, 9094 } fib daddr type local counter drop" in table


# --- the inventory rules ---


def refused(match: str, **changes):
    with pytest.raises(SettingsError, match=match) as refusal:
        fleet(**changes)
    assert KEY not in str(refusal.value) and WEBHOOK_TOKEN not in str(refusal.value)


def test_a_monitoring_host_needs_a_receiver():
    refused(
        "host mon: alert_webhook_url = None is not allowed: a URL Alertmanager posts alerts to, or alert_email_to",
        mon={"alert_webhook_url": None, "alert_webhook_token": None},
    )


def test_mail_needs_its_sender_and_relay():
    refused(
        "host mon: alert_email_from = None is not allowed: set with alert_email_to", mon={"alert_email_to": "a@b.io"}
    )
    refused(
        "host mon: alert_smtp_smarthost = 'smtp.b.io:587' is not allowed: only with alert_email_to",
        mon={"alert_smtp_smarthost": "smtp.b.io:587"},
    )


def test_the_receivers_secrets_from_the_environment_are_used_only_where_their_receiver_is():
    """group_data/all.py gives every host ALERT_WEBHOOK_TOKEN and ALERT_SMTP_PASSWORD: a mail-only
    monitoring host beside a webhook-only one is a valid inventory."""
    mail = {
        "alert_webhook_url": None,
        "alert_email_to": "oncall@example.com",
        "alert_email_from": "alerts@example.com",
        "alert_smtp_smarthost": "smtp.example.com:587",
        "alert_smtp_password": "smtp-password-" + "p" * 10,
    }
    config = yaml.safe_load(alertmanager_config(monitor(**mail)))
    assert "webhook_configs" not in config["receivers"][0] and WEBHOOK_TOKEN not in json.dumps(config)
    assert "smtp_auth_password" not in config["global"]  # no user to log in as
    assert "smtp_auth_password" not in yaml.safe_load(alertmanager_config(monitor())).get("global", {})


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("alert_webhook_url", "ftp://hooks.example/", "an http:// or https:// URL"),
        ("alert_webhook_url", "http://hooks.example/a b", "an http:// or https:// URL"),
        ("alert_email_to", "oncall", "a mail address"),
        ("alert_smtp_smarthost", "smtp.example.com", "a host and port"),
        ("prometheus_bind_address", "localhost", "an IP address"),
        ("prometheus_scrape_interval", 0, "an integer from 1 to 600"),
    ],
)
def test_bad_monitoring_values_are_refused_by_name(key, value, words):
    with pytest.raises(SettingsError, match=f"host mon: {key} = .* is not allowed: {words}"):
        fleet(mon={key: value})


def test_a_host_in_both_the_gateway_and_the_monitoring_group_is_refused():
    with pytest.raises(SettingsError, match="host gw: groups = \\['gateway', 'monitoring'\\] is not allowed"):
        validate("gw", {"fleet_address": "10.0.0.2"}, ["gateway", "monitoring"])


def test_a_monitoring_host_in_a_phase_group_is_refused():
    with pytest.raises(SettingsError, match="runs Prometheus, not vLLM: put it in no phase group"):
        validate("mon", {"alert_webhook_url": "http://h.example/"}, ["monitoring", "enterprise"])


def test_an_exporters_port_is_not_a_services():
    refused("host gpu-a: vllm_port = 9100 is not allowed: a port other than 9100", **{"gpu-a": {"vllm_port": 9100}})
    refused("host gw: gateway_port = 8405 is not allowed: a port other than 8405", gw={"gateway_port": 8405})


def test_a_gpu_host_of_unknown_vendor_runs_and_gets_no_gpu_exporter_and_plan_says_so():
    """accelerator auto is the default: the monitoring host cannot know the vendor from the
    inventory, so neither side runs a GPU exporter (gpu_name that names the vendor is enough)."""
    from vllm_fleet.plan import monitoring_plan

    hosts = fleet(**{"gpu-a": {"accelerator": "auto"}})
    assert gpu_exporter(hosts["gpu-a"], hosts) is None
    assert "10.0.0.11:9400" not in json.dumps(scrape_configs(hosts["mon"], hosts))
    assert any(
        w.startswith("gpu-a: accelerator auto and no vendor") for w in monitoring_plan(hosts["mon"], hosts)["warnings"]
    )
    named = fleet(**{"gpu-a": {"accelerator": "auto", "gpu_name": "NVIDIA H100 80GB HBM3"}})
    assert gpu_exporter(named["gpu-a"], named) is DCGM


def test_the_monitoring_host_needs_an_address_the_firewalls_admit():
    refused(
        "host mon: fleet_address = 'mon.example' is not allowed: the monitoring host's IP address",
        mon={"fleet_address": "mon.example"},
    )


def test_the_exporters_run_as_their_vendors_document():
    hosts = fleet()
    dcgm = exporter_argv(DCGM, hosts["gpu-a"])
    assert dcgm[:2] == ["/usr/bin/docker", "run"] and ["--network", "host"] == dcgm[5:7]
    joined = " ".join(dcgm)
    assert "--gpus all --cap-add SYS_ADMIN" in joined
    assert joined.endswith(
        f"nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-ubuntu22.04 -f {paths.DCGM_COUNTERS_IN_CONTAINER} -a :9400"
    )
    assert f"{paths.DCGM_COUNTERS}:{paths.DCGM_COUNTERS_IN_CONTAINER}:ro" in joined
    amd = " ".join(exporter_argv(AMD_GPU, hosts["gpu-b"]))
    assert "--privileged --device /dev/dri --device /dev/kfd --volume /sys:/sys:ro" in amd
    assert amd.endswith("docker.io/rocm/device-metrics-exporter:v1.5.1")
    node = " ".join(exporter_argv(NODE, hosts["cpu.c"]))
    assert "--pid host --volume /:/host:ro,rslave quay.io/prometheus/node-exporter:v1.9.1 --path.rootfs=/host" in node
    assert "NODE_NAME=gpu-a" in joined


def test_the_shortest_window_the_rules_read_is_the_one_the_scrape_rule_knows():
    from vllm_fleet.monitoring.alerts import SHORTEST_WINDOW

    rules = yaml.safe_load(alert_rules(monitor(), fleet()))
    windows = {
        int(n) * {"s": 1, "m": 60, "h": 3600}[unit]
        for group in rules["groups"]
        for rule in group["rules"]
        for n, unit in re.findall(r"\[(\d+)([smh])\]", rule["expr"])
    }
    assert min(windows) == SHORTEST_WINDOW
