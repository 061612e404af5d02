"""vllm_model_dir: the content hash, the path on the host, the rules, and how it is served."""

from pathlib import Path

import pytest

from tests.unit.test_launch import render_unit
from vllm_fleet import launch, paths, shipped_model
from vllm_fleet.settings import SettingsError


def make_model(root: Path, weights: bytes = b"w" * 100) -> Path:
    model = root / "tiny-model"
    model.mkdir()
    (model / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (model / "model.safetensors").write_bytes(weights)
    return model


def hashed(model: Path) -> str:
    shipped_model.content_hash.cache_clear()
    return shipped_model.content_hash(str(model))


def test_hash_follows_content_not_times_or_hidden_files(tmp_path):
    model = make_model(tmp_path)
    first = hashed(model)
    (model / "config.json").touch()
    (model / ".cache").mkdir()
    (model / ".cache" / "lock").write_text("x")
    assert hashed(model) == first, "mtimes or hidden files changed the hash"
    (model / "model.safetensors").write_bytes(b"v" * 100)
    assert hashed(model) != first
    (model / "model.safetensors").write_bytes(b"w" * 100)
    (model / "model.safetensors").rename(model / "renamed.safetensors")
    assert hashed(model) != first, "a renamed file is another model"


def test_host_path_is_named_by_directory_and_content(tmp_path):
    model = make_model(tmp_path)
    path = shipped_model.host_path(str(model))
    assert path == f"{paths.MODELS_DIR}/tiny-model-{hashed(model)[:16]}"


def test_served_by_its_path_under_its_name_read_only(settings_for, tmp_path):
    model = make_model(tmp_path)
    s = settings_for("single_gpu", accelerator="cpu", vllm_model_dir=str(model))
    path = shipped_model.host_path(str(model))
    args = launch.vllm_args(s)
    assert args[:4] == ["--model", path, "--served-model-name", "tiny-model"]
    container = launch.container_args(s, "cpu")
    assert container[container.index(f"{path}:{path}:ro") - 1] == "-v"
    nix_unit = render_unit(s.replace(serving_method="nix"), "cpu")
    assert f"ReadOnlyPaths={path}" in nix_unit.splitlines()


def test_served_name_may_be_set(settings_for, tmp_path):
    s = settings_for(
        "single_gpu",
        accelerator="cpu",
        vllm_model_dir=str(make_model(tmp_path)),
        **{"vllm_served_model_name": "team-model"},
    )
    assert launch.vllm_args(s)[2:4] == ["--served-model-name", "team-model"]
    assert "MODEL=team-model" in launch.release_conf(s)


@pytest.mark.parametrize(
    "data, key, allowed",
    [
        ({"vllm_model": "Qwen/Qwen2.5-7B-Instruct"}, "vllm_model", "'auto' when vllm_model_dir is set"),
        ({"vllm_model_dir": "/nonexistent"}, "vllm_model_dir", "a model directory (config.json"),
    ],
)
def test_rules(settings_for, tmp_path, data, key, allowed):
    with pytest.raises(SettingsError) as refused:
        settings_for("single_gpu", accelerator="cpu", **{"vllm_model_dir": str(make_model(tmp_path)), **data})
    assert refused.value.key == key and allowed in refused.value.allowed


def test_caches_survive_the_container_with_the_same_paths_for_docker_and_nix(settings_for):
    s = settings_for("single_gpu", accelerator="cpu", vllm_cache_dir="/srv/vllm-cache")
    container = launch.container_args(s, "cpu")
    assert "/srv/vllm-cache:/srv/vllm-cache" in container
    for env in ("XDG_CACHE_HOME=/srv/vllm-cache", "VLLM_CACHE_ROOT=/srv/vllm-cache/vllm"):
        assert container[container.index(env) - 1] == "-e"
    nix_unit = render_unit(s.replace(serving_method="nix"), "cpu").splitlines()
    assert "Environment=VLLM_CACHE_ROOT=/srv/vllm-cache/vllm" in nix_unit
    assert f"Environment=HF_HOME={s.hf_cache_dir}" in nix_unit
