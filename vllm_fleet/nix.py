"""The Nix way of serving: where the flake and the built server live on a host, and how
it is built, configured and installed.

The server is built from a flake directory on the machine running pyinfra (nix/ of this
repository by default). A host records the hash of the flake it last built successfully
beside the build's out-link, so a deploy knows before running anything whether a build
is due, and --dry tells the truth.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from vllm_fleet.distro import Distro

REPO_FLAKE = Path(__file__).resolve().parent.parent / "nix"
NIX_DIR = "/var/lib/vllm-fleet/nix"
FLAKE_DIR = f"{NIX_DIR}/flake"
# systemd-tmpfiles links /run/opengl-driver (a tmpfs path, gone at boot) to this directory,
# where the host's driver libraries are linked: Nix-built CUDA programs look there.
DRIVER_LINKS_DIR = f"{NIX_DIR}/opengl-driver"
OPENGL_DRIVER = "/run/opengl-driver"
TMPFILES_CONF = "/etc/tmpfiles.d/vllm-fleet-opengl-driver.conf"
NIX_CONF = "/etc/nix/nix.conf"
OUR_NIX_CONF = "/etc/nix/vllm-fleet.conf"
NIX = "/nix/var/nix/profiles/default/bin/nix"  # the official installer's; Debian's is /usr/bin/nix
NIX_FLAGS = ["--extra-experimental-features", "nix-command flakes"]

# Distributions whose own package gives a multi-user Nix with its daemon under systemd.
DISTRO_PACKAGE = {"debian": "nix-setup-systemd", "ubuntu": "nix-setup-systemd"}


@dataclass(frozen=True)
class Installer:
    """The official multi-user installer, from the release tarball pinned by checksum."""

    version: str
    sha256: dict[str, str]  # machine (uname -m) -> sha256 of nix-<version>-<machine>-linux.tar.xz

    def url(self, machine: str) -> str:
        return f"https://releases.nixos.org/nix/nix-{self.version}/nix-{self.version}-{machine}-linux.tar.xz"


INSTALLER = Installer("2.24.9", {"x86_64": "3c0779e4878d1289cf3fbb158ec5ea9bdf61dfb9b4efac6b3b0b6bec5ba4cf13"})


def install_plan(distro: Distro) -> str:
    """'package' or 'installer': how Nix gets onto a host of this distribution."""
    return "package" if distro.id in DISTRO_PACKAGE else "installer"


def flake_dir(setting: str | None) -> Path:
    return Path(setting) if setting else REPO_FLAKE


def flake_files(directory: Path) -> list[Path]:
    """The files that make up the flake (what is shipped and hashed), sorted."""
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in (".nix", ".lock", ".py"))


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
    return f"{NIX_DIR}/{attribute(accelerator)}"


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
        f"L+ {OPENGL_DRIVER} - - - - {DRIVER_LINKS_DIR}\n"
    )
