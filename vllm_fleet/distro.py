"""The host's distribution, as the GPU stack and Docker tasks need it."""

from __future__ import annotations

from dataclasses import dataclass

# pyinfra's apt facts read the update stamp: lists younger than this are not refreshed.
APT_CACHE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Distro:
    id: str  # ubuntu, debian, rocky, rhel
    family: str  # apt or dnf
    version: str  # 22.04, 12, 9
    codename: str  # jammy, noble, bookworm; '' on EL
    machine: str = "x86_64"  # uname -m: x86_64 or aarch64 (GH200, GB200)

    @property
    def deb_arch(self) -> str:
        """The architecture as apt names it."""
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(self.machine, self.machine)

    @property
    def cuda_repo(self) -> str:
        """The directory name of NVIDIA's CUDA repository for this release."""
        if self.family == "dnf":
            return f"rhel{self.version.split('.')[0]}"
        return f"{self.id}{self.version.replace('.', '')}"
