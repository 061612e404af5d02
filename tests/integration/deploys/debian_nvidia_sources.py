"""The NVIDIA driver steps a GPU-less Debian 12 host can run for real: the driver's
sources added by the task's own code, then every package it would install resolved
by apt (--simulate: nothing is installed)."""

from pyinfra import host
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import server

from tasks.nvidia_driver import add_driver_sources
from vllm_fleet import gpu_packages
from vllm_fleet.facts.distro import from_fact
from vllm_fleet.inventory import settings_for

settings = settings_for(host)
distro = from_fact(host.get_fact(LinuxDistribution))
plan = gpu_packages.nvidia_driver(distro, settings, "")
add_driver_sources(plan, distro, {})
server.shell(
    name="Resolve the NVIDIA driver packages",
    commands=[f"apt-get install --simulate -y {' '.join(plan.packages + plan.headers)} > /tmp/nvidia-simulate.log"],
)
