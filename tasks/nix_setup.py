"""Nix: installed (the distribution's package when it is new enough for the flake, else the
official installer pinned by checksum), configured with flakes and the binary caches, its daemon running."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from vllm_fleet import nix, paths
from vllm_fleet.distro import APT_CACHE_SECONDS, Distro
from vllm_fleet.facts.probe import Probe
from vllm_fleet.operations import deploy
from vllm_fleet.settings import Settings


@deploy("Nix")
def nix_setup(settings: Settings, distro: Distro, probe: Probe) -> None:
    """probe: pre-flight's HostProbe, which says whether Nix is there."""
    source, detail = nix.install_source(distro.id, distro.version, nix.minimum_nix(nix.flake_dir(settings.nix_flake)))
    if not probe.nix:
        if source == "distro":
            apt.packages(name=f"Install Nix ({detail})", packages=[detail], update=True, cache_time=APT_CACHE_SECONDS)
        else:
            _run_official_installer(distro.machine, detail, settings.nix_installer_archive)

    ours = files.put(
        name="Write vllm-fleet's Nix settings (flakes, binary caches)",
        src=StringIO(nix.nix_conf(settings.nix_substituters, settings.nix_trusted_public_keys)),
        dest=paths.OUR_NIX_CONF,
        mode="644",
        create_remote_dir=True,
    )
    # Included rather than written over: the host's own nix.conf (Debian's sandbox = false,
    # the installer's build-users-group) stays as it is.
    included = files.line(
        name=f"Include them from {paths.NIX_CONF}",
        path=paths.NIX_CONF,
        line=f"!include {paths.OUR_NIX_CONF.rsplit('/', 1)[1]}",
    )
    systemd.service(
        name="Start the Nix daemon and enable it at boot",
        service="nix-daemon.service",
        running=True,
        enabled=True,
    )
    systemd.service(
        name="Restart the Nix daemon for its new settings",
        service="nix-daemon.service",
        restarted=True,
        _if=any_changed(ours, included),
    )


def _run_official_installer(machine: str, why: str, archive: str | None) -> None:
    """why: why the distribution's own package is not used, if it has one. archive: the installer's
    tarball on this machine, shipped instead of downloaded on the host."""
    sha256 = nix.INSTALLER.sha256.get(machine)
    if sha256 is None:
        raise PyinfraError(
            f"host {host.name}: no pinned Nix installer for {machine or 'this machine'} "
            f"(pinned: {', '.join(nix.INSTALLER.sha256)}): install Nix {nix.INSTALLER.version} yourself"
        )
    files.directory(name=f"Create {paths.NIX_INSTALLER_DIR}", path=paths.NIX_INSTALLER_DIR, mode="700")
    tarball = f"{paths.NIX_INSTALLER_DIR}/nix-{nix.INSTALLER.version}-{machine}-linux.tar.xz"
    verify = ""
    if archive:
        files.put(
            name=f"Ship Nix {nix.INSTALLER.version}'s installer ({Path(archive).name})",
            src=archive,
            dest=tarball,
            mode="600",
        )
        # What the download checks as it downloads, checked of what arrived.
        verify = f"echo '{sha256}  {tarball}' | sha256sum -c --quiet && "
    else:
        files.download(
            name=f"Download Nix {nix.INSTALLER.version} (checksum pinned)",
            src=nix.INSTALLER.url(machine),
            dest=tarball,
            sha256sum=sha256,
            mode="600",
        )
    server.shell(
        name=f"Install Nix {nix.INSTALLER.version} (multi-user, official installer{'; ' + why if why else ''})",
        commands=[
            f"{verify}cd {paths.NIX_INSTALLER_DIR} && tar -xJf {tarball} "
            f"&& ./nix-{nix.INSTALLER.version}-{machine}-linux/install --daemon --yes --no-channel-add "
            f"&& rm -rf ./nix-{nix.INSTALLER.version}-{machine}-linux"
        ],
    )
