"""The host's distribution from pyinfra's LinuxDistribution fact, as a Distro or why it is unsupported."""

from __future__ import annotations

from pyinfra.facts.server import LinuxDistributionDict

from vllm_fleet.distro import Distro

# (pyinfra's LinuxDistribution name, major version) -> our id, package family
SUPPORTED = {
    ("Ubuntu", 22): ("ubuntu", "apt"),
    ("Ubuntu", 24): ("ubuntu", "apt"),
    ("Debian", 12): ("debian", "apt"),
    ("Rocky Linux", 9): ("rocky", "dnf"),
    ("RedHat", 9): ("rhel", "dnf"),
}


class UnsupportedDistro(ValueError):
    pass


def from_fact(fact: LinuxDistributionDict, machine: str = "") -> Distro:
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


def read_distro(fact: LinuxDistributionDict, machine: str = "") -> tuple[Distro | None, str | None]:
    """(Distro, None), or (None, why it is unsupported) for pre-flight's os check to report."""
    try:
        return from_fact(fact, machine), None
    except UnsupportedDistro as exc:
        return None, str(exc)
