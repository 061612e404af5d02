"""Sizing arithmetic, checked against the seed's figures and vLLM's documented behaviour."""

import pytest

from vllm_fleet.catalogue import CATALOGUE, GIB, Gpus, Model, load_catalogue
from vllm_fleet.sizing import Estimate, estimate

RTX_4060 = Gpus(1, 8.0, "NVIDIA GeForce RTX 4060 Laptop GPU", "host data")
SEED_MODEL = "TheBloke/deepseek-coder-6.7B-instruct-AWQ"


def test_kv_cache_per_token_follows_the_architecture():
    # deepseek-coder-6.7B: 32 layers x 32 KV heads x 128 dims x K and V x 2 bytes = 0.5 MiB per token.
    assert CATALOGUE.get(SEED_MODEL).kv_gib_per_token * GIB == 2 * 32 * 32 * 128 * 2 == 512 * 1024
    # Qwen2.5-7B uses grouped-query attention (4 KV heads): 56 KiB per token.
    assert CATALOGUE.get("Qwen/Qwen2.5-7B-Instruct").kv_gib_per_token * GIB == 2 * 28 * 4 * 128 * 2


def test_seed_figure_about_4_gb_for_the_awq_model_at_2048_tokens(settings_for):
    """The seed reports about 4 GB of VRAM for the 6.7B AWQ model at 2048 tokens on an RTX 4060."""
    s = settings_for("laptop", gpus=RTX_4060)
    e = estimate(CATALOGUE.get(SEED_MODEL), RTX_4060, 1, s)
    weights_gb = e.weights_per_gpu_gib * GIB / 1e9
    assert 3.5 <= weights_gb <= 4.5
    # Weights, overhead and one 2048-token sequence (1 GiB of KV) fit in 0.85 x 8 GiB ...
    assert e.kv_per_sequence_gib == pytest.approx(1.0)
    assert e.fits and e.minimum_per_gpu_gib < e.budget_per_gpu_gib == pytest.approx(6.8)
    # ... while 16 concurrent full-length sequences would not: vLLM queues the rest.
    assert 2 <= e.full_length_sequences < 16


@pytest.mark.parametrize(
    "phase, gpus, model, tp",
    [
        ("laptop", RTX_4060, SEED_MODEL, 1),
        ("laptop", Gpus(1, 16, "RTX 4080", "d"), "Qwen/Qwen2.5-Coder-14B-Instruct-AWQ", 1),
        ("laptop", Gpus(1, 4, "RTX 3050", "d"), "Qwen/Qwen2.5-1.5B-Instruct", 1),
        ("single_gpu", Gpus(1, 24, "L4", "d"), "Qwen/Qwen2.5-7B-Instruct", 1),
        ("single_gpu", Gpus(1, 80, "H100", "d"), "Qwen/Qwen2.5-32B-Instruct", 1),
        ("enterprise", Gpus(2, 80, "H100", "d"), "Qwen/Qwen2.5-72B-Instruct-AWQ", 2),
        ("enterprise", Gpus(4, 80, "H100", "d"), "Qwen/Qwen2.5-72B-Instruct", 4),
        ("enterprise", Gpus(8, 192, "MI300X", "d"), "Qwen/Qwen2.5-72B-Instruct", 2),
    ],
)
def test_decision_tree_from_hardware_to_model(settings_for, phase, gpus, model, tp):
    s = settings_for(phase, gpus=gpus, vllm_api_key="k" * 12 + "Zq7wPm2x")
    assert (s.vllm_model, s.vllm_tensor_parallel_size) == (model, tp)


def test_laptop_passes_the_awq_flag_servers_let_vllm_pick_marlin(settings_for):
    assert settings_for("laptop", gpus=RTX_4060).vllm_quantization == "awq"
    assert (
        settings_for("enterprise", gpus=Gpus(2, 80, "H100", "d"), vllm_api_key="k" * 12 + "Zq7wPm2x").vllm_quantization
        is None
    )


L4 = Gpus(1, 24, "NVIDIA L4", "host data")


def plan(phase="single_gpu", gpus=L4, accelerator="nvidia", **data):
    from tests.unit.conftest import load_group_data
    from vllm_fleet.plan import plan_host
    from vllm_fleet.rules import validate

    s = validate("gpu-01", {**load_group_data(phase), **data}, groups=[phase])
    return plan_host(s, {}, accelerator, gpus)


