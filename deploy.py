"""vllm-fleet: from a bare host to a serving vLLM endpoint.

    pyinfra inventories/prod.py deploy.py

Every host's settings are validated before anything is planned: one bad host
stops the run and no host is touched. Then, per host: read the GPUs, size the
model, run the pre-flight checks (a host that fails them is refused and left as
it was, the others go on), install the GPU stack (rebooting as reboot_policy
allows), then Docker or Nix (serving_method), the firewall in front of vLLM's port, and
the vLLM service, activated as a new release that rolls back by itself if it does not
come up. Hosts of the gateway group get HAProxy in front of the vLLM hosts instead.

Fleets behind a gateway roll out in verified batches with `python -m vllm_fleet rollout`.
"""

from pyinfra import host
from pyinfra.facts.server import Arch, LinuxDistribution

from tasks.amd_rocm import amd_rocm
from tasks.docker_engine import docker_engine
from tasks.firewall import firewall
from tasks.gateway import gateway
from tasks.gpu_reboot import gpu_reboot
from tasks.host_tools import host_tools_setup
from tasks.nix import nix_setup
from tasks.nvidia_container_toolkit import nvidia_container_toolkit
from tasks.nvidia_driver import nvidia_driver
from tasks.preflight import preflight
from tasks.vllm_service import vllm_service
from vllm_fleet.distro import read_distro
from vllm_fleet.facts import GpuVendors, resolve_accelerator
from vllm_fleet.gpus import GPU_FACTS, gpus_from_data, gpus_from_facts
from vllm_fleet.inventory import fleet_settings, settings_for, sources
from vllm_fleet.plan import plan_host

settings = settings_for(host)
if settings.role == "gateway":
    host_tools_setup(settings)
    gateway(settings, fleet_settings(host))
else:
    vendors = host.get_fact(GpuVendors)
    accelerator = resolve_accelerator(settings.accelerator, vendors)
    gpu_fact = GPU_FACTS.get(accelerator)
    gpus = (gpu_fact and gpus_from_facts(host.get_fact(gpu_fact))) or gpus_from_data(settings)
    machine = host.get_fact(Arch) or ""
    plan = plan_host(settings, sources(host), accelerator, gpus, machine)
    distro, unsupported_os = read_distro(host.get_fact(LinuxDistribution), machine)
    probe = preflight(plan, vendors, distro, unsupported_os)

    if probe is not None:
        host_tools_setup(settings)
        gpu_stack = settings.manage_gpu_stack and accelerator in ("nvidia", "amd")
        driver_changes = []
        if gpu_stack:
            driver = nvidia_driver if accelerator == "nvidia" else amd_rocm
            driver_changes = driver(plan.settings, distro, probe)
            gpu_reboot(settings, probe, accelerator, driver_changes)
        engine_restarts = []
        if settings.serving_method == "docker":
            engine_restarts = docker_engine(settings, distro, probe)
            if gpu_stack and accelerator == "nvidia":
                engine_restarts += nvidia_container_toolkit(settings, distro, probe, driver_changes)
        else:
            nix_setup(settings, distro, probe)
        firewall(plan.settings, fleet_settings(host), probe)
        vllm_service(plan.settings, accelerator, probe, engine_restarts)
