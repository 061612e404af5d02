"""The knobs of the GPU driver and container runtime."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from vllm_fleet.settings.types import (
    GPU_CONDITIONS,
    LAX,
    PACKAGE_VERSION,
    DriverSource,
    GpuCondition,
    Knobs,
    PackageVersion,
    RebootPolicy,
    RocmUsecase,
    knob,
    one_of,
    or_none,
)


class GpuStack(Knobs):
    """The GPU driver and container runtime: NVIDIA's, or AMD's amdgpu and ROCm."""

    manage_gpu_stack: bool = knob(
        True,
        "Install and keep the GPU driver and container runtime (NVIDIA driver and container toolkit, or "
        "AMD's amdgpu/ROCm); False: they are the host's own business and pre-flight only checks them.",
        "True or False",
    )
    nvidia_driver_branch: Annotated[str, Field(pattern=r"^[0-9]{3}$")] = knob(
        "580",
        "NVIDIA driver branch (580: NVIDIA's current long-term support branch, which runs the default image's "
        "CUDA 13.0); updates stay within it. Debian 12's own packages are branch 535.",
        "an NVIDIA driver branch as a string of three digits, such as '570'",
    )
    nvidia_driver_source: DriverSource = knob(
        "distro",
        "distro: the distribution's packages (Ubuntu's Canonical-signed modules, Debian non-free, Rocky's "
        "CUDA-repository module); cuda: NVIDIA's CUDA repository.",
        one_of(DriverSource),
    )
    nvidia_open_kernel_modules: Literal["auto"] | bool = knob(
        "auto",
        "NVIDIA's open kernel modules: NVIDIA's default since branch 560 and required from Blackwell on; the "
        "proprietary ones for GPUs older than Turing. auto: open, except for pre-Turing GPUs and Debian's own "
        "packages (which have none).",
        "auto or True or False",
    )
    nvidia_secure_boot_unsigned_ok: bool = knob(
        False,
        "Install DKMS-built (unsigned) modules although Secure Boot is on, because you enrol a MOK yourself.",
        "True or False",
    )
    nvidia_container_toolkit_version: PackageVersion | None = knob(
        None, "nvidia-container-toolkit version to pin (e.g. '1.17.8-1'); None: newest.", or_none(PACKAGE_VERSION)
    )
    gpu_health_accept: Annotated[tuple[GpuCondition, ...], *LAX] = knob(
        (),
        "GPU health conditions a host may serve with, accepted knowingly: pre-flight and the verify suite (so a "
        "rollout's admission too) refuse a GPU that shows any other. Names from vllm_fleet/gpu_health.py, such as "
        "retired_pages_pending on a host you will reboot later.",
        "a list of GPU health conditions from " + ", ".join(GPU_CONDITIONS),
    )
    reboot_policy: RebootPolicy = knob(
        "if_needed",
        "never: a host that needs a reboot stops with a message; if_needed: reboot when the new driver cannot "
        "be loaded live or the OS asks for it; always: reboot whenever the GPU stack changed.",
        one_of(RebootPolicy),
    )
    rocm_version: Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]+(\.[0-9]+)?$")] = knob(
        "7.2.1",
        "ROCm release amdgpu-install comes from (repo.radeon.com); its amdgpu driver must be one the image's ROCm "
        "user space supports (7.0 or newer for the default image) and 7.0 or newer for MI350/MI355.",
        "a version such as '7.2.1'",
    )
    rocm_usecase: RocmUsecase = knob(
        "rocm",
        "amdgpu-install use case: rocm (driver and ROCm tools, rocm-smi for the verify suite) or dkms "
        "(driver only: the vLLM image carries ROCm).",
        one_of(RocmUsecase),
    )
    rocm_users: Annotated[tuple[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]*$")], ...], *LAX] = knob(
        (), "Users added to the render and video groups (GPU access outside containers).", "a list of user names"
    )
