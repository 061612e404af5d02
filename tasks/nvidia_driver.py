"""NVIDIA driver: sources, kernel headers, nouveau blacklisted, the branch installed and held."""

from __future__ import annotations

from io import StringIO

from pyinfra.api.deploy import deploy
from pyinfra.operations import apt, dnf, files, server

from vllm_fleet import gpu_packages
from vllm_fleet.distro import APT_CACHE_SECONDS, Distro
from vllm_fleet.settings import Settings

NONFREE_SOURCE = "/etc/apt/sources.list.d/vllm-fleet-nonfree.sources"


@deploy("NVIDIA driver")
def nvidia_driver(settings: Settings, distro: Distro, probe: dict) -> list:
    """Returns the operations whose change means the running kernel needs the new driver."""
    plan = gpu_packages.nvidia_driver(distro, settings, probe.get("kernel", ""))
    add_driver_sources(plan, distro)

    if plan.headers:
        _install(distro, "Install kernel headers for DKMS", list(plan.headers))

    blacklist = files.put(
        name="Blacklist nouveau",
        src=StringIO(gpu_packages.NOUVEAU_BLACKLIST_TEXT),
        dest=gpu_packages.NOUVEAU_BLACKLIST,
        mode="644",
    )
    initramfs = "update-initramfs -u" if distro.family == "apt" else "dracut --force"
    server.shell(name="Rebuild the initramfs without nouveau", commands=[initramfs], _if=blacklist.did_change)

    held = [p for p in probe.get("held", "").split(",") if p]
    # Another branch's driver packages; a held container-toolkit package is not ours to release.
    stale = [p for p in held if "nvidia" in p and "container" not in p and p not in plan.packages]
    if stale:
        server.shell(
            name=f"Release holds on other NVIDIA packages ({', '.join(stale)})",
            commands=[f"apt-mark unhold {' '.join(stale)}"],
        )

    if plan.dnf_module:
        installed = _dnf_module(plan, settings, probe)
        return [blacklist] + ([installed] if installed else [])
    installed = _install(distro, f"Install NVIDIA driver {settings.nvidia_driver_branch}", list(plan.packages))
    unheld = [p for p in plan.packages if p not in held]
    if unheld:
        server.shell(
            name="Hold the NVIDIA driver packages against upgrades", commands=[f"apt-mark hold {' '.join(unheld)}"]
        )
    return [blacklist, installed]


def add_driver_sources(plan, distro: Distro) -> list:
    added = []
    if plan.debian_nonfree:
        added.append(
            files.put(
                name="Add Debian's contrib, non-free and non-free-firmware components",
                src=StringIO(gpu_packages.debian_nonfree_source(distro.codename)),
                dest=NONFREE_SOURCE,
                mode="644",
            )
        )
    elif plan.cuda_repo and distro.family == "apt":
        # NVIDIA's keyring package installs the signed-by keyring and the repository's source.
        added.append(
            apt.deb(name="Add NVIDIA's CUDA repository (cuda-keyring)", src=gpu_packages.cuda_keyring_url(distro))
        )
    elif plan.cuda_repo:
        dnf.packages(name="Install EPEL (DKMS lives there)", packages=["epel-release"])
        files.download(
            name="Add NVIDIA's CUDA repository",
            src=gpu_packages.cuda_dnf_repo_url(distro),
            dest=f"/etc/yum.repos.d/cuda-{distro.cuda_repo}.repo",
            mode="644",
        )
    if added:
        apt.update(name="Refresh apt lists for the new sources", _if=lambda: any(op.did_change() for op in added))
    return added


def _install(distro: Distro, name: str, packages: list[str]):
    if distro.family == "dnf":
        return dnf.packages(name=name, packages=packages)
    return apt.packages(name=name, packages=packages, update=True, cache_time=APT_CACHE_SECONDS)


def _dnf_module(plan, settings: Settings, probe: dict):
    """The module stream's install, or None when this branch is already installed."""
    if probe.get("nvidia_rpm", "").startswith(f"{settings.nvidia_driver_branch}."):
        return None
    return server.shell(
        name=f"Install NVIDIA driver module stream {plan.dnf_module}",
        commands=[f"dnf module reset -y nvidia-driver && dnf module install -y {plan.dnf_module}"],
    )
