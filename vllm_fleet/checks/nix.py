"""Pre-flight checks of the Nix way: the Nix on the host, or the installer it will get."""

from __future__ import annotations

from pathlib import Path

from vllm_fleet import images, nix
from vllm_fleet.checks.registry import Context, check


@check("nix_version", methods=("nix",))
def _nix_version(c: Context):
    need = nix.minimum_nix(nix.flake_dir(c.settings.nix_flake))
    if c.probe.nix:
        if nix.older(c.probe.nix_version, need):
            return (
                f"Nix {c.probe.nix_version} on this host is older than the {need} nixpkgs needs (nixpkgs' "
                "lib/minver.nix; Debian 12's package is 2.8, Ubuntu 22.04's 2.6): remove it (apt purge nix-bin "
                f"nix-setup-systemd) so the deploy installs Nix {nix.INSTALLER.version} with the official installer, "
                f"or install Nix {need} or newer yourself"
            )
        return None
    if c.distro is None:
        return None
    source, _ = nix.install_source(c.distro.id, c.distro.version, need)
    shipped = Path(c.settings.nix_installer_archive or "").name
    expected = nix.INSTALLER.tarball(c.distro.machine)
    if source == "official" and shipped and shipped != expected:
        return (
            f"nix_installer_archive is {shipped}, and this host takes the pinned official installer {expected}: "
            f"ship that tarball (from {nix.INSTALLER.url(c.distro.machine)})"
        )
    if source == "official" and c.distro.machine not in nix.INSTALLER.sha256:
        return (
            f"the official Nix installer is pinned by checksum for {', '.join(nix.INSTALLER.sha256)} only, and this "
            f"host is {c.distro.machine}: install Nix {need} or newer yourself, or serve this host with Docker "
            "(serving_method = 'docker')"
        )
    if source == "official" and c.probe.selinux.lower() == "enforcing":
        return (
            "SELinux is enforcing, and the official Nix installer refuses to run then: install Nix yourself with "
            "an installer that brings an SELinux policy (Determinate Systems' nix-installer), or serve this host "
            "with Docker (serving_method = 'docker')"
        )
    return None


@check("nix_vllm", methods=("nix",))
def _nix_vllm(c: Context):
    if c.settings.nix_flake:
        return None  # a flake of your own: its vLLM is yours to choose
    wanted = ".".join(images.VLLM_VERSION.split(".")[:2])
    return (
        f"the repository's flake serves nixpkgs' vLLM {nix.NIXPKGS_VLLM} ({nix.NIXPKGS_PIN}), older than the vLLM "
        f"{wanted} the deploy's arguments and checks are written for, and vLLM before 0.22 skips its API-key check "
        f"for some Host headers (GHSA-94f4-hr76-p5j6): set nix_flake to a flake whose vLLM is {wanted} or newer, or "
        "serve this host with Docker (serving_method = 'docker')"
    )


@check("nix_rocm", ("amd",), ("nix",))
def _nix_rocm(c: Context):
    if c.settings.nix_flake:
        return None  # a flake of your own, built for ROCm by you
    return (
        f"nixpkgs' vLLM at this flake's pin ({nix.NIXPKGS_PIN}) is not known to build with rocmSupport (it has "
        "not for most of 2025-26): serve AMD hosts with Docker (serving_method = 'docker'), or set nix_flake to a "
        "flake you have built for ROCm"
    )
