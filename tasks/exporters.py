"""Exporters: what a host hands the monitoring hosts' Prometheus. Node metrics on every host (Debian's
and Ubuntu's prometheus-node-exporter, else the Prometheus project's image), the vendor's GPU
exporter on Docker GPU hosts. Nothing in an inventory without a monitoring group; the firewall
table admits only the monitoring hosts to their ports. An exporter no longer wanted is stopped
before the firewall's table lets its port go (retire_exporters), a new one starts after the table
guards its port (exporters)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.facts.server import LinuxDistribution, Which
from pyinfra.operations import apt, files, systemd
from pyinfra.operations.util import any_changed

from vllm_fleet import paths, templates
from vllm_fleet.monitoring.exporters import DCGM, DCGM_COUNTERS_FILE, NODE, Exporter, exporter_unit, gpu_exporter
from vllm_fleet.monitoring.exporters import exporters as exporters_of
from vllm_fleet.operations import deploy, stop_host
from vllm_fleet.settings import Settings

NODE_EXPORTER_PACKAGE_SERVICE = "prometheus-node-exporter.service"


@deploy("Exporters")
def retire_exporters(settings: Settings, fleet: dict[str, Settings]) -> None:
    """Stop the exporters this deploy started that the inventory no longer wants: no monitoring
    host, gpu_exporter off, another accelerator, a switch to Nix."""
    wanted = exporters_of(settings, fleet)
    retired = []
    for service, still in (
        (paths.GPU_EXPORTER_SERVICE, gpu_exporter(settings, fleet) is not None),
        (paths.NODE_EXPORTER_SERVICE, bool(wanted)),
    ):
        unit = paths.unit_path(service)
        if not still and host.get_fact(File, path=unit):
            systemd.service(
                name=f"Stop {service}: no monitoring host wants it", service=service, running=False, enabled=False
            )
            retired.append(files.file(name=f"Remove {unit}", path=unit, present=False))
    if retired:
        systemd.daemon_reload(name="Reload systemd for the removed exporters")
    if not wanted and host.get_fact(File, path=paths.NODE_EXPORTER_MARK):
        systemd.service(
            name="Stop the node exporter: no monitoring host wants it",
            service=NODE_EXPORTER_PACKAGE_SERVICE,
            running=False,
            enabled=False,
        )
        files.file(name="Remove the node exporter's mark", path=paths.NODE_EXPORTER_MARK, present=False)


@deploy("Exporters")
def exporters(settings: Settings, fleet: dict[str, Settings]) -> None:
    if not exporters_of(settings, fleet):
        return
    if host.get_fact(LinuxDistribution).get("name") in ("Debian", "Ubuntu"):
        apt.packages(
            name="Install the node exporter (prometheus-node-exporter)",
            packages=["prometheus-node-exporter"],
            # Its recommended collectors pull in smartmontools and more.
            extra_install_args="--no-install-recommends",
        )
        systemd.service(
            name="Keep the node exporter running and enabled at boot",
            service=NODE_EXPORTER_PACKAGE_SERVICE,
            running=True,
            enabled=True,
        )
        # Ours to stop once no monitoring host wants it (an operator's own would have no mark).
        files.file(name="Mark the node exporter as the deploy's", path=paths.NODE_EXPORTER_MARK, present=True)
    else:
        _container(NODE, settings, paths.NODE_EXPORTER_SERVICE)
    gpu = gpu_exporter(settings, fleet)
    if gpu is None:
        return
    restart = []
    if gpu is DCGM:
        counters = files.put(
            name=f"Write the DCGM exporter's collectors {paths.DCGM_COUNTERS} (the defaults, ECC and violations)",
            src=DCGM_COUNTERS_FILE,
            dest=paths.DCGM_COUNTERS,
            mode="644",
        )
        restart.append(counters)
    _container(gpu, settings, paths.GPU_EXPORTER_SERVICE, restart)


def _container(exporter: Exporter, settings: Settings, service: str, restart_on=()) -> None:
    # A vLLM host served with Docker gets its engine earlier in this run; any other host has one
    # only if it had one already.
    installs_docker = settings.role == "vllm" and settings.serving_method == "docker"
    if not installs_docker and not host.get_fact(Which, command="docker"):
        reason = f"{exporter.what} runs in a container here (the OS has no package for it), and the host has no Docker"
        stop_host(name=f"Stop: {reason}", reasons=[reason])
        return
    unit = files.put(
        name=f"Install {service} ({exporter.what})",
        src=templates.rendered("vllm-fleet-exporter.service.j2", **exporter_unit(exporter, settings)),
        dest=paths.unit_path(service),
        mode="644",
    )
    systemd.daemon_reload(name=f"Reload systemd for {service}", _if=unit.did_change)
    systemd.service(
        name=f"Keep {exporter.what} running and enabled at boot", service=service, running=True, enabled=True
    )
    systemd.service(
        name=f"Restart {exporter.what} for its new settings",
        service=service,
        restarted=True,
        _if=any_changed(unit, *restart_on),
    )
