"""Pre-flight checks of the Docker way: the image, the engine and what a container is given."""

from __future__ import annotations

import re

from vllm_fleet import images, paths, versions
from vllm_fleet.checks.registry import Context, check, gib
from vllm_fleet.settings import SIZE_PATTERN, daemon_json


@check("image", methods=("docker",))
def _image(c: Context):
    if c.settings.vllm_image:
        built_for = images.built_for_another(c.settings.vllm_image, c.accelerator)
        if built_for:
            return (
                f"vllm_image {c.settings.vllm_image} is vLLM's {built_for} image and this host's accelerator is "
                f"{c.accelerator}: set vllm_image to one built for {c.accelerator}, or leave it unset"
            )
        return None
    try:
        images.default_image(c.accelerator, c.machine)
    except images.NoDefaultImage as exc:
        return str(exc)
    return None


@check("container_toolkit", ("nvidia",), ("docker",))
def _toolkit(c: Context):
    if not c.managed and not c.probe.toolkit and "nvidia" not in c.probe.docker_runtimes:
        return (
            "the NVIDIA container toolkit is missing, so `docker run --gpus all` fails with "
            '"could not select device driver": install nvidia-container-toolkit'
        )
    return None


@check("docker_snap", methods=("docker",))
def _docker_snap(c: Context):
    if c.probe.docker_snap:
        return "Docker is installed from snap, which confines GPU devices and config paths: `snap remove docker`"
    return None


@check("docker_conflicts", methods=("docker",))
def _docker_conflicts(c: Context):
    if c.distro is None or c.distro.family != "dnf" or not c.probe.runc_needed_by:
        return None
    needing = ", ".join(c.probe.runc_needed_by)
    verb = "needs" if len(c.probe.runc_needed_by) == 1 else "need"
    return (
        f"{needing} {verb} the distribution's runc, which Docker's containerd.io obsoletes and conflicts with, so dnf "
        f"cannot install Docker beside them (Docker's install guide removes them first): remove them (dnf remove "
        f"{' '.join(c.probe.runc_needed_by)} runc) if nothing else needs them, or serve this host with Nix "
        "(serving_method = 'nix')"
    )


@check("daemon_json", methods=("docker",))
def _daemon_json(c: Context):
    parsed = c.probe.daemon_config
    if not isinstance(parsed, dict):
        return (
            f"{paths.DOCKER_DAEMON_JSON} exists but {parsed}: fix or remove it (it is merged into, never overwritten)"
        )
    dockerd, newer_docker = _dockerd_after_this_run(c)
    newer = daemon_json.too_new(c.settings.docker_daemon_config, dockerd)
    if newer:
        keys = ", ".join(f"{key} (dockerd {release})" for key, release in newer.items())
        return (
            f"docker_daemon_config sets keys the dockerd this host will run ({dockerd}) does not read: {keys}; it "
            f"would refuse {paths.DOCKER_DAEMON_JSON} and not start again, taking every container down: leave them "
            f"out, or {newer_docker}"
        )
    return None


def _dockerd_after_this_run(c: Context) -> tuple[str, str]:
    """The dockerd release the host runs once the Docker step is done ('' unknown: the newest), and
    how to get a newer one: Docker's repository installs docker_version (else its newest), the
    distribution's package keeps what is installed (else the release's own)."""
    if c.settings.docker_source == "docker":
        return versions.shown(versions.numbers(c.settings.docker_version or "")[:2]), "pin a newer docker_version"
    dockerd = c.probe.dockerd_version
    if not dockerd and c.distro:
        dockerd = daemon_json.DISTRO_DOCKERD.get((c.distro.id, c.distro.version), "")
    return dockerd, "install a newer Docker (docker_source = 'docker')"


@check("shared_memory")
def _shm(c: Context):
    # --ipc=host shares the host's /dev/shm with the container.
    size = gib(c.probe.shm_kib)
    wanted = size_gib(c.settings.vllm_container_shm_size)
    if size and size < wanted:
        return (
            f"/dev/shm is {size:.1f} GiB, below the {c.settings.vllm_container_shm_size} vLLM's workers share "
            "(NCCL ncclShmOpen errors): enlarge the /dev/shm mount"
        )
    return None


def size_gib(text: str) -> float:
    """A size in Docker's syntax (settings.SIZE_PATTERN; units of 1024, as Docker counts them) in GiB."""
    match = re.fullmatch(SIZE_PATTERN, text)
    if not match:
        return 0.0
    power = {"": -3, "k": -2, "m": -1, "g": 0, "t": 1, "p": 2}[(match[3] or "").lower()]
    return float(match[1]) * 1024.0**power
