"""The Nix way of serving: where the flake and the built server live on a host, and how
it is built, configured and installed.

The server is built from a flake directory on the machine running pyinfra (nix/ of this
repository by default). A host records the hash of the flake it last built successfully
beside the build's out-link, so a deploy knows before running anything whether a build
is due, and --dry tells the truth.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from vllm_fleet import paths, versions
from vllm_fleet.repository import NIX_FLAKE
from vllm_fleet.settings import Settings

REPO_FLAKE = NIX_FLAKE
NIX = "/nix/var/nix/profiles/default/bin/nix"  # the official installer's; Debian's is /usr/bin/nix
# The NVIDIA userspace libraries CUDA programs load, as an awk pattern over `ldconfig -p`.
NVIDIA_LIBS = r"/(libcuda|libnvidia-ml|libnvidia-ptxjitcompiler|libnvidia-nvvm)\.so/"

# Distributions whose own package gives a multi-user Nix with its daemon under systemd, and the
# Nix version that package is on each release (packages.debian.org, packages.ubuntu.com: nix-bin).
DISTRO_PACKAGE = {"debian": "nix-setup-systemd", "ubuntu": "nix-setup-systemd"}
DISTRO_NIX_VERSION = {("debian", "12"): "2.8.0", ("ubuntu", "22.04"): "2.6.0", ("ubuntu", "24.04"): "2.18.1"}
# The nixpkgs branch nix/flake.nix follows (its flake.lock pins the revision).
NIXPKGS_PIN = "nixos-25.11"
# python3Packages.vllm on that branch (pkgs/development/python-modules/vllm/default.nix: version
# "0.11.0"), read from nixpkgs' source through the library: nothing here can evaluate nixpkgs (its
# tarball and caches are out of reach), so no test evaluates it.
NIXPKGS_VLLM = "0.11.0"
# nixpkgs refuses to evaluate with an older Nix (nixpkgs' lib/minver.nix).
NIXPKGS_MIN_NIX = "2.18"


@dataclass(frozen=True)
class Installer:
    """The official multi-user installer, from the release tarball pinned by checksum."""

    version: str
    sha256: dict[str, str]  # machine (uname -m) -> sha256 of nix-<version>-<machine>-linux.tar.xz

    def tarball(self, machine: str) -> str:
        return f"nix-{self.version}-{machine}-linux.tar.xz"

    def url(self, machine: str) -> str:
        return f"https://releases.nixos.org/nix/nix-{self.version}/{self.tarball(machine)}"


INSTALLER = Installer("2.24.9", {"x86_64": "3c0779e4878d1289cf3fbb158ec5ea9bdf61dfb9b4efac6b3b0b6bec5ba4cf13"})


def flake_dir(setting: str | None) -> Path:
    return Path(setting) if setting else REPO_FLAKE


def flake_uses_nixpkgs(directory: Path) -> bool:
    """A flake whose lock (or, unlocked, whose flake.nix) names nixpkgs as an input."""
    lock = directory / "flake.lock"
    if lock.is_file():
        try:
            nodes = json.loads(lock.read_text()).get("nodes", {})
        except (ValueError, AttributeError):
            nodes = {}
        return any(
            (node.get(key) or {}).get("repo") == "nixpkgs" for node in nodes.values() for key in ("original", "locked")
        )
    flake = directory / "flake.nix"
    code = [line.split("#", 1)[0] for line in flake.read_text().splitlines()] if flake.is_file() else []
    return any("nixpkgs" in line for line in code)


def minimum_nix(directory: Path) -> str | None:
    """The oldest Nix that can build this flake, when it has a known minimum."""
    return NIXPKGS_MIN_NIX if flake_uses_nixpkgs(directory) else None


def older(version: str, minimum: str | None) -> bool:
    return bool(minimum and version and versions.numbers(version) < versions.numbers(minimum))


def install_source(distro_id: str, distro_version: str, minimum: str | None) -> tuple[str, str]:
    """('distro', package) when the distribution's Nix package is new enough for the flake, else
    ('official', why the distribution's package is not used, or '')."""
    package = DISTRO_PACKAGE.get(distro_id)
    if not package:
        return "official", ""
    shipped = DISTRO_NIX_VERSION.get((distro_id, distro_version), "")
    if older(shipped, minimum):
        why = f"{distro_id.capitalize()} {distro_version}'s {package} is Nix {shipped}, older than {minimum}"
        return "official", why
    return "distro", package


# Left out of the shipped flake, and so of its hash, wherever they stand: Python caches
# and `nix build` result links.
SKIPPED = ("*.pyc", "__pycache__", "result", "result-*")


def flake_files(directory: Path) -> list[Path]:
    """The files shipped to a host as the flake (what its hash covers), sorted."""
    return sorted(
        path
        for path in directory.rglob("*")
        if path.is_file() and not any(fnmatch(part, s) for part in path.relative_to(directory).parts for s in SKIPPED)
    )


def flake_hash(directory: Path, attribute: str) -> str:
    """What a build depends on: every flake file's name and content, and the attribute built."""
    digest = hashlib.sha256(attribute.encode() + b"\0")
    for path in flake_files(directory):
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def attribute(accelerator: str) -> str:
    return f"vllm-server-{accelerator}"


def out_link(accelerator: str) -> str:
    """The built server (a GC root), which the unit runs."""
    return f"{paths.NIX_DIR}/{attribute(accelerator)}"


def stamp(accelerator: str) -> str:
    """Holds the flake_hash of the build out_link points to."""
    return f"{out_link(accelerator)}.flake-sha256"


def server_program(accelerator: str) -> str:
    return f"{out_link(accelerator)}/bin/vllm-server"


def nix_conf(substituters: tuple[str, ...], keys: tuple[str, ...]) -> str:
    """Our part of nix.conf, included from the host's own file."""
    return (
        "# Managed by vllm-fleet (included from nix.conf); local edits are overwritten.\n"
        "experimental-features = nix-command flakes\n"
        f"substituters = {' '.join(substituters)}\n"
        f"trusted-public-keys = {' '.join(keys)}\n"
        # A host that cannot reach a cache fails in seconds instead of waiting on it.
        "connect-timeout = 10\n"
        "stalled-download-timeout = 60\n"
        # CUDA builds are large: prefer a cache's copy, build only what no cache has.
        "fallback = true\n"
    )


def tmpfiles_conf() -> str:
    return (
        "# Managed by vllm-fleet: Nix-built CUDA programs find the host's driver here.\n"
        f"L+ {paths.OPENGL_DRIVER} - - - - {paths.DRIVER_LINKS_DIR}\n"
    )


def builds_for(settings: Settings, accelerator: str, fleet: Mapping[str, Settings]) -> list[str]:
    """Accelerators whose server a host builds: its own, and, on a builder, those of the
    hosts naming it as nix_builder (fleet: every host's settings)."""
    wanted = [accelerator]
    if settings.serving_method == "nix" and not settings.nix_builder:
        for other in fleet.values():
            if other.nix_builder == settings.host and other.accelerator not in wanted:
                wanted.append(other.accelerator)
    return wanted
