"""vllm-fleet: from a bare host to a serving vLLM endpoint.

    pyinfra inventories/prod.py deploy.py

Every host's settings are validated before anything is planned: one bad host
stops the run and no host is touched. Then, per host: read the GPUs, size the
model, run the pre-flight checks (a host that fails them is refused and left
as it was, the others go on), and deploy.
"""

from pyinfra import host

from tasks.docker_engine import docker_engine
from tasks.preflight import preflight
from tasks.vllm_service import vllm_service
from vllm_fleet.facts import GpuVendors, resolve_accelerator
from vllm_fleet.gpus import AmdGpus, NvidiaGpus, gpus_from_data, gpus_from_facts
from vllm_fleet.inventory import settings_for, sources
from vllm_fleet.plan import plan_host

settings = settings_for(host)
vendors = host.get_fact(GpuVendors)
accelerator = resolve_accelerator(settings.accelerator, vendors)
detected = {"nvidia": NvidiaGpus, "amd": AmdGpus}.get(accelerator)
gpus = (detected and gpus_from_facts(host.get_fact(detected))) or gpus_from_data(settings)
plan = plan_host(settings, sources(host), accelerator, gpus)

if preflight(plan, vendors):
    engine_restarts = docker_engine(plan.settings)
    vllm_service(plan.settings, accelerator, engine_restarts)
