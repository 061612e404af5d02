"""What the rollout reads of each host's plan (plan.plan_inventory's, as `vllm-fleet plan` shows
it), validated: each host's role, refusal, cluster, a gateway's backends and drain timeout, and the settings its
deploy's time limit depends on."""

from __future__ import annotations

from typing import Any, Self

from pydantic import AliasPath, BaseModel, Field, model_validator

from vllm_fleet.settings import Settings
from vllm_fleet.settings.types import Role, ServingMethod

# No knob bounds installing packages, pulling an image or the GPU driver's reboot (900 s of
# its own): the deploy gets this on top of what its knobs allow.
DEPLOY_MARGIN = 1800


def _planned_value(name: str) -> Any:
    """A setting as the plan shows it ({"value": ..., "source": ...}), with Settings' default
    where the plan has none: a gateway's and a monitoring host's plans show no settings."""
    return Field(Settings.model_fields[name].default, validation_alias=AliasPath(name, "value"))


class DeployKnobs(BaseModel):
    package_lock_timeout: int = _planned_value("package_lock_timeout")
    vllm_ready_timeout: int = _planned_value("vllm_ready_timeout")
    serving_method: ServingMethod = _planned_value("serving_method")
    nix_build_timeout: int = _planned_value("nix_build_timeout")
    vllm_download_weights: bool = _planned_value("vllm_download_weights")
    vllm_download_timeout: int = _planned_value("vllm_download_timeout")


class PlannedCluster(BaseModel):
    members: list[str] = []


class PlannedHost(BaseModel):
    """One host's plan. A vLLM host's names no role; a refused host's holds only its refusal."""

    role: Role | None = None
    refused: str | None = None
    cluster: PlannedCluster | None = None
    backends: dict[str, str] = {}  # a gateway's: each vLLM host it fronts, and where
    drain_timeout: int = 0  # a gateway's
    settings: DeployKnobs = DeployKnobs()

    @model_validator(mode="after")
    def _gateway_says_how_long_it_drains(self) -> Self:
        if self.role == "gateway" and "drain_timeout" not in self.model_fields_set:
            raise ValueError("a gateway's plan names its drain_timeout")
        return self

    @property
    def deploy_limit(self) -> int:
        """The seconds the host's deploy may take: the package lock, the download, a Nix build,
        the new release's start and, when it does not come up, the previous one's."""
        knobs = self.settings
        limit = DEPLOY_MARGIN + knobs.package_lock_timeout
        if self.role in ("gateway", "monitoring"):
            return limit
        limit += 2 * knobs.vllm_ready_timeout
        if knobs.serving_method == "nix":
            limit += knobs.nix_build_timeout
        elif knobs.vllm_download_weights:
            limit += knobs.vllm_download_timeout
        return limit


class FleetPlan(BaseModel):
    hosts: dict[str, PlannedHost]
