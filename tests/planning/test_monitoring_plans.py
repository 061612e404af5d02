"""GPU hosts in an inventory with a monitoring host, planned against facts written by hand: the
vendor's GPU exporter under a unit of its own (NVIDIA's DCGM exporter with its collectors, AMD's
device metrics exporter), the node exporter from the distribution, the firewall admitting the
monitoring host to their ports; and the monitoring host's Prometheus and Alertmanager, their
files checked by promtool and amtool before they replace the live ones.

The exporters' `docker run` lines follow their vendors' documentation: NVIDIA/dcgm-exporter
README ("Quickstart": --gpus all --cap-add SYS_ADMIN; -f, -a :9400) and ROCm/device-metrics-exporter
docs/installation/docker.md (--privileged, /dev/dri, /dev/kfd, /sys read-only, port 5000)."""

from __future__ import annotations

import pytest

from tests.planning.harness import FakeHost, plan, plan_each
from tests.planning.test_gpu_stack_plans import GPU80

MONITOR = {"fleet_address": "10.0.0.3", "alert_webhook_url": "http://10.0.0.9:9999/alerts"}
NODE = "Exporters | Install the node exporter (prometheus-node-exporter)"


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    nvidia = FakeHost(
        "ubuntu22-nvidia", "ubuntu22", data={**GPU80, "accelerator": "nvidia", "fleet_address": "10.0.0.11"}
    )
    amd = FakeHost(
        "ubuntu22-amd",
        "ubuntu22",
        pci="mi300x",
        data={"gpu_count": 8, "gpu_memory_gib": 192, "accelerator": "amd", "fleet_address": "10.0.0.12"},
    )
    monitor = FakeHost("ubuntu22-monitor", "ubuntu22", pci="none", data=MONITOR)
    path = tmp_path_factory.mktemp("monitoring") / "inventory.py"
    path.write_text(
        f"single_gpu = {[nvidia.inventory_entry(), amd.inventory_entry()]!r}\n"
        f"monitoring = {[monitor.inventory_entry()]!r}\n"
    )
    return plan(str(path))


def commands(planned, operation: str, host: str) -> str:
    return " ".join(planned.ops[operation][f"@fake/{host}"])


def did(planned, host: str, operation: str) -> bool:
    """Whether the host ran the operation (pyinfra names an operation the hosts share "A, B")."""
    return any(operation in name.split(", ") for name in planned.names(host))


def test_an_nvidia_host_runs_the_dcgm_exporter_with_its_collectors(planned):
    assert planned.rc == 0, planned.output[-3000:]
    names = planned.names("ubuntu22-nvidia")
    assert NODE in names
    assert any(
        n.startswith("Exporters | Write the DCGM exporter's collectors /etc/vllm-fleet/dcgm-counters.csv")
        for n in names
    )
    # The unit's own content is checked in tests/unit/test_monitoring.py (the vendors' docker run).
    gpu = "Exporters | Install vllm-fleet-gpu-exporter.service (NVIDIA GPU metrics (DCGM exporter))"
    assert did(planned, "ubuntu22-nvidia", gpu)
    assert did(
        planned, "ubuntu22-nvidia", "Exporters | Keep NVIDIA GPU metrics (DCGM exporter) running and enabled at boot"
    )
    assert "--no-install-recommends" in commands(planned, NODE, "ubuntu22-nvidia")


def test_an_amd_host_runs_amds_exporter(planned):
    amd = "Exporters | Install vllm-fleet-gpu-exporter.service (AMD GPU metrics (device metrics exporter))"
    assert did(planned, "ubuntu22-amd", amd)
    collectors = next(n for n in planned.status if "Write the DCGM exporter's collectors" in n)
    assert set(planned.status[collectors]) == {"@fake/ubuntu22-nvidia"}


def test_the_monitoring_host_checks_its_files_before_installing_them(planned):
    names = planned.names("ubuntu22-monitor")
    install = commands(planned, "Monitoring | Install Prometheus and Alertmanager", "ubuntu22-monitor")
    assert "prometheus prometheus-alertmanager" in install and "--no-install-recommends" in install
    check = next(n for n in names if n.startswith("Monitoring | Check the alert rules and scrape configuration"))
    # The copy promtool checks names the staged rules; `check config` checks them with it.
    assert "promtool check config /etc/vllm-fleet/monitoring/prometheus-checked.yml && install" in commands(
        planned, check, "ubuntu22-monitor"
    )
    amtool = next(n for n in names if n.startswith("Monitoring | Check Alertmanager's configuration (amtool)"))
    assert "amtool check-config" in commands(planned, amtool, "ubuntu22-monitor")
    assert "Firewall | Load the firewall and keep it at boot" in names
    assert not [n for n in names if n.startswith(("vLLM service", "Docker engine", "NVIDIA"))]


@pytest.fixture(scope="module")
def retired(tmp_path_factory):
    """A host that ran the deploy's exporters, in an inventory that no longer has a monitoring host."""
    from vllm_fleet import paths

    unit = f"/etc/systemd/system/{paths.GPU_EXPORTER_SERVICE}"
    host = FakeHost(
        "ubuntu22-was-monitored",
        "ubuntu22",
        data={**GPU80, "accelerator": "nvidia"},
        files={unit: "[Unit]\n", paths.NODE_EXPORTER_MARK: ""},
    )
    return plan_each(tmp_path_factory.mktemp("retired"), [host])


def test_exporters_no_monitoring_host_wants_stop_before_the_firewall_lets_their_ports_go(retired):
    assert retired.rc == 0, retired.output[-3000:]
    host = "@fake/ubuntu22-was-monitored"
    # Every operation planned for the host, in order (a stop of a unit that is not running changes nothing).
    planned = [name for name, hosts in retired.status.items() if host in hosts]
    stop_gpu = "Exporters | Stop vllm-fleet-gpu-exporter.service: no monitoring host wants it"
    stop_node = "Exporters | Stop the node exporter: no monitoring host wants it"
    assert stop_gpu in planned and stop_node in planned
    assert retired.status["Exporters | Remove /etc/systemd/system/vllm-fleet-gpu-exporter.service"][host] == "Success"
    assert retired.status["Exporters | Remove the node exporter's mark"][host] == "Success"
    assert planned.index(stop_gpu) < planned.index("Firewall | Write the firewall /etc/vllm-fleet/firewall.nft")
    assert not [n for n in planned if n.startswith("Exporters | Install")]
