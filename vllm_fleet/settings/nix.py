"""The knobs of serving with Nix."""

from __future__ import annotations

from typing import Annotated

from vllm_fleet.settings.types import (
    CACHE_URL,
    FLAKE,
    HOST_NAME,
    LAX,
    NIX_INSTALLER,
    Bounded,
    CacheKey,
    CacheUrl,
    FlakeDirectory,
    InventoryName,
    Knobs,
    NixInstallerArchive,
    knob,
    or_none,
)


class Nix(Knobs):
    """Serving with Nix: where the server is built and where its builds come from."""

    nix_flake: FlakeDirectory | None = knob(
        None,
        "With serving_method nix: a flake directory on the machine running pyinfra exporting "
        "packages.<system>.vllm-server-<accelerator>; None: nix/ of this repository.",
        or_none(FLAKE),
    )
    nix_substituters: Annotated[tuple[CacheUrl, ...], *LAX] = knob(
        ("https://cache.nixos.org", "https://cache.nixos-cuda.org", "https://cuda-maintainers.cachix.org"),
        "Binary caches Nix substitutes from (the CUDA builds of vLLM come from the community CUDA caches).",
        CACHE_URL,
    )
    nix_trusted_public_keys: Annotated[tuple[CacheKey, ...], *LAX] = knob(
        (
            "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=",
            "cache.nixos-cuda.org:74DUi4Ye579gUqzH4ziL9IyiJBlDpMRn9MBN8oNan9M=",
            "cuda-maintainers.cachix.org-1:0dq3bujKpuEPMCX6U4WylrUDZ9JyUG0VpVZa7CNfq5E=",
        ),
        "Public keys of the binary caches in nix_substituters.",
        "a list of Nix public keys such as 'cache.nixos.org-1:6NCHdD59X431o0gW...='",
    )
    nix_builder: InventoryName | None = knob(
        None,
        "Inventory host that builds the server; this host copies the build from it (nix copy over SSH as root, "
        "so this host needs a root SSH key the builder accepts) instead of building. None: build here.",
        or_none(HOST_NAME),
    )
    nix_installer_archive: NixInstallerArchive | None = knob(
        None,
        "Where the official Nix installer is due (no distribution package new enough): its tarball on the machine "
        "running pyinfra, shipped to the host instead of downloaded there (hosts that cannot reach "
        "releases.nixos.org); checked against the pinned checksum on the host before it is unpacked.",
        or_none(NIX_INSTALLER),
    )
    nix_build_timeout: Annotated[int, Bounded(60, 86400)] = knob(
        10800, "Seconds a Nix build may take before it is stopped (a CUDA build missing from the caches takes hours)."
    )
