"""The vLLM arguments the project writes, parsed by the pinned vLLM's own parser (inside the
sandbox's vLLM image), for every phase x accelerator x serving method: a flag that a vLLM
release renamed or dropped fails here, not in a user's crash loop."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.sandbox import sandbox
from tests.unit.conftest import load_group_data
from vllm_fleet import launch
from vllm_fleet.plan import plan_host
from vllm_fleet.rules import validate
from vllm_fleet.settings import PHASES, SERVING_METHODS
from vllm_fleet.sizing import CATALOGUE

pytestmark = pytest.mark.sandbox
ACCELERATORS = ("nvidia", "amd", "cpu")


@pytest.fixture(scope="module")
def image() -> str:
    sandbox.ensure_docker()
    tag, _ = sandbox.build_vllm_image(sandbox.build_rootfs_image())
    return tag


def parse(image: str, cases: dict[str, list[str]]) -> dict[str, str]:
    done = subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", "none", "--entrypoint", "/opt/vllm/bin/python3"]
        + ["-v", f"{sandbox.HERE / 'check_vllm_args.py'}:/check.py:ro", image, "/check.py"],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def argv(phase: str, accelerator: str, method: str, **data) -> list[str]:
    settings = validate(
        "host",
        {**load_group_data(phase), "accelerator": accelerator, "serving_method": method, "vllm_api_key": "k" * 24}
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
    model = sandbox.build_test_model(image)
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
