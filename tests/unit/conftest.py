from pathlib import Path

import pytest

from vllm_fleet.catalogue import CATALOGUE
from vllm_fleet.plan import plan_host
from vllm_fleet.rules import validate

REPO = Path(__file__).resolve().parents[2]


def load_group_data(name: str) -> dict:
    """A group_data file's values, as pyinfra would read them (no environment secrets)."""
    namespace: dict = {}
    exec(compile((REPO / "group_data" / f"{name}.py").read_text(), name, "exec"), namespace)
    return {k: v for k, v in namespace.items() if not k.startswith("_") and k != "os"}


@pytest.fixture
def settings_for():
    """Resolved settings of a host in a phase group (host data on top of the profile),
    sized for the phase's reference GPUs unless `gpus` is given."""

    def make(phase: str = "single_gpu", gpus=None, accelerator="nvidia", **host_data):
        data = {**load_group_data(phase), **host_data}
        settings = validate("gpu-01", data, groups=[phase])
        return plan_host(settings, {}, accelerator, gpus or CATALOGUE.reference_gpus(phase)).settings

    return make
