"""vLLM service: image in place, secrets and unit written, restarted only on change."""

from __future__ import annotations

import ipaddress
import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api.deploy import deploy
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from vllm_fleet import images, launch
from vllm_fleet.facts import DockerImageId
from vllm_fleet.operations import secret_file
from vllm_fleet.settings import Settings

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@deploy("vLLM service")
def vllm_service(settings: Settings, accelerator: str, probe: dict, engine_restarts: list = ()) -> None:
    """probe: pre-flight's HostProbe. engine_restarts: operations that restart the Docker
    engine; vLLM is restarted and waited for after them too, as the engine's restart
    stopped its container."""
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

    image_ops = _install_image(settings, accelerator)

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

    changed = any_changed(*image_ops, env, unit, *engine_restarts)
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
                    local_url(settings),
                    settings.served_model_name,
                    str(settings.vllm_ready_timeout),
                ]
            )
        ],
        _if=changed,
    )


def local_url(settings: Settings) -> str:
    """The endpoint as seen from the host itself."""
    address = ipaddress.ip_address(settings.vllm_bind_address)
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{shown}:{settings.vllm_port}"


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
