"""What the GPU stack installs, per distribution: package names, sources and repositories.

Pure functions of the distribution, the settings and the kernel, so every combination
is unit-tested and the tasks stay a list of steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from vllm_fleet import paths, versions
from vllm_fleet.distro import Distro

CUDA_REPO = "https://developer.download.nvidia.com/compute/cuda/repos"
TOOLKIT_REPO = "https://nvidia.github.io/libnvidia-container"
EPEL_RELEASE_RPM = "https://dl.fedoraproject.org/pub/epel/epel-release-latest-9.noarch.rpm"
DEBIAN_NVIDIA_BRANCH = "535"  # bookworm's non-free nvidia-driver (535.261.03 as seen here)
# NVIDIA's workaround for containers losing their GPUs on `systemctl daemon-reload` ("Failed to
# initialize NVML: Unknown Error", nvidia-container-toolkit issues 48 and 1227; the toolkit's
# troubleshooting guide): /dev/char links to the NVIDIA device nodes, kept by a udev rule
# (paths.DEV_CHAR_RULE).
DEV_CHAR_RULE_TEXT = (
    "# Managed by vllm-fleet: runc finds the NVIDIA devices again after a systemctl daemon-reload.\n"
    'ACTION=="add", DEVPATH=="/bus/pci/drivers/nvidia", '
    'RUN+="/usr/bin/nvidia-ctk system create-dev-char-symlinks --create-all"\n'
)
NOUVEAU_BLACKLIST_TEXT = (
    "# Managed by vllm-fleet: nouveau would bind the GPU before the NVIDIA driver.\n"
    "blacklist nouveau\n"
    "options nouveau modeset=0\n"
)


class DriverUnavailable(ValueError):
    """The wanted branch or source does not exist for this distribution."""


@dataclass(frozen=True)
class DriverPlan:
    # Installed, never held: each names its branch, so upgrades stay within it, and a hold on
    # Ubuntu's module packages would keep the next kernel's modules out (no nvidia module after
    # the reboot into it).
    packages: tuple[str, ...]
    dkms: bool  # modules built on the host: needs headers, unsigned under Secure Boot
    headers: tuple[str, ...] = ()
    cuda_repo: bool = False  # NVIDIA's CUDA repository is added first
    debian_nonfree: bool = False  # contrib/non-free/non-free-firmware components added first
    dnf_module: str = ""  # e.g. nvidia-driver:580-open
    open_modules: bool = False
    pinning: str = ""  # the CUDA repository's package that keeps apt on the branch, installed first


# From this branch on, NVIDIA's CUDA repository names its driver packages without the branch, and
# (from the other) it has a nvidia-driver-pinning-<branch> package.
FIRST_UNVERSIONED_BRANCH = 590
FIRST_PINNED_BRANCH = 580
# The release kernel of each Ubuntu LTS; any other series on it is a hardware-enablement (HWE)
# kernel, whose module metapackages end in -hwe-<release> (Ubuntu's NVIDIA drivers installation).
UBUNTU_GA_KERNEL = {"22.04": "5.15.", "24.04": "6.8."}


# Ubuntu's flavours with a hardware-enablement series (linux-generic-hwe-22.04, and on arm64 the 64k
# page kernels of Grace machines, linux-generic-64k-hwe-22.04).
HWE_FLAVOURS = ("generic", "generic-64k")


def kernel_flavour(kernel: str) -> str:
    """'6.8.0-45-generic' -> 'generic', '6.8.0-1013-generic-64k' -> 'generic-64k': what follows the
    version and the ABI number (Ubuntu names its prebuilt module packages by flavour)."""
    parts = kernel.split("-", 2)
    return parts[2] if len(parts) == 3 else "generic"


def ubuntu_kernel_series(distro: Distro, kernel: str) -> str:
    """The suffix of the kernel's module metapackage: '' for the release kernel, else '-hwe-22.04'."""
    ga = UBUNTU_GA_KERNEL.get(distro.version)
    if not ga or not kernel or kernel.startswith(ga) or kernel_flavour(kernel) not in HWE_FLAVOURS:
        return ""
    return f"-hwe-{distro.version}"


def open_modules(distro: Distro, s) -> bool:
    """nvidia_open_kernel_modules, with auto as NVIDIA's default since branch 560 (open), except
    where the source has no open packages (Debian's own)."""
    if s.nvidia_open_kernel_modules != "auto":
        return s.nvidia_open_kernel_modules
    return not (distro.id == "debian" and s.nvidia_driver_source == "distro")


