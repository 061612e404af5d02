"""vLLM service: image in place, secrets and unit written, restarted only on change."""

from __future__ import annotations

import shlex
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api.deploy import deploy
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from vllm_fleet import images, launch, nix
from vllm_fleet.facts import DockerImageId
from vllm_fleet.inventory import fleet_settings
from vllm_fleet.operations import barrier, secret_file
from vllm_fleet.settings import Settings

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
NIX_INSTALL_SCRIPT = f"{launch.HELPER_DIR}/vllm-nix-install"


@deploy("vLLM service")
def vllm_service(settings: Settings, accelerator: str, probe: dict, engine_restarts: list = ()) -> None:
    """probe: pre-flight's HostProbe, which also says how vLLM is served now. engine_restarts:
    operations that restart the Docker engine; vLLM is restarted and waited for after them
    too, as the engine's restart stopped its container."""
    serving = nix.serving_state(probe)
    files.directory(
        name=f"Create root-only config directory {launch.CONFIG_DIR}",
        path=launch.CONFIG_DIR,
        user="root",
        group="root",
        mode="700",
    )
    files.directory(
        name=f"Create Hugging Face cache {settings.hf_cache_dir}",
        path=settings.hf_cache_dir,
        mode="755",
    )
    if probe.get("curl") != "yes":
        server.packages(name="Install curl for the readiness check", packages=["curl"])

    if settings.serving_method == "nix":
        server_ops = _install_nix_server(settings, accelerator, serving)
    else:
        server_ops = _install_image(settings, accelerator)

    env = secret_file(
        name=f"Write secrets to root-only {launch.ENV_FILE}",
        dest=launch.ENV_FILE,
        content=launch.env_file_content(settings),
    )
    files.put(
        name="Install the readiness check",
        src=str(TEMPLATES / "vllm-ready.sh"),
        dest=launch.READY_SCRIPT,
        mode="755",
        create_remote_dir=True,
    )
    unit = files.template(
        name=f"Write {launch.SERVICE}",
        src=str(TEMPLATES / "vllm.service.j2"),
        dest=launch.UNIT_PATH,
        mode="644",
        **launch.unit_context(settings, accelerator),
    )

    changed = any_changed(*server_ops, env, unit, *engine_restarts)
    if settings.serving_method == "nix" and serving.get("unit_method") == "docker":
        server.shell(
            name="Stop and remove the Docker-served vLLM (switching to Nix)",
            commands=[f"systemctl stop {launch.SERVICE}; docker rm -f {launch.CONTAINER_NAME} >/dev/null 2>&1 || true"],
        )
    systemd.service(
        name="Restart vLLM for its new image or configuration",
        service=launch.SERVICE,
        running=True,
        restarted=True,
        daemon_reload=True,
        _if=changed,
    )
    systemd.service(
        name="Keep vLLM running and enabled at boot",
        service=launch.SERVICE,
        running=True,
        enabled=True,
    )
    server.shell(
        name="Wait for the endpoint to list the model",
        commands=[
            shlex.join(
                [
                    launch.READY_SCRIPT,
                    host.name,
                    launch.local_url(settings),
                    settings.served_model_name,
                    str(settings.vllm_ready_timeout),
                ]
            )
        ],
        _if=changed,
    )
    if settings.serving_method == "docker" and serving.get("nix_links"):
        # Only the GC roots go: the store paths stay until nix-collect-garbage.
        server.shell(
            name="Release the Nix-built vLLM server (switched to Docker)",
            commands=[f"rm -rf {nix.NIX_DIR}/vllm-server-* {nix.FLAKE_DIR}"],
        )


def _install_image(settings: Settings, accelerator: str) -> list:
    """Make the image present; returns the operations that changed it."""
    ref = launch.image(settings, accelerator)
    present = host.get_fact(DockerImageId, image=shlex.quote(ref))
    if settings.vllm_image_archive:
        if present == images.archive_image_id(settings.vllm_image_archive, ref):
            return []
        remote = f"{launch.IMAGE_DIR}/{Path(settings.vllm_image_archive).name}"
        shipped = files.put(
            name=f"Ship image archive {Path(settings.vllm_image_archive).name}",
            src=settings.vllm_image_archive,
            dest=remote,
            mode="600",
            create_remote_dir=True,
        )
        loaded = server.shell(
            name=f"Load {ref} into Docker",
            commands=[f"docker load --quiet --input {shlex.quote(remote)} && rm -f {shlex.quote(remote)}"],
        )
        return [shipped, loaded]
    if present:
        return []
    return [server.shell(name=f"Pull {ref}", commands=[f"docker pull --quiet {shlex.quote(ref)}"])]


