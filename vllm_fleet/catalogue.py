"""The model catalogue (data/models.toml): what each checkpoint is, which models a phase prefers
and the GPUs it assumes when a host's are unknown. Sizing (vllm_fleet/sizing.py) reads it."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources

GIB = 1024**3
KV_DTYPE_BYTES = 2  # fp16/bf16 KV cache, vLLM's default


@dataclass(frozen=True)
class Model:
    id: str
    params_b: float
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    context: int
    quantization: str
    weight_gib: float
    disk_gib: float
    accelerators: tuple[str, ...]
    gated: bool

    @property
    def kv_gib_per_token(self) -> float:
        return 2 * self.layers * self.kv_heads * self.head_dim * KV_DTYPE_BYTES / GIB

    def same_architecture(self, other: Model) -> bool:
        keys = ("params_b", "layers", "heads", "kv_heads", "head_dim")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


@dataclass(frozen=True)
class Gpus:
    count: int
    memory_gib: float
    name: str
    source: str  # "host data", "facts" or "assumed (...)"


@dataclass(frozen=True)
class Catalogue:
    models: dict[str, Model]
    phases: dict[str, dict]

    def get(self, model_id: str) -> Model | None:
        return self.models.get(model_id)

    def variants(self, model: Model) -> list[Model]:
        """Checkpoints of the same architecture (a quantized variant, or the full one), smallest first."""
        same = [m for m in self.models.values() if m.id != model.id and model.same_architecture(m)]
        return sorted(same, key=lambda m: m.weight_gib)

    def reference_gpus(self, phase: str) -> Gpus:
        ref = self.phases[phase]["reference_gpu"]
        return Gpus(ref["count"], ref["memory_gib"], ref["name"], f"assumed: the {phase} reference GPU")


def load_catalogue(text: str | None = None) -> Catalogue:
    if text is None:
        text = resources.files("vllm_fleet").joinpath("data/models.toml").read_text()
    data = tomllib.loads(text)
    models = {}
    for entry in data["model"]:
        entry = {**entry, "accelerators": tuple(entry["accelerators"])}
        models[entry["id"]] = Model(**entry)
    for phase, choice in data["phase"].items():
        for model_id in choice["prefer"]:
            if model_id not in models:
                raise ValueError(f"phase {phase} prefers {model_id}, which the catalogue does not list")
    return Catalogue(models, data["phase"])


CATALOGUE = load_catalogue()
