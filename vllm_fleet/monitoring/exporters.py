"""The exporters: which ones each host runs (none in an inventory without a monitoring host)
and how their containers are started."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vllm_fleet import images, paths
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
