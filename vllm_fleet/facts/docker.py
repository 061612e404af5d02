"""Docker on the host: its local images, and daemon.json as the probe read it."""

from __future__ import annotations

import json
import shlex
from typing import Any

from pyinfra.api import FactBase


class DockerImageId(FactBase):
    """The local image ID ('sha256:...') of an image reference, or None."""

    def command(self, image: str) -> str:
        return (
            f"command -v docker >/dev/null 2>&1 && "
            f"docker image inspect --format '{{{{.Id}}}}' {shlex.quote(image)} 2>/dev/null || true"
        )

    def process(self, output: list[str]) -> str | None:
        value = "".join(output).strip()
        return value if value.startswith("sha256:") else None


class DaemonJsonError(ValueError):
    """paths.DOCKER_DAEMON_JSON exists but cannot be read as a JSON object (returned, not raised)."""


def parse_daemon_json(content: str) -> dict[str, Any] | DaemonJsonError:
    if not content.strip():
        return {}
    try:
        value = json.loads(content)
    except json.JSONDecodeError as exc:
        return DaemonJsonError(f"it does not parse as JSON ({exc})")
    if not isinstance(value, dict):
        return DaemonJsonError("it is JSON but not an object")
    return value
