"""vllm-fleet: from a bare host to a serving vLLM endpoint.

    pyinfra inventories/prod.py deploy.py

Every host's settings are validated before anything is planned: one bad host
stops the run and no host is touched. Then, per host: read the GPUs, size the
model, run the pre-flight checks (a host that fails them is refused and left as
it was, the others go on), install the GPU stack (rebooting as reboot_policy
allows), then Docker or Nix (serving_method), the firewall in front of vLLM's port, and
the vLLM service, activated as a new release that rolls back by itself if it does not
come up. Hosts of the gateway group get HAProxy in front of the vLLM hosts instead, and hosts
of the monitoring group Prometheus and Alertmanager; in an inventory with monitoring hosts,
every host also runs the exporters they scrape.

Fleets behind a gateway roll out in verified batches with `vllm-fleet rollout`.
"""

from typing import NamedTuple

from pyinfra import host
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.server import LinuxDistribution

from tasks.amd_rocm import amd_rocm
from tasks.docker_engine import docker_engine
from tasks.exporters import exporters, retire_exporters
from tasks.firewall import firewall
from tasks.gateway import gateway
from tasks.gpu_reboot import gpu_reboot
from tasks.host_tools import host_tools_setup
from tasks.monitoring import monitoring_server
from tasks.nix_server import nix_server
from tasks.nix_setup import nix_setup
from tasks.nvidia_container_toolkit import nvidia_container_toolkit
from tasks.nvidia_driver import nvidia_driver
from tasks.preflight import preflight
from tasks.vllm_service import vllm_service
from vllm_fleet.distro import Distro
from vllm_fleet.facts.distro import read_distro
from vllm_fleet.facts.host import HostFacts
from vllm_fleet.facts.probe import Probe
from vllm_fleet.inventory import fleet_settings, sources
from vllm_fleet.plan import HostPlan, resolve_host

fleet = fleet_settings(host)  # every host's settings validated together: one bad host and none is touched
# As the inventory sets them, which is how the other hosts read this one: sizing decides only what
# vLLM serves (model, image, GPU driver flavour), the plan's part.
settings = fleet[host.name]


class VllmHost(NamedTuple):
    """A vLLM host that pre-flight let through: its plan, distribution and probe."""

    plan: HostPlan
    distro: Distro
    probe: Probe


def deploy_host(vllm: VllmHost | None = None) -> None:
    """Every step of a host; vllm: a vLLM host's, from its pre-flight."""
    host_tools_setup(settings)
    if vllm is not None:
        plan, distro, probe = vllm
        driver_changes: list[OperationMeta] = []
        if plan.manages_gpu_stack:
            driver = nvidia_driver if plan.accelerator == "nvidia" else amd_rocm
            driver_changes = driver(plan.settings, distro, probe)
            gpu_reboot(plan.settings, probe, plan.accelerator, driver_changes)
        if plan.settings.serving_method == "docker":
            restarts = docker_engine(plan.settings, distro, probe)
            if plan.manages_gpu_stack and plan.accelerator == "nvidia":
                restarts += nvidia_container_toolkit(plan.settings, distro, probe, driver_changes)
        else:
            nix_setup(plan.settings, distro, probe)
            restarts = nix_server(plan, fleet, probe)
    retire_exporters(settings, fleet)
    firewall(settings, fleet, vllm.probe if vllm else None)
    if vllm is not None:
        vllm_service(plan.settings, plan.accelerator, vllm.probe, restarts, plan.cluster)
    elif settings.role == "gateway":
        gateway(settings, fleet)
    else:
        monitoring_server(settings, fleet)
    exporters(settings, fleet)


# pyinfra runs each operation on every host before the next, ordered by the line of this file
# it was called from: called from here, the gateways and monitoring hosts are brought up to date
# before any vLLM host is.
if settings.role in ("gateway", "monitoring"):
    deploy_host()
else:
    facts = HostFacts.read(host.get_fact, settings.accelerator)
    plan = resolve_host(settings, sources(host), facts, fleet)
    distro, unsupported_os = read_distro(host.get_fact(LinuxDistribution), facts.machine)
    probe = preflight(plan, fleet, facts.vendors, distro, unsupported_os)
    if probe is not None:  # a host pre-flight refused is left as it was
        if distro is None:
            # Pre-flight lets an unsupported distribution through when "os" is in
            # preflight_warn_only, but every task that installs needs to know the distribution.
            raise PyinfraError(f"host {host.name}: {unsupported_os}: vllm-fleet cannot install on it")
        deploy_host(VllmHost(plan, distro, probe))
