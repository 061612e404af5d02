"""AMD ROCm: amdgpu-install from AMD's repository, pinned by rocm_version; users in render and video."""

from __future__ import annotations

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import apt, dnf, server

from vllm_fleet import gpu_packages, paths
from vllm_fleet.distro import APT_CACHE_SECONDS, Distro
from vllm_fleet.facts.probe import Probe
from vllm_fleet.operations import deploy
from vllm_fleet.settings import Settings


@deploy("AMD ROCm")
def amd_rocm(settings: Settings, distro: Distro, probe: Probe) -> list[OperationMeta]:
    """Returns the operations whose change needs a reboot to load amdgpu."""
    url = gpu_packages.amdgpu_install_url(distro, settings.rocm_version)
    prerequisites = gpu_packages.amdgpu_prerequisites(distro, probe.kernel)
    if distro.family == "dnf":
        if not probe.epel:
            server.shell(
                name="Enable CRB and install EPEL (amdgpu's DKMS lives there)",
                commands=gpu_packages.epel_commands(distro),
            )
        dnf.packages(
            name="Install what amdgpu-install needs: the running kernel's headers for amdgpu's DKMS, Python tools",
            packages=prerequisites,
        )
    else:
        apt.packages(
            name="Install what amdgpu-install needs: the running kernel's headers and extra modules, Python tools",
            packages=prerequisites,
            update=True,
            cache_time=APT_CACHE_SECONDS,
        )
    if distro.family == "apt":
        apt.deb(name=f"Add AMD's repositories for ROCm {settings.rocm_version} (amdgpu-install)", src=url)
    else:
        dnf.rpm(name=f"Add AMD's repositories for ROCm {settings.rocm_version} (amdgpu-install)", src=url)
    # Adding AMD's repositories changes no driver: only the install below asks for a reboot.
    changes: list[OperationMeta] = []
    version, usecase = settings.rocm_version, settings.rocm_usecase
    if not gpu_packages.rocm_installed(version, usecase, probe.rocm_installed, probe.rocm_marked):
        changes.append(
            server.shell(
                name=f"Install the amdgpu driver and ROCm {version} (use case {usecase})",
                commands=[
                    f"amdgpu-install -y --usecase={usecase}",
                    f"mkdir -p {paths.STATE_DIR} && echo '{usecase} {version}' > {paths.ROCM_INSTALLED}",
                ],
            )
        )
    for user in settings.rocm_users:
        server.user(
            name=f"Add {user} to the render and video groups", user=user, groups=["render", "video"], append=True
        )
    return changes
