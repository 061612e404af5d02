"""Nix server: the Nix-built vLLM server for this host's accelerator made current, built here or
copied from the builder host of nix_builder; on NVIDIA hosts, the driver's libraries where
Nix-built CUDA programs look for them. The vLLM service then serves it (tasks/vllm_service.py)."""

from __future__ import annotations

import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server

from vllm_fleet import nix, paths, templates
from vllm_fleet.facts.probe import Probe
from vllm_fleet.operations import barrier, deploy
from vllm_fleet.plan import HostPlan
from vllm_fleet.settings import Settings


@deploy("Nix server")
def nix_server(plan: HostPlan, fleet: dict[str, Settings], probe: Probe) -> list[OperationMeta]:
    """Returns the operations that changed the server (the current release restarts after them).
    fleet: the inventory's hosts, the builder hosts among them."""
    return _install_nix_server(plan.settings, plan.accelerator, fleet, probe)


def _install_nix_server(
    settings: Settings, accelerator: str, fleet: dict[str, Settings], probe: Probe
) -> list[OperationMeta]:
    """Make the Nix-built server for this accelerator current; returns the operations that changed it.

    Built here, or on the builder host of nix_builder (which builds for the hosts that name it
    as well as for itself) and copied from there.
    """
    files.put(
        name="Install the Nix build helper",
        src=templates.path("vllm-nix-install.sh"),
        dest=paths.NIX_INSTALL_SCRIPT,
        mode="755",
        create_remote_dir=True,
    )
    if accelerator == "nvidia":
        _link_driver_libraries(probe)
    flake = nix.flake_dir(settings.nix_flake)
    due = {}  # accelerator -> hash of the flake it is to be built from
    for wanted in nix.builds_for(settings, accelerator, fleet):
        digest = nix.flake_hash(flake, nix.attribute(wanted))
        target, built_from = probe.nix_build(wanted)
        if not target or built_from != digest:
            due[wanted] = digest
    if due and not settings.nix_builder:
        files.sync(
            name=f"Ship the flake {flake.name}/ to {paths.FLAKE_DIR}",
            src=str(flake),
            dest=paths.FLAKE_DIR,
            delete=True,
            exclude=list(nix.SKIPPED),
            # exclude_dir matches paths relative to the flake, so at any depth too.
            exclude_dir=[*nix.SKIPPED, *(f"*/{s}" for s in nix.SKIPPED)],
        )
    timeout = str(settings.nix_build_timeout)
    builder = settings.nix_builder
    done = {}
    if not builder:
        for wanted, digest in due.items():
            attribute, link, stamp = nix.attribute(wanted), nix.out_link(wanted), nix.stamp(wanted)
            command = ["build", host.name, paths.FLAKE_DIR, attribute, link, stamp, digest, timeout]
            done[wanted] = server.shell(
                name=f"Build {attribute} with Nix", commands=[shlex.join([paths.NIX_INSTALL_SCRIPT, *command])]
            )
    if any(other.nix_builder for other in fleet.values()):
        # pyinfra orders each host's operations, not hosts against each other: this step,
        # shared by builders and the hosts that copy from them, puts every build first.
        barrier(name="Wait for the builder hosts' Nix builds")
    if builder:
        for wanted, digest in due.items():
            link, stamp = nix.out_link(wanted), nix.stamp(wanted)
            command = ["copy", host.name, builder_address(builder), link, stamp, digest, timeout]
            done[wanted] = server.shell(
                name=f"Copy the Nix-built {nix.attribute(wanted)} from {builder}",
                commands=[shlex.join([paths.NIX_INSTALL_SCRIPT, *command])],
            )
    return [done[accelerator]] if accelerator in done else []


def builder_address(name: str) -> str:
    """How other hosts reach a builder: its ssh_hostname, else its inventory name."""
    return next(h for h in host.inventory if h.name == name).data.get("ssh_hostname") or name


def _link_driver_libraries(probe: Probe) -> None:
    """Nix-built CUDA programs look for the driver in paths.OPENGL_DRIVER (NixOS's convention):
    link the host's NVIDIA libraries there, and keep the link across boots with tmpfiles."""
    tmpfiles = files.put(
        name=f"Keep {paths.OPENGL_DRIVER} at boot (systemd-tmpfiles)",
        src=StringIO(nix.tmpfiles_conf()),
        dest=paths.TMPFILES_CONF,
        mode="644",
    )
    server.shell(
        name=f"Create {paths.OPENGL_DRIVER} now",
        commands=[f"systemd-tmpfiles --create {paths.TMPFILES_CONF}"],
        _if=tmpfiles.did_change,
    )
    libs = probe.driver_libs
    if not libs or libs != probe.linked_driver_libs:
        server.shell(
            name=f"Link the host's NVIDIA driver libraries into {paths.OPENGL_DRIVER}/lib",
            commands=[
                f"mkdir -p {paths.DRIVER_LINKS_DIR}/lib && rm -f {paths.DRIVER_LINKS_DIR}/lib/* && "
                f"for lib in $(ldconfig -p | awk '{nix.NVIDIA_LIBS} {{print $NF}}'); do "
                f'ln -s "$lib" {paths.DRIVER_LINKS_DIR}/lib/; done && '
                f"test -e {paths.OPENGL_DRIVER}/lib/libcuda.so.1 || "
                f"{{ echo 'ldconfig knows no libcuda.so.1: is the NVIDIA driver installed?' >&2; exit 1; }}"
            ],
        )
