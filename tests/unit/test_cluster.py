"""Clusters (one model across hosts): who is a member and what members must agree on, vLLM's
multi-node launch of each, sizing across the cluster, the firewall between members, the watch,
the gateway, the monitoring and the rollout's units."""

from __future__ import annotations

import subprocess

import pytest

from vllm_fleet import cluster, firewall, launch, paths, templates
from vllm_fleet.catalogue import Gpus
from vllm_fleet.monitoring.prometheus import scrapes_vllm
from vllm_fleet.plan import plan_host
from vllm_fleet.rollout.batches import split_batches, units_of
from vllm_fleet.rollout.plans import PlannedHost
from vllm_fleet.rules import check_fleet, gateway_backends, validate
from vllm_fleet.settings import SettingsError

KEY = "k" * 12 + "Zq7wPm2x"
MEMBER = {
    "phase": "enterprise",
    "accelerator": "nvidia",
    "gpu_count": 8,
    "gpu_memory_gib": 79.6,
    "vllm_bind_address": "0.0.0.0",
    "vllm_api_key": KEY,
    "vllm_image": "vllm/vllm-openai:v0.33.0",
    "vllm_model": "meta-llama/Llama-3.1-405B-Instruct",
    "vllm_max_model_len": 8192,
    "vllm_cluster": "big",
    "vllm_cluster_interface": "ens5f0",
}
H100 = Gpus(8, 79.6, "NVIDIA H100 80GB HBM3", "host data")


def fleet(**changes: dict) -> dict:
    """Two members of cluster big (n1 the leader, n2), a host serving alone (solo), a gateway (gw)."""
    hosts = {
        "n1": ({**MEMBER, "vllm_cluster_rank": 0, "fleet_address": "10.1.0.1"}, ["enterprise"]),
        "n2": ({**MEMBER, "vllm_cluster_rank": 1, "fleet_address": "10.1.0.2"}, ["enterprise"]),
        "solo": (
            {
                "phase": "enterprise",
                "accelerator": "nvidia",
                "vllm_bind_address": "0.0.0.0",
                "vllm_api_key": KEY,
                "fleet_address": "10.1.0.3",
            },
            ["enterprise"],
        ),
        "gw": ({"fleet_address": "10.1.0.9"}, ["gateway"]),
    }
    for name, data in changes.items():
        base, groups = hosts.get(name, ({**MEMBER}, ["enterprise"]))
        merged = {k: v for k, v in {**base, **data}.items() if v is not ...}
        hosts[name] = (merged, [merged.get("phase", groups[0])])
    validated = {name: validate(name, data, groups) for name, (data, groups) in hosts.items()}
    for s in validated.values():
        check_fleet(s, validated)
    return validated


def refused(**changes: dict) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        fleet(**changes)
    return caught.value


# --- who is a member, and what members agree on ----------------------------------------------


