"""Pre-flight checks of the host itself: its OS, room for the model and the server, and its port."""

from __future__ import annotations

import os

from vllm_fleet import images, paths, shipped_model
from vllm_fleet.catalogue import CATALOGUE
from vllm_fleet.checks.registry import Context, check, gib

# Image size on disk, GiB, by accelerator (CUDA and ROCm images are large; pulled plus unpacked).
IMAGE_DISK_GIB = {"nvidia": 25.0, "amd": 40.0, "cpu": 10.0}
# Where each serving method keeps the server, and the probe's key for its free space.
SERVER_STORE = {"docker": ("/var/lib/docker", "docker_root_free_kib"), "nix": ("/nix/store", "nix_store_free_kib")}


@check("os")
def _os(c: Context):
    return c.unsupported_os


@check("model_fits")
def _model_fits(c: Context):
    return c.sizing.refusal


@check("disk")
def _disk(c: Context):
    problems = []
    if c.settings.vllm_model_dir and os.path.basename(c.sizing.model) not in c.probe.shipped_models:
        free, need = gib(c.probe.models_free_kib), shipped_model.size_gib(c.settings.vllm_model_dir) * 1.1
        if free < need:
            problems.append(f"{paths.MODELS_DIR} has {free:.1f} GiB free, vllm_model_dir needs {need:.1f} GiB")
    model = CATALOGUE.get(c.sizing.model)
    if model and not c.probe.hf_cache_has_model:
        free = gib(c.probe.hf_cache_free_kib)
        if free < model.disk_gib * 1.1:
            problems.append(
                f"{c.settings.hf_cache_dir} has {free:.1f} GiB free, {model.id} needs {model.disk_gib * 1.1:.1f} GiB"
            )
    # The Nix closure of vLLM is about the size of its image (the same CUDA or ROCm libraries).
    where, key = SERVER_STORE[c.settings.serving_method]
    free = gib(getattr(c.probe, key))
    need = IMAGE_DISK_GIB[c.accelerator]
    if c.settings.vllm_image_archive and c.settings.serving_method == "docker":
        need = 2.2 * os.path.getsize(c.settings.vllm_image_archive) / 2**30  # shipped copy + loaded layers
    if c.settings.serving_method == "docker" and images.image_loaded(
        c.probe.image_id, c.image, c.settings.vllm_image_archive
    ):
        need = 0.0  # loaded already: nothing is pulled, shipped or loaded
    if free < need:
        problems.append(f"{where} has {free:.1f} GiB free, vLLM needs about {need:.1f} GiB there")
    return "; ".join(problems) + ": free some space or point hf_cache_dir elsewhere" if problems else None


@check("gated_model")
def _gated(c: Context):
    model = CATALOGUE.get(c.sizing.model)
    if model and model.gated and not c.settings.hf_token:
        return f"{model.id} is gated on Hugging Face: accept its licence there and export HF_TOKEN"
    return None


@check("port")
def _port(c: Context):
    listeners = [_listener(item) for item in c.probe.port_listeners.split()]
    # Ours: vllm.service's own process (Nix), Docker's proxy while our container is up, or our
    # container's server itself (a cluster's member runs on the host's network).
    ours_up = bool(c.probe.vllm_container_port)
    ours = {str(pid) for pid in (c.probe.vllm_main_pid, c.probe.vllm_container_pid) if pid}
    others = [name for name, pid in listeners if pid not in ours and not (name == "docker-proxy" and ours_up)]
    if others:
        # "?": read from /proc/net/tcp before the deploy installed ss, which names the process.
        taken = ", ".join(name if name != "?" else "a process (ss from iproute2 names it)" for name in others)
        return f"port {c.settings.vllm_port} is already taken by {taken}: stop it or choose another vllm_port"
    return None


def _listener(item: str) -> tuple[str, str]:
    """(process name, pid) from one of ss's users:(("name",pid=N entries."""
    name, _, pid = item.removeprefix('users:(("').partition(",pid=")
    return name.rstrip('"'), pid