def test_a_model_that_cannot_fit_is_refused_with_the_numbers_and_the_nearest_fit():
    p = plan(vllm_model="Qwen/Qwen2.5-32B-Instruct")
    assert p.refusal.startswith(
        "the model does not fit: Qwen/Qwen2.5-32B-Instruct on 1 x 24 GiB: needs 61.00 GiB weights"
    )
    assert "budget 0.9 x 24 = 21.60 GiB" in p.refusal
    assert "nearest that fits: vllm_model = 'Qwen/Qwen2.5-32B-Instruct-AWQ' (quantization awq)" in p.refusal


def test_window_too_long_for_the_kv_cache_suggests_a_shorter_one():
    p = plan(vllm_model="Qwen/Qwen2.5-32B-Instruct-AWQ", vllm_max_model_len=32768)
    assert "does not fit" in p.refusal
    window = int(p.refusal.split("vllm_max_model_len = ")[1].split(",")[0].split(" ")[0])
    assert 512 <= window < 32768 and window % 256 == 0
    assert plan(vllm_model="Qwen/Qwen2.5-32B-Instruct-AWQ", vllm_max_model_len=window).refusal is None


def test_tensor_parallel_rules():
    two = Gpus(2, 24, "L4", "d")
    assert "above the host's 2 GPU(s)" in plan(gpus=two, vllm_tensor_parallel_size=4).refusal
    three = Gpus(4, 24, "L4", "d")
    refusal = plan(gpus=three, vllm_model="Qwen/Qwen2.5-7B-Instruct", vllm_tensor_parallel_size=3).refusal
    assert refusal == "vllm_tensor_parallel_size = 3 does not divide Qwen/Qwen2.5-7B-Instruct's 28 attention heads"
    fits_on_two = plan(gpus=two, vllm_model="Qwen/Qwen2.5-14B-Instruct")
    assert fits_on_two.settings.vllm_tensor_parallel_size == 2 and fits_on_two.refusal is None


def test_window_beyond_the_models_context_is_refused():
    p = plan(vllm_model="Qwen/Qwen2.5-7B-Instruct", vllm_max_model_len=65536)
    assert p.refusal.startswith(
        "vllm_max_model_len = 65536 is above Qwen/Qwen2.5-7B-Instruct's context of 32768 tokens"
    )


def test_unknown_model_gets_a_warning_not_a_guess():
    p = plan(vllm_model="my-org/private-model")
    assert p.refusal is None and p.sizing.estimate is None
    assert "not in the model catalogue" in p.warnings[0]


def test_cpu_host_gets_a_cpu_model_and_gpu_only_quantization_is_refused():
    assert plan(accelerator="cpu", gpus=None).settings.vllm_model == "Qwen/Qwen2.5-0.5B-Instruct"
    refusal = plan(accelerator="cpu", gpus=None, vllm_model=SEED_MODEL).refusal
    assert "does not run on vLLM's CPU backend" in refusal


def test_no_gpu_details_size_for_the_phase_reference_and_say_so():
    p = plan(phase="laptop", gpus=None)
    assert p.settings.vllm_model == SEED_MODEL
    assert "no GPU details for this host: sized for 1 x 8 GiB" in p.warnings[0]


def test_catalogue_refuses_a_preference_it_does_not_list():
    text = """
[[model]]
id = "a/b"
params_b = 1.0
layers = 2
heads = 2
kv_heads = 2
head_dim = 64
context = 2048
quantization = ""
weight_gib = 1.0
disk_gib = 1.0
accelerators = ["cpu"]
gated = false
[phase.laptop]
prefer = ["a/c"]
"""
    with pytest.raises(ValueError, match="phase laptop prefers a/c, which the catalogue does not list"):
        load_catalogue(text)


def test_awq_checkpoints_are_offered_to_amd_gpus_and_not_to_the_cpu():
    """vLLM 0.32's platforms/rocm.py lists awq in ROCm's supported_quantization (its Triton kernels,
    VLLM_USE_TRITON_AWQ turned on by itself); on CPUs it runs on x86 only, which sizing cannot tell
    from Arm."""
    mi300x = Gpus(1, 192, "AMD Instinct MI300X", "facts")
    taken = plan(gpus=mi300x, accelerator="amd", vllm_model="Qwen/Qwen2.5-32B-Instruct-AWQ")
    assert taken.refusal is None
    assert CATALOGUE.get("Qwen/Qwen2.5-32B-Instruct-AWQ").accelerators == ("nvidia", "amd")
    assert not [m.id for m in CATALOGUE.models.values() if m.quantization == "awq" and "cpu" in m.accelerators]


