"""vllm-fleet: from a bare host to a serving vLLM endpoint.

    pyinfra inventories/prod.py deploy.py

Every host's settings are validated before anything is planned: one bad host
stops the run and no host is touched.
"""

from pyinfra import host

from tasks.docker_engine import docker_engine
from tasks.vllm_service import vllm_service
from vllm_fleet.facts import GpuVendors, resolve_accelerator
from vllm_fleet.inventory import settings_for

settings = settings_for(host)
accelerator = resolve_accelerator(settings.accelerator, host.get_fact(GpuVendors))

engine_restarts = docker_engine(settings)
vllm_service(settings, accelerator, engine_restarts)
