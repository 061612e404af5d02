"""Container images: the pinned defaults and reading `docker save` archives."""

from __future__ import annotations

import json
import re
import tarfile

# The vLLM release every default image serves: moved here, once, for all accelerators. Each
# image is vLLM's own, with `vllm serve` as its entrypoint (docs.vllm.ai: deployment/docker,
# getting_started/installation gpu.rocm and cpu): vLLM before 0.22 skips its API-key check for
# some Host headers (GHSA-94f4-hr76-p5j6).
VLLM_VERSION = "0.33.0"
DEFAULT_IMAGES = {
    # Multi-arch (amd64, and arm64 for GH200/GB200).
    ("nvidia", "x86_64"): f"vllm/vllm-openai:v{VLLM_VERSION}",
    ("nvidia", "aarch64"): f"vllm/vllm-openai:v{VLLM_VERSION}",
    # x86_64 only; AMD's rocm/vllm images start a shell, not the server.
    ("amd", "x86_64"): f"vllm/vllm-openai-rocm:v{VLLM_VERSION}",
    # One tag per architecture (vLLM's release pipeline pushes -x86_64 and -arm64).
    ("cpu", "x86_64"): f"vllm/vllm-openai-cpu:v{VLLM_VERSION}-x86_64",
    ("cpu", "aarch64"): f"vllm/vllm-openai-cpu:v{VLLM_VERSION}-arm64",
}
# The CUDA release the default NVIDIA image is built with (vLLM's docker/Dockerfile: ARG
# CUDA_VERSION=13.0.x, as vLLM's CI configuration quotes it) and the oldest driver that runs it
# (CUDA Toolkit release notes, table 3: CUDA 13.0 needs 580.65.06 on Linux).
IMAGE_CUDA = "13.0"
MIN_NVIDIA_DRIVER = (580, 65)


class NoDefaultImage(ValueError):
    """vLLM publishes no image for this accelerator on this architecture."""


_TAG = re.compile(r":([\w][\w.\-]{0,127})$")


def is_pinned(ref: str) -> bool:
    """True when the reference names a digest, or a tag other than 'latest'."""
    if "@sha256:" in ref:
        return True
    name = ref.rsplit("/", 1)[-1]
    match = _TAG.search(name)
    return match is not None and match.group(1) != "latest"


def default_image(accelerator: str, machine: str = "x86_64") -> str:
    """machine: `uname -m` of the host ('' when unknown: x86_64)."""
    machine = {"arm64": "aarch64", "amd64": "x86_64", "": "x86_64"}.get(machine, machine)
    try:
        return DEFAULT_IMAGES[(accelerator, machine)]
    except KeyError:
        raise NoDefaultImage(
            f"vLLM publishes no {accelerator} image for {machine}: set vllm_image to one built for it"
        ) from None


def _manifest(archive: str) -> list[dict]:
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise KeyError("manifest.json")
            return json.load(member)
    except (tarfile.TarError, KeyError, json.JSONDecodeError, OSError) as exc:
        raise ValueError(f"{archive} is not a `docker save` archive ({exc})") from None


def archive_tags(archive: str) -> set[str]:
    """The image tags a `docker save` archive holds (empty if it is not one)."""
    try:
        return {tag for entry in _manifest(archive) for tag in entry.get("RepoTags") or ()}
    except ValueError:
        return set()


def archive_image_id(archive: str, tag: str) -> str:
    """The image ID ('sha256:...') that `docker load` will give `tag`.

    The ID is the digest of the image config, which the manifest names as
    'blobs/sha256/<hex>' (OCI layout) or '<hex>.json' (Docker's older layout).
    """
    for entry in _manifest(archive):
        if tag in (entry.get("RepoTags") or ()):
            config = entry["Config"]
            hexdigest = config.rsplit("/", 1)[-1].removesuffix(".json")
            return f"sha256:{hexdigest}"
    raise ValueError(f"{archive} does not hold {tag}")