# A made-up checkpoint whose figures round differently at every precision as_dict could use.
ODD = Model("org/odd-13b", 13.3, 7, 12, 3, 80, 32768, "", 25.17, 26.0, ("nvidia",), False)


def test_the_estimate_as_the_plan_shows_it():
    """`vllm-fleet plan`'s sizing figures, each under its name and to its precision."""
    e = Estimate(ODD, 2, Gpus(4, 79.6, "H100", "facts"), 0.87, 10000, 50, 2)
    assert e.as_dict() == {
        "model": "org/odd-13b",
        "gpus": {"count": 4, "memory_gib": 79.6, "name": "H100", "source": "facts"},
        "tensor_parallel_size": 2,
        "pipeline_parallel_size": 2,
        "budget_per_gpu_gib": 69.25,  # 0.87 x 79.6 = 69.252
        "weights_per_gpu_gib": 6.29,  # 25.17 / (2 x 2) = 6.2925
        "overhead_per_gpu_gib": 1.07,  # 1 + 0.02 x 13.3 / 4 = 1.0665
        "kv_cache_gib": 247.57,  # (69.252 - 6.2925 - 1.0665) x 4
        "kv_per_token_mib": 0.0064,  # 2 x 7 x 3 x 80 x 2 bytes = 0.00640869... MiB
        "kv_per_sequence_gib": 0.063,
        "minimum_per_gpu_gib": 7.37,
        "all_sequences_per_gpu_gib": 8.14,
        "full_length_sequences": 3955.8,
        "fits": True,
    }
    assert e.arithmetic() == (
        "org/odd-13b on 4 x 79.6 GiB (2 stages): needs 6.29 GiB weights + 1.07 GiB overhead + 0.02 GiB KV "
        "for one 10000-token sequence = 7.37 GiB per GPU, budget 0.87 x 79.6 = 69.25 GiB"
    )


@pytest.mark.parametrize(("tp", "expected"), [("auto", 1), (2, 2)])
def test_a_cpu_host_keeps_its_settings_and_runs_one_shard_unless_told(tp, expected):
    p = plan(accelerator="cpu", gpus=None, vllm_tensor_parallel_size=tp, vllm_quantization="awq")
    assert p.refusal is None
    assert (p.sizing.model, p.sizing.quantization, p.sizing.tensor_parallel_size) == (
        "Qwen/Qwen2.5-0.5B-Instruct",
        "awq",
        expected,
    )
    assert p.sizing.estimate is None and p.sizing.warnings == []


def _arch(model_id: str, weight_gib: float, quantization: str = "", context: int = 32768) -> Model:
    """7B-like: 1 + 0.14 GiB overhead on one GPU, 0.125 MiB of KV per token (1 GiB per 8192 tokens)."""
    return Model(model_id, 7.0, 32, 8, 8, 128, context, quantization, weight_gib, weight_gib, ("nvidia",), False)


