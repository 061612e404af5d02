"""A cluster of two NVIDIA hosts (8 x H100 each) serving Llama 3.1 405B, planned against facts
written by hand: each member gets the GPU stack, Docker, the firewall with the cluster's ports,
its watch and its part of vLLM's multi-node launch, activated as a release.

vLLM's multi-node launch without Ray follows vLLM's docs/serving/parallelism_scaling.md
("Running vLLM with MultiProcessing": --nnodes, --node-rank, --master-addr, --headless on the
others) and the interface variables its run_cluster.sh users set (NCCL_SOCKET_IFNAME,
GLOO_SOCKET_IFNAME; VLLM_HOST_IP unique per member); the arguments themselves are checked in
tests/unit/test_cluster.py, and against vLLM 0.32's own parser in the sandbox."""

from __future__ import annotations

import pytest

from tests.planning.harness import H100_SMI, FakeHost, plan

KEY = "cluster-key-" + "c" * 12 + "Zq7wPm2x"
MEMBER = {
    "accelerator": "nvidia",
    "gpu_count": 8,
    "gpu_memory_gib": 79.6,
    "vllm_bind_address": "0.0.0.0",
    "vllm_api_key": KEY,
    "hf_token": "hf_" + "t" * 26 + "Zq7wPm2x",
    "vllm_model": "meta-llama/Llama-3.1-405B-Instruct",
    "vllm_max_model_len": 16384,
    "vllm_cluster": "llama405",
    "vllm_cluster_interface": "ens5f0",
}
# Room for the 405B model's 757 GiB in the cache.
ROOMY = {"hf_cache_free_kib": str(2 * 1024**3)}


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    hosts = [
        FakeHost(
            f"gpu-0{rank + 1}",
            "ubuntu22",
            nvidia_smi=H100_SMI * 8,
            probe=ROOMY,
            data={**MEMBER, "vllm_cluster_rank": rank, "fleet_address": f"10.20.0.1{rank + 1}"},
        )
        for rank in range(2)
    ]
    path = tmp_path_factory.mktemp("cluster") / "inventory.py"
    path.write_text(f"enterprise = {[h.inventory_entry() for h in hosts]!r}\n")
    return plan(str(path))


def test_both_members_are_deployed_with_their_watch_and_activated(planned):
    assert planned.rc == 0, planned.output[-3000:]
    for host in ("gpu-01", "gpu-02"):
        names = planned.names(host)
        assert not planned.refusals(host), planned.refusals(host)
        for operation in (
            "vLLM service | Install vllm-cluster-watch",
            "vLLM service | Write the members of cluster llama405 for the watch",
            "vLLM service | Install vllm-cluster-watch.service",
            "vLLM service | Write vllm.service of the new release",
        ):
            assert operation in names, (host, operation, names)
        assert any(n.startswith("vLLM service | Activate the new release") for n in names), names
        assert any("firewall" in n.lower() for n in names), names
    assert KEY not in planned.output


def test_the_leader_alone_serving_the_model_would_be_refused(tmp_path):
    """The same model on one of the hosts alone does not fit its 8 GPUs: pre-flight says so."""
    alone = FakeHost(
        "gpu-01",
        "ubuntu22",
        nvidia_smi=H100_SMI * 8,
        probe=ROOMY,
        data={k: v for k, v in MEMBER.items() if not k.startswith("vllm_cluster")} | {"fleet_address": "10.20.0.11"},
    )
    path = tmp_path / "inventory.py"
    path.write_text(f"enterprise = {[alone.inventory_entry()]!r}\n")
    single = plan(str(path))
    assert any("does not fit" in reason for reason in single.refusals("gpu-01")), single.output[-3000:]
