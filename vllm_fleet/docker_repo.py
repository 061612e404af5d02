"""Docker's own apt repository (docker_source = 'docker'): source, key and pin."""

from __future__ import annotations

from dataclasses import dataclass

from vllm_fleet import paths
from vllm_fleet.distro import Distro

DOCKER_PACKAGES = ("docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin", "docker-compose-plugin")


@dataclass(frozen=True)
class AptSource:
    distro: str  # 'debian' or 'ubuntu', as Docker's URLs spell them
    codename: str
    arch: str = "amd64"

    @property
    def url(self) -> str:
        return f"https://download.docker.com/linux/{self.distro}"

    @property
    def key_url(self) -> str:
        return f"{self.url}/gpg"

    def deb822(self) -> str:
        # signed-by scopes the key to this repository alone (no apt-key, no global trust).
        return (
            "# Managed by vllm-fleet (docker_source = docker)\n"
            "Types: deb\n"
            f"URIs: {self.url}\n"
            f"Suites: {self.codename}\n"
            "Components: stable\n"
            f"Architectures: {self.arch}\n"
            f"Signed-By: {paths.DOCKER_KEYRING}\n"
        )


def apt_source(distro: Distro) -> AptSource:
    """Docker's source for a Debian or Ubuntu release."""
    if not distro.codename:
        raise ValueError(f"cannot tell the release codename of {distro.id} {distro.version}")
    return AptSource(distro=distro.id, codename=distro.codename, arch=distro.deb_arch)


def packages(version: str | None, joiner: str = "=") -> list[str]:
    """Engine packages; the engine and CLI pinned to `version` when given ('=' for apt, '-' for dnf)."""
    if not version:
        return list(DOCKER_PACKAGES)
    return [f"docker-ce{joiner}{version}", f"docker-ce-cli{joiner}{version}", *DOCKER_PACKAGES[2:]]


def dnf_repo(distro: Distro) -> str:
    """Docker's rpm repository; Rocky uses the RHEL one, as Docker's docs say. By the major release,
    not Docker's own file's $releasever: a host with a release lock (RHEL EUS: 9.4) reads that as
    9.4, which download.docker.com does not serve (moby/moby#49169, docker-ce-packaging#1184)."""
    major = distro.version.split(".")[0]
    return (
        "# Managed by vllm-fleet\n"
        "[docker-ce-stable]\n"
        "name=Docker CE Stable - $basearch\n"
        f"baseurl=https://download.docker.com/linux/rhel/{major}/$basearch/stable\n"
        "enabled=1\n"
        "gpgcheck=1\n"
        "gpgkey=https://download.docker.com/linux/rhel/gpg\n"
    )


def apt_pin(version: str) -> str:
    """Hold the engine at `version` against `apt upgrade` and unattended upgrades."""
    return (
        "# Managed by vllm-fleet: docker_version pin\n"
        "Package: docker-ce docker-ce-cli\n"
        f"Pin: version {version}\n"
        "Pin-Priority: 1001\n"
    )
