"""A hub model's weights are downloaded in a step of their own, before the restart, planned
against facts written by hand (the hub is unreachable here). The command is ours, checked for its
shape and order; whether huggingface_hub's snapshot_download behaves as written is vLLM's
image's business, exercised only on a connected host."""

from __future__ import annotations

import dataclasses
import re

import pytest

from tests.planning.harness import plan_each
from tests.planning.test_gpu_stack_plans import INSTALLED_UBUNTU

DOWNLOAD = "vLLM service | Download the weights of Qwen/Qwen2.5-32B-Instruct before the restart (up to 7200 s)"
ACTIVATE = (
    "vLLM service | Activate the new release: restart vLLM, wait for the model, go back to the previous release if "
    "it does not come up"
)
TOKEN = "hf_" + "t" * 26 + "Zq7wPm2x"


def host(name: str, probe: dict | None = None, **data):
    return dataclasses.replace(
        INSTALLED_UBUNTU,
        name=name,
        probe={**INSTALLED_UBUNTU.probe, **(probe or {})},
        data={**INSTALLED_UBUNTU.data, "vllm_model": "Qwen/Qwen2.5-32B-Instruct", "hf_token": TOKEN, **data},
    )


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    return plan_each(
        tmp_path_factory.mktemp("weights"),
        [
            host("fresh-cache"),
            host("downloaded", {"hf_cache_has_model": "yes", "hf_cache_downloaded": "yes"}),
            host("partial", {"hf_cache_has_model": "yes"}),
            host("opted-out", vllm_download_weights=False),
        ],
    )


def test_weights_come_down_before_the_restart_with_the_new_releases_token(planned):
    assert planned.rc == 0, planned.output[-3000:]
    names = planned.names("fresh-cache")
    assert names.index(DOWNLOAD) < names.index(ACTIVATE)
    [command] = planned.ops[DOWNLOAD]["@fake/fresh-cache"]
    release = re.search(r"--env-file /etc/vllm-fleet/releases/(\d{8}-\d{6}-[0-9a-f]{6})/vllm\.env ", command)
    assert release, command
    assert f"/etc/vllm-fleet/releases/{release.group(1)}/vllm.env" in " ".join(
        planned.ops["vLLM service | Write secrets to root-only vllm.env of the new release"]["@fake/fresh-cache"]
    )
    assert command.startswith("{ timeout 7200 /usr/bin/docker run --rm --name vllm-download ")
    assert "-v /var/lib/vllm-fleet/huggingface:/root/.cache/huggingface" in command
    assert "snapshot_download" in command and " Qwen/Qwen2.5-32B-Instruct && touch " in command
    assert "/var/lib/vllm-fleet/huggingface/hub/models--Qwen--Qwen2.5-32B-Instruct/.vllm-fleet-downloaded; }" in command
    # Stopped by its time limit (timeout's 124), the step says what stopped and why.
    assert (
        "[ $status -ne 124 ] || echo " in command and "did not finish within 7200s (vllm_download_timeout)" in command
    )
    assert TOKEN not in planned.output


def test_a_finished_download_is_not_repeated_and_a_partial_one_is_resumed(planned):
    assert DOWNLOAD not in planned.names("downloaded")
    assert DOWNLOAD in planned.names("partial")
    assert DOWNLOAD not in planned.names("opted-out")
    # Those hosts' runs reached their end too: each skipped the download, not the release.
    assert ACTIVATE in planned.names("downloaded")
    assert ACTIVATE in planned.names("opted-out")
