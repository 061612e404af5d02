"""Pre-flight checks of the GPU stack: driver, modules, devices and what the image is built for."""

from __future__ import annotations

import re

from vllm_fleet import gpu_health, gpu_packages, images, versions
from vllm_fleet.checks.registry import Context, check
from vllm_fleet.gpus import PRE_TURING, PRE_TURING_PCI_IDS
from vllm_fleet.settings import KNOBS

# gfx targets the default ROCm image ships kernels for: vLLM's docker/Dockerfile.rocm_base, ARG
# PYTORCH_ROCM_ARCH=gfx90a;gfx942;gfx950;gfx1100;gfx1101;gfx1200;gfx1201;gfx1150;gfx1151 (gfx1150 and
# gfx1151: the Ryzen AI 300 and AI Max laptops' and mini PCs' integrated GPUs).
ROCM_IMAGE_GFX = {"gfx90a", "gfx942", "gfx950", "gfx1100", "gfx1101", "gfx1200", "gfx1201", "gfx1150", "gfx1151"}


@check("gpu_stack", ("nvidia", "amd"))
def _gpu_stack(c: Context):
    if not c.managed or c.distro is None:
        return None
    try:
        if c.accelerator == "nvidia":
            plan = gpu_packages.nvidia_driver(c.distro, c.settings, c.probe.kernel)
            branch = gpu_packages.DEBIAN_NVIDIA_BRANCH if plan.debian_nonfree else c.settings.nvidia_driver_branch
            if c.image in images.DEFAULT_IMAGES.values() and int(branch) < images.MIN_NVIDIA_DRIVER[0]:
                fix = (
                    "nvidia_driver_source = 'cuda' (NVIDIA's repository for Debian 12)"
                    if plan.debian_nonfree
                    else f"nvidia_driver_branch = '{KNOBS['nvidia_driver_branch'].default}'"
                )
                return (
                    f"the managed NVIDIA driver would be branch {branch}, older than the "
                    f"{versions.shown(images.MIN_NVIDIA_DRIVER)} that {c.image}'s CUDA {images.IMAGE_CUDA} "
                    f"needs: set {fix}, or vllm_image to an image built for that driver's CUDA"
                )
        elif c.distro.id == "debian":
            return (
                "vllm-fleet installs ROCm on Ubuntu and RHEL-family hosts, not Debian (AMD's Debian 12 "
                "path reuses its Ubuntu 22.04 packages, untested here): "
                "install ROCm yourself and set manage_gpu_stack = False"
            )
        else:
            gpu_packages.amdgpu_install_url(c.distro, c.settings.rocm_version)
            return _rocm_release(c)
    except gpu_packages.DriverUnavailable as exc:
        return str(exc)
    return None


def _rocm_release(c: Context) -> str | None:
    """The managed ROCm release's driver against the default image's user space and MI350/MI355."""
    have, version = versions.numbers(c.settings.rocm_version)[:2], c.settings.rocm_version
    older = _older_than_the_images_rocm(
        c,
        version,
        f"rocm_version {version}",
        f"set rocm_version to {versions.shown(images.MIN_ROCM_DRIVER)} or newer "
        f"(default {KNOBS['rocm_version'].default})",
    )
    if older:
        return older
    names = " ".join(name for name, _ in c.gpu_capabilities)
    if have < images.MIN_ROCM_GFX950 and ("gfx950" in c.probe.gfx or re.search(r"MI35\d", names)):
        return (
            f"MI350/MI355 GPUs (gfx950) need ROCm {versions.shown(images.MIN_ROCM_GFX950)} or newer, and "
            f"rocm_version is {version}: set rocm_version = '{KNOBS['rocm_version'].default}'"
        )
    return None


@check("gpu_present", ("nvidia", "amd"))
def _gpu_present(c: Context):
    if c.accelerator not in c.vendors:
        seen = ", ".join(c.vendors) or "none"
        return (
            f"accelerator is {c.accelerator} but the PCI bus shows no {c.accelerator.upper()} GPU "
            f"(GPU vendors seen: {seen}); check the host, or set accelerator to match it"
        )
    return None


@check("secure_boot", ("nvidia",))
def _secure_boot(c: Context):
    if "enabled" not in c.probe.secure_boot.lower():
        return None
    if c.managed:
        # A module already loaded under Secure Boot is signed by an enrolled key.
        if c.distro is None or c.settings.nvidia_secure_boot_unsigned_ok or c.probe.nvidia_driver:
            return None
        try:
            dkms = gpu_packages.nvidia_driver(c.distro, c.settings, c.probe.kernel).dkms
        except gpu_packages.DriverUnavailable:
            return None  # gpu_stack says why
        if dkms:
            return (
                "Secure Boot is on and this driver's modules are built by DKMS, unsigned: enrol a Machine Owner Key "
                "(MOK) for DKMS and set nvidia_secure_boot_unsigned_ok = True, or use signed packages (Ubuntu's "
                "prebuilt modules: nvidia_driver_source = 'distro')"
            )
        return None
    if not c.probe.nvidia_driver:
        return (
            "Secure Boot is on and no NVIDIA module is loaded: an unsigned driver module will not load; "
            "enrol a Machine Owner Key (MOK) for DKMS-signed modules, or use your distribution's signed driver packages"
        )
    return None


@check("nouveau", ("nvidia",))
def _nouveau(c: Context):
    if c.probe.nouveau and not c.managed:
        return (
            "the nouveau module is loaded and holds the GPU: blacklist it (modprobe.d), rebuild the initramfs, reboot"
        )
    return None