@pytest.mark.parametrize(
    ("changes", "host", "key", "words"),
    [
        ({"n2": {"vllm_cluster": "other"}}, "n1", "vllm_cluster", "n1 is the only member of cluster 'big'"),
        ({"n2": {"vllm_cluster_rank": 0}}, "n1", "vllm_cluster_rank", "n1 and n2 both have it"),
        ({"n2": {"vllm_cluster_rank": 2}}, "n1", "vllm_cluster_rank", "the ranks are [0, 2]"),
        ({"n2": {"vllm_cluster_rank": ...}}, "n2", "vllm_cluster_rank", "0 for its leader"),
        ({"n2": {"vllm_cluster_interface": ...}}, "n2", "vllm_cluster_interface", "such as eth0"),
        ({"n2": {"serving_method": "nix", "vllm_image": None}}, "n2", "serving_method", "docker on a member"),
        ({"n2": {"accelerator": "auto"}}, "n2", "accelerator", "the members must be alike"),
        ({"n2": {"gpu_count": ...}}, "n2", "gpu_count", "split across every GPU of the cluster"),
        ({"n2": {"gpu_count": 4}}, "n2", "gpu_count", "its leader n1 has 8"),
        ({"n2": {"vllm_image": "vllm/vllm-openai:v0.32.0"}}, "n2", "vllm_image", "leader n1 has"),
        ({"n2": {"vllm_model": "meta-llama/Llama-3.1-70B-Instruct"}}, "n2", "vllm_model", "leader n1 has"),
        (
            {"n2": {"accelerator": "amd", "vllm_image": "vllm/vllm-openai-rocm:v0.33.0"}},
            "n2",
            "accelerator",
            "leader n1 has 'nvidia'",
        ),
        ({"n2": {"vllm_api_key": "j" * 12 + "Zq7wPm2x"}}, "n2", "vllm_api_key", "<secret, 20 characters>"),
        ({"n2": {"fleet_address": "n2.example"}}, "n2", "fleet_address", "the member's IP address"),
        ({"n1": {"vllm_bind_address": "127.0.0.1"}}, "n1", "vllm_bind_address", "an address the other members reach"),
        ({"n2": {"vllm_cluster_port": 40000}}, "n2", "vllm_cluster_port", "outside vllm_cluster_dynamic_ports"),
        (
            {"n2": {"vllm_tensor_parallel_size": 16}, "n1": {"vllm_tensor_parallel_size": 16}},
            "n1",
            "vllm_tensor_parallel_size",
            "at most the member's 8 GPU(s)",
        ),
        ({"solo": {"vllm_cluster_rank": 1}}, "solo", "vllm_cluster_rank", "None outside a cluster"),
        ({"n2": {"fleet_address": "10.1.0.1"}}, "n1", "fleet_address", "n1 and n2 share it"),
        ({"n1": {"vllm_bind_address": "10.1.0.7"}}, "n1", "vllm_bind_address", "or the leader's fleet_address"),
        ({"n2": {"vllm_cluster_port": 8000}}, "n2", "vllm_cluster_port", "a port other than vllm_port (8000)"),
        ({"n2": {"phase": "single_gpu"}}, "n2", "phase", "its leader n1 has 'enterprise'"),
        ({"n2": {"vllm_extra_args": ["-pp", "2"]}}, "n2", "vllm_extra_args", "arguments without -pp"),
        (
            {"n2": {"vllm_extra_args": ["--distributed_executor_backend=ray"]}},
            "n2",
            "vllm_extra_args",
            "without --distributed-executor-backend",
        ),
        ({"n2": {"vllm_extra_args": ["--node-rank", "1"]}}, "n2", "vllm_extra_args", "set by vllm_cluster_rank"),
        (
            {"gw": {"gateway_backends": ["n1", "n2"]}},
            "gw",
            "gateway_backends",
            "name the cluster's leader instead (n1)",
        ),
    ],
)
def test_a_bad_cluster_is_refused_naming_the_host_and_the_key(changes, host, key, words):
    error = refused(**changes)
    assert (error.host, error.key) == (host, key), str(error)
    assert words in str(error)
    assert KEY not in str(error) and "j" * 12 + "Zq7wPm2x" not in str(error)


def test_bad_cluster_values_are_refused_by_the_settings(tmp_path):
    for key, value in (
        ("vllm_cluster", "a b"),
        ("vllm_cluster_interface", "eth0;reboot"),
        ("vllm_cluster_dynamic_ports", "1000-2000"),
        ("vllm_cluster_dynamic_ports", "60999-32768"),
        ("vllm_cluster_split", "data"),
    ):
        error = refused(n2={key: value})
        assert (error.host, error.key) == ("n2", key), str(error)


# --- vLLM's multi-node launch ----------------------------------------------------------------