def nvidia_driver(distro: Distro, s, kernel: str) -> DriverPlan:
    branch, use_open = s.nvidia_driver_branch, open_modules(distro, s)
    if s.nvidia_driver_source == "cuda" and distro.family == "apt":
        # NVIDIA's driver installation guide (Ubuntu, Debian; "Version locking"): the branch's pinning
        # package first, without which an upgrade moves to the newest branch; then nvidia-open or
        # cuda-drivers, named by branch up to 580 and unversioned from 590 on (the pin picks it).
        suffix = f"-{branch}" if int(branch) < FIRST_UNVERSIONED_BRANCH else ""
        driver = f"nvidia-open{suffix}" if use_open else f"cuda-drivers{suffix}"
        return DriverPlan(
            (driver,),
            dkms=True,
            headers=(f"linux-headers-{kernel}",),
            cuda_repo=True,
            open_modules=use_open,
            # NVIDIA publishes pinning packages from branch 580 on.
            pinning=f"nvidia-driver-pinning-{branch}" if int(branch) >= FIRST_PINNED_BRANCH else "",
        )
    if distro.id == "ubuntu":
        # Canonical's prebuilt, signed modules: no DKMS, no headers, fine under Secure Boot. The
        # metapackage follows kernel upgrades; the running kernel's own package loads them now.
        flavour = "server-open" if use_open else "server"
        series = f"{kernel_flavour(kernel)}{ubuntu_kernel_series(distro, kernel)}"
        return DriverPlan(
            (
                f"linux-modules-nvidia-{branch}-{flavour}-{series}",
                *((f"linux-modules-nvidia-{branch}-{flavour}-{kernel}",) if kernel else ()),
                f"nvidia-headless-no-dkms-{branch}-{flavour}",
                f"nvidia-utils-{branch}-server",
            ),
            dkms=False,
            open_modules=use_open,
        )
    if distro.id == "debian":
        if branch != DEBIAN_NVIDIA_BRANCH:
            raise DriverUnavailable(
                f"Debian 12's non-free archive has NVIDIA branch {DEBIAN_NVIDIA_BRANCH} only, not {branch}: "
                f"set nvidia_driver_branch = '{DEBIAN_NVIDIA_BRANCH}', or nvidia_driver_source = 'cuda'"
            )
        if use_open:
            raise DriverUnavailable("Debian 12 has no open-module packages: use nvidia_driver_source = 'cuda'")
        return DriverPlan(
            ("nvidia-driver", "nvidia-smi", "firmware-misc-nonfree"),
            dkms=True,
            headers=("linux-headers-amd64",),
            debian_nonfree=True,
        )
    # Rocky/RHEL 9: the CUDA repository's module stream pins the branch.
    stream = f"{branch}-open" if use_open else f"{branch}-dkms"
    return DriverPlan(
        (),
        dkms=True,
        headers=(f"kernel-devel-{kernel}", f"kernel-headers-{kernel}"),
        cuda_repo=True,
        dnf_module=f"nvidia-driver:{stream}",
        open_modules=use_open,
    )


# NVIDIA's CUDA repositories name architectures their own way: arm64 servers (GH200, GB200) are sbsa.
CUDA_REPO_ARCH = {"x86_64": "x86_64", "aarch64": "sbsa"}


def cuda_keyring_url(distro: Distro) -> str:
    arch = CUDA_REPO_ARCH.get(distro.machine, distro.machine)
    return f"{CUDA_REPO}/{distro.cuda_repo}/{arch}/cuda-keyring_1.1-1_all.deb"


def cuda_dnf_repo_url(distro: Distro) -> str:
    arch = CUDA_REPO_ARCH.get(distro.machine, distro.machine)
    return f"{CUDA_REPO}/{distro.cuda_repo}/{arch}/cuda-{distro.cuda_repo}.repo"


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
        f"Signed-By: {paths.TOOLKIT_KEYRING}\n"
    )


def epel_commands(distro: Distro) -> list[str]:
    """EPEL, with the CodeReady Builder (CRB) repository it needs, on a RHEL-family host (DKMS lives
    there). RHEL has no epel-release package of its own (NVIDIA's driver installation guide and AMD's
    ROCm quick start, RHEL 9 sections); Rocky's CRB is a dnf repository to enable."""
    if distro.id == "rhel":
        return [
            f"subscription-manager repos --enable codeready-builder-for-rhel-9-{distro.machine}-rpms",
            f"rpm -q epel-release >/dev/null || dnf install -y {EPEL_RELEASE_RPM}",
        ]
    return ["dnf config-manager --set-enabled crb", "rpm -q epel-release >/dev/null || dnf install -y epel-release"]