@check("nvidia_driver", ("nvidia",))
def _nvidia_driver(c: Context):
    version = c.probe.nvidia_driver
    if c.managed:
        return None  # installed, or replaced by the pinned branch, by this run (which reboots a mismatch)
    if c.probe.nvidia_mismatch:
        return (
            f"the loaded NVIDIA module is {version} and the installed driver libraries are "
            f'{c.probe.nvidia_libraries} (updated since boot): containers fail with "Driver/library version '
            'mismatch" until the host reboots: reboot it'
        )
    if not version:
        headers = "" if c.probe.headers else f" (and linux-headers-{c.probe.kernel} for DKMS)"
        return f"no NVIDIA driver is loaded: install the driver{headers} and reboot before deploying vLLM"
    have = versions.numbers(version)[:2]
    if c.image in images.DEFAULT_IMAGES.values() and have < images.MIN_NVIDIA_DRIVER:
        return (
            f"NVIDIA driver {version} is older than {versions.shown(images.MIN_NVIDIA_DRIVER)}, which "
            f"{c.image}'s CUDA {images.IMAGE_CUDA} needs (CUDA error 803/804 at start): upgrade the driver"
        )
    return None


@check("gpu_arch", ("nvidia",), methods=("docker",))
def _gpu_arch(c: Context):
    if c.image not in images.DEFAULT_IMAGES.values():
        return None  # an image of the operator's choosing: what it is built for is theirs to know
    oldest = images.MIN_COMPUTE_CAPABILITY
    too_old = next(
        (
            f"{name} has compute capability {capability or 'below 7.5'}"
            for name, capability in c.gpu_capabilities
            if (versions.numbers(capability)[:2] or oldest) < oldest or (not capability and PRE_TURING.search(name))
        ),
        None,
    )
    if not too_old and not any(capability for _, capability in c.gpu_capabilities):
        # A bare host's driver cannot be asked yet: its PCI device IDs tell (pci.ids' chip names).
        devices = (device.removeprefix("0x").lower() for device in c.probe.nvidia_pci_devices)
        too_old = next(
            (
                f"{PRE_TURING_PCI_IDS[d]} (PCI 10de:{d}) is older than Turing"
                for d in devices
                if d in PRE_TURING_PCI_IDS
            ),
            None,
        )
    if not too_old:
        return None
    return (
        f"{too_old}, and {c.image} is built with CUDA {images.IMAGE_CUDA} for {versions.shown(oldest)} (Turing) and "
        'newer: it would fail at the first request with "no kernel image is available". Set vllm_image to a vLLM '
        "image built with CUDA 12 for this GPU (vLLM before 0.12), or serve from newer GPUs"
    )


@check("amd_devices", ("amd",))
def _amd_devices(c: Context):
    if c.managed:
        return None  # amdgpu-install provides them
    missing = [
        what for what, present in (("/dev/kfd", c.probe.kfd), ("the render group", c.probe.render_group)) if not present
    ]
    if missing:
        return f"{' and '.join(missing)} missing: install amdgpu (amdgpu-install --usecase=rocm) and reboot"
    installed = c.probe.rocm_installed
    return _older_than_the_images_rocm(
        c,
        installed,
        f"this host's ROCm {installed} (/opt/rocm/.info/version)",
        f"upgrade to ROCm {versions.shown(images.MIN_ROCM_DRIVER)} or newer",
    )


def _older_than_the_images_rocm(c: Context, version: str, what: str, fix: str) -> str | None:
    """A ROCm release (of the managed install, or the host's) whose amdgpu driver the default image's
    user space is not supported on, and what to do."""
    have = versions.numbers(version)[:2]
    if not have or have >= images.MIN_ROCM_DRIVER or c.image != images.default_image("amd"):
        return None
    return (
        f"{what} is older than ROCm {versions.shown(images.MIN_ROCM_DRIVER)}, whose amdgpu drivers are the oldest "
        f"the ROCm user space of {c.image} is supported on (AMD's user and kernel-space support matrix): {fix}, or "
        f"set vllm_image to an image built on ROCm {version}"
    )


@check("gfx_target", ("amd",))
def _gfx(c: Context):
    targets = set(c.probe.gfx)
    if not targets and c.managed:
        return None  # rocminfo arrives with ROCm in this run; the next run checks the targets
    if not targets:
        return "rocminfo lists no gfx target: install ROCm (rocminfo) so the image's targets can be checked"
    unsupported = sorted(targets - ROCM_IMAGE_GFX)
    if unsupported and c.image == images.default_image("amd"):
        return (
            f"this host's GPU target(s) {', '.join(unsupported)} are not among the default ROCm image's "
            f"({', '.join(sorted(ROCM_IMAGE_GFX))}): set vllm_image to an image built for them"
        )
    return None


@check("rdma", ("nvidia", "amd"))
def _rdma(c: Context):
    if c.settings.vllm_cluster_rdma and c.settings.vllm_cluster and not c.probe.infiniband:
        return (
            "vllm_cluster_rdma is True and the host has no /dev/infiniband (no RDMA driver loaded: rdma-core and "
            "the adapter's driver, such as mlx5_ib): load it, or set vllm_cluster_rdma = False (NCCL then crosses "
            "hosts over TCP sockets)"
        )
    return None


@check("gpu_health", ("nvidia", "amd"))
def _gpu_health(c: Context):
    return gpu_health.refusal(gpu_health.problems(c.probe, c.accelerator), c.settings.gpu_health_accept)