def test_each_member_runs_its_rank_of_vllms_multi_node_launch():
    hosts = fleet()
    leader = cluster.place(hosts["n1"], hosts, "nvidia")
    worker = cluster.place(hosts["n2"], hosts, "nvidia")
    assert leader and worker and cluster.place(hosts["solo"], hosts, "nvidia") is None
    common = ["--tensor-parallel-size", "8", "--pipeline-parallel-size", "2", "--nnodes", "2"]
    meet = ["--master-addr", "10.1.0.1", "--master-port", "29501"]
    assert leader.vllm_args() == [*common, "--node-rank", "0", *meet]
    assert worker.vllm_args() == [*common, "--node-rank", "1", *meet, "--headless"]
    assert leader.environment("nvidia") == {
        "VLLM_HOST_IP": "10.1.0.1",
        "GLOO_SOCKET_IFNAME": "ens5f0",
        "NCCL_SOCKET_IFNAME": "ens5f0",
    }
    assert worker.environment("nvidia")["VLLM_HOST_IP"] == "10.1.0.2"
    # The member's flags follow the model's own in its command line, and its environment its container's.
    args = launch.vllm_args(hosts["n1"], "nvidia", leader)
    assert args[:2] == ["--model", hosts["n1"].vllm_model]
    assert args[args.index("--tensor-parallel-size") :][:13] == [*common, "--node-rank", "0", *meet]
    container = launch.container_args(hosts["n1"], "nvidia", leader)
    assert "GLOO_SOCKET_IFNAME=ens5f0" in container and "VLLM_HOST_IP=10.1.0.1" in container
    assert "NCCL_SOCKET_IFNAME" not in worker.environment("cpu")


def test_members_run_on_the_host_network_and_the_leader_listens_on_its_port():
    hosts = fleet()
    s1, s2 = hosts["n1"], hosts["n2"]
    leader = launch.docker_run_argv(s1, "nvidia", cluster.place(s1, hosts, "nvidia"))
    worker = launch.docker_run_argv(s2, "nvidia", cluster.place(s2, hosts, "nvidia"))
    for argv in (leader, worker):
        assert argv[argv.index("--network") + 1] == "host" and "-p" not in argv
        assert "--tensor-parallel-size" in argv and argv.count("--tensor-parallel-size") == 1
    assert leader[-4:] == ["--host", "0.0.0.0", "--port", "8000"]
    assert "--host" not in worker and "--headless" in worker
    assert "-e" in worker and "VLLM_HOST_IP=10.1.0.2" in worker
    alone = launch.docker_run_argv(hosts["solo"], "nvidia")
    assert "--network" not in alone and "-p" in alone


def test_a_members_release_serves_when_its_leader_lists_the_model():
    hosts = fleet()
    worker = cluster.place(hosts["n2"], hosts, "nvidia")
    assert "URL=http://10.1.0.1:8000\n" in launch.release_conf(hosts["n2"], worker)
    assert "URL=http://127.0.0.1:8000\n" in launch.release_conf(
        hosts["n1"], cluster.place(hosts["n1"], hosts, "nvidia")
    )


def test_tensor_split_puts_every_gpu_in_one_tensor_parallel_group():
    hosts = fleet(n1={"vllm_cluster_split": "tensor"}, n2={"vllm_cluster_split": "tensor"})
    place = cluster.place(hosts["n1"], hosts, "nvidia")
    assert place and (place.tensor_parallel_size, place.pipeline_parallel_size) == (16, 1)
    cpu_member = {"accelerator": "cpu", "gpu_count": ..., "vllm_image": "vllm/vllm-openai-cpu:v0.33.0-x86_64"}
    cpu = fleet(n1=cpu_member, n2=cpu_member)
    cpu_place = cluster.place(cpu["n2"], cpu, "cpu")
    assert cpu_place and (cpu_place.tensor_parallel_size, cpu_place.pipeline_parallel_size) == (1, 2)


