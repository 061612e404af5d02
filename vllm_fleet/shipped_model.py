"""Models shipped from the machine running pyinfra (vllm_model_dir): their content hash and home on the host.

Each content gets a directory of its own, named by its hash, so a changed model is a new
path in a new release's unit (a restart onto it), and a rollback finds the old weights
where the old release left them. The activation prunes directories no release names.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from vllm_fleet import paths

_CHUNK = 1 << 20


def files(directory: str) -> list[Path]:
    """The files shipped: everything under the directory but hidden files and caches."""
    root = Path(directory)
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(root).parts)
    )


@lru_cache
def content_hash(directory: str) -> str:
    """sha256 over each file's relative path and content: the same content gives the same
    hash wherever and whenever it was copied (no mtimes)."""
    digest = hashlib.sha256()
    root = Path(directory)
    for path in files(directory):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        file_digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                file_digest.update(chunk)
        digest.update(file_digest.digest())
    return digest.hexdigest()


def host_path(directory: str) -> str:
    """Where the directory's content lives on the host (and inside the container)."""
    return f"{paths.MODELS_DIR}/{Path(directory).name}-{content_hash(directory)[:16]}"


@lru_cache
def size_gib(directory: str) -> float:
    return sum(p.stat().st_size for p in files(directory)) / 2**30