def amdgpu_prerequisites(distro: Distro, kernel: str) -> list[str]:
    """What AMD's quick start installs before amdgpu-install: Python's setuptools and wheel (ROCm's
    packages need them), the running kernel's headers, and on Ubuntu its extra modules (amdgpu's
    dependencies are there), on EL 9 and later kernel-devel-matched."""
    python = ["python3-setuptools", "python3-wheel"]
    if distro.family == "apt":
        return [*python, f"linux-headers-{kernel}", f"linux-modules-extra-{kernel}"]
    matched = [f"kernel-devel-matched-{kernel}"] if int(distro.version.split(".")[0]) >= 9 else []
    return [*python, f"kernel-headers-{kernel}", f"kernel-devel-{kernel}", *matched]


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


def rocm_installed(wanted: str, usecase: str, installed: str, marked: str) -> bool:
    """Whether ROCm rocm_version `wanted` is installed for this use case: by ROCm's own version file
    (installed, '6.4.1-89'), or by what our last install wrote (marked, 'dkms 6.4.1'; the dkms use
    case writes no version file). A version matches by its numbers: 7.1 is 7.1.x, not 7.14."""
    marked_usecase, _, marked_version = marked.partition(" ")
    ours = versions.numbers(marked_version) if marked_usecase == usecase else ()
    # The dkms use case never rewrites a version file an earlier full install left: our mark tells.
    found = ours if usecase == "dkms" else (versions.numbers(installed) or ours)
    want = versions.numbers(wanted)
    return bool(want) and found[: len(want)] == want


# The EL 9 minors AMD publishes amdgpu-install for, per ROCm release (ROCm/rocm-install-on-linux and
# ROCm/amd-rocm-programming-guide docs/conf.py of each release; 6.4 from amdgpu-docs' 6.4.2 table and
# users' 6.4.1 on 9.6): a minor outside them is a 404. A release not listed takes the host's minor.
AMD_EL_MINORS = {
    (6, 4): ("9.4", "9.5", "9.6"),
    (7, 0): ("9.4", "9.6"),
    (7, 1): ("9.4", "9.6", "9.7"),
    (7, 2): ("9.4", "9.6", "9.7"),
}


def amdgpu_install_url(distro: Distro, rocm_version: str) -> str:
    """AMD's installer package for a ROCm release, e.g. 6.4.1 -> .../amdgpu-install_6.4.60401-1_all.deb."""
    major, minor, patch = (int(part) for part in (rocm_version.split(".") + ["0"])[:3])
    build = f"{major}{minor:02d}{patch:02d}"
    # repo.radeon.com keeps an x.y.0 release under x.y/ (6.4.0 in 6.4/, 6.4.1 in 6.4.1/).
    directory = f"{major}.{minor}" if patch == 0 else f"{major}.{minor}.{patch}"
    # From ROCm 7, a patch release names its package with the full version (7.0.2.70002, 7.2.1.70201);
    # 6.x and x.y.0 releases name it x.y (6.4.60401, 7.2.70200).
    package_version = f"{directory}.{build}" if major >= 7 else f"{major}.{minor}.{build}"
    base = f"https://repo.radeon.com/amdgpu-install/{directory}"
    if distro.family == "apt":
        return f"{base}/ubuntu/{distro.codename}/amdgpu-install_{package_version}-1_all.deb"
    el = distro.version.split(".")[0]
    published = AMD_EL_MINORS.get((major, minor))
    if published and distro.version not in published:
        raise DriverUnavailable(
            f"AMD publishes amdgpu-install {rocm_version} for EL {', '.join(published)} only, and this host is "
            f"{distro.id} {distro.version}: move the host to one of them, or choose a rocm_version AMD "
            f"publishes for {distro.version}"
        )
    # AMD's install guides: rhel/<version>/ for RHEL, el/<version>/ for Rocky and Oracle Linux.
    prefix = "rhel" if distro.id == "rhel" else "el"
    return f"{base}/{prefix}/{distro.version}/amdgpu-install-{package_version}-1.el{el}.noarch.rpm"