def test_sizing_plans_the_model_across_the_cluster():
    """A 405B model in bf16 does not fit one 8 x H100 host; across two, with pipeline parallel, it does."""
    hosts = fleet()
    alone = plan_host(hosts["n1"].replace(vllm_cluster=None, vllm_cluster_rank=None), {}, "nvidia", H100)
    assert alone.refusal and "does not fit" in alone.refusal
    together = plan_host(hosts["n1"], {}, "nvidia", H100, fleet=hosts)
    assert together.refusal is None, together.refusal
    assert together.sizing.estimate and together.sizing.estimate.shards == 16
    assert together.as_dict()["cluster"]["pipeline_parallel_size"] == 2
    assert "--pipeline-parallel-size" in together.as_dict()["vllm_args"]


def test_a_tensor_split_is_planned_with_a_word_on_the_network_it_crosses():
    """Without vllm_cluster_rdma, NCCL between the members' containers runs over TCP sockets."""
    pipeline = fleet()
    assert not [w for w in plan_host(pipeline["n1"], {}, "nvidia", H100, fleet=pipeline).warnings if "NCCL" in w]
    tensor = fleet(n1={"vllm_cluster_split": "tensor"}, n2={"vllm_cluster_split": "tensor"})
    [warning] = [w for w in plan_host(tensor["n1"], {}, "nvidia", H100, fleet=tensor).warnings if "NCCL" in w]
    interface = tensor["n1"].vllm_cluster_interface
    assert warning.startswith("vllm_cluster_split is tensor: every layer's all-reduce crosses the network")
    assert f"over TCP sockets on {interface}: far slower" in warning and "vllm_cluster_rdma = True" in warning


def test_rdma_hands_the_devices_in_and_needs_them_on_the_host():
    """vLLM's multi-node guide ("Enabling GPUDirect RDMA"): the IPC_LOCK capability, and the
    InfiniBand devices; the Nix way's unit lifts the locked-memory limit instead."""
    both = {"vllm_cluster_split": "tensor", "vllm_cluster_rdma": True}
    hosts = fleet(n1=both, n2=both)
    planned = plan_host(hosts["n1"], {}, "nvidia", H100, fleet=hosts)
    assert not [w for w in planned.warnings if "NCCL" in w]
    argv = launch.docker_run_argv(hosts["n1"], "nvidia", planned.cluster)
    at = argv.index("/dev/infiniband")
    assert argv[at - 1 : at + 5] == [
        "--device",
        "/dev/infiniband",
        "--cap-add",
        "IPC_LOCK",
        "--ulimit",
        "memlock=-1:-1",
    ]
    assert "/dev/infiniband" not in launch.docker_run_argv(hosts["n1"], "cpu", planned.cluster)
    nix = launch.unit_context(hosts["n1"].replace(serving_method="nix"), "nvidia", planned.cluster)
    assert nix["memlock_unlimited"] and not launch.unit_context(hosts["n1"], "nvidia", None)["memlock_unlimited"]


# --- the firewall, the watch, the gateway, the monitoring, the rollout -----------------------


