"""AMD's installer URL, checked against URLs AMD's install guides and users' scripts name
(read through the library's search on 2026-11-24; none fetched from repo.radeon.com here)."""

import pytest

from vllm_fleet.distro import Distro
from vllm_fleet.gpu_packages import amdgpu_install_url

NOBLE = Distro("ubuntu", "apt", "24.04", "noble")
JAMMY = Distro("ubuntu", "apt", "22.04", "jammy")
RHEL96 = Distro("rhel", "dnf", "9.6", "")


@pytest.mark.parametrize(
    ("distro", "rocm", "url"),
    [
        (
            JAMMY,
            "6.4.1",
            "https://repo.radeon.com/amdgpu-install/6.4.1/ubuntu/jammy/amdgpu-install_6.4.60401-1_all.deb",
        ),
        (
            JAMMY,
            "6.0.2",
            "https://repo.radeon.com/amdgpu-install/6.0.2/ubuntu/jammy/amdgpu-install_6.0.60002-1_all.deb",
        ),
        (NOBLE, "7.2.0", "https://repo.radeon.com/amdgpu-install/7.2/ubuntu/noble/amdgpu-install_7.2.70200-1_all.deb"),
        (NOBLE, "7.2", "https://repo.radeon.com/amdgpu-install/7.2/ubuntu/noble/amdgpu-install_7.2.70200-1_all.deb"),
        (
            NOBLE,
            "7.0.2",
            "https://repo.radeon.com/amdgpu-install/7.0.2/ubuntu/noble/amdgpu-install_7.0.2.70002-1_all.deb",
        ),
        (
            NOBLE,
            "7.2.1",
            "https://repo.radeon.com/amdgpu-install/7.2.1/ubuntu/noble/amdgpu-install_7.2.1.70201-1_all.deb",
        ),
        (
            RHEL96,
            "7.2.4",
            "https://repo.radeon.com/amdgpu-install/7.2.4/rhel/9.6/amdgpu-install-7.2.4.70204-1.el9.noarch.rpm",
        ),
        (
            RHEL96,
            "6.4.0",
            "https://repo.radeon.com/amdgpu-install/6.4/rhel/9.6/amdgpu-install-6.4.60400-1.el9.noarch.rpm",
        ),
    ],
)
def test_the_installer_url_follows_amds_naming(distro, rocm, url):
    assert amdgpu_install_url(distro, rocm) == url


@pytest.mark.parametrize(
    "wanted, usecase, installed, marked, expected",
    [
        ("6.4.1", "rocm", "6.4.1-89", "", True),
        ("6.4", "rocm", "6.4.1-89", "", True),
        ("7.1", "rocm", "7.1.1-5", "", True),
        ("7.1", "rocm", "7.14.0-1", "", False),
        ("6.4.1", "rocm", "6.4.10-1", "", False),
        ("6.4.1", "rocm", "", "", False),
        ("6.4.1", "dkms", "", "dkms 6.4.1", True),
        ("6.4.1", "dkms", "", "rocm 6.4.1", False),
        ("6.4.1", "dkms", "", "dkms 6.4.10", False),
        ("7.0", "rocm", "6.4.1-89", "rocm 7.0", False),
        # A full 6.4 install left its version file; the dkms use case at 7.1 does not rewrite it.
        ("7.1", "dkms", "6.4.1-120", "dkms 7.1", True),
        ("7.1", "dkms", "7.1.0-1", "", False),
    ],
)
def test_rocm_is_installed_by_its_numbers_and_for_its_use_case(wanted, usecase, installed, marked, expected):
    from vllm_fleet.gpu_packages import rocm_installed

    assert rocm_installed(wanted, usecase, installed, marked) is expected


@pytest.mark.parametrize(
    "kernel, flavour",
    [
        ("6.8.0-45-generic", "generic"),
        ("6.8.0-1013-generic-64k", "generic-64k"),
        ("6.8.0-1021-nvidia-64k", "nvidia-64k"),
        ("5.15.0-1063-aws", "aws"),
        ("6.8.0-1010-nvidia-lowlatency", "nvidia-lowlatency"),
        ("", "generic"),
    ],
)
def test_a_kernels_flavour_is_all_that_follows_its_abi_number(kernel, flavour):
    from vllm_fleet.gpu_packages import kernel_flavour

    assert kernel_flavour(kernel) == flavour


