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
# The GPU exporters monitoring scrapes on Docker GPU hosts, pinned to releases whose metric names
# vllm_fleet/data/metrics/ records (NVIDIA/dcgm-exporter 4.5.3-4.8.2: etc/default-counters.csv;
# 4.9.0 renames them). ROCm/device-metrics-exporter v1.5.1: docs/installation/docker.md.
DCGM_EXPORTER_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-ubuntu22.04"
AMD_METRICS_EXPORTER_IMAGE = "docker.io/rocm/device-metrics-exporter:v1.5.1"
# Node metrics where the OS has no node exporter package (Rocky, RHEL): the Prometheus
# project's own image, run as its README says (host network and PID namespace, / read-only).
NODE_EXPORTER_IMAGE = "quay.io/prometheus/node-exporter:v1.9.1"
# The CUDA release the default NVIDIA image is built with (vLLM's docker/Dockerfile: ARG
# CUDA_VERSION=13.0.x, as vLLM's CI configuration quotes it) and the oldest driver that runs it
# (CUDA Toolkit release notes, table 3: CUDA 13.0 needs 580.65.06 on Linux).
IMAGE_CUDA = "13.0"
MIN_NVIDIA_DRIVER = (580, 65)
# The oldest amdgpu (by the ROCm release amdgpu-install brings it with) the default ROCm image's user
# space runs on: vLLM's ROCm images of 0.2x-0.3x are ROCm 7.2 (docker/Dockerfile.rocm_72_base, the
# -rocm72 tags) or ROCm 10.0 (Dockerfile.rocm_base); AMD's user and kernel-space support matrix lists
# ROCm 10.0's drivers from 30.10 (ROCm 7.0) up, and ROCm 7.2's 6.4 drivers for MI300/MI325 only.
MIN_ROCM_DRIVER = (7, 0)
# MI350X/MI355X (gfx950) need ROCm 7.0 or newer (vLLM's ROCm installation page; ROCm 7.0.0's notes).
MIN_ROCM_GFX950 = (7, 0)
# The oldest NVIDIA GPUs its kernels are built for: compute capability 7.5, Turing (vLLM's
# docker/Dockerfile: ARG torch_cuda_arch_list='7.5 8.0 8.6 8.9 9.0 10.0 11.0 12.0', without PTX;
# CUDA 13.0 builds nothing older). Volta, Pascal and Maxwell (V100, P100, P40, P4, TITAN V)
# fail at the first request with "no kernel image is available for execution on the device".
MIN_COMPUTE_CAPABILITY = (7, 5)


class NoDefaultImage(ValueError):
    """vLLM publishes no image for this accelerator on this architecture."""


# Docker's reference grammar (github.com/distribution/reference, regexp.go), which `docker pull`
# applies: a lowercase path, a tag of up to 128 word characters, a digest of a known algorithm.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
REFERENCE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?\Z",
    re.ASCII,
)
# The digests Docker verifies, and their length in hex digits.
DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
# Images vLLM publishes per accelerator, by repository: a host of another accelerator cannot run them.
IMAGE_ACCELERATORS = {
    "vllm/vllm-openai": "nvidia",
    "vllm/vllm-openai-rocm": "amd",
    "rocm/vllm": "amd",
    "rocm/vllm-dev": "amd",
    "vllm/vllm-openai-cpu": "cpu",
    "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo": "cpu",
}


def parse_reference(ref: str) -> tuple[str, str | None, str | None] | None:
    """(name, tag, digest) of an image reference Docker accepts, or None."""
    match = REFERENCE.match(ref)
    if not match or len(match["name"]) > 255:
        return None
    first, _, rest = match["name"].partition("/")
    # Docker takes the first part for a registry only when it looks like one; else it is
    # part of the repository, which must be lowercase.
    if rest and not ("." in first or ":" in first or first == "localhost") and first != first.lower():
        return None
    digest = match["digest"]
    if digest:
        algorithm, _, hexdigest = digest.partition(":")
        if DIGEST_LENGTHS.get(algorithm) != len(hexdigest) or hexdigest != hexdigest.lower():
            return None
    return match["name"], match["tag"], digest


def is_pinned(ref: str) -> bool:
    """True when the reference is valid and names a digest, or a tag other than 'latest'."""
    parsed = parse_reference(ref)
    if parsed is None:
        return False
    _, tag, digest = parsed
    return bool(digest) or (tag is not None and tag != "latest")


def accelerator_of(ref: str) -> str | None:
    """The accelerator a vLLM image is built for, when it is one of vLLM's or AMD's own."""
    parsed = parse_reference(ref)
    if parsed is None:
        return None
    name = parsed[0].removeprefix("docker.io/").removeprefix("index.docker.io/")
    return IMAGE_ACCELERATORS.get(name)


def built_for_another(ref: str | None, accelerator: str) -> str | None:
    """The other accelerator a vLLM image is built for, when it is not this one's ('auto': unknown yet)."""
    built_for = accelerator_of(ref) if ref else None
    return built_for if built_for and accelerator != "auto" and built_for != accelerator else None


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


def image_loaded(loaded_id: str | None, ref: str, archive: str | None) -> bool:
    """Whether Docker holds the image to serve already (loaded_id: the ID it has for ref): the
    archive's image when one is shipped, any image of that name when it is pulled."""
    if archive:
        return loaded_id == archive_image_id(archive, ref)
    return bool(loaded_id)


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
