"""NVIDIA driver: sources, kernel headers, nouveau blacklisted, the branch installed (never held)."""

from __future__ import annotations

from io import StringIO

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import apt, dnf, files, server

from vllm_fleet import gpu_packages, paths
from vllm_fleet.distro import APT_CACHE_SECONDS, Distro
from vllm_fleet.facts.probe import Probe
from vllm_fleet.operations import deploy
from vllm_fleet.settings import Settings


@deploy("NVIDIA driver")
def nvidia_driver(settings: Settings, distro: Distro, probe: Probe) -> list[OperationMeta]:
    """Returns the operations whose change means the running kernel needs the new driver."""
    plan = gpu_packages.nvidia_driver(distro, settings, probe.kernel)
    add_driver_sources(plan, distro, probe)

    if plan.headers:
        _install(distro, "Install kernel headers for DKMS", list(plan.headers))
    if plan.pinning:
        _install(distro, f"Keep apt on driver branch {settings.nvidia_driver_branch} ({plan.pinning})", [plan.pinning])

    blacklist = files.put(
        name="Blacklist nouveau",
        src=StringIO(gpu_packages.NOUVEAU_BLACKLIST_TEXT),
        dest=paths.NOUVEAU_BLACKLIST,
        mode="644",
    )
    initramfs = "update-initramfs -u" if distro.family == "apt" else "dracut --force"
    server.shell(name="Rebuild the initramfs without nouveau", commands=[initramfs], _if=blacklist.did_change)

    held = probe.held
    # Holds on NVIDIA driver packages (ours from earlier releases of this deploy, or another
    # branch's) freeze the kernel modules while the kernel upgrades; a held container-toolkit
    # package is not ours to release.
    frozen = [p for p in held if "nvidia" in p and "container" not in p]
    if frozen:
        server.shell(
            name=f"Release holds on NVIDIA driver packages ({', '.join(frozen)}): they keep the next kernel's "
            "modules out",
            commands=[f"apt-mark unhold {' '.join(frozen)}"],
        )

    if plan.dnf_module:
        installed = _dnf_module(plan, settings, probe)
        return [blacklist] + ([installed] if installed else [])
    installed = _install(distro, f"Install NVIDIA driver {settings.nvidia_driver_branch}", list(plan.packages))
    return [blacklist, installed]


def add_driver_sources(plan, distro: Distro, probe: Probe) -> None:
    """Debian's non-free components or NVIDIA's CUDA repository, and apt's lists refreshed after them."""
    added = []
    if plan.debian_nonfree:
        added.append(
            files.put(
                name="Add Debian's contrib, non-free and non-free-firmware components",
                src=StringIO(gpu_packages.debian_nonfree_source(distro.codename)),
                dest=paths.NONFREE_SOURCE,
                mode="644",
            )
        )
    elif plan.cuda_repo and distro.family == "apt":
        # NVIDIA's keyring package installs the signed-by keyring and the repository's source.
        added.append(
            apt.deb(name="Add NVIDIA's CUDA repository (cuda-keyring)", src=gpu_packages.cuda_keyring_url(distro))
        )
    elif plan.cuda_repo:
        if not probe.epel:
            server.shell(
                name="Enable CRB and install EPEL (DKMS lives there)", commands=gpu_packages.epel_commands(distro)
            )
        files.download(
            name="Add NVIDIA's CUDA repository",
            src=gpu_packages.cuda_dnf_repo_url(distro),
            dest=paths.cuda_dnf_repo(distro.cuda_repo),
            mode="644",
        )
    if added:
        apt.update(name="Refresh apt lists for the new sources", _if=lambda: any(op.did_change() for op in added))


def _install(distro: Distro, name: str, packages: list[str]):
    if distro.family == "dnf":
        return dnf.packages(name=name, packages=packages)
    return apt.packages(name=name, packages=packages, update=True, cache_time=APT_CACHE_SECONDS)


def _dnf_module(plan, settings: Settings, probe: Probe):
    """The module stream's install, or None when this branch is already installed; another branch
    is switched from with `dnf module switch-to --allowerasing` (NVIDIA's driver installation guide)."""
    installed = probe.nvidia_rpm
    if installed.startswith(f"{settings.nvidia_driver_branch}."):
        return None
    if installed:
        return server.shell(
            name=f"Switch the NVIDIA driver from {installed} to module stream {plan.dnf_module}",
            commands=[f"dnf module switch-to -y --allowerasing {plan.dnf_module}"],
        )
    return server.shell(
        name=f"Install NVIDIA driver module stream {plan.dnf_module}",
        commands=[f"dnf module install -y {plan.dnf_module}"],
    )