def test_grace_machines_64k_kernel_gets_its_own_module_packages():
    """GH200 and GB200 hosts run Ubuntu's arm64 kernel with 64k pages (flavour generic-64k)."""
    from types import SimpleNamespace

    from vllm_fleet.distro import Distro
    from vllm_fleet.gpu_packages import nvidia_driver

    ubuntu = Distro("ubuntu", "apt", "22.04", "jammy")
    s = SimpleNamespace(nvidia_driver_branch="580", nvidia_open_kernel_modules=True, nvidia_driver_source="distro")
    packages = nvidia_driver(ubuntu, s, "6.8.0-1013-generic-64k").packages
    assert packages[:2] == (
        "linux-modules-nvidia-580-server-open-generic-64k-hwe-22.04",
        "linux-modules-nvidia-580-server-open-6.8.0-1013-generic-64k",
    )
    assert nvidia_driver(ubuntu, s, "5.15.0-1063-generic-64k").packages[0] == (
        "linux-modules-nvidia-580-server-open-generic-64k"
    )


@pytest.mark.parametrize(
    ("branch", "use_open", "driver"),
    [
        ("580", True, "nvidia-open-580"),
        ("580", False, "cuda-drivers-580"),
        ("590", True, "nvidia-open"),
        ("610", False, "cuda-drivers"),
    ],
)
def test_the_cuda_repository_pins_the_branch_and_names_packages_as_nvidia_does(branch, use_open, driver):
    """NVIDIA's driver installation guide: nvidia-driver-pinning-<branch> first; the driver package
    carries the branch up to 580 and none from 590 on (the pinning package chooses it)."""
    from types import SimpleNamespace

    from vllm_fleet.gpu_packages import nvidia_driver

    s = SimpleNamespace(nvidia_driver_branch=branch, nvidia_open_kernel_modules=use_open, nvidia_driver_source="cuda")
    plan = nvidia_driver(JAMMY, s, "6.8.0-45-generic")
    assert (plan.packages, plan.pinning) == ((driver,), f"nvidia-driver-pinning-{branch}")
    older = SimpleNamespace(nvidia_driver_branch="570", nvidia_open_kernel_modules=True, nvidia_driver_source="cuda")
    assert nvidia_driver(JAMMY, older, "6.8.0-45-generic").pinning == ""  # NVIDIA pins from 580 on
    rocky = nvidia_driver(Distro("rocky", "dnf", "9.4", ""), s, "5.14.0-427.13.1.el9_4.x86_64")
    assert rocky.pinning == ""  # the module stream holds the branch there


def test_rocky_takes_amds_el_path_and_an_unpublished_minor_is_refused_naming_the_published():
    """AMD's install guides (ROCm/rocm-install-on-linux, amdgpu-installer-rhel.rst and the Rocky
    template): RHEL under rhel/<version>/, Rocky and Oracle Linux under el/<version>/; each release
    for the EL minors its conf.py lists (7.2: 9.4, 9.6, 9.7)."""
    from vllm_fleet.gpu_packages import DriverUnavailable

    rocky = Distro("rocky", "dnf", "9.6", "")
    assert amdgpu_install_url(rocky, "7.2.1") == (
        "https://repo.radeon.com/amdgpu-install/7.2.1/el/9.6/amdgpu-install-7.2.1.70201-1.el9.noarch.rpm"
    )
    with pytest.raises(DriverUnavailable, match=r"^AMD publishes amdgpu-install 7\.2\.1 for EL 9\.4, 9\.6, 9\.7 only"):
        amdgpu_install_url(Distro("rhel", "dnf", "9.5", ""), "7.2.1")
    # A release the table does not know takes the host's minor.
    assert "/rhel/9.5/" in amdgpu_install_url(Distro("rhel", "dnf", "9.5", ""), "7.3.0")
