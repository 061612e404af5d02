"""Container images: the pinned defaults and reading `docker save` archives."""

from __future__ import annotations

import json
import re
import tarfile

# Pinned per accelerator. Re-check against the vendors' pages before moving them:
# https://docs.vllm.ai/en/stable/deployment/docker/ and AMD's ROCm vLLM guide.
DEFAULT_IMAGES = {
    "nvidia": "vllm/vllm-openai:v0.11.0",
    "amd": "rocm/vllm:rocm7.0.0_vllm_0.11.2_20251210",
    "cpu": "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.11.0",
}

_TAG = re.compile(r":([\w][\w.\-]{0,127})$")


def is_pinned(ref: str) -> bool:
    """True when the reference names a digest, or a tag other than 'latest'."""
    if "@sha256:" in ref:
        return True
    name = ref.rsplit("/", 1)[-1]
    match = _TAG.search(name)
    return bool(match) and match.group(1) != "latest"


def default_image(accelerator: str) -> str:
    return DEFAULT_IMAGES[accelerator]


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