@pytest.mark.parametrize(
    ("models", "count", "utilization", "max_len", "nearest"),
    [
        # 24 GiB x 0.9 = 21.6 GiB: 21.6 - 20.39 - 1.14 = 0.07 GiB of KV, 573 tokens: 512 is the window.
        ([_arch("m", 20.39)], 1, 0.9, 8192, "vllm_max_model_len = 512, or vllm_gpu_memory_utilization = 0.95"),
        # Fits only above 0.95 of the GPU: no suggestion is left.
        ([_arch("m", 22.0)], 1, 0.9, 8192, "a larger GPU or more GPUs"),
        # Already at 0.95: nothing higher to suggest; the window is the fit: 22.8 - 19.908 - 1.14 =
        # 1.752 GiB of KV, 14352 tokens, rounded down to a multiple of 256.
        ([_arch("m", 19.908)], 1, 0.95, 65536, "vllm_max_model_len = 14336"),
        # A variant as heavy is no way out; a lighter one is, whole or with its own window.
        ([_arch("m", 15.0, context=65536), _arch("m-int8", 15.0, "int8")], 1, 0.9, 65536, "vllm_max_model_len = 44544"),
        (
            [_arch("m", 21.0), _arch("m-lite", 20.2), _arch("m-awq", 10.0, "awq")],
            1,
            0.9,
            4096,
            "vllm_model = 'm-awq' (quantization awq), or vllm_gpu_memory_utilization = 0.95",
        ),
        (
            [_arch("m", 21.0), _arch("m-lite", 20.2)],
            1,
            0.9,
            4096,
            "vllm_model = 'm-lite' (quantization none) with vllm_max_model_len = 2048, "
            "or vllm_gpu_memory_utilization = 0.95",
        ),
        # A window under 2048 tokens is no use for a variant.
        ([_arch("m", 21.0), _arch("m-lite", 20.23)], 1, 0.9, 4096, "vllm_gpu_memory_utilization = 0.95"),
        # More GPUs: the smallest tensor-parallel size above the host's that fits.
        (
            [_arch("m", 20.5)],
            4,
            0.9,
            8192,
            "vllm_tensor_parallel_size = 2, or vllm_gpu_memory_utilization = 0.95",
        ),
    ],
)
def test_the_nearest_fit_names_each_way_out(models, count, utilization, max_len, nearest):
    from types import SimpleNamespace

    from vllm_fleet.catalogue import Catalogue
    from vllm_fleet.sizing import _nearest

    catalogue = Catalogue({m.id: m for m in models}, {})
    gpus = Gpus(count, 24, "L4", "facts")
    s = SimpleNamespace(
        vllm_max_model_len=max_len,
        vllm_gpu_memory_utilization=utilization,
        vllm_max_num_seqs=16,
        vllm_kv_cache_gib=None,
    )
    e = Estimate(models[0], 1, gpus, utilization, max_len, 16)
    assert not e.fits
    assert _nearest(e, s, gpus, catalogue) == nearest


def test_the_shipped_catalogue_loads_as_sizing_uses_it():
    loaded = load_catalogue()
    assert loaded.models == CATALOGUE.models and loaded.phases == CATALOGUE.phases
    seed = loaded.models[SEED_MODEL]
    assert (seed.layers, seed.kv_heads, seed.quantization, seed.accelerators) == (32, 32, "awq", ("nvidia", "amd"))


def test_a_cluster_member_sizes_for_its_share_of_the_pipeline():
    """Two members of two H100s each (tensor 2 x pipeline 2): the full 72B model fits on the four;
    one host of two alone takes the AWQ checkpoint."""
    from tests.unit.conftest import load_group_data
    from vllm_fleet.rules import validate
    from vllm_fleet.sizing import size

    s = validate("n1", {**load_group_data("enterprise"), "vllm_api_key": "k" * 12 + "Zq7wPm2x"}, ["enterprise"])
    two = Gpus(2, 80, "H100", "facts")
    member = size(s, "nvidia", two, split=(2, 2))
    assert (member.model, member.tensor_parallel_size, member.refusal) == ("Qwen/Qwen2.5-72B-Instruct", 2, None)
    assert (member.estimate.pipeline_parallel_size, member.estimate.shards) == (2, 4)
    alone = size(s, "nvidia", two)
    assert (alone.model, alone.tensor_parallel_size) == ("Qwen/Qwen2.5-72B-Instruct-AWQ", 2)


def test_sizing_says_what_it_could_not_estimate_and_keeps_the_settings():
    from types import SimpleNamespace

    from vllm_fleet.sizing import size

    shipped = SimpleNamespace(vllm_model_dir="/srv/models/m", vllm_quantization="awq", vllm_tensor_parallel_size=2)
    on_gpu = size(shipped, "nvidia", None)
    assert (on_gpu.model, on_gpu.quantization, on_gpu.tensor_parallel_size, on_gpu.estimate) == (
        "/var/lib/vllm-fleet/models/m-e3b0c44298fc1c14",
        "awq",
        2,
        None,
    )
    assert on_gpu.warnings == ["/srv/models/m is served as it is: no memory estimate (it is not in the catalogue)"]
    assert size(shipped, "cpu", None).warnings == []  # a CPU host is never estimated
    unknown = plan(vllm_model="my-org/private-model", vllm_quantization="awq", vllm_tensor_parallel_size=1).sizing
    assert (unknown.model, unknown.quantization, unknown.tensor_parallel_size) == ("my-org/private-model", "awq", 1)
    assert unknown.warnings == [
        "my-org/private-model is not in the model catalogue: no memory estimate (add it to vllm_fleet/data/models.toml)"
    ]


