"""The settings model: every knob of every component, one typed attribute each."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from vllm_fleet.settings.cluster import Cluster
from vllm_fleet.settings.docker import Docker
from vllm_fleet.settings.gateway import Gateway
from vllm_fleet.settings.gpu_stack import GpuStack
from vllm_fleet.settings.host import Host, Identity
from vllm_fleet.settings.monitoring import Monitoring
from vllm_fleet.settings.nix import Nix
from vllm_fleet.settings.secrets import redacted
from vllm_fleet.settings.types import bounded_allowed, holds_secret
from vllm_fleet.settings.vllm import Vllm, VllmKeysAndCaches


# pydantic takes the fields of the last base first: the knobs are in the order of the bases from
# the last to the first, the order of the settings reference and the one validation reports in.
class Settings(Docker, GpuStack, Host, Nix, VllmKeysAndCaches, Monitoring, Gateway, Cluster, Vllm, Identity):
    """One host's validated settings: every knob a typed attribute."""

    def replace(self, **changes: Any) -> Settings:
        """A copy with these knobs changed (values the caller has already checked, such as sizing's)."""
        return self.model_copy(update=changes)

    @property
    def values(self) -> dict[str, Any]:
        """Knob name -> value."""
        return {name: getattr(self, name) for name in KNOBS}

    def show(self, name: str) -> str:
        """A knob's value as an error message may show it: secrets by their length only."""
        return redacted(getattr(self, name), holds_secret(type(self).model_fields[name].annotation))

    @property
    def served_model_name(self) -> str:
        if self.vllm_served_model_name:
            return self.vllm_served_model_name
        return Path(self.vllm_model_dir).name if self.vllm_model_dir else self.vllm_model

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.vllm_bind_address).is_loopback


KNOBS = {name: info for name, info in Settings.model_fields.items() if name not in Identity.model_fields}
# The knobs that hold a secret: every redaction and rule about secrets reads them from here.
SECRET_KNOBS = tuple(name for name, info in KNOBS.items() if holds_secret(info.annotation))


def allowed(name: str) -> str:
    """What a knob allows, in the words of an error message."""
    info = Settings.model_fields[name]
    extra = info.json_schema_extra
    assert isinstance(extra, dict)
    words = extra.get("allowed") or bounded_allowed(info.rebuild_annotation())
    assert words, f"{name} neither says what it allows nor has a Bounded type that does"
    return str(words)
