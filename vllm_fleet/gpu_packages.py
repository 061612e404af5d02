"""What the GPU stack installs, per distribution: package names, sources and repositories.

Pure functions of the distribution, the settings and the kernel, so every combination
is unit-tested and the tasks stay a list of steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from vllm_fleet.distro import Distro

CUDA_REPO = "https://developer.download.nvidia.com/compute/cuda/repos"
TOOLKIT_REPO = "https://nvidia.github.io/libnvidia-container"
DEBIAN_NVIDIA_BRANCH = "535"  # bookworm's non-free nvidia-driver (535.261.03 as seen here)
NOUVEAU_BLACKLIST = "/etc/modprobe.d/blacklist-nouveau.conf"
NOUVEAU_BLACKLIST_TEXT = (
    "# Managed by vllm-fleet: nouveau would bind the GPU before the NVIDIA driver.\n"
    "blacklist nouveau\n"
    "options nouveau modeset=0\n"
)


class DriverUnavailable(ValueError):
    """The wanted branch or source does not exist for this distribution."""


@dataclass(frozen=True)
class DriverPlan:
    packages: tuple[str, ...]  # installed (and, on apt, held)
    dkms: bool  # modules built on the host: needs headers, unsigned under Secure Boot
    headers: tuple[str, ...] = ()
    cuda_repo: bool = False  # NVIDIA's CUDA repository is added first
    debian_nonfree: bool = False  # contrib/non-free/non-free-firmware components added first
    dnf_module: str = ""  # e.g. nvidia-driver:570-dkms


def kernel_flavour(kernel: str) -> str:
    """'6.8.0-45-generic' -> 'generic' (Ubuntu names its prebuilt module packages by flavour)."""
    return kernel.rsplit("-", 1)[-1] if "-" in kernel else "generic"


def nvidia_driver(distro: Distro, s, kernel: str) -> DriverPlan:
    branch, open_modules = s.nvidia_driver_branch, s.nvidia_open_kernel_modules
    if s.nvidia_driver_source == "cuda" and distro.family == "apt":
        driver = f"nvidia-open-{branch}" if open_modules else f"cuda-drivers-{branch}"
        return DriverPlan((driver,), dkms=True, headers=(f"linux-headers-{kernel}",), cuda_repo=True)
    if distro.id == "ubuntu":
        # Canonical's prebuilt, signed modules: no DKMS, no headers, fine under Secure Boot.
        flavour = "server-open" if open_modules else "server"
        return DriverPlan(
            (
                f"linux-modules-nvidia-{branch}-{flavour}-{kernel_flavour(kernel)}",
                f"nvidia-headless-no-dkms-{branch}-{flavour}",
                f"nvidia-utils-{branch}-server",
            ),
            dkms=False,
        )
    if distro.id == "debian":
        if branch != DEBIAN_NVIDIA_BRANCH:
            raise DriverUnavailable(
                f"Debian 12's non-free archive has NVIDIA branch {DEBIAN_NVIDIA_BRANCH} only, not {branch}: "
                f"set nvidia_driver_branch = '{DEBIAN_NVIDIA_BRANCH}', or nvidia_driver_source = 'cuda'"
            )
        if open_modules:
            raise DriverUnavailable("Debian 12 has no open-module packages: use nvidia_driver_source = 'cuda'")
        return DriverPlan(
            ("nvidia-driver", "nvidia-smi", "firmware-misc-nonfree"),
            dkms=True,
            headers=("linux-headers-amd64",),
            debian_nonfree=True,
        )
    # Rocky/RHEL 9: the CUDA repository's module stream pins the branch.
    stream = f"{branch}-open" if open_modules else f"{branch}-dkms"
    return DriverPlan(
        (),
        dkms=True,
        headers=(f"kernel-devel-{kernel}", f"kernel-headers-{kernel}"),
        cuda_repo=True,
        dnf_module=f"nvidia-driver:{stream}",
    )


def cuda_keyring_url(distro: Distro) -> str:
    return f"{CUDA_REPO}/{distro.cuda_repo}/x86_64/cuda-keyring_1.1-1_all.deb"


def cuda_dnf_repo_url(distro: Distro) -> str:
    return f"{CUDA_REPO}/{distro.cuda_repo}/x86_64/cuda-{distro.cuda_repo}.repo"


def debian_nonfree_source(codename: str = "bookworm") -> str:
    """An extra deb822 source with the components Debian's NVIDIA packages live in."""
    return (
        "# Managed by vllm-fleet: the NVIDIA driver is in non-free, its firmware in non-free-firmware.\n"
        "Types: deb\n"
        "URIs: http://deb.debian.org/debian\n"
        f"Suites: {codename} {codename}-updates\n"
        "Components: contrib non-free non-free-firmware\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


def toolkit_apt_source(arch: str = "amd64") -> str:
    return (
        "# Managed by vllm-fleet: NVIDIA container toolkit\n"
        "Types: deb\n"
        f"URIs: {TOOLKIT_REPO}/stable/deb/{arch}\n"
        "Suites: /\n"
        "Signed-By: /etc/apt/keyrings/nvidia-container-toolkit.asc\n"
    )


def toolkit_dnf_repo() -> str:
    return (
        "# Managed by vllm-fleet: NVIDIA container toolkit\n"
        "[nvidia-container-toolkit]\n"
        "name=nvidia-container-toolkit\n"
        f"baseurl={TOOLKIT_REPO}/stable/rpm/$basearch\n"
        "enabled=1\n"
        "gpgcheck=0\n"
        "repo_gpgcheck=1\n"
        f"gpgkey={TOOLKIT_REPO}/gpgkey\n"
        "sslverify=1\n"
    )


def toolkit_packages(distro: Distro, version: str | None) -> list[str]:
    names = [
        "nvidia-container-toolkit",
        "nvidia-container-toolkit-base",
        "libnvidia-container-tools",
        "libnvidia-container1",
    ]
    if not version:
        return names[:1]
    joiner = "=" if distro.family == "apt" else "-"
    return [f"{name}{joiner}{version}" for name in names]


def amdgpu_install_url(distro: Distro, rocm_version: str) -> str:
    """AMD's installer package for a ROCm release, e.g. 6.4.1 -> .../amdgpu-install_6.4.60401-1_all.deb."""
    major, minor, patch = (rocm_version.split(".") + ["0"])[:3]
    build = f"{int(major)}{int(minor):02d}{int(patch):02d}"
    base = f"https://repo.radeon.com/amdgpu-install/{rocm_version}"
    if distro.family == "apt":
        return f"{base}/ubuntu/{distro.codename}/amdgpu-install_{major}.{minor}.{build}-1_all.deb"
    el = distro.version.split(".")[0]
    return f"{base}/rhel/{distro.version}/amdgpu-install-{major}.{minor}.{build}-1.el{el}.noarch.rpm"