def test_no_gpu_details_warning_whole_and_the_reference_gpu():
    p = plan(gpus=None)
    assert p.warnings[0] == (
        "no GPU details for this host: sized for 1 x 22.5 GiB (NVIDIA L4); set gpu_count and gpu_memory_gib, "
        "or plan with --facts"
    )
    assert p.sizing.estimate.gpus == Gpus(1, 22.5, "NVIDIA L4", "assumed: the single_gpu reference GPU")
    assert p.sizing.estimate.pipeline_parallel_size == 1


def test_a_named_model_takes_the_smallest_tensor_parallel_size_with_the_phases_sequences():
    """Enterprise wants 8 full-length sequences: the 32B model on one 80 GiB GPU holds 4.7, on two 20.9."""
    four = Gpus(4, 80, "H100", "facts")
    data = {"vllm_model": "Qwen/Qwen2.5-32B-Instruct", "vllm_api_key": "k" * 12 + "Zq7wPm2x"}
    assert plan(phase="enterprise", gpus=four, **data).sizing.tensor_parallel_size == 2
    assert plan(phase="single_gpu", gpus=four, **data).sizing.tensor_parallel_size == 1


def test_the_queueing_warning_whole():
    p = plan(gpus=None)
    assert p.warnings[1] == (
        "KV cache holds 11.2 sequences of 8192 tokens; vllm_max_num_seqs = 64 at full length would need 43.4 GiB "
        "per GPU: longer requests will queue (vllm_max_num_seqs <= 11 keeps them all at full length)"
    )


def test_a_tensor_parallel_size_of_all_the_hosts_gpus_is_allowed():
    two = Gpus(2, 24, "L4", "d")
    p = plan(gpus=two, vllm_model="Qwen/Qwen2.5-14B-Instruct", vllm_tensor_parallel_size=2)
    assert p.refusal is None and p.sizing.tensor_parallel_size == 2


def test_the_model_flags_come_before_the_tensor_parallel_size():
    from vllm_fleet import launch

    four = Gpus(4, 80, "H100", "facts")
    p = plan(phase="enterprise", gpus=four, vllm_model="Qwen/Qwen2.5-32B-Instruct", vllm_api_key="k" * 12 + "Zq7wPm2x")
    assert launch.vllm_args(p.settings) == [
        "--model",
        "Qwen/Qwen2.5-32B-Instruct",
        "--gpu-memory-utilization",
        "0.92",
        "--max-model-len",
        "16384",
        "--max-num-seqs",
        "256",
        "--tensor-parallel-size",
        "2",
    ]


def test_a_set_kv_cache_replaces_the_utilizations_share_and_must_fit_the_gpu():
    """vLLM's --kv-cache-memory-bytes is per GPU and, set, ignores gpu_memory_utilization (vLLM's
    CacheConfig.kv_cache_memory_bytes): sizing counts that cache, bounded by the GPU's memory."""
    model = "Qwen/Qwen2.5-7B-Instruct"
    seven_b = CATALOGUE.get(model)
    fits = plan(vllm_model=model, vllm_kv_cache_gib=4, vllm_max_model_len=8192)
    assert fits.refusal is None
    e = fits.sizing.estimate
    assert e.kv_cache_gib == 4.0 and e.full_length_sequences == pytest.approx(4.0 / (seven_b.kv_gib_per_token * 8192))
    # The same cache whatever the utilization: the knob replaces its share.
    assert plan(vllm_model=model, vllm_kv_cache_gib=4, vllm_max_model_len=8192, vllm_gpu_memory_utilization=0.5)
    too_big = plan(vllm_model=model, vllm_kv_cache_gib=20)
    assert too_big.refusal.startswith(
        f"the model does not fit: {model} on 1 x 24 GiB: 14.20 GiB weights + 1.15 GiB overhead + vllm_kv_cache_gib "
        "20 GiB = 35.35 GiB per GPU of 24 GiB"
    )
    # 24 - 14.20 - 1.15 = 8.65 GiB of room: 8 whole GiB.
    assert too_big.refusal.endswith("nearest that fits: vllm_kv_cache_gib = 8")  # no window or checkpoint helps
    assert plan(vllm_model=model, vllm_kv_cache_gib=8).refusal is None
    # A cache too small for one full-length sequence: vLLM would refuse to start.
    too_small = plan(vllm_model=model, vllm_kv_cache_gib=1, vllm_max_model_len=32768)
    assert "one 32768-token sequence needs 1.75 GiB of KV cache per GPU" in too_small.refusal
    assert "vllm_kv_cache_gib = 2" in too_small.refusal
