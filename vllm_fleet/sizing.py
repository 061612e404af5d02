"""Sizing: from a host's GPUs to a model and flags that fit, with the arithmetic shown.

Per GPU, vLLM may use  budget = gpu_memory_utilization x VRAM.  Out of it come

    weights   = the checkpoint's weight size / tensor_parallel_size
    overhead  = 1.0 GiB + 0.02 GiB per billion parameters / tensor_parallel_size
                (an estimate of what vLLM counts inside the budget besides weights and KV
                cache: non-torch memory (CUDA context, NCCL, cuBLAS), CUDA graphs, and the
                activations of its profiling run)

VRAM is what the GPU reports (nvidia-smi's memory.total), not what it is sold as: an
L4 sold as 24 GB reports 22.5 GiB.
    KV cache  = what is left, holding  2 (K and V) x layers x kv_heads x head_dim x 2 bytes
                per token, split across the tensor-parallel GPUs.

vLLM refuses to start when its KV cache cannot hold one sequence of max_model_len
tokens ("max seq len ... is larger than the maximum number of tokens that can be
stored in KV cache"): that is the fit rule here. Sequences beyond what the cache holds
at full length still run (vLLM pages and preempts), so max_num_seqs x max_model_len
above the cache is a warning with the numbers, not a refusal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vllm_fleet import shipped_model
from vllm_fleet.catalogue import CATALOGUE, Catalogue, Gpus, Model

OVERHEAD_BASE_GIB = 1.0
OVERHEAD_PER_BILLION_GIB = 0.02


@dataclass(frozen=True)
class Estimate:
    model: Model
    tensor_parallel_size: int
    gpus: Gpus
    utilization: float
    max_model_len: int
    max_num_seqs: int
    pipeline_parallel_size: int = 1  # a cluster's members (vllm_fleet/cluster.py): its stages
    # vllm_kv_cache_gib: vLLM's --kv-cache-memory-bytes, per GPU; set, it replaces what the
    # utilization leaves (vLLM then ignores gpu_memory_utilization), and the GPU's whole memory bounds it.
    kv_cache_per_gpu_gib: float | None = None

    @property
    def shards(self) -> int:
        """The GPUs the weights and the KV cache are split across: tensor x pipeline parallel."""
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def budget_per_gpu_gib(self) -> float:
        return self.utilization * self.gpus.memory_gib

    @property
    def weights_per_gpu_gib(self) -> float:
        return self.model.weight_gib / self.shards

    @property
    def overhead_per_gpu_gib(self) -> float:
        return OVERHEAD_BASE_GIB + OVERHEAD_PER_BILLION_GIB * self.model.params_b / self.shards

    @property
    def kv_cache_gib(self) -> float:
        """KV cache across all the GPUs the model is split across (can be negative: weights do not fit)."""
        if self.kv_cache_per_gpu_gib is not None:
            return self.kv_cache_per_gpu_gib * self.shards
        per_gpu = self.budget_per_gpu_gib - self.weights_per_gpu_gib - self.overhead_per_gpu_gib
        return per_gpu * self.shards

    @property
    def set_kv_per_gpu_gib(self) -> float:
        """Weights, overhead and the KV cache vllm_kv_cache_gib sets: what each GPU holds then."""
        return self.weights_per_gpu_gib + self.overhead_per_gpu_gib + (self.kv_cache_per_gpu_gib or 0.0)

    @property
    def set_kv_fits_the_gpu(self) -> bool:
        return self.kv_cache_per_gpu_gib is None or self.set_kv_per_gpu_gib <= self.gpus.memory_gib

    @property
    def kv_per_sequence_gib(self) -> float:
        return self.model.kv_gib_per_token * self.max_model_len

    @property
    def full_length_sequences(self) -> float:
        return max(self.kv_cache_gib, 0.0) / self.kv_per_sequence_gib

    @property
    def fits(self) -> bool:
        return self.full_length_sequences >= 1 and self.max_model_len <= self.model.context and self.set_kv_fits_the_gpu

    @property
    def minimum_per_gpu_gib(self) -> float:
        """Weights, overhead and one full-length sequence: what vLLM needs to start."""
        return self.weights_per_gpu_gib + self.overhead_per_gpu_gib + self.kv_per_sequence_gib / self.shards

    @property
    def all_sequences_per_gpu_gib(self) -> float:
        kv = self.kv_per_sequence_gib * self.max_num_seqs / self.shards
        return self.weights_per_gpu_gib + self.overhead_per_gpu_gib + kv

    def longest_window(self) -> int:
        """The longest max_model_len (a multiple of 256) whose one sequence fits the KV cache."""
        tokens = max(self.kv_cache_gib, 0.0) / self.model.kv_gib_per_token
        return min(int(tokens // 256 * 256), self.model.context)

    def as_dict(self) -> dict:
        r = round
        return {
            "model": self.model.id,
            "gpus": {
                "count": self.gpus.count,
                "memory_gib": self.gpus.memory_gib,
                "name": self.gpus.name,
                "source": self.gpus.source,
            },
            "tensor_parallel_size": self.tensor_parallel_size,
            "pipeline_parallel_size": self.pipeline_parallel_size,
            "budget_per_gpu_gib": r(self.budget_per_gpu_gib, 2),
            "weights_per_gpu_gib": r(self.weights_per_gpu_gib, 2),
            "overhead_per_gpu_gib": r(self.overhead_per_gpu_gib, 2),
            "kv_cache_gib": r(self.kv_cache_gib, 2),
            "kv_per_token_mib": r(self.model.kv_gib_per_token * 1024, 4),
            "kv_per_sequence_gib": r(self.kv_per_sequence_gib, 3),
            "minimum_per_gpu_gib": r(self.minimum_per_gpu_gib, 2),
            "all_sequences_per_gpu_gib": r(self.all_sequences_per_gpu_gib, 2),
            "full_length_sequences": r(self.full_length_sequences, 1),
            "fits": self.fits,
        }

    def arithmetic(self) -> str:
        if self.kv_cache_per_gpu_gib is not None:
            return (
                f"{self.model.id} on {self.shards} x {self.gpus.memory_gib:g} GiB: {self.weights_per_gpu_gib:.2f} GiB "
                f"weights + {self.overhead_per_gpu_gib:.2f} GiB overhead + vllm_kv_cache_gib "
                f"{self.kv_cache_per_gpu_gib:g} GiB = {self.set_kv_per_gpu_gib:.2f} GiB per GPU of "
                f"{self.gpus.memory_gib:g} GiB; one {self.max_model_len}-token sequence needs "
                f"{self.kv_per_sequence_gib / self.shards:.2f} GiB of KV cache per GPU"
            )
        return (
            f"{self.model.id} on {self.shards} x {self.gpus.memory_gib:g} GiB"
            + (f" ({self.pipeline_parallel_size} stages)" if self.pipeline_parallel_size > 1 else "")
            + f": needs {self.weights_per_gpu_gib:.2f} GiB weights + {self.overhead_per_gpu_gib:.2f} GiB overhead + "
            f"{self.kv_per_sequence_gib / self.shards:.2f} GiB KV for one {self.max_model_len}-token "
            f"sequence = {self.minimum_per_gpu_gib:.2f} GiB per GPU, budget {self.utilization:g} x "
            f"{self.gpus.memory_gib:g} = {self.budget_per_gpu_gib:.2f} GiB"
        )


def tp_candidates(model: Model, gpus: Gpus) -> list[int]:
    """Tensor-parallel sizes the host can run: powers of two up to its GPU count, dividing the heads."""
    sizes = [2**i for i in range(int(math.log2(max(gpus.count, 1))) + 1)]
    return [tp for tp in sizes if model.heads % tp == 0] or [1]


def estimate(model: Model, gpus: Gpus, tp: int, s, pp: int = 1) -> Estimate:
    max_len = s.vllm_max_model_len or model.context
    kv = float(s.vllm_kv_cache_gib) if s.vllm_kv_cache_gib else None
    return Estimate(model, tp, gpus, s.vllm_gpu_memory_utilization, max_len, s.vllm_max_num_seqs, pp, kv)


def best_tp(model: Model, gpus: Gpus, s, min_sequences: float = 1) -> Estimate:
    """The smallest tensor-parallel size with room for min_sequences; else the largest."""
    estimates = [estimate(model, gpus, tp, s) for tp in tp_candidates(model, gpus)]
    for e in estimates:
        if e.fits and e.full_length_sequences >= min_sequences:
            return e
    for e in estimates:
        if e.fits:
            return e
    return estimates[-1]


@dataclass
class Sizing:
    """What sizing decided for one host."""

    model: str
    quantization: str | None
    tensor_parallel_size: int
    estimate: Estimate | None
    warnings: list[str] = field(default_factory=list)
    refusal: str | None = None


def size(
    s, accelerator: str, gpus: Gpus | None, catalogue: Catalogue = CATALOGUE, split: tuple[int, int] | None = None
) -> Sizing:
    """Choose the model (vllm_model = auto) and tensor-parallel size (auto), and check the fit.
    split: a cluster member's (tensor, pipeline) parallel sizes (cluster.split), which sizing keeps;
    gpus are then one member's."""
    pipeline = 1
    if split:
        s, pipeline = s.replace(vllm_tensor_parallel_size=split[0]), split[1]
    warnings: list[str] = []
    if s.vllm_model_dir:
        if accelerator != "cpu":
            warnings.append(f"{s.vllm_model_dir} is served as it is: no memory estimate (it is not in the catalogue)")
        return Sizing(shipped_model.host_path(s.vllm_model_dir), s.vllm_quantization, _fixed_tp(s), None, warnings)
    if accelerator == "cpu":
        return _size_cpu(s, catalogue)
    if gpus is None:
        gpus = catalogue.reference_gpus(s.phase)
        warnings.append(
            f"no GPU details for this host: sized for {gpus.count} x {gpus.memory_gib:g} GiB ({gpus.name}); "
            "set gpu_count and gpu_memory_gib, or plan with --facts"
        )
    phase = catalogue.phases[s.phase]
    if s.vllm_model == "auto":
        chosen = _choose(s, accelerator, gpus, catalogue, phase, pipeline)
    else:
        model = catalogue.get(s.vllm_model)
        if model is None:
            warnings.append(
                f"{s.vllm_model} is not in the model catalogue: no memory estimate "
                "(add it to vllm_fleet/data/models.toml)"
            )
            return Sizing(s.vllm_model, s.vllm_quantization, _fixed_tp(s), None, warnings)
        chosen = _fit(model, gpus, s, phase.get("min_full_sequences", 1), pipeline)
    quantization = s.vllm_quantization
    if not quantization and phase.get("pass_quantization"):
        quantization = chosen.model.quantization or None
    result = Sizing(chosen.model.id, quantization, chosen.tensor_parallel_size, chosen, warnings)
    _check(result, s, accelerator, gpus, catalogue, one_host=split is None)
    return result