def test_the_cluster_ports_admit_only_the_other_members(tmp_path):
    hosts = fleet()
    guards = {g.name: g for g in firewall.guards(hosts["n1"], hosts)}
    assert guards["cluster"].sources == ("10.1.0.2/32",)
    assert guards["cluster"].ports == (29501, "32768-60999") and guards["cluster"].new_only
    assert "10.1.0.2/32" in guards["vllm"].sources  # the member's readiness check asks its leader
    assert "cluster" not in {g.name for g in firewall.guards(hosts["solo"], hosts)}
    for name in ("n1", "n2"):
        table = tmp_path / f"{name}.nft"
        table.write_text(firewall.rules(hosts[name], hosts))
        done = subprocess.run(["nft", "-c", "-f", str(table)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    text = firewall.rules(hosts["n2"], hosts)
    assert "tcp dport { 29501, 32768-60999 } ct state new fib daddr type local counter drop" in text
    # Each set says whose ports it guards and whom it admits.
    assert [line.strip() for line in text.splitlines() if line.startswith("    # ")] == [
        "# vLLM's port: its gateways, monitoring hosts and vllm_allowed_sources",
        "# the cluster's ports (the leader's meeting port, and where NCCL, Gloo and vLLM's queues listen): "
        "the other members of cluster big",
    ]


def test_a_member_inside_the_allowed_sources_leaves_no_overlap_for_nftables(tmp_path):
    hosts = fleet(n1={"vllm_allowed_sources": ["10.1.0.0/24", "2001:db8::/32", "2001:db8::5"]})
    guard = next(g for g in firewall.guards(hosts["n1"], hosts) if g.name == "vllm")
    assert guard.sources == ("10.1.0.0/24", "2001:db8::/32")
    table = tmp_path / "n1.nft"
    table.write_text(firewall.rules(hosts["n1"], hosts))
    done = subprocess.run(["nft", "-c", "-f", str(table)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_watch_and_its_settings_are_shell_and_units_that_check(tmp_path):
    hosts = fleet()
    place = cluster.place(hosts["n1"], hosts, "nvidia")
    assert place
    conf = cluster.watch_conf(place)
    script = tmp_path / "watch"
    script.write_text(templates.render("vllm-cluster-watch.sh.j2"))
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
    shown = subprocess.run(
        ["sh", "-c", '. "$1"; echo "$CLUSTER|$RANK|$SIZE|$PEERS|$SKIP_PORTS"', "sh", "/dev/stdin"],
        input=conf,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert shown == "big|0|2|n2=0200010A,0000000000000000FFFF00000200010A|1F40 0016"
    unit = tmp_path / paths.CLUSTER_WATCH_SERVICE
    # The script is only on a member: systemd-analyze checks that ExecStart= names a program.
    unit.write_text(templates.render("vllm-cluster-watch.service.j2", cluster_watch_script="/bin/true"))
    vllm = tmp_path / paths.SERVICE
    vllm.write_text(templates.render("vllm.service.j2", **launch.unit_context(hosts["n1"], "nvidia", place)))
    (tmp_path / paths.FIREWALL_SERVICE).write_text(templates.render("vllm-firewall.service.j2"))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(vllm), str(unit)], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    assert f"Wants={paths.CLUSTER_WATCH_SERVICE}" in vllm.read_text()


def test_connection_forms_are_the_kernels():
    # As /proc/net/tcp printed 172.31.77.11, seen from its leader in the sandbox.
    assert cluster.connection_forms("172.31.77.11")[0] == "0B4D1FAC"
    assert cluster.connection_forms("2001:db8::1") == ["B80D0120000000000000000001000000"]


def test_the_gateway_fronts_the_leader_and_monitoring_scrapes_its_vllm():
    hosts = fleet()
    assert [b.host for b in gateway_backends(hosts["gw"], hosts)] == ["n1", "solo"]
    assert scrapes_vllm(hosts["n1"]) and not scrapes_vllm(hosts["n2"])


def test_the_rollout_moves_a_cluster_as_one_unit():
    planned = {
        "a": {},
        "n1": {"cluster": {"members": ["n1", "n2"]}},
        "b": {},
        "n2": {"cluster": {"members": ["n1", "n2"]}},
        "c": {},
    }
    plans = {name: PlannedHost.model_validate(plan) for name, plan in planned.items()}
    units = units_of(["a", "n1", "b", "n2", "c"], plans)
    assert units == [["a"], ["n1", "n2"], ["b"], ["c"]]
    assert units_of(["n2"], plans) == [["n1", "n2"]]  # --limit naming one member takes them all
    names = [n for u in units for n in u]
    assert split_batches(names, 1, (1, False), units) == [["a"], ["n1", "n2"], ["b"], ["c"]]
    assert split_batches(names, 2, (50, True), units) == [["a", "n1", "n2"], ["b", "c"]]
