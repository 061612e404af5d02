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

from pyinfra import host
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
from vllm_fleet.facts.distro import read_distro
from vllm_fleet.facts.host import HostFacts
from vllm_fleet.inventory import fleet_settings, settings_for, sources
from vllm_fleet.plan import resolve_host

inventory_settings = settings_for(host)
fleet = fleet_settings(host)
if inventory_settings.role in ("gateway", "monitoring"):
    host_tools_setup(inventory_settings)
    retire_exporters(inventory_settings, fleet)
    firewall(inventory_settings, fleet)
    if inventory_settings.role == "gateway":
        gateway(inventory_settings, fleet)
    else:
        monitoring_server(inventory_settings, fleet)
    exporters(inventory_settings, fleet)
else:
    facts = HostFacts.read(host.get_fact, inventory_settings.accelerator)
    plan = resolve_host(inventory_settings, sources(host), facts, fleet)
    distro, unsupported_os = read_distro(host.get_fact(LinuxDistribution), facts.machine)
    probe = preflight(plan, facts.vendors, distro, unsupported_os)

    if probe is not None:  # a refused host is left as it was
        settings, accelerator = plan.settings, plan.accelerator
        host_tools_setup(settings)
        driver_changes = []
        if plan.manages_gpu_stack:
            driver = nvidia_driver if accelerator == "nvidia" else amd_rocm
            driver_changes = driver(settings, distro, probe)
            gpu_reboot(settings, probe, accelerator, driver_changes)
        if settings.serving_method == "docker":
            restarts = docker_engine(settings, distro, probe)
            if plan.manages_gpu_stack and accelerator == "nvidia":
                restarts += nvidia_container_toolkit(settings, distro, probe, driver_changes)
        else:
            nix_setup(settings, distro, probe)
            restarts = nix_server(settings, accelerator, probe)
        # What a host exports is what the monitoring hosts scrape: read from the inventory, as theirs is.
        retire_exporters(inventory_settings, fleet)
        firewall(settings, fleet, probe)
        vllm_service(settings, accelerator, probe, restarts, plan.cluster)
        exporters(inventory_settings, fleet)
