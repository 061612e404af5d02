"""The vLLM arguments the project writes, parsed by the pinned vLLM's own parser (inside the
sandbox's vLLM image), for every phase x accelerator x serving method: a flag that a vLLM
release renamed or dropped fails here, not in a user's crash loop."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import SESSION_FLEET

from sandbox import images
from tests.unit.conftest import load_group_data
from vllm_fleet import launch
from vllm_fleet.catalogue import CATALOGUE
from vllm_fleet.plan import plan_host
from vllm_fleet.rules import validate
from vllm_fleet.settings import PHASES, SERVING_METHODS
from vllm_fleet.vllm_flags import OWNED_FLAGS, QUANTIZATION_METHODS, SERVE_FLAGS, SWITCHES, read_args, vllm_flag

# No fleet at all: beside the session's modules, which leave their worker more time.
pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group(SESSION_FLEET)]
ACCELERATORS = ("nvidia", "amd", "cpu")


@pytest.fixture(scope="module")
def image() -> str:
    images.ensure_docker()
    tag, _ = images.build_vllm_image(images.build_rootfs_image())
    return tag


def in_image(image: str, script: str, cases: dict[str, list[str]]):
    """Run one of sandbox's scripts with the image's Python on these argument lists."""
    done = subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", "none", "--entrypoint", "/opt/vllm/bin/python3"]
        + ["-v", f"{images.HERE / script}:/script.py:ro", image, "/script.py"],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def parse(image: str, cases: dict[str, list[str]]) -> dict[str, str]:
    return in_image(image, "check_vllm_args.py", cases)


def argv(phase: str, accelerator: str, method: str, **data) -> list[str]:
    settings = validate(
        "host",
        {
            **load_group_data(phase),
            "accelerator": accelerator,
            "serving_method": method,
            "vllm_api_key": "k" * 16 + "Zq7wPm2x",
        }
        | data,
        groups=[phase],
    )
    gpus = None if accelerator == "cpu" else CATALOGUE.reference_gpus(phase)
    resolved = plan_host(settings, {}, accelerator, gpus).settings
    if method == "nix":
        return launch.nix_server_argv(resolved, accelerator)[1:]
    return launch.vllm_args(resolved, accelerator)


def test_every_argument_list_the_project_writes_parses(image):
    cases = {
        f"{phase}/{accelerator}/{method}": argv(phase, accelerator, method)
        for phase in PHASES
        for accelerator in ACCELERATORS
        for method in SERVING_METHODS
    }
    # The sandbox's own: the shipped test model and its extra arguments.
    model = images.build_test_model(image)
    cases["sandbox"] = argv("single_gpu", "cpu", "docker", vllm_model_dir=str(model)) + [
        "--kv-cache-memory-bytes",
        "1G",
    ]
    # The checker can fail: a flag no vLLM has is refused by it.
    cases["control"] = cases["sandbox"] + ["--no-such-flag"]
    results = parse(image, cases)
    assert "unrecognized arguments: --no-such-flag" in results.pop("control")
    assert results == dict.fromkeys(cases.keys() - {"control"}, "ok")
    assert len(results) == len(PHASES) * len(ACCELERATORS) * len(SERVING_METHODS) + 1


def test_the_weights_download_runs_in_the_image_up_to_the_hub(image):
    """The download step's Python runs with the image's huggingface_hub (names, syntax) and
    stops only where it needs the hub, which this machine cannot reach."""
    done = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", image]
        + ["-c", launch.DOWNLOAD_SCRIPT, "Qwen/Qwen2.5-1.5B-Instruct"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "ConnectError" in done.stderr or "ConnectionError" in done.stderr, done.stderr[-2000:]
    assert "ImportError" not in done.stderr and "SyntaxError" not in done.stderr


def test_extra_args_are_read_the_way_vllms_own_parser_reads_them(image):
    """vllm_extra_args refuses a flag a knob owns however vLLM would accept it (aliases,
    underscores, unique prefixes, short options with their value attached), and no other flag."""
    cases = {
        "underscores": ["--max_model_len=4096"],
        "prefix": ["--served-model", "x"],
        "short-attached": ["-qfp8"],
        "alias": ["--device-memory-utilization", "0.5"],
        # A word after a switch is the positional model, which wins over --model.
        "word-after-a-switch": ["--enforce-eager", "org/other-model"],
    }
    found = in_image(image, "vllm_flags.py", cases)
    # The recorded flags are this vLLM's (regenerate data/vllm_serve_flags.txt when it moves).
    assert set(found["options"]) == SERVE_FLAGS, set(found["options"]) ^ SERVE_FLAGS
    assert set(found["switches"]) == SWITCHES, set(found["switches"]) ^ SWITCHES
    assert tuple(found["quantization"]) == QUANTIZATION_METHODS, set(found["quantization"]) ^ set(QUANTIZATION_METHODS)
    owned_dests = {found["options"][flag] for flag in OWNED_FLAGS if flag in found["options"]}
    assert len(owned_dests) == len(set(OWNED_FLAGS.values()))  # aliases share their flag's dest
    for flag, dest in found["options"].items():
        if dest in owned_dests:
            assert vllm_flag(flag), f"vLLM's {flag} sets {dest}, which a knob owns, and extra args would pass it"
        else:
            assert vllm_flag(flag) is None, f"extra args would refuse vLLM's own {flag} ({dest})"
    # vLLM really reads these spellings as the owned flags the settings refuse them for.
    positional = found["cases"].pop("word-after-a-switch")
    assert positional.get("model_tag") == "org/other-model", positional
    assert [word for flag, word in read_args(cases.pop("word-after-a-switch")) if flag is None] == ["org/other-model"]
    for case, argv in cases.items():
        dests = set(found["cases"][case]) if isinstance(found["cases"][case], dict) else set()
        assert dests and dests <= owned_dests, (case, found["cases"][case])
        assert all(vllm_flag(arg) for arg in argv if arg.startswith("-")), case