def _fit(model: Model, gpus: Gpus, s, min_sequences: float, pipeline: int = 1) -> Estimate:
    if s.vllm_tensor_parallel_size == "auto":
        return best_tp(model, gpus, s, min_sequences)
    return estimate(model, gpus, s.vllm_tensor_parallel_size, s, pipeline)


def _choose(s, accelerator: str, gpus: Gpus, catalogue: Catalogue, phase: dict, pipeline: int) -> Estimate:
    minimum = phase.get("min_full_sequences", 1)
    candidates = [catalogue.models[m] for m in phase["prefer"] if accelerator in catalogue.models[m].accelerators]
    for model in candidates:
        e = _fit(model, gpus, s, minimum, pipeline)
        if e.fits and e.full_length_sequences >= minimum:
            return e
    for model in candidates:
        e = _fit(model, gpus, s, 1, pipeline)
        if e.fits:
            return e
    return _fit(candidates[-1], gpus, s, 1, pipeline)


def _fixed_tp(s) -> int:
    """The tensor-parallel size when sizing cannot choose one: the setting, 1 for auto."""
    return 1 if s.vllm_tensor_parallel_size == "auto" else s.vllm_tensor_parallel_size


def _size_cpu(s, catalogue: Catalogue) -> Sizing:
    model_id = catalogue.phases["cpu"]["prefer"][0] if s.vllm_model == "auto" else s.vllm_model
    model = catalogue.get(model_id)
    refusal = None
    if model and "cpu" not in model.accelerators:
        refusal = f"{model_id} does not run on vLLM's CPU backend (its {model.quantization} kernels are GPU-only)"
    return Sizing(model_id, s.vllm_quantization, _fixed_tp(s), None, [], refusal)