def _install_nix_server(settings: Settings, accelerator: str, serving: dict) -> list:
    """Make the Nix-built server for this accelerator current; returns the operations that changed it.

    Built here, or on the builder host of nix_builder (which builds for the hosts that name it
    as well as for itself) and copied from there.
    """
    files.put(
        name="Install the Nix build helper",
        src=str(TEMPLATES / "vllm-nix-install.sh"),
        dest=NIX_INSTALL_SCRIPT,
        mode="755",
        create_remote_dir=True,
    )
    if accelerator == "nvidia":
        _link_driver_libraries(serving)
    flake = nix.flake_dir(settings.nix_flake)
    due = {}  # accelerator -> hash of the flake it is to be built from
    for wanted in nix.builds_for(settings, accelerator, fleet_settings(host)):
        digest = nix.flake_hash(flake, nix.attribute(wanted))
        target, built_from = serving.get("builds", {}).get(wanted, ("", ""))
        if not target or built_from != digest:
            due[wanted] = digest
    if due and not settings.nix_builder:
        files.sync(
            name=f"Ship the flake {flake.name}/ to {nix.FLAKE_DIR}",
            src=str(flake),
            dest=nix.FLAKE_DIR,
            delete=True,
            exclude=list(nix.SKIPPED),
            # exclude_dir matches paths relative to the flake, so at any depth too.
            exclude_dir=[*nix.SKIPPED, *(f"*/{s}" for s in nix.SKIPPED)],
        )
    timeout = str(settings.nix_build_timeout)
    done = {}
    if not settings.nix_builder:
        for wanted, digest in due.items():
            attribute, link, stamp = nix.attribute(wanted), nix.out_link(wanted), nix.stamp(wanted)
            command = ["build", host.name, nix.FLAKE_DIR, attribute, link, stamp, digest, timeout]
            done[wanted] = server.shell(
                name=f"Build {attribute} with Nix", commands=[shlex.join([NIX_INSTALL_SCRIPT, *command])]
            )
    if any(other.data.get("nix_builder") for other in host.inventory):
        # pyinfra orders each host's operations, not hosts against each other: this step,
        # shared by builders and the hosts that copy from them, puts every build first.
        barrier(name="Wait for the builder hosts' Nix builds")
    for wanted, digest in due.items() if settings.nix_builder else ():
        link, stamp = nix.out_link(wanted), nix.stamp(wanted)
        command = ["copy", host.name, builder_address(settings.nix_builder), link, stamp, digest, timeout]
        done[wanted] = server.shell(
            name=f"Copy the Nix-built {nix.attribute(wanted)} from {settings.nix_builder}",
            commands=[shlex.join([NIX_INSTALL_SCRIPT, *command])],
        )
    return [done[accelerator]] if accelerator in done else []


def builder_address(name: str) -> str:
    """How other hosts reach a builder: its ssh_hostname, else its inventory name."""
    return next(h for h in host.inventory if h.name == name).data.get("ssh_hostname") or name


def _link_driver_libraries(serving: dict) -> None:
    """Nix-built CUDA programs look for the driver in /run/opengl-driver (NixOS's convention):
    link the host's NVIDIA libraries there, and keep the link across boots with tmpfiles."""
    tmpfiles = files.put(
        name=f"Keep {nix.OPENGL_DRIVER} at boot (systemd-tmpfiles)",
        src=StringIO(nix.tmpfiles_conf()),
        dest=nix.TMPFILES_CONF,
        mode="644",
    )
    server.shell(
        name=f"Create {nix.OPENGL_DRIVER} now",
        commands=[f"systemd-tmpfiles --create {nix.TMPFILES_CONF}"],
        _if=tmpfiles.did_change,
    )
    libs = serving.get("driver_libs", [])
    if not libs or libs != serving.get("linked_driver_libs"):
        server.shell(
            name=f"Link the host's NVIDIA driver libraries into {nix.OPENGL_DRIVER}/lib",
            commands=[
                f"mkdir -p {nix.DRIVER_LINKS_DIR}/lib && rm -f {nix.DRIVER_LINKS_DIR}/lib/* && "
                f"for lib in $(ldconfig -p | awk '{nix.NVIDIA_LIBS} {{print $NF}}'); do "
                f'ln -s "$lib" {nix.DRIVER_LINKS_DIR}/lib/; done && '
                f"test -e {nix.OPENGL_DRIVER}/lib/libcuda.so.1 || "
                f"{{ echo 'ldconfig knows no libcuda.so.1: is the NVIDIA driver installed?' >&2; exit 1; }}"
            ],
        )
