"""NVIDIA container toolkit: Docker can hand GPUs to containers; CDI spec for Podman users."""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api.deploy import deploy
from pyinfra.facts.files import File
from pyinfra.operations import apt, dnf, files, server

from tasks.docker_engine import restart_engine
from vllm_fleet import gpu_packages
from vllm_fleet.distro import APT_CACHE_SECONDS, Distro
from vllm_fleet.facts import parse_daemon_json
from vllm_fleet.settings import Settings

CDI_SPEC = "/etc/cdi/nvidia.yaml"


@deploy("NVIDIA container toolkit")
def nvidia_container_toolkit(settings: Settings, distro: Distro, probe: dict) -> list:
    """Returns the operations that restart the Docker engine."""
    packages = gpu_packages.toolkit_packages(distro, settings.nvidia_container_toolkit_version)
    if distro.family == "apt":
        files.directory(name="Create /etc/apt/keyrings", path="/etc/apt/keyrings", mode="755")
        files.download(
            name="Download the NVIDIA container toolkit signing key",
            src=f"{gpu_packages.TOOLKIT_REPO}/gpgkey",
            dest="/etc/apt/keyrings/nvidia-container-toolkit.asc",
            mode="644",
        )
        source = files.put(
            name="Add the NVIDIA container toolkit repository (deb822)",
            src=StringIO(gpu_packages.toolkit_apt_source()),
            dest="/etc/apt/sources.list.d/nvidia-container-toolkit.sources",
            mode="644",
        )
        apt.update(name="Refresh apt lists for the toolkit repository", _if=source.did_change)
        apt.packages(
            name="Install the NVIDIA container toolkit", packages=packages, update=True, cache_time=APT_CACHE_SECONDS
        )
    else:
        files.put(
            name="Add the NVIDIA container toolkit repository",
            src=StringIO(gpu_packages.toolkit_dnf_repo()),
            dest="/etc/yum.repos.d/nvidia-container-toolkit.repo",
            mode="644",
        )
        dnf.packages(name="Install the NVIDIA container toolkit", packages=packages)

    if not host.get_fact(File, path=CDI_SPEC):
        server.shell(name="Generate the CDI spec for Podman", commands=[f"nvidia-ctk cdi generate --output={CDI_SPEC}"])

    # nvidia-ctk rewrites daemon.json: only when the runtime is missing, so a second run changes nothing.
    config = parse_daemon_json(probe.get("daemon_json", ""))
    if isinstance(config, dict) and "nvidia" in config.get("runtimes", {}):
        return []
    configured = server.shell(
        name="Register the NVIDIA runtime with Docker", commands=["nvidia-ctk runtime configure --runtime=docker"]
    )
    return restart_engine("the NVIDIA runtime", after=configured)
