"""The host's distribution, as the GPU stack and Docker tasks need it."""

from __future__ import annotations

from dataclasses import dataclass

# pyinfra's apt facts read the update stamp: lists younger than this are not refreshed.
APT_CACHE_SECONDS = 24 * 3600

# (pyinfra's LinuxDistribution name, major version) -> our id, package family
SUPPORTED = {
    ("Ubuntu", 22): ("ubuntu", "apt"),
    ("Ubuntu", 24): ("ubuntu", "apt"),
    ("Debian", 12): ("debian", "apt"),
    ("Rocky Linux", 9): ("rocky", "dnf"),
    ("RedHat", 9): ("rhel", "dnf"),
}


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


class UnsupportedDistro(ValueError):
    pass


def from_fact(fact: dict, machine: str = "") -> Distro:
    """From pyinfra's LinuxDistribution fact; UnsupportedDistro names what is supported."""
    key = (fact.get("name"), fact.get("major"))
    if key not in SUPPORTED:
        shown = " ".join(str(p) for p in key if p)
        supported = ", ".join(f"{n} {m}" for n, m in SUPPORTED)
        raise UnsupportedDistro(f"{shown or 'an unknown distribution'} is not supported (supported: {supported})")
    distro_id, family = SUPPORTED[key]
    meta = fact.get("release_meta", {})
    codename = meta.get("VERSION_CODENAME") or meta.get("UBUNTU_CODENAME") or ""
    return Distro(distro_id, family, meta.get("VERSION_ID", str(fact["major"])), codename, machine or "x86_64")


def read_distro(fact: dict, machine: str = "") -> tuple[Distro | None, str | None]:
    """(Distro, None), or (None, why it is unsupported) for pre-flight's os check to report."""
    try:
        return from_fact(fact, machine), None
    except UnsupportedDistro as exc:
        return None, str(exc)