def _check(result: Sizing, s, accelerator: str, gpus: Gpus, catalogue: Catalogue, one_host: bool) -> None:
    """one_host: False for a cluster member, whose tensor parallel size may span the members' GPUs."""
    e = result.estimate
    assert e is not None, "checked only where sizing made an estimate"
    model = e.model
    if accelerator not in model.accelerators:
        result.refusal = (
            f"{model.id} does not run on {accelerator} GPUs with vLLM (runs on: {', '.join(model.accelerators)})"
        )
        return
    if s.vllm_tensor_parallel_size != "auto":
        tp = s.vllm_tensor_parallel_size
        if tp > gpus.count and one_host:
            result.refusal = f"vllm_tensor_parallel_size = {tp} is above the host's {gpus.count} GPU(s)"
            return
        if model.heads % tp:
            result.refusal = (
                f"vllm_tensor_parallel_size = {tp} does not divide {model.id}'s {model.heads} attention heads"
            )
            return
    if e.max_model_len > model.context:
        result.refusal = (
            f"vllm_max_model_len = {e.max_model_len} is above {model.id}'s context of {model.context} tokens; "
            f"nearest that fits: vllm_max_model_len = {min(model.context, max(e.longest_window(), 256))}"
        )
        return
    if not e.fits:
        result.refusal = (
            f"the model does not fit: {e.arithmetic()}; nearest that fits: {_nearest(e, s, gpus, catalogue)}"
        )
        return
    if e.full_length_sequences < s.vllm_max_num_seqs:
        result.warnings.append(
            f"KV cache holds {e.full_length_sequences:.1f} sequences of {e.max_model_len} tokens; "
            f"vllm_max_num_seqs = {s.vllm_max_num_seqs} at full length would need "
            f"{e.all_sequences_per_gpu_gib:.1f} GiB per GPU: longer requests will queue "
            f"(vllm_max_num_seqs <= {max(int(e.full_length_sequences), 1)} keeps them all at full length)"
        )


