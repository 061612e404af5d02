"""Docker on the host: daemon.json as the probe read it."""

from __future__ import annotations

import json
from typing import Any


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