def _nearest(e: Estimate, s, gpus: Gpus, catalogue: Catalogue) -> str:
    options = []
    if e.kv_cache_per_gpu_gib is not None:
        room = math.floor(gpus.memory_gib - e.weights_per_gpu_gib - e.overhead_per_gpu_gib)
        needed = math.ceil(e.kv_per_sequence_gib / e.shards)
        if needed <= room:
            options.append(f"vllm_kv_cache_gib = {room if not e.set_kv_fits_the_gpu else needed}")
    # A cache set larger than the GPU holds overflows whatever the window or the checkpoint.
    overflows = not e.set_kv_fits_the_gpu
    window = 0 if overflows else e.longest_window()
    if window >= 512:
        options.append(f"vllm_max_model_len = {window}")
    for variant in [] if overflows else catalogue.variants(e.model):
        v = best_tp(variant, gpus, s)
        if variant.weight_gib >= e.model.weight_gib:
            continue
        named = f"vllm_model = {variant.id!r} (quantization {variant.quantization or 'none'})"
        if v.fits:
            options.append(named)
            break
        if v.longest_window() >= 2048:
            options.append(f"{named} with vllm_max_model_len = {v.longest_window()}")
            break
    for tp in tp_candidates(e.model, gpus):
        if tp > e.tensor_parallel_size and estimate(e.model, gpus, tp, s).fits:
            options.append(f"vllm_tensor_parallel_size = {tp}")
            break
    if e.utilization < 0.95 and e.kv_cache_per_gpu_gib is None:
        higher = Estimate(e.model, e.tensor_parallel_size, gpus, 0.95, e.max_model_len, e.max_num_seqs)
        if higher.fits:
            options.append("vllm_gpu_memory_utilization = 0.95")
    return ", or ".join(options) if options else "a larger GPU or more GPUs"
